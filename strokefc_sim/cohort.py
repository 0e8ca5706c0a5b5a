"""A synthetic stroke cohort: who the patients are, and the loop that writes their runs and lesions.

Each patient has resting-state BOLD in MNI152NLin2009cAsym (fMRIPrep naming: ``res-2`` on the 2 mm
97x115x97 grid, no ``res`` entity on the 4 mm 49x58x49 grid), a brain mask, a reference image and a
confounds table with fMRIPrep's column names (motion with derivatives and squares, WM/CSF/global
signals, FD, DVARS, aCompCor with its JSON, non-steady-state outliers), plus a small lesion mask.

Patients who carry the effect ("severe", UL-FMA <= 20) differ in their seed-target coupling
(:mod:`strokefc_sim.signal`): by default it varies strongly in time (``effect_type="dynamic"``) while
mild-to-moderate patients get a nearly constant one; ``effect_type`` ``static``, ``both`` and ``none``
plant a lower mean coupling instead, both, or nothing (see :func:`class_coupling`). Everything is
seeded; the truth is written to ``code/strokefc_ground_truth.json``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np
import pandas as pd

from strokefc_sim import bids_writer, fmriprep
from strokefc_sim.grid import brain_mask
from strokefc_sim.lesions import (
    LESION_RADIUS_MM,
    lesion_centre,
    lesion_sphere,
    write_t1w_lesion,
    write_template_lesion,
)
from strokefc_sim.params import SITE_NOISE_RANGE, TIME_SINCE_STROKE_MONTHS, CohortParams
from strokefc_sim.signal import PLANTED_TARGETS, STATES_MEAN_COUPLING, simulate_run


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


def assign_sites(
    rng: np.random.Generator, severe: np.ndarray, n_sites: int, site_severity: float
) -> np.ndarray:
    """Each patient's site (0-based), drawn with weights tilted by class.

    Site ``k`` of ``n`` has weight ``1 + site_severity * t_k`` for severe and ``1 - site_severity * t_k``
    for mild patients, ``t`` evenly spaced from -1 (first site) to 1 (last): with ``site_severity`` 0
    every site gets the same mix, with 1 the first site recruits no severe and the last no mild patient,
    as when an acute stroke unit and an outpatient clinic pool their patients.
    """
    tilt = np.linspace(-1.0, 1.0, n_sites) if n_sites > 1 else np.zeros(1)
    sites = np.empty(len(severe), dtype=int)
    for i, is_severe in enumerate(severe):
        weights = 1.0 + site_severity * tilt * (1.0 if is_severe else -1.0)
        sites[i] = rng.choice(n_sites, p=weights / weights.sum())
    return sites


def add_sites_and_clinical(table: pd.DataFrame, p: CohortParams) -> dict[str, float]:
    """Add ``site`` (when ``p.n_sites`` > 1) and ``time_since_stroke_months`` columns to ``table``.

    Their draws come from their own stream, so a cohort without them is unchanged. Returns each
    site's voxel-noise scale (``{"site1": 1.07, ...}``; empty with one site).
    """
    rng = np.random.default_rng([p.seed, 104729])
    scales: dict[str, float] = {}
    if p.n_sites > 1:
        index = assign_sites(rng, (table["group"] == "severe").to_numpy(), p.n_sites, p.site_severity)
        names = [f"site{k + 1}" for k in range(p.n_sites)]
        scales = {name: round(float(rng.uniform(*SITE_NOISE_RANGE)), 4) for name in names}
        table["site"] = [names[k] for k in index]
    if p.clinical_covariates:
        low, high = np.log(TIME_SINCE_STROKE_MONTHS)
        table["time_since_stroke_months"] = np.round(np.exp(rng.uniform(low, high, len(table))), 1)
    return scales


def mild_amplitude(rng: np.random.Generator, effect: float) -> float:
    """The coupling variation of a patient without the dynamic effect (a small fraction of ``effect``)."""
    return effect * rng.uniform(0.0, 0.15)


def class_coupling(
    p: CohortParams, severe: bool, amp: float, rng: np.random.Generator
) -> tuple[float, float]:
    """(variation amplitude, mean-coupling shift) of a patient under ``p.effect_type``.

    ``amp`` is the patient's drawn amplitude (``effect`` x U(0.8, 1.2) if severe, else the mild draw).
    With ``dynamic`` it is used as is and nothing else is drawn (the original stream). Otherwise a
    severe patient's variation is drawn from the mild distribution (one more draw from ``rng``), so the
    dynamics of both classes have the same distribution; ``static`` and ``both`` lower the severe
    patients' mean coupling by ``static_effect`` (``both`` keeps their drawn variation).
    """
    if p.effect_type == "dynamic" or not severe:
        return amp, 0.0
    if p.effect_type == "both":
        return amp, -p.static_effect
    mild = mild_amplitude(rng, p.effect)
    return mild, (-p.static_effect if p.effect_type == "static" else 0.0)


def simulate_cohort(
    out_dir: str | Path, params: CohortParams | None = None, **overrides: Any
) -> dict[str, Any]:
    """Write the cohort; returns the ground truth (also in ``code/strokefc_ground_truth.json``).

    ``params`` (default :class:`CohortParams`) with any field replaced by a keyword of the same name.
    ``lesion_form``: ``template`` writes MNI-space masks in ``derivatives/lesions``; ``t1w`` writes
    them as researchers draw them, in T1w space in the raw dataset (``anat/*_label-lesion_roi``),
    with a T1w image and fMRIPrep's ``from-T1w_to-<space>_mode-image_xfm.h5`` transform; ``both``
    writes both. ``lesion_noise`` puts a cavity artefact in the lesion (see :func:`simulate_run`);
    ``lesion_size_by_class`` makes severe patients' lesions larger (a confound, not dFC); ``lag`` (s)
    delays the lesioned hemisphere's signals (hemodynamic lag); ``motion_by_class`` multiplies the
    head motion of severe patients (a confound: motion usually differs between classes).
    """
    p = dataclasses.replace(params or CohortParams(), **overrides)
    p.check()
    nb.openers.Opener.default_compresslevel = 1
    out = Path(out_dir)
    rng = np.random.default_rng(p.seed)
    table = cohort_table(rng, p.n_subjects, p.severe_fraction)
    site_noise = add_sites_and_clinical(table, p)
    mask_img = brain_mask(p.resolution)
    mask = np.asarray(mask_img.dataobj) > 0
    bids_writer.write_dataset(out, table, p.tr)
    fmriprep_dir = out / "derivatives" / "fmriprep"
    fmriprep.write_description(fmriprep_dir)
    lesion_dir = out / "derivatives" / "lesions"
    bids_writer.write_lesion_description(lesion_dir)
    truth: dict[str, Any] = {
        "seed": p.seed,
        "resolution_mm": p.resolution,
        "n_volumes": p.n_volumes,
        "tr": p.tr,
        "targets": [{"atlas": a, "region": r, "hemisphere": h} for a, r, h in PLANTED_TARGETS],
        "dynamics": p.dynamics,
        "effect_type": p.effect_type,
        "effect": p.effect,
        "static_effect": p.static_effect if p.effect_type in ("static", "both") else 0.0,
        "dwell_range_s": [p.dwell_min_s, p.dwell_max_s] if p.dynamics == "states" else None,
        "mean_coupling": STATES_MEAN_COUPLING if p.dynamics == "states" else 0.1,
        "site_noise_scale": site_noise,
        "site_severity": p.site_severity,
        "subjects": {},
    }
    sessions: list[str | None] = [f"{i + 1}" for i in range(p.n_sessions)] or [None]
    lesion_rng = np.random.default_rng([p.seed, 7919])  # lesion draws leave the main stream unchanged
    for row in table.itertuples():
        label = row.participant_id[4:]
        severe = row.group == "severe"
        amp = p.effect * rng.uniform(0.8, 1.2) if severe else mild_amplitude(rng, p.effect)
        amp, shift = class_coupling(p, severe, amp, rng)
        radius = LESION_RADIUS_MM
        if p.lesion_size_by_class:
            radius = lesion_rng.uniform(11.0, 14.0) if severe else lesion_rng.uniform(5.0, 8.0)
        lesion_vol = lesion_sphere(row.lesion_hemisphere, radius, mask_img)
        site = str(getattr(row, "site", ""))
        noise_scale = site_noise.get(site, 1.0)
        truth["subjects"][label] = {
            "group": row.group,
            "lesion_hemisphere": row.lesion_hemisphere,
            "ul_fma": int(row.ul_fma),
            "coupling_amplitude": round(float(amp), 4),
            "coupling_shift": round(float(shift), 4),
            "lesion_radius_mm": round(float(radius), 3),
            "lesion_centre_mm": list(lesion_centre(row.lesion_hemisphere)),
            "lag_s": float(p.lag),
            "motion_scale": float(p.motion_by_class if severe else 1.0),
            "lag_territory": "lesioned hemisphere, |x| > 8 mm" if p.lag else "",
        }
        if site:
            truth["subjects"][label].update(site=site, noise_scale=noise_scale)
        session_rows = []
        for index, ses in enumerate(sessions):
            sdir = Path(f"sub-{label}") / (f"ses-{ses}" if ses else "")
            session_amp, session_shift = amp, shift
            if ses is not None:
                # recovery: UL-FMA rises between sessions; a patient who crosses 20 loses the effect
                score = int(min(66, row.ul_fma + index * lesion_rng.uniform(3.0, 9.0)))
                crossed = (score <= 20) != severe
                if crossed:
                    session_amp, session_shift = mild_amplitude(lesion_rng, p.effect), 0.0
                session_rows.append({"session_id": f"ses-{ses}", "ul_fma": score})
                truth["subjects"][label].setdefault("sessions", {})[ses] = {
                    "ul_fma": score,
                    "coupling_amplitude": round(float(session_amp), 4),
                    "coupling_shift": round(float(session_shift), 4),
                }
            for run in range(1, p.n_runs + 1):
                ents = (
                    f"sub-{label}"
                    + (f"_ses-{ses}" if ses else "")
                    + "_task-rest"
                    + (f"_run-{run}" if p.n_runs > 1 else "")
                )
                run_info: dict[str, Any] = {}
                data, conf, comp = simulate_run(
                    rng,
                    mask_img,
                    row.lesion_hemisphere,
                    n_t=p.n_volumes,
                    tr=p.tr,
                    amplitude=session_amp,
                    lesion=lesion_vol[mask],
                    lesion_noise=p.lesion_noise,
                    lag=p.lag,
                    motion_scale=p.motion_by_class if severe else 1.0,
                    dynamics=p.dynamics,
                    shift=session_shift,
                    dwell_range_s=(p.dwell_min_s, p.dwell_max_s),
                    noise_scale=noise_scale,
                    info=run_info,
                )
                truth["subjects"][label].setdefault("runs", {})[ents] = run_info
                fmriprep.write_run(
                    fmriprep_dir / sdir / "func",
                    ents,
                    resolution=p.resolution,
                    data=data,
                    mask_img=mask_img,
                    confounds=conf,
                    compcor=comp,
                    tr=p.tr,
                    source=f"bids:raw:{sdir}/func/{ents}_bold.nii.gz",
                )
                bids_writer.write_raw_bold(out / sdir / "func", ents, rng, p.n_volumes, p.tr)
        if session_rows:
            bids_writer.write_sessions(out, label, session_rows)
        if p.lesion_form in ("template", "both"):
            write_template_lesion(lesion_dir, label, lesion_vol, mask_img, p.resolution)
        if p.lesion_form in ("t1w", "both"):
            write_t1w_lesion(out, fmriprep_dir, label, row.lesion_hemisphere, radius)
    bids_writer.write_code(out, truth, p.lesion_form)
    return truth
