"""The dFC step of one run: maps, seed and window tables, the stationary null, and the sidecar record."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np
import pandas as pd

from workflows.dfc import WindowSpec, seed_dfc_images, window_warnings
from workflows.dfc_null import stationary_null
from workflows.params import WindowParams, timescale_label

#: The maps written at every window length (``stat-<name>``); static FC does not depend on the window.
TIMESCALE_STATS = ("dfcsd", "dfcmean", "dfcexcess")


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
    ``windows_tsv``), ``maps`` (every map by name, those at ``window.extra_window_lengths`` as
    ``<stat>_<timescale label>``: their own windows and stationary null) and ``info`` (window
    parameters and counts, the null's summary, ``OtherTimescales`` by label, for sidecars).
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
    mask = np.asarray(mask_img.dataobj) > 0
    static = np.asarray(out["static"].dataobj)[mask]
    null_args = {
        "kept": kept,
        "censored_values": censored_values,
        "seed_censored": (
            None if censored_values is None else censored_values[:, out["seed_columns"]].mean(axis=1)
        ),
        "static": static,
        "n_jobs": n_threads,
    }
    null_info: dict[str, Any] = {}
    if window.null_surrogates > 0:
        results["dfcexcess"], null_info = _null_map(
            out["seed"], data, spec, window.null_surrogates, mask, mask_img, out_dir, "dfcexcess", null_args
        )
    results["maps"] = {k: results[k] for k in (*TIMESCALE_STATS, "fc") if k in results}
    others = {}
    for length in window.extra_window_lengths:  # the other timescales: their maps, each with its own null
        label = timescale_label(length)
        other_spec = WindowSpec.from_params(replace(window, window_length=length), tr)
        other = seed_dfc_images(data, kept, mask_img, seed_img, other_spec)
        for key, name in (("sd", "dfcsd"), ("mean", "dfcmean")):
            path = os.path.join(out_dir, f"{name}_{label}.nii.gz")
            other[key].to_filename(path)
            results["maps"][f"{name}_{label}"] = path
        other_null: dict[str, Any] = {}
        if window.null_surrogates > 0:
            name = f"dfcexcess_{label}"
            results["maps"][name], other_null = _null_map(
                out["seed"],
                data,
                other_spec,
                window.null_surrogates,
                mask,
                mask_img,
                out_dir,
                name,
                null_args,
            )
        others[label] = {
            **_window_record(other_spec, other["plan"], tr),
            "WindowLengthOption": str(length),
            "Warnings": window_warnings(other_spec.length, tr, high_pass, window.null_surrogates),
            **other_null,
        }
    results.update(
        seed_tsv=seed_tsv,
        windows_tsv=windows_tsv,
        info={
            **_window_record(spec, plan, tr),
            "Warnings": window_warnings(spec.length, tr, high_pass, window.null_surrogates),
            **null_info,
            # the maps at the other window lengths (desc-win<length>), only when there are some
            **({"OtherTimescales": others} if others else {}),
        },
    )
    return results


def _window_record(spec: WindowSpec, plan: Any, tr: float) -> dict[str, Any]:
    """The window parameters and counts of one window length, for sidecars."""
    return {
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
    }


def _null_map(
    seed: np.ndarray,
    data: np.ndarray,
    spec: WindowSpec,
    n_surrogates: int,
    mask: np.ndarray,
    mask_img: nb.Nifti1Image,
    out_dir: str | Path,
    name: str,
    null_args: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    """The stationary null at one window length: the excess map written as ``name``, and its record."""
    null = stationary_null(seed, data, spec, n_surrogates=n_surrogates, **null_args)
    vol = np.zeros(mask.shape, np.float32)
    vol[mask] = null.excess
    excess_img = nb.Nifti1Image(vol, mask_img.affine)
    excess_img.header.set_xyzt_units("mm")
    path = os.path.join(out_dir, f"{name}.nii.gz")
    excess_img.to_filename(path)
    return path, {
        "StationaryNull": {
            "Method": "multivariate phase-randomised surrogates (same phase shift for the seed and "
            "every voxel: spectra and static FC kept, dynamics removed), same windows",
            "Surrogates": int(n_surrogates),
            "dfcexcess": "observed SD - surrogate mean SD (Fisher z units)",
            "TopTargets": f"{int(null.top_targets.sum())} voxels with the largest |static z|",
            "TopTargetsObservedSD": round(null.top_observed, 4),
            "TopTargetsNullMeanSD": round(null.top_null_mean, 4),
            "TopTargetsMeanExcess": round(null.top_excess, 4),
            "TopTargetsPValue": round(null.top_p_value, 4),
        }
    }
