"""Quality control of each run: exclusion rules, the QC table, and hemodynamic lag in the lesioned territory.

Exclusion is decided before any image is read (:func:`run_quality` needs only the confounds table and
the BOLD header), so an excluded run gets no maps and its reason reaches the log, the summary, the
report and the group table.

The lag map is :func:`workflows.lag.lag_map` of the voxel series, detrended and band-passed but not
regressed (confound regressors built from the data, such as WM/CSF means, carry part of the global
signal and would blur the lag), against their mean over the analysis mask (the brain without the
lesion): fMRIPrep gives no grey-matter mask on the BOLD grid, and grey matter dominates that mean.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np
import pandas as pd

from workflows.columns import tsv_sidecar
from workflows.denoise import (
    MISSING_FD_NOTE,
    count_dummy_scans,
    degrees_of_freedom,
    load_run_confounds,
    read_confounds_table,
)
from workflows.dfc import WindowSpec, window_design
from workflows.lag import lag_map, lag_summary
from workflows.params import LESION_STRATEGIES, DenoiseParams, QCParams, WindowParams
from workflows.seeds import atlas_region_mask

#: Columns of the per-run QC table (``..._desc-qc_timeseries.tsv`` has one row per run).
QC_COLUMNS = (
    "run",
    "mean_fd_mm",
    "max_fd_mm",
    "volumes_total",
    "dummy_scans",
    "volumes_censored",
    "retained_time_s",
    "dof_in_band",
    "regressors",
    "dof_remaining",
    "windows_total",
    "windows_valid",
    "seed_tsnr",
    "lesion_volume_ml",
    "lag_m1_s",
    "lag_hemisphere_s",
    "lag_flagged",
    "excluded",
    "reason",
)
#: The QC table's JSON sidecar (BIDS TSV sidecar: a description per column, from
#: :data:`workflows.columns.COLUMNS`), for processed and excluded runs alike.
QC_SIDECAR = tsv_sidecar(QC_COLUMNS, "Quality control of the run (one row); see the column descriptions")


def run_quality(
    confounds: pd.DataFrame,
    kept: np.ndarray,
    n_dummy: int,
    tr: float,
    n_regressors: int,
    denoise: DenoiseParams,
    window: WindowParams,
) -> dict[str, Any]:
    """The QC measures known before any image is read (from the confounds table and the censoring).

    ``kept`` (T,) marks the uncensored volumes of the whole run (dummy scans included).
    """
    kept = np.asarray(kept, bool)[n_dummy:]
    fd = (
        confounds["framewise_displacement"].to_numpy(float)[n_dummy:]
        if "framewise_displacement" in confounds
        else np.full(kept.size, np.nan)
    )
    dof = degrees_of_freedom(int(kept.sum()), tr, denoise.high_pass, denoise.low_pass, n_regressors)
    spec = WindowSpec.from_params(window, tr)
    if spec.length <= kept.size:
        plan = window_design(kept, spec).plan
        windows_total, windows_valid = int(plan.starts.size), plan.n_valid
    else:
        windows_total = windows_valid = 0
    finite = np.isfinite(fd)
    return {
        "mean_fd_mm": round(float(fd[finite].mean()), 4) if finite.any() else math.nan,
        "max_fd_mm": round(float(fd[finite].max()), 4) if finite.any() else math.nan,
        "volumes_total": int(kept.size + n_dummy),
        "dummy_scans": int(n_dummy),
        "volumes_censored": int((~kept).sum()),
        "retained_time_s": round(float(kept.sum() * tr), 2),
        "dof_in_band": dof["DegreesOfFreedomInBand"],
        "regressors": int(n_regressors),
        "dof_remaining": dof["DegreesOfFreedomRemaining"],
        "windows_total": windows_total,
        "windows_valid": windows_valid,
    }


def predict_run_quality(
    bold_file: str | Path, confounds_file: str | Path, tr: float, denoise: DenoiseParams, window: WindowParams
) -> dict[str, Any]:
    """:func:`run_quality` of one fMRIPrep run, from its confounds (no image is read).

    The regressor count is the denoising strategy's (constant columns dropped), plus the mean and
    ``lesion_components`` components of the ``+lesion`` strategies.
    """
    table = read_confounds_table(confounds_file)
    confounds, kept, _ = load_run_confounds(bold_file, denoise, len(table))
    n_dummy = count_dummy_scans(table, denoise.dummy_scans)
    values = confounds.to_numpy(float)[n_dummy:]
    n_regressors = int((values.std(axis=0) > 0).sum()) if values.size else 0
    if denoise.strategy in LESION_STRATEGIES:
        n_regressors += 1 + denoise.lesion_components
    return run_quality(table, kept, n_dummy, tr, n_regressors, denoise, window)


def qc_row(
    run: str,
    denoise_info: dict,
    dfc_info: dict,
    seed_tsnr: float,
    lag_info: dict | None = None,
    lesion_info: dict | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """The QC table row of a processed run, from the records of its steps.

    ``notes`` (input problems that changed what was applied, such as a TR conflict) and a missing
    framewise displacement (:data:`workflows.denoise.MISSING_FD_NOTE`) go into ``reason``, which is
    otherwise empty for a processed run.
    """
    lag = lag_info or {}
    notes = list(notes)
    if denoise_info.get("MeanFramewiseDisplacement_mm") is None:
        notes.append(MISSING_FD_NOTE)
    return {
        "run": run,
        "mean_fd_mm": _num(denoise_info.get("MeanFramewiseDisplacement_mm")),
        "max_fd_mm": _num(denoise_info.get("MaxFramewiseDisplacement_mm")),
        "volumes_total": denoise_info.get("VolumesTotal"),
        "dummy_scans": denoise_info.get("DummyScans"),
        "volumes_censored": denoise_info.get("VolumesCensored"),
        "retained_time_s": _num(denoise_info.get("RetainedTime_s")),
        "dof_in_band": _num(denoise_info.get("DegreesOfFreedomInBand")),
        "regressors": denoise_info.get("ConfoundRegressors"),
        "dof_remaining": _num(denoise_info.get("DegreesOfFreedomRemaining")),
        "windows_total": dfc_info.get("WindowsTotal"),
        "windows_valid": dfc_info.get("WindowsKept"),
        "seed_tsnr": round(float(seed_tsnr), 2) if math.isfinite(seed_tsnr) else math.nan,
        "lesion_volume_ml": _num((lesion_info or {}).get("LesionVolume_ml")),
        "lag_m1_s": _num(lag.get("M1IpsiMinusContra_s")),
        "lag_hemisphere_s": _num(lag.get("HemisphereIpsiMinusContra_s")),
        "lag_flagged": int(bool(lag.get("Flagged"))) if lag else math.nan,
        "excluded": 0,
        "reason": "; ".join(notes),
    }


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def qc_fc(maps: np.ndarray, motion: np.ndarray, alpha: float = 0.05) -> dict[str, Any]:
    """QC-FC (Ciric et al. 2017): correlation across subjects of mean FD with each voxel's map value.

    ``maps`` (subjects, ...) on one grid (NaN and constant voxels skipped), ``motion`` (subjects,) mean FD.
    Returns the median |r|, the share of voxels with uncorrected p < ``alpha`` (about ``alpha`` when motion
    does not shape the maps) and a histogram of r. Descriptive: it uses no label, so no test subject's
    label reaches any model.
    """
    from scipy import stats

    x = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    fd = np.asarray(motion, dtype=np.float64)
    use = np.isfinite(fd)
    x, fd = x[use], fd[use]
    n = len(fd)
    if n < 4 or np.std(fd) == 0:
        return {"n_subjects": int(n), "computed": False}
    voxels = np.isfinite(x).all(axis=0) & (x.std(axis=0) > 0)
    xv = x[:, voxels]
    xz = (xv - xv.mean(axis=0)) / xv.std(axis=0)
    fz = (fd - fd.mean()) / fd.std()
    r = (xz * fz[:, None]).mean(axis=0)
    t = r * np.sqrt((n - 2) / np.clip(1 - r**2, 1e-12, None))
    p = 2 * stats.t.sf(np.abs(t), n - 2)
    counts, edges = np.histogram(r, bins=20, range=(-1, 1))
    return {
        "computed": True,
        "n_subjects": int(n),
        "n_voxels": int(voxels.sum()),
        "median_abs_r": round(float(np.median(np.abs(r))), 4),
        "fraction_p_below_alpha": round(float((p < alpha).mean()), 4),
        "alpha": alpha,
        "histogram": {"counts": counts.tolist(), "edges": np.round(edges, 3).tolist()},
    }


def exclusion_reasons(quality: dict[str, Any], params: QCParams) -> list[str]:
    """Every exclusion rule the run fails, in words (empty: the run is kept)."""
    out = []
    if params.min_time is not None and quality["retained_time_s"] < params.min_time:
        out.append(
            f"{quality['retained_time_s']:g} s retained after censoring, fewer than QCParams.min_time "
            f"{params.min_time:g} s"
        )
    fd = quality["mean_fd_mm"]
    if params.max_mean_fd is not None and math.isfinite(fd) and fd > params.max_mean_fd:
        out.append(f"mean FD {fd:.3g} mm above QCParams.max_mean_fd {params.max_mean_fd:g} mm")
    if quality["windows_valid"] < params.min_windows:
        out.append(
            f"{quality['windows_valid']} valid window(s) of {quality['windows_total']}, fewer than "
            f"QCParams.min_windows {params.min_windows}"
        )
    if params.min_dof is not None and quality["dof_remaining"] < params.min_dof:
        out.append(
            f"{quality['dof_remaining']:g} degrees of freedom left after band-pass and "
            f"{quality['regressors']} regressors, fewer than QCParams.min_dof {params.min_dof:g}"
        )
    return out


def hemisphere_masks(mask_img: nb.Nifti1Image, lesion_side: str) -> tuple[np.ndarray, np.ndarray]:
    """Ipsilesional and contralesional hemispheres (world x < 0 is left) over the mask's voxels."""
    mask = np.asarray(mask_img.dataobj) > 0
    x = nb.affines.apply_affine(mask_img.affine, np.argwhere(mask))[:, 0]
    left, right = x < 0, x > 0
    return (left, right) if lesion_side == "L" else (right, left)


def m1_masks(mask_img: nb.Nifti1Image, lesion_side: str) -> tuple[np.ndarray, np.ndarray]:
    """Ipsilesional and contralesional M1 (HCPEx) over the mask's voxels."""
    mask = np.asarray(mask_img.dataobj) > 0
    contra = "R" if lesion_side == "L" else "L"
    out = []
    for side in (lesion_side, contra):
        region = atlas_region_mask("HCPEx", [f"Primary_Motor_Cortex_{side}"], mask_img)
        out.append((np.asarray(region.dataobj) > 0)[mask])
    return out[0], out[1]


def run_lag_qc(
    data: np.ndarray | None,
    kept: np.ndarray,
    mask_img: nb.Nifti1Image,
    lesion_side: str,
    tr: float,
    params: QCParams,
    external: nb.Nifti1Image | None = None,
) -> tuple[nb.Nifti1Image, dict[str, Any]]:
    """Lag map of one run (s; positive = later than the reference) and its QC record.

    ``data`` (T, V) are the band-passed series over the mask's voxels, ``kept`` the uncensored volumes.
    The record holds the ipsi - contra median lag in M1 and over the hemispheres, and ``Flagged`` when
    either exceeds ``params.max_lag``. ``external`` (fMRIStroke's rapidtide ``desc-maxtime_map``, s)
    is read instead of computing the map (``data`` may then be None): it is resampled to the run grid
    and every voxel counts.
    """
    mask = np.asarray(mask_img.dataobj) > 0
    if external is None:
        if data is None:
            raise ValueError("run_lag_qc needs the band-passed series or an external lag map")
        # lag_map converts voxel chunks to float64 itself: no float64 copy of the whole run here
        series = np.asarray(data)
        reference = series.mean(axis=1, dtype=np.float64)
        result = lag_map(
            series, reference, tr, search_s=max(params.lag_search, tr), kept=np.asarray(kept, bool)
        )
        lag: np.ndarray = result.lag.astype(np.float64)
        peak_r: np.ndarray = result.peak_r.astype(np.float64)
        source = (
            "cross-correlation of each detrended, band-passed (not regressed) voxel series with their "
            "mean over the analysis mask, integer shifts refined by parabolic interpolation "
            "(Siegel et al. 2016)"
        )
    else:
        from nilearn.image import resample_to_img

        on_grid = resample_to_img(
            external, mask_img, interpolation="linear", force_resample=True, copy_header=True
        )
        lag = np.asarray(on_grid.dataobj, dtype=np.float64).reshape(mask.shape)[mask]
        peak_r = np.where(np.isfinite(lag), 1.0, np.nan)
        source = "fMRIStroke's rapidtide lag map (desc-maxtime_map), resampled to the run grid"
    vol = np.zeros(mask.shape, np.float32)
    vol[mask] = np.nan_to_num(lag)
    img = nb.Nifti1Image(vol, mask_img.affine)
    img.header.set_xyzt_units("mm")
    summaries = {
        "M1": lag_summary(lag, peak_r, *m1_masks(mask_img, lesion_side)),
        "Hemisphere": lag_summary(lag, peak_r, *hemisphere_masks(mask_img, lesion_side)),
    }
    differences = [s["ipsi_minus_contra_s"] for s in summaries.values()]
    flagged = any(math.isfinite(d) and d > params.max_lag for d in differences)
    info: dict[str, Any] = {
        "Method": source,
        "SearchRange_s": float(max(params.lag_search, tr)),
        "Threshold_s": float(params.max_lag),
        **{
            f"{region}{key}": _round(value)
            for region, s in summaries.items()
            for key, value in (
                ("IpsiMedian_s", s["ipsi_median_s"]),
                ("ContraMedian_s", s["contra_median_s"]),
                ("IpsiMinusContra_s", s["ipsi_minus_contra_s"]),
            )
        },
        "Flagged": bool(flagged),
        "Warnings": [],
    }
    if flagged:
        info["Warnings"].append(
            f"Hemodynamic lag: the lesioned side lags the other by more than {params.max_lag:g} s "
            f"(M1 {_round(differences[0])} s, hemisphere {_round(differences[1])} s); lagged signals "
            "decorrelate from the seed, so dFC there is unreliable (Siegel et al. 2016)."
        )
    return img, info


def _round(value: float) -> float | None:
    return round(float(value), 3) if math.isfinite(value) else None
