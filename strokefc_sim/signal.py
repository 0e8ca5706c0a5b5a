"""The signal model of one simulated run: what each voxel of the BOLD data and the confounds hold.

Band-limited (0.01-0.08 Hz) signals: a global signal, motion artefacts, a motor-network signal shared
by both M1 and the SMA, voxel noise and, with ``amplitude`` > 0, a *time-varying* coupling between the
ipsilesional M1 seed and the :data:`PLANTED_TARGETS`: their coupling switches sign over minutes, so
the dFC variability (SD over windows) is higher there. Optional: a lesion cavity artefact and a
hemodynamic lag of the lesioned hemisphere.
"""

from __future__ import annotations

import nibabel as nb
import numpy as np
import pandas as pd

#: The simulator's own truth, the regions whose coupling with the seed it plants: (atlas, region
#: pattern, hemisphere relative to the lesion). The app traces the same regions in its report
#: (``workflows.interfaces.dfc.REPORT_REGIONS``), but they are declared apart on purpose: the planted
#: effect is ground truth that the app's choices must not define.
PLANTED_TARGETS = (
    ("HCPEx", "Primary_Motor_Cortex_{side}", "contra"),
    ("AAL", "Supp_Motor_Area_{side}", "ipsi"),
    ("AAL", "Thalamus_{side}", "ipsi"),
)
MOTION = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")


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
    for atlas, pattern, rel in PLANTED_TARGETS:
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
