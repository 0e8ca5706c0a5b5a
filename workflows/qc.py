"""Quality control of each run: hemodynamic lag in the lesioned territory (and its parameters).

The lag map is :func:`workflows.lag.lag_map` of the voxel series, detrended and band-passed but not
regressed (confound regressors built from the data, such as WM/CSF means, carry part of the global
signal and would blur the lag), against their mean over the analysis mask (the brain without the
lesion): fMRIPrep gives no grey-matter mask on the BOLD grid, and grey matter dominates that mean.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import nibabel as nb
import numpy as np

from workflows.lag import LAG_FLAG_S, lag_map, lag_summary
from workflows.seeds import atlas_region_mask


@dataclass(frozen=True)
class QCParams:
    """Hemodynamic-lag QC of each run."""

    lag_search: float = 6.0  # +/- seconds searched for each voxel's lag
    max_lag: float = LAG_FLAG_S  # ipsi - contra lag (s, M1 or hemisphere) above which a run is flagged


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
    data: np.ndarray,
    kept: np.ndarray,
    mask_img: nb.Nifti1Image,
    lesion_side: str,
    tr: float,
    params: QCParams,
) -> tuple[nb.Nifti1Image, dict[str, Any]]:
    """Lag map of one run (s; positive = later than the reference) and its QC record.

    ``data`` (T, V) are the band-passed series over the mask's voxels, ``kept`` the uncensored volumes.
    The record holds the ipsi - contra median lag in M1 and over the hemispheres, and ``Flagged`` when
    either exceeds ``params.max_lag``.
    """
    kept = np.asarray(kept, bool)
    series = np.asarray(data, dtype=np.float64)
    reference = series.mean(axis=1)
    result = lag_map(series, reference, tr, max_lag=max(params.lag_search, tr), kept=kept)
    mask = np.asarray(mask_img.dataobj) > 0
    vol = np.zeros(mask.shape, np.float32)
    vol[mask] = np.nan_to_num(result.lag)
    img = nb.Nifti1Image(vol, mask_img.affine)
    img.header.set_xyzt_units("mm")
    summaries = {
        "M1": lag_summary(result.lag, result.peak_r, *m1_masks(mask_img, lesion_side)),
        "Hemisphere": lag_summary(result.lag, result.peak_r, *hemisphere_masks(mask_img, lesion_side)),
    }
    differences = [s["ipsi_minus_contra_s"] for s in summaries.values()]
    flagged = any(math.isfinite(d) and d > params.max_lag for d in differences)
    info: dict[str, Any] = {
        "Method": "cross-correlation of each detrended, band-passed (not regressed) voxel series with their "
        "mean over the analysis mask, integer shifts refined by parabolic interpolation (Siegel et al. 2016)",
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
