"""``strokefc-simulate``: a synthetic stroke cohort as a raw BIDS dataset plus fMRIPrep derivatives.

Each patient has resting-state BOLD in MNI152NLin2009cAsym (fMRIPrep naming: ``res-2`` on the 2 mm
97x115x97 grid, no ``res`` entity on the 4 mm 49x58x49 grid), a brain mask, a reference image and a
confounds table with fMRIPrep's column names (motion with derivatives and squares, WM/CSF/global
signals, FD, DVARS, aCompCor with its JSON, non-steady-state outliers), plus a small lesion mask.

Signal model (band-limited 0.01-0.08 Hz): a global signal, motion artefacts, a motor-network signal
shared by both M1 and the SMA, voxel noise and, in the patients that carry the effect ("severe",
UL-FMA <= 20), a *time-varying* coupling between the ipsilesional M1 seed and three lateralised
targets (contralesional M1, ipsilesional SMA and thalamus): their coupling oscillates over minutes, so
the dFC variability (SD over windows) is higher there. Mild-to-moderate patients get a constant
coupling. Everything is seeded; the truth is written to ``code/strokefc_ground_truth.json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np
import pandas as pd

SPACE = "MNI152NLin2009cAsym"
GRIDS = {2: (97, 115, 97), 4: (49, 58, 49)}
ORIGIN = (-96.0, -132.0, -78.0)
#: Planted targets: (atlas, region pattern, which hemisphere relative to the lesion).
TARGETS = (
    ("HCPEx", "Primary_Motor_Cortex_{side}", "contra"),
    ("AAL", "Supp_Motor_Area_{side}", "ipsi"),
    ("AAL", "Thalamus_{side}", "ipsi"),
)
MOTION = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")


def grid_affine(resolution: int) -> np.ndarray:
    aff = np.diag([float(resolution)] * 3 + [1.0])
    aff[:3, 3] = ORIGIN
    return aff


def bandlimited(
    rng: np.random.Generator, n_t: int, n: int, tr: float, low: float = 0.01, high: float = 0.08
) -> np.ndarray:
    """``n`` unit-variance Gaussian series (T, n) limited to ``low``-``high`` Hz."""
    freqs = np.fft.rfftfreq(n_t, tr)
    spec = rng.standard_normal((freqs.size, n)) + 1j * rng.standard_normal((freqs.size, n))
    spec[(freqs < low) | (freqs > high)] = 0
    out = np.fft.irfft(spec, n=n_t, axis=0)
    out -= out.mean(axis=0)
    return out / np.maximum(out.std(axis=0), 1e-12)


def brain_mask(resolution: int) -> nb.Nifti1Image:
    """nilearn's MNI152 brain mask on the fMRIPrep-like grid."""
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.image import resample_to_img

    ref = nb.Nifti1Image(np.zeros(GRIDS[resolution], np.uint8), grid_affine(resolution))
    img = resample_to_img(
        load_mni152_brain_mask(resolution=2),
        ref,
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    return nb.Nifti1Image((np.asarray(img.dataobj) > 0).astype(np.uint8), ref.affine)


def _regions(mask_img: nb.Nifti1Image, side: str) -> dict[str, np.ndarray]:
    """Seed and target masks (booleans over the brain voxels) for a lesion side."""
    from workflows.seeds import atlas_region_mask

    contra = "R" if side == "L" else "L"
    inside = np.asarray(mask_img.dataobj) > 0
    out = {
        "seed": np.asarray(atlas_region_mask("HCPEx", [f"Primary_Motor_Cortex_{side}"], mask_img).dataobj)[
            inside
        ]
        > 0
    }
    for atlas, pattern, rel in TARGETS:
        name = pattern.format(side=side if rel == "ipsi" else contra)
        out[name] = np.asarray(atlas_region_mask(atlas, [name], mask_img).dataobj)[inside] > 0
    motor_other = f"Primary_Motor_Cortex_{contra}"
    out["motor"] = out["seed"] | out[motor_other]
    return out


def _motion(
    rng: np.random.Generator, n_t: int, tr: float, n_spikes: int, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Motion parameters (T, 6), their derivatives and FD: jitter around a position, plus a few jumps.

    ``scale`` multiplies the jitter and the jumps (the same random draws, so other outputs are unchanged).

    Real estimates are mostly high-frequency jitter with occasional steps; a random walk would make
    24 smooth regressors that soak up slow neural signal, which real data do not show to that degree.
    """
    params = np.zeros((n_t, 6))
    params[:, :3] = rng.normal(0, 0.03 * scale, (n_t, 3))
    params[:, 3:] = rng.normal(0, 0.0005 * scale, (n_t, 3))  # radians
    for t in rng.choice(np.arange(5, n_t - 5), size=n_spikes, replace=False):
        params[t:, :3] += rng.normal(0, 0.3 * scale, 3)
    d = np.vstack([np.zeros((1, 6)), np.diff(params, axis=0)])
    fd = np.abs(d[:, :3]).sum(axis=1) + 50 * np.abs(d[:, 3:]).sum(axis=1)
    return params, d, fd


def simulate_run(
    rng: np.random.Generator,
    mask_img: nb.Nifti1Image,
    side: str,
    *,
    n_t: int,
    tr: float,
    amplitude: float,
    n_dummy: int = 2,
    n_spikes: int = 2,
    lesion: np.ndarray | None = None,
    lesion_noise: float = 0.0,
    lag: float = 0.0,
    motion_scale: float = 1.0,
) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """One run: in-mask data (T, V) float32, confounds table and the CompCor JSON.

    With ``lesion`` (bool over the brain voxels) and ``lesion_noise`` > 0, the lesion holds no neural
    signal but a shared cavity artefact plus voxel noise, of SD ``lesion_noise`` x the lesion radius in
    cm; half the artefact leaks into a one-voxel ring around it (partial volume). ``lag`` (s) delays
    every signal of the lesioned hemisphere (|x| > 8 mm on the lesion's side), as hypoperfusion does.
    """
    regions = _regions(mask_img, side)
    n_v = int(regions["seed"].size)
    t = np.arange(n_t) * tr
    glob = bandlimited(rng, n_t, 1, tr)[:, 0]
    motor = bandlimited(rng, n_t, 1, tr)[:, 0]
    seed_sig = bandlimited(rng, n_t, 1, tr)[:, 0]
    data = 0.6 * bandlimited(rng, n_t, n_v, tr, 0.005, 0.2).astype(np.float32)
    data += 0.4 * rng.standard_normal((n_t, n_v)).astype(np.float32)
    data += 0.3 * glob[:, None].astype(np.float32)
    data[:, regions["motor"]] += 0.5 * motor[:, None].astype(np.float32)
    data[:, regions["seed"]] += 0.8 * seed_sig[:, None].astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi)
    # states last at least two default windows (100 s): the coupling switches sign every 100-150 s at
    # least, so that windows as long as 1/high-pass (Leonardi & Van De Ville 2015) can see the dynamics
    period = max(n_t * tr / rng.uniform(2.5, 3.5), rng.uniform(200.0, 300.0))
    # slow switches between positive and negative coupling (a smoothed square wave), minutes apart
    coupling = np.clip(0.1 + amplitude * np.tanh(3 * np.sin(2 * np.pi * t / period + phase)), -0.95, 0.95)
    for name, sel in regions.items():
        if name in ("seed", "motor"):
            continue
        own = bandlimited(rng, n_t, int(sel.sum()), tr)  # voxel-specific remainder
        data[:, sel] += (
            1.6
            * (coupling[:, None] * seed_sig[:, None] + np.sqrt(np.clip(1 - coupling**2, 0, 1))[:, None] * own)
        ).astype(np.float32)
    if lag:
        territory = lag_territory(mask_img, side)
        data[:, territory] = delay(data[:, territory], lag, tr)
    if lesion is not None and lesion_noise > 0 and lesion.any():
        inside = np.asarray(mask_img.dataobj) > 0
        vol = np.zeros(inside.shape, bool)
        vol[inside] = lesion
        from scipy.ndimage import binary_dilation

        ring = (binary_dilation(vol) & ~vol)[inside]
        radius_cm = (3 * lesion.sum() * np.prod(mask_img.header.get_zooms()[:3]) / (4 * np.pi)) ** (
            1 / 3
        ) / 10
        artefact = lesion_noise * radius_cm * bandlimited(rng, n_t, 1, tr, 0.005, 0.2)[:, 0]
        data[:, lesion] = (
            artefact[:, None] + 0.5 * lesion_noise * rng.standard_normal((n_t, lesion.sum()))
        ).astype(np.float32)
        data[:, ring] += (0.5 * artefact[:, None]).astype(np.float32)
    params, deriv, fd = _motion(rng, n_t, tr, n_spikes, motion_scale)
    weights = rng.normal(0, 0.5, (6, n_v)).astype(np.float32)
    data += (params - params.mean(axis=0)).astype(np.float32) @ weights
    data[:n_dummy] += 3.0  # non-steady state
    conf = {}
    for i, name in enumerate(MOTION):
        conf[name] = params[:, i]
        conf[f"{name}_derivative1"] = deriv[:, i]
        conf[f"{name}_power2"] = params[:, i] ** 2
        conf[f"{name}_derivative1_power2"] = deriv[:, i] ** 2
    wm_sig = data[:, ::97].mean(axis=1)
    csf_sig = data[:, 5::89].mean(axis=1)
    for name, sig in (("global_signal", data.mean(axis=1)), ("white_matter", wm_sig), ("csf", csf_sig)):
        conf[name] = sig
        d = np.concatenate([[np.nan], np.diff(sig)])
        conf[f"{name}_derivative1"] = d
        conf[f"{name}_power2"] = sig**2
        conf[f"{name}_derivative1_power2"] = d**2
    fd = fd.copy()
    dvars = np.concatenate([[np.nan], np.sqrt((np.diff(data, axis=0) ** 2).mean(axis=1))])
    conf["framewise_displacement"] = np.concatenate([[np.nan], fd[1:]])
    conf["dvars"] = dvars
    conf["std_dvars"] = dvars / np.nanmedian(dvars)
    conf["rmsd"] = conf["framewise_displacement"] / 2
    # aCompCor: principal components of a random "WM+CSF" voxel sample, as fMRIPrep computes them.
    sample = data[:, ::53] - data[:, ::53].mean(axis=0)
    u, s, _ = np.linalg.svd(sample, full_matrices=False)
    var = s**2 / (s**2).sum()
    comp_json = {}
    for k in range(min(10, u.shape[1])):
        name = f"a_comp_cor_{k:02d}"
        conf[name] = u[:, k]
        comp_json[name] = {
            "Method": "aCompCor",
            "Mask": "combined",
            "SingularValue": float(s[k]),
            "VarianceExplained": float(var[k]),
            "CumulativeVarianceExplained": float(var[: k + 1].sum()),
            "Retained": True,
        }
    for k in range(4):
        conf[f"cosine{k:02d}"] = np.cos(np.pi * (k + 1) * (np.arange(n_t) + 0.5) / n_t)
    for k in range(n_dummy):
        col = np.zeros(n_t)
        col[k] = 1
        conf[f"non_steady_state_outlier{k:02d}"] = col
    table = pd.DataFrame(conf)
    return data, table, comp_json


def lag_territory(mask_img: nb.Nifti1Image, side: str) -> np.ndarray:
    """Brain voxels of the lesioned hemisphere more than 8 mm from the midline (bool over the voxels)."""
    inside = np.asarray(mask_img.dataobj) > 0
    x = nb.affines.apply_affine(mask_img.affine, np.argwhere(inside))[:, 0]
    return x < -8.0 if side == "L" else x > 8.0


def delay(series: np.ndarray, seconds: float, tr: float) -> np.ndarray:
    """Columns of ``series`` (T, N) delayed by ``seconds`` (a Fourier phase shift: any fraction of a TR)."""
    n_t = series.shape[0]
    freqs = np.fft.rfftfreq(n_t, tr)
    spec = np.fft.rfft(series, axis=0) * np.exp(-2j * np.pi * freqs * seconds)[:, None]
    return np.fft.irfft(spec, n=n_t, axis=0).astype(series.dtype)


def _write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")


def _to_image(data_tv: np.ndarray, mask: np.ndarray, affine: np.ndarray) -> nb.Nifti1Image:
    vol = np.zeros((*mask.shape, data_tv.shape[0]), np.float32)
    vol[mask] = (1000.0 + 20.0 * data_tv).T
    img = nb.Nifti1Image(vol, affine)
    img.set_data_dtype(np.int16)  # nibabel picks the scale factor; 10x smaller and faster to gzip
    return img


def cohort_table(rng: np.random.Generator, n_subjects: int, severe_fraction: float) -> pd.DataFrame:
    n_severe = round(n_subjects * severe_fraction)
    severe = np.array([True] * n_severe + [False] * (n_subjects - n_severe))
    rng.shuffle(severe)
    sides = np.array(["L", "R"] * (n_subjects // 2 + 1))[:n_subjects]
    rng.shuffle(sides)
    score = np.where(severe, rng.integers(2, 21, n_subjects), rng.integers(21, 64, n_subjects))
    return pd.DataFrame(
        {
            "participant_id": [f"sub-{i + 1:02d}" for i in range(n_subjects)],
            "age": rng.integers(38, 85, n_subjects),
            "sex": rng.choice(["F", "M"], n_subjects),
            "lesion_hemisphere": sides,
            "ul_fma": score,
            "group": np.where(severe, "severe", "mild"),
        }
    )


def simulate_cohort(
    out_dir: str | Path,
    *,
    n_subjects: int = 24,
    resolution: int = 4,
    n_volumes: int = 150,
    tr: float = 2.0,
    n_runs: int = 1,
    n_sessions: int = 0,
    severe_fraction: float = 0.5,
    effect: float = 0.75,
    seed: int = 1,
    lesion_form: str = "template",
    lesion_noise: float = 0.0,
    lesion_size_by_class: bool = False,
    lag: float = 0.0,
    motion_by_class: float = 1.0,
) -> dict[str, Any]:
    """Write the cohort; returns the ground truth (also in ``code/strokefc_ground_truth.json``).

    ``lesion_form``: ``template`` writes MNI-space masks in ``derivatives/lesions``; ``t1w`` writes
    them as researchers draw them, in T1w space in the raw dataset (``anat/*_label-lesion_roi``),
    with a T1w image and fMRIPrep's ``from-T1w_to-<space>_mode-image_xfm.h5`` transform; ``both``
    writes both. ``lesion_noise`` puts a cavity artefact in the lesion (see :func:`simulate_run`);
    ``lesion_size_by_class`` makes severe patients' lesions larger (a confound, not dFC); ``lag`` (s)
    delays the lesioned hemisphere's signals (hemodynamic lag); ``motion_by_class`` multiplies the
    head motion of severe patients (a confound: motion usually differs between classes).
    """
    if lesion_form not in LESION_FORMS:
        raise SystemExit(f"--lesion-form must be one of {', '.join(LESION_FORMS)}")
    if resolution not in GRIDS:
        raise SystemExit(f"--resolution must be one of {sorted(GRIDS)} (mm)")
    nb.openers.Opener.default_compresslevel = 1
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    table = cohort_table(rng, n_subjects, severe_fraction)
    mask_img = brain_mask(resolution)
    mask = np.asarray(mask_img.dataobj) > 0
    affine = mask_img.affine
    res = {"res": "2"} if resolution == 2 else {}
    _write_json(
        out / "dataset_description.json",
        {
            "Name": "strokefc synthetic stroke cohort",
            "BIDSVersion": "1.9.0",
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["strokefc-simulate"],
            "GeneratedBy": [{"Name": "strokefc-simulate", "Version": _version()}],
        },
    )
    (out / "README").write_text(
        "Synthetic resting-state fMRI of stroke patients written by strokefc-simulate; not real data.\n"
    )
    table.drop(columns="group").to_csv(out / "participants.tsv", sep="\t", index=False)
    _write_json(
        out / "participants.json",
        {
            "age": {"Description": "age at scan", "Units": "year"},
            "sex": {"Description": "sex", "Levels": {"F": "female", "M": "male"}},
            "lesion_hemisphere": {
                "Description": "hemisphere of the stroke lesion",
                "Levels": {"L": "left", "R": "right"},
            },
            "ul_fma": {
                "Description": "Fugl-Meyer Assessment, upper limb motor score (0-66)",
                "Units": "score",
            },
        },
    )
    _write_json(out / "task-rest_bold.json", {"TaskName": "rest", "RepetitionTime": tr})
    fmriprep = out / "derivatives" / "fmriprep"
    _write_json(
        fmriprep / "dataset_description.json",
        {
            "Name": "fMRIPrep - fMRI PREProcessing workflow (simulated)",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [
                {"Name": "fMRIPrep", "Version": "23.2.0", "CodeURL": "https://github.com/nipreps/fmriprep"}
            ],
        },
    )
    lesion_dir = out / "derivatives" / "lesions"
    _write_json(
        lesion_dir / "dataset_description.json",
        {
            "Name": "simulated lesion masks",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "strokefc-simulate", "Version": _version()}],
        },
    )
    truth: dict[str, Any] = {
        "seed": seed,
        "resolution_mm": resolution,
        "n_volumes": n_volumes,
        "tr": tr,
        "targets": [{"atlas": a, "region": p, "hemisphere": h} for a, p, h in TARGETS],
        "subjects": {},
    }
    sessions: list[str | None] = [f"{i + 1}" for i in range(n_sessions)] or [None]
    lesion_rng = np.random.default_rng([seed, 7919])  # lesion draws leave the main stream unchanged
    for row in table.itertuples():
        label = row.participant_id[4:]
        severe = row.group == "severe"
        amp = effect * rng.uniform(0.8, 1.2) if severe else effect * rng.uniform(0.0, 0.15)
        radius = LESION_RADIUS_MM
        if lesion_size_by_class:
            radius = lesion_rng.uniform(11.0, 14.0) if severe else lesion_rng.uniform(5.0, 8.0)
        lesion_vol = lesion_sphere(row.lesion_hemisphere, radius, mask_img)
        truth["subjects"][label] = {
            "group": row.group,
            "lesion_hemisphere": row.lesion_hemisphere,
            "ul_fma": int(row.ul_fma),
            "coupling_amplitude": round(float(amp), 4),
            "lesion_radius_mm": round(float(radius), 3),
            "lesion_centre_mm": list(lesion_centre(row.lesion_hemisphere)),
            "lag_s": float(lag),
            "motion_scale": float(motion_by_class if severe else 1.0),
            "lag_territory": "lesioned hemisphere, |x| > 8 mm" if lag else "",
        }
        session_rows = []
        for index, ses in enumerate(sessions):
            sdir = Path(f"sub-{label}") / (f"ses-{ses}" if ses else "")
            session_amp = amp
            if ses is not None:
                # recovery: UL-FMA rises between sessions; a patient who crosses 20 loses the effect
                score = int(min(66, row.ul_fma + index * lesion_rng.uniform(3.0, 9.0)))
                crossed = (score <= 20) != severe
                session_amp = effect * lesion_rng.uniform(0.0, 0.15) if crossed else amp
                session_rows.append({"session_id": f"ses-{ses}", "ul_fma": score})
                truth["subjects"][label].setdefault("sessions", {})[ses] = {
                    "ul_fma": score,
                    "coupling_amplitude": round(float(session_amp), 4),
                }
            for run in range(1, n_runs + 1):
                ents = (
                    f"sub-{label}"
                    + (f"_ses-{ses}" if ses else "")
                    + "_task-rest"
                    + (f"_run-{run}" if n_runs > 1 else "")
                )
                data, conf, comp = simulate_run(
                    rng,
                    mask_img,
                    row.lesion_hemisphere,
                    n_t=n_volumes,
                    tr=tr,
                    amplitude=session_amp,
                    lesion=lesion_vol[mask],
                    lesion_noise=lesion_noise,
                    lag=lag,
                    motion_scale=motion_by_class if severe else 1.0,
                )
                func = fmriprep / sdir / "func"
                func.mkdir(parents=True, exist_ok=True)
                sp = f"_space-{SPACE}" + (f"_res-{res['res']}" if res else "")
                _to_image(data, mask, affine).to_filename(func / f"{ents}{sp}_desc-preproc_bold.nii.gz")
                _write_json(
                    func / f"{ents}{sp}_desc-preproc_bold.json",
                    {
                        "RepetitionTime": tr,
                        "TaskName": "rest",
                        "SkullStripped": False,
                        "StartTime": 0.0,
                        "Sources": [f"bids:raw:{sdir}/func/{ents}_bold.nii.gz"],
                    },
                )
                nb.Nifti1Image(mask.astype(np.uint8), affine).to_filename(
                    func / f"{ents}{sp}_desc-brain_mask.nii.gz"
                )
                ref = np.where(mask, 1000.0, 0.0).astype(np.float32)
                nb.Nifti1Image(ref, affine).to_filename(func / f"{ents}{sp}_boldref.nii.gz")
                conf.to_csv(
                    func / f"{ents}_desc-confounds_timeseries.tsv",
                    sep="\t",
                    index=False,
                    na_rep="n/a",
                    float_format="%.6g",
                )
                _write_json(func / f"{ents}_desc-confounds_timeseries.json", comp)
                raw = out / sdir / "func"
                raw.mkdir(parents=True, exist_ok=True)
                small = (1000 + rng.normal(0, 5, (8, 8, 6, n_volumes))).astype(np.int16)
                img = nb.Nifti1Image(small, np.diag([3.0, 3.0, 3.0, 1.0]))
                img.header.set_xyzt_units("mm", "sec")
                img.header["pixdim"][4] = tr
                img.to_filename(raw / f"{ents}_bold.nii.gz")
        if session_rows:
            pd.DataFrame(session_rows).to_csv(
                out / f"sub-{label}" / f"sub-{label}_sessions.tsv", sep="\t", index=False
            )
        if lesion_form in ("template", "both"):
            _write_lesion(lesion_dir, label, lesion_vol, mask_img, res)
        if lesion_form in ("t1w", "both"):
            _write_t1w_lesion(out, fmriprep, label, row.lesion_hemisphere, radius)
    (out / "code").mkdir(exist_ok=True)
    _write_json(out / "code" / "strokefc_ground_truth.json", truth)
    # fMRIPrep's documented lesion-mask name is not (yet) in the BIDS schema: the validator needs it ignored
    (out / ".bidsignore").write_text(
        "code/\n" + ("*_label-lesion_roi.nii.gz\n" if lesion_form != "template" else "")
    )
    return truth


#: Centre and default radius of the simulated lesion: corona radiata, in the lesioned hemisphere, away
#: from M1.
LESION_CENTRE_MM = (-26.0, -12.0, 22.0)
LESION_RADIUS_MM = 9.0
LESION_FORMS = ("template", "t1w", "both")
#: The simulated T1w space: template point -> T1w point (rotation of 5 degrees about z, then a shift),
#: which is what fMRIPrep's from-T1w_to-<template> transform maps.
_ANGLE = np.deg2rad(5.0)
TEMPLATE_TO_T1W = np.array(
    [
        [np.cos(_ANGLE), -np.sin(_ANGLE), 0.0, 3.0],
        [np.sin(_ANGLE), np.cos(_ANGLE), 0.0, -4.0],
        [0.0, 0.0, 1.0, 6.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def lesion_centre(side: str) -> tuple[float, float, float]:
    x, y, z = LESION_CENTRE_MM
    return (x if side == "L" else -x, y, z)


def lesion_sphere(side: str, radius: float, mask_img: nb.Nifti1Image) -> np.ndarray:
    """The lesion (bool volume on the grid): a sphere in the lesioned hemisphere, inside the brain."""
    from workflows.seeds import sphere_mask

    return sphere_mask(lesion_centre(side), radius, mask_img) & (np.asarray(mask_img.dataobj) > 0)


def _write_lesion(
    lesion_dir: Path, label: str, lesion: np.ndarray, mask_img: nb.Nifti1Image, res: dict[str, str]
) -> None:
    """The template-space mask, as a lesion-segmentation derivative names it."""
    anat = lesion_dir / f"sub-{label}" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    sp = f"_space-{SPACE}" + (f"_res-{res['res']}" if res else "")
    nb.Nifti1Image(lesion.astype(np.uint8), mask_img.affine).to_filename(
        anat / f"sub-{label}{sp}_desc-lesion_mask.nii.gz"
    )


def _write_t1w_lesion(out: Path, fmriprep: Path, label: str, side: str, radius: float) -> None:
    """A T1w image and its lesion mask (1.5 mm, T1w space) in the raw dataset, and fMRIPrep's transform."""
    from workflows.lesion_warp import write_itk_affine_h5
    from workflows.seeds import sphere_mask

    shape = (128, 150, 128)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = (-96.0, -130.0, -80.0)
    grid = nb.Nifti1Image(np.zeros(shape, np.uint8), affine)
    centre_t1w = (TEMPLATE_TO_T1W @ np.array([*lesion_centre(side), 1.0]))[:3]
    mask = sphere_mask(centre_t1w, radius, grid)
    head = sphere_mask((0.0, -10.0, 5.0), 85.0, grid)
    anat = out / f"sub-{label}" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    t1w = nb.Nifti1Image(np.where(head, np.where(mask, 300, 1000), 0).astype(np.int16), affine)
    t1w.header.set_xyzt_units("mm")
    t1w.to_filename(anat / f"sub-{label}_T1w.nii.gz")
    _write_json(anat / f"sub-{label}_T1w.json", {"Description": "synthetic T1w (strokefc-simulate)"})
    nb.Nifti1Image(mask.astype(np.uint8), affine).to_filename(anat / f"sub-{label}_label-lesion_roi.nii.gz")
    xfm = fmriprep / f"sub-{label}" / "anat" / f"sub-{label}_from-T1w_to-{SPACE}_mode-image_xfm.h5"
    xfm.parent.mkdir(parents=True, exist_ok=True)
    write_itk_affine_h5(xfm, TEMPLATE_TO_T1W)


def _version() -> str:
    from bids_app import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="strokefc-simulate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("out_dir", type=Path, help="where to write the raw BIDS dataset")
    parser.add_argument("--n-subjects", type=int, default=24)
    parser.add_argument(
        "--resolution",
        "--voxel-size",
        dest="resolution",
        type=int,
        default=4,
        choices=sorted(GRIDS),
        help="grid (mm): 2 = fMRIPrep res-2, 4 = coarse and fast",
    )
    parser.add_argument(
        "--n-volumes",
        type=int,
        default=150,
        help="volumes per run (150 at TR 2 s pass the default exclusion rules)",
    )
    parser.add_argument("--tr", type=float, default=2.0, help="repetition time (s)")
    parser.add_argument("--n-runs", type=int, default=1, help="runs per session")
    parser.add_argument("--n-sessions", type=int, default=0, help="0 = no session level")
    parser.add_argument("--severe-fraction", type=float, default=0.5)
    parser.add_argument(
        "--effect",
        type=float,
        default=0.75,
        help="amplitude of the seed-target coupling oscillation in severe patients",
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    parser.add_argument(
        "--lesion-form",
        default="template",
        choices=LESION_FORMS,
        help="template: MNI masks in derivatives/lesions; t1w: raw T1w-space masks with fMRIPrep's "
        "transform; both",
    )
    parser.add_argument(
        "--lesion-noise", type=float, default=0.0, help="cavity artefact in the lesion (SD per cm of radius)"
    )
    parser.add_argument(
        "--lesion-size-by-class", action="store_true", help="severe patients get larger lesions (a confound)"
    )
    parser.add_argument(
        "--lag", type=float, default=0.0, help="hemodynamic lag (s) of the lesioned hemisphere's signals"
    )
    parser.add_argument(
        "--motion-by-class", type=float, default=1.0, help="head motion of severe patients, times the others'"
    )
    args = parser.parse_args(argv)
    if args.n_subjects < 1 or args.n_volumes < 20:
        parser.error("need at least 1 subject and 20 volumes")
    truth = simulate_cohort(
        args.out_dir,
        n_subjects=args.n_subjects,
        resolution=args.resolution,
        n_volumes=args.n_volumes,
        tr=args.tr,
        n_runs=args.n_runs,
        n_sessions=args.n_sessions,
        severe_fraction=args.severe_fraction,
        effect=args.effect,
        seed=args.seed,
        lesion_form=args.lesion_form,
        lesion_noise=args.lesion_noise,
        lesion_size_by_class=args.lesion_size_by_class,
        lag=args.lag,
        motion_by_class=args.motion_by_class,
    )
    groups = [s["group"] for s in truth["subjects"].values()]
    print(
        f"Wrote {len(groups)} subjects ({groups.count('severe')} severe) to {args.out_dir}; "
        f"fMRIPrep derivatives in {args.out_dir / 'derivatives' / 'fmriprep'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
