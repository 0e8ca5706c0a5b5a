"""The dFC step of one run: maps, seed and window tables, the stationary null, and the sidecar record."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np
import pandas as pd

from workflows.dfc import WindowSpec, seed_dfc_images, window_warnings
from workflows.dfc_null import stationary_null
from workflows.params import WindowParams


def run_dfc(
    data: np.ndarray,
    kept: np.ndarray,
    mask_img: nb.Nifti1Image,
    seed_img: nb.Nifti1Image,
    window: WindowParams,
    *,
    tr: float,
    high_pass: float | None,
    out_dir: str | Path,
    regions: Mapping[str, nb.Nifti1Image] | None = None,
    n_threads: int = 1,
    censored_values: np.ndarray | None = None,
) -> dict[str, Any]:
    """Compute and write one run's dFC outputs into ``out_dir``.

    Returns the paths (``dfcsd``, ``dfcmean``, ``fc``, [``windows``], [``dfcexcess``], ``seed_tsv``,
    ``windows_tsv``) and ``info`` (window parameters and counts, the null's summary, for sidecars).
    ``censored_values`` (censored volumes, V): the cleaned series where ``data`` holds zeros, so that
    the null randomises continuous series (without them a censored run's null is biased).
    """
    spec = WindowSpec.from_params(window, tr)
    out = seed_dfc_images(
        data, kept, mask_img, seed_img, spec, keep_windows=window.save_windows, regions=regions
    )
    results: dict[str, Any] = {}
    for key, name in (("sd", "dfcsd"), ("mean", "dfcmean"), ("static", "fc"), ("windows", "windows")):
        if key in out:
            path = os.path.join(out_dir, f"{name}.nii.gz")
            out[key].to_filename(path)
            results[name] = path
    seed_tsv = os.path.join(out_dir, "seed_timeseries.tsv")
    pd.DataFrame({"seed": out["seed"].round(6), "kept": kept.astype(int)}).to_csv(
        seed_tsv, sep="\t", index=False
    )
    windows_tsv = os.path.join(out_dir, "windows.tsv")
    table = out["table"].copy()
    table.insert(2, "onset_s", (table["start_volume"] * tr).round(3))
    table.to_csv(windows_tsv, sep="\t", index=False, na_rep="n/a")
    plan = out["plan"]
    null_info = {}
    if window.null_surrogates > 0:
        mask = np.asarray(mask_img.dataobj) > 0
        null = stationary_null(
            out["seed"],
            data,
            spec,
            kept=kept,
            censored_values=censored_values,
            seed_censored=(
                None if censored_values is None else censored_values[:, out["seed_columns"]].mean(axis=1)
            ),
            static=np.asarray(out["static"].dataobj)[mask],
            n_surrogates=window.null_surrogates,
            n_jobs=n_threads,
        )
        vol = np.zeros(mask.shape, np.float32)
        vol[mask] = null.excess
        excess_img = nb.Nifti1Image(vol, mask_img.affine)
        excess_img.header.set_xyzt_units("mm")
        path = os.path.join(out_dir, "dfcexcess.nii.gz")
        excess_img.to_filename(path)
        results["dfcexcess"] = path
        null_info = {
            "StationaryNull": {
                "Method": "multivariate phase-randomised surrogates (same phase shift for the seed and "
                "every voxel: spectra and static FC kept, dynamics removed), same windows",
                "Surrogates": int(window.null_surrogates),
                "dfcexcess": "observed SD - surrogate mean SD (Fisher z units)",
                "TopTargets": f"{int(null.top_targets.sum())} voxels with the largest |static z|",
                "TopTargetsMeanExcess": round(null.top_excess, 4),
                "TopTargetsPValue": round(null.top_p_value, 4),
            }
        }
    results.update(
        seed_tsv=seed_tsv,
        windows_tsv=windows_tsv,
        info={
            "WindowLength_vol": spec.length,
            "WindowLength_s": spec.length * tr,
            "WindowStep_vol": spec.step,
            "WindowShape": spec.shape,
            "MinWindowCoverage": spec.min_coverage,
            "WindowCoverage": "fraction of the window's taper weight on kept volumes",
            "WindowsTotal": int(plan.starts.size),
            "WindowsKept": plan.n_valid,
            "WindowsDropped": int(plan.starts.size - plan.n_valid),
            "WindowEstimator": spec.estimator,
            "Correlation": (
                "Pearson (taper-weighted), Fisher z (arctanh)"
                if spec.estimator == "weighted"
                else "Pearson of the tapered series (series x taper, then r), Fisher z (arctanh)"
            ),
            "SummaryOverWindows": {"dfcsd": "SD (ddof=1)", "dfcmean": "mean"},
            "Warnings": window_warnings(spec.length, tr, high_pass, window.null_surrogates),
            **null_info,
        },
    )
    return results
