"""Denoising of fMRIPrep BOLD: confounds from nilearn's fMRIPrep loader, regression and band-pass in one step.

The strategy names map onto :func:`nilearn.interfaces.fmriprep.load_confounds` arguments
(:data:`STRATEGIES`). Non-steady-state volumes are cut from the start of the run. Censored (scrubbed)
volumes are interpolated in the data and the confounds by a cubic spline through the kept volumes
(:func:`interpolate_censored`), so that filtering and regression see a continuous series; they are then
dropped, the kept volumes z-scored, and they come back as rows of zeros flagged in ``kept``: the dFC
step gives them zero weight in every window.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np
import pandas as pd

from workflows.params import LESION_STRATEGIES, STRATEGIES, DenoiseParams
from workflows.utils.errors import InputError, check_choice
from workflows.utils.images import check_bold_and_mask, load_image, read_data


@dataclass
class DenoisedRun:
    """Denoised voxel series and what happened to each volume."""

    data: np.ndarray  # (T, V) float32; rows of censored volumes are zero
    kept: np.ndarray  # (T,) bool, after dropping dummy scans
    mask_img: nb.Nifti1Image  # brain mask actually used (non-finite voxels removed)
    fd: np.ndarray  # (T,) framewise displacement (mm), NaN where unknown
    info: dict = field(default_factory=dict)
    design: pd.DataFrame | None = None  # the regressors actually used, after dummy scans (for audits)
    bandpassed: np.ndarray | None = None  # (T, V) detrended and band-passed only, when asked (lag QC)
    tsnr: np.ndarray | None = None  # (X, Y, Z) temporal SNR before smoothing and denoising
    carpet: np.ndarray | None = None  # (T + dummy, <= CARPET_VOXELS) raw BOLD of the carpet plot's voxels
    # (censored volumes, V) the cleaned series at the censored volumes, scaled as the kept ones (the null)
    censored_values: np.ndarray | None = None


#: Voxels of the raw BOLD kept for the report's carpet plot, so that the report need not read the run again.
CARPET_VOXELS = 1500


def carpet_sample(n_voxels: int, max_voxels: int = CARPET_VOXELS, seed: int = 0) -> np.ndarray:
    """Sorted indices of the mask voxels a carpet plot shows: all, or a fixed random ``max_voxels``."""
    if n_voxels <= max_voxels:
        return np.arange(n_voxels)
    return np.sort(np.random.default_rng(seed).choice(n_voxels, max_voxels, replace=False))


def read_confounds_table(confounds_tsv: Path | str) -> pd.DataFrame:
    """Read an fMRIPrep confounds TSV, with a clear error for an empty or unreadable file."""
    path = Path(confounds_tsv)
    if not path.exists() or path.stat().st_size == 0:
        raise InputError(
            f"the confounds file is {'empty' if path.exists() else 'missing'}",
            str(path),
            "re-run fMRIPrep for this subject or restore the file",
        )
    try:
        return pd.read_csv(path, sep="\t", na_values=["n/a"])
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise InputError(
            f"the confounds table cannot be read ({exc})",
            str(path),
            "check that it is a tab-separated fMRIPrep confounds file",
        ) from None


def count_dummy_scans(confounds: pd.DataFrame, dummy_scans: int | str = "auto") -> int:
    """Number of leading non-steady-state volumes: given, or fMRIPrep's ``non_steady_state_outlier*``."""
    if dummy_scans != "auto":
        return int(dummy_scans)
    cols = [c for c in confounds.columns if c.startswith("non_steady_state_outlier")]
    if not cols:
        return 0
    flagged = confounds[cols].fillna(0).to_numpy().sum(axis=1) > 0
    n = 0
    while n < flagged.size and flagged[n]:
        n += 1
    return n


#: Said in the sidecar, the QC table, the log and the report when the confounds have no FD column.
MISSING_FD_NOTE = (
    "no framewise_displacement column in the confounds: motion rules that need it (the mean-FD "
    "exclusion, QCParams.max_mean_fd) were not applied"
)


def check_confound_values(confounds: pd.DataFrame, where: Path | str) -> None:
    """Refuse confound columns with missing (n/a, NaN) values after their first row, or infinite values.

    fMRIPrep leaves ``n/a`` only in the first rows of derivative and FD-like columns (no previous
    volume); those leading values become 0, as nilearn's loader expects. Anywhere else a missing or
    infinite value would silently regress a 0 (or stop the regression), so it is an error naming the
    file, the columns and the rows (1 = the first row below the header).
    """
    problems = []
    for column in confounds.columns:
        values = pd.to_numeric(confounds[column], errors="coerce").to_numpy(float)
        missing = np.isnan(values)
        leading = int(np.argmax(~missing)) if (~missing).any() else missing.size
        for kind, bad in (
            ("n/a", np.flatnonzero(missing & (np.arange(values.size) >= leading))),
            ("infinite", np.flatnonzero(np.isinf(values))),
        ):
            if bad.size:
                rows = ", ".join(str(i + 1) for i in bad[:10]) + (" ..." if bad.size > 10 else "")
                problems.append(f"column {column!r}, row(s) {rows} ({kind})")
    if problems:
        raise InputError(
            "the confounds table has missing or infinite values: " + "; ".join(problems),
            str(where),
            "use the confounds fMRIPrep wrote for this run (it leaves n/a only in the first rows of "
            "derivative columns), or fill those rows (e.g. by interpolating the neighbouring values)",
        )


def load_run_confounds(
    bold_file: Path | str, params: DenoiseParams, n_volumes: int
) -> tuple[pd.DataFrame, np.ndarray, dict[str, Any]]:
    """Confound regressors and kept-volume mask for one run (before dropping dummy scans).

    Returns ``(confounds DataFrame (T, k), kept (T,) bool, info dict)``.
    """
    from nilearn.interfaces.fmriprep import load_confounds

    check_choice(params.strategy, STRATEGIES, "denoising strategy", "DenoiseParams.strategy")
    kwargs: dict[str, Any] = dict(STRATEGIES[params.strategy])
    conf_path = _confounds_path(bold_file)
    if "scrub" in kwargs["strategy"] and conf_path.is_file():
        if "framewise_displacement" not in read_confounds_table(conf_path):
            raise InputError(
                "the scrubbing strategy censors volumes by framewise displacement, and the confounds "
                "have no framewise_displacement column",
                str(conf_path),
                "use the confounds fMRIPrep wrote (they hold framewise_displacement), or pick a "
                "strategy without censoring",
                params=("DenoiseParams.strategy",),
            )
    if "scrub" in kwargs["strategy"]:
        kwargs.update(fd_threshold=params.fd_thresh, std_dvars_threshold=params.std_dvars_thresh)
    if "compcor" in kwargs["strategy"]:
        kwargs["n_compcor"] = params.n_compcor
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # nilearn reads only the name (to find the confounds next to it) and accepts .nii.gz only
            name = str(bold_file) + (".gz" if str(bold_file).endswith(".nii") else "")
            confounds, sample_mask = load_confounds(name, **kwargs)
    except (ValueError, KeyError, FileNotFoundError, json.JSONDecodeError) as exc:
        raise InputError(
            f"nilearn could not load the fMRIPrep confounds for strategy {params.strategy!r} ({exc})",
            str(bold_file),
            "check the *_desc-confounds_timeseries.tsv/.json next to the BOLD: they must come from "
            "fMRIPrep >= 1.4 (older releases wrote CamelCase columns) and hold the columns the "
            "strategy needs; or pick another DenoiseParams.strategy",
            params=("DenoiseParams.strategy",),
        ) from None
    if len(confounds) != n_volumes:
        raise InputError(
            f"the confounds table has {len(confounds)} rows but the BOLD has {n_volumes} volumes",
            str(bold_file),
            "use the confounds file produced with this BOLD run",
        )
    if conf_path.is_file():  # nilearn demeans the columns: check the values as written
        table = read_confounds_table(conf_path)
        check_confound_values(table[[c for c in confounds.columns if c in table]], conf_path)
    kept = np.ones(n_volumes, bool)
    if sample_mask is not None:
        kept[:] = False
        kept[np.asarray(sample_mask, int)] = True
    info = {
        "Strategy": params.strategy,
        "ConfoundColumns": list(confounds.columns),
        "LoadConfoundsArguments": {k: (list(v) if isinstance(v, tuple) else v) for k, v in kwargs.items()},
    }
    return confounds.fillna(0.0), kept, info


def load_bold_masked(
    bold_file: Path | str, mask_file: Path | str
) -> tuple[np.ndarray, np.ndarray, nb.Nifti1Image, dict[str, Any]]:
    """Load a 4D BOLD and its brain mask; check shapes, grids and finiteness.

    Returns ``(data (X, Y, Z, T) float32, mask (X, Y, Z) bool, bold_img, info)``; voxels with a
    non-finite value at any time are removed from the mask (and counted in ``info``).
    """
    bold_img = load_image(bold_file, "BOLD")
    mask_img = load_image(mask_file, "brain mask")
    check_bold_and_mask(bold_img, mask_img, bold_file, mask_file)
    data = read_data(bold_img, bold_file, "BOLD")
    mask = read_data(mask_img, mask_file, "brain mask").reshape(mask_img.shape[:3]) > 0  # (X, Y, Z, 1) too
    finite = np.isfinite(data).all(axis=3)
    n_bad = int((mask & ~finite).sum())
    mask &= finite
    if mask.sum() == 0:
        raise InputError(
            "the brain mask has no voxel with finite BOLD values",
            str(mask_file),
            "check the mask and the BOLD",
        )
    check_not_constant(data, mask, bold_file)
    info: dict[str, Any] = {"NonFiniteVoxelsExcluded": n_bad}
    return data, mask, bold_img, info


def check_not_constant(data: np.ndarray, mask: np.ndarray, bold_file: Path | str) -> None:
    """Refuse a BOLD whose brain voxels never change (all zeros, a copied volume): no signal to correlate.

    Volumes are compared with the first until one differs (normally the second), so this costs little.
    """
    first = data[..., 0][mask]
    if any(np.any(data[..., t][mask] != first) for t in range(1, data.shape[3])):
        return
    value = "all zeros" if not first.any() else "the same value in every volume"
    raise InputError(
        f"the BOLD is constant over time in every brain voxel ({value}): it holds no signal",
        str(bold_file),
        "the file was probably damaged or wrongly exported: re-copy it or re-run fMRIPrep for this run",
    )


def smooth_in_mask(data: np.ndarray, mask: np.ndarray, fwhm_mm: float, zooms: Sequence[float]) -> np.ndarray:
    """Gaussian smoothing restricted to the mask (normalised convolution), in place.

    ``data`` is (X, Y, Z, T); voxels outside the mask neither contribute nor receive signal (they come
    out as zeros). Only the mask's bounding box, widened by the kernel's radius, is filtered, all
    volumes at once along the three spatial axes (a 2 mm, 240-volume run needs no second 1 GB copy):
    the result equals filtering each whole volume, since the widened box's margin holds zeros.
    """
    from scipy.ndimage import gaussian_filter

    sigma = [fwhm_mm / np.sqrt(8 * np.log(2)) / z for z in zooms[:3]]
    inside = np.argwhere(mask)
    if inside.size == 0:
        data[...] = 0.0
        return data
    radius = [int(4.0 * s + 0.5) for s in sigma]  # gaussian_filter's default truncate (4 SD)
    lo = np.maximum(inside.min(axis=0) - radius, 0)
    hi = np.minimum(inside.max(axis=0) + 1 + np.array(radius), mask.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    outside = np.ones(mask.shape, bool)
    outside[box] = False
    data[outside] = 0.0
    sub = data[box]  # a view: filtered in place
    m = mask[box]
    # zeros outside the mask, not data * m: a non-finite value outside the mask would spread (NaN * 0)
    sub[~m] = 0.0
    norm = gaussian_filter(m.astype(np.float32), sigma)
    norm[norm == 0] = 1.0
    gaussian_filter(sub, [*sigma, 0.0], output=sub)
    sub /= norm[..., None]
    sub[~m] = 0.0
    return data


def interpolate_censored(series: np.ndarray, kept: np.ndarray, chunk_size: int = 20000) -> np.ndarray:
    """Censored rows of ``series`` (T, N) replaced by a cubic spline through the kept rows, column by column.

    Censored volumes before the first or after the last kept volume take the nearest kept value (a
    spline extrapolated past its data diverges). Returns a float32 copy; kept rows are unchanged.
    """
    from scipy.interpolate import CubicSpline

    kept = np.asarray(kept, dtype=bool)
    out = np.array(series, dtype=np.float32)
    if kept.all() or out.size == 0:
        return out
    t_kept = np.flatnonzero(kept)
    t_cens = np.flatnonzero(~kept)
    where = np.clip(t_cens, t_kept[0], t_kept[-1]).astype(float)
    for start in range(0, out.shape[1], chunk_size):  # bounded memory: spline coefficients per chunk
        cols = slice(start, start + chunk_size)
        values = np.asarray(series[t_kept, cols], dtype=np.float64)
        if t_kept.size == 1:
            out[t_cens, cols] = values[0]
            continue
        out[t_cens, cols] = CubicSpline(t_kept, values, axis=0)(where)
    return out


def _zscore_rows(x: np.ndarray, also: np.ndarray | None = None) -> np.ndarray:
    """Columns of ``x`` z-scored over rows (ddof=1) in place and returned; constant columns left at zero
    (nilearn's ``zscore_sample``).

    ``also`` (rows, N), when given, is scaled by the same column means and SDs, in place.
    """
    mean = x.mean(axis=0)
    std = x.std(axis=0, ddof=1)
    std[std < np.finfo(np.float64).eps] = 1.0
    if also is not None:
        also -= mean
        also /= std
    x -= mean
    x /= std
    return x


#: A run keeping less than this fraction of its in-band degrees of freedom gets a warning.
DOF_WARNING_FRACTION = 0.5


def degrees_of_freedom(
    n_kept: int, tr: float, high_pass: float | None, low_pass: float | None, n_regressors: int
) -> dict[str, float | int]:
    """Temporal degrees of freedom left by band-pass and confound regression (as xcp_d reports them).

    In-band dof = kept volumes x 2 (low - high) TR (the fraction of the spectrum the filter keeps);
    each (band-passed) regressor removes about one more.
    """
    nyquist = 0.5 / tr
    band = (min(low_pass, nyquist) if low_pass else nyquist) - (high_pass or 0.0)
    in_band = n_kept * 2.0 * band * tr
    return {
        "DegreesOfFreedomInBand": round(in_band, 2),
        "ConfoundRegressors": n_regressors,
        "DegreesOfFreedomRemaining": round(in_band - n_regressors, 2),
    }


def clean_series(
    series: np.ndarray, confounds: np.ndarray | None, kept: np.ndarray, tr: float, params: DenoiseParams
) -> np.ndarray:
    """Detrend, band-pass and regress confounds in one step; z-score over kept volumes.

    ``series`` is (T, V), ``confounds`` (T, k) or None, ``kept`` (T,) bool. Censored volumes are first
    interpolated in the data and the confounds (:func:`interpolate_censored`), so that filtering sees a
    continuous series, and come back as rows of zeros. Returns (T, V) float32.
    """
    return clean_and_bandpass(series, confounds, kept, tr, params, bandpassed=False)[0]


def clean_and_bandpass(
    series: np.ndarray,
    confounds: np.ndarray | None,
    kept: np.ndarray,
    tr: float,
    params: DenoiseParams,
    *,
    bandpassed: bool = True,
    chunk: int = 32768,
    censored_values: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`clean_series`, and the same series detrended and band-passed only (no regression).

    ``nilearn.signal.clean`` detrends and filters the data and the confounds, then regresses the
    filtered confounds out of the filtered data (Lindquist et al. 2019). It is called here in those two
    steps (filter once, then regress with ``detrend=False, filter=False``), so that the band-passed
    series the lag QC needs costs no second filtering of the whole run; the numbers are those of one
    call. Both outputs are (T, V) float32, z-scored over kept volumes, zero on censored volumes.
    ``censored_values`` ((censored volumes, V) float32), when given, receives the cleaned series at the
    censored volumes (interpolated, filtered, regressed, scaled as the kept ones): the stationary null
    randomises continuous series, as the data were when filtered (:mod:`workflows.dfc_null`).
    """
    from nilearn import signal

    kept = np.asarray(kept, dtype=bool)
    conf = confounds
    censored = not kept.all()
    if censored:
        # Censored volumes are interpolated (data and confounds), filtered and regressed with the rest,
        # then dropped: nilearn's own sample_mask path (0.14) interpolates the wrong volumes when given
        # indices (it negates them bitwise), so strokefc never passes it one.
        series = interpolate_censored(series, kept)
        conf = interpolate_censored(conf, kept).astype(np.float64) if conf is not None else None
    filtering: dict[str, Any] = {
        "filter": "butterworth",
        "low_pass": params.low_pass,
        "high_pass": params.high_pass,
        "t_r": tr,
        # copy=True filters the whole matrix in one vectorised call (nilearn's in-place default loops
        # over voxels in Python: minutes per run instead of about a second)
        "butterworth__copy": True,
    }
    with_conf = conf is not None and conf.shape[1] > 0
    conf_filtered = signal.clean(conf, detrend=True, standardize=None, **filtering) if with_conf else None
    out = np.zeros(series.shape, np.float32)
    band = np.zeros(series.shape, np.float32) if bandpassed else None
    rows = slice(None) if kept.all() else kept  # a slice: no copy of every row
    # by voxel blocks: every step is column by column, and the float64 copies of detrending and
    # filtering (several of the run's size) stay a block's size
    for start in range(0, series.shape[1], chunk):
        cols = slice(start, start + chunk)
        filtered = signal.clean(series[:, cols], detrend=True, standardize=None, **filtering)
        if band is not None:  # z-scored in a copy: the regression below needs ``filtered``
            band[rows, cols] = _zscore_rows(np.array(filtered[rows], np.float64))
        if with_conf:
            filtered = signal.clean(
                filtered, confounds=conf_filtered, detrend=False, filter=False, standardize=None, t_r=tr
            )
        fill = None
        if censored_values is not None:
            fill = np.asarray(filtered[~kept], np.float64)
        out[rows, cols] = _zscore_rows(np.asarray(filtered[rows], np.float64), also=fill)  # in place
        if fill is not None and censored_values is not None:
            censored_values[:, cols] = fill
    return out, band


#: fMRIStroke's lesion-free replacements for fMRIPrep's tissue signals (same derivative suffixes).
FMRISTROKE_REPLACEMENTS = {"white_matter": "white_matter_nolesion", "csf": "csf_nolesion"}


def fmristroke_columns(
    confounds: pd.DataFrame, fmristroke_tsv: Path | str, n_volumes: int
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``confounds`` with fMRIStroke's lesion-aware signals.

    fMRIStroke (Lam et al.) recomputes the tissue signals without the lesion (``white_matter_nolesion``,
    ``csf_nolesion``, with the same ``_derivative1``/``_power2`` variants when written) and adds the
    lesion's own signal (``lesion``) and ICA lesion components (``ica_lesion*``). Each fMRIPrep WM/CSF
    column is replaced by its lesion-free twin when fMRIStroke wrote it; the lesion columns are added.
    """
    table = read_confounds_table(fmristroke_tsv)
    if len(table) != n_volumes:
        raise InputError(
            f"fMRIStroke's confounds have {len(table)} rows but the BOLD has {n_volumes} volumes",
            str(fmristroke_tsv),
            "use the fMRIStroke output made from this fMRIPrep run",
        )
    out = confounds.copy()
    replaced = {}
    for column in list(out.columns):
        for base, nolesion in FMRISTROKE_REPLACEMENTS.items():
            twin = column.replace(base, nolesion, 1)
            if column.startswith(base) and twin in table.columns:
                out[column] = table[twin].fillna(0.0).to_numpy()
                replaced[column] = twin
    added = [c for c in table.columns if c == "lesion" or c.startswith("ica_lesion")]
    for column in added:
        out[f"fmristroke_{column}"] = table[column].fillna(0.0).to_numpy()
    if not replaced and not added:
        raise InputError(
            "fMRIStroke's confounds hold no lesion column (lesion, ica_lesion*, *_nolesion)",
            str(fmristroke_tsv),
            "run fMRIStroke with a lesion mask, or leave its confounds out",
        )
    record = {"File": str(fmristroke_tsv), "Replaced": replaced, "Added": [f"fmristroke_{c}" for c in added]}
    return out, record


def lesion_signal_regressors(series: np.ndarray, n_components: int) -> tuple[np.ndarray, list[str]]:
    """The lesion's mean signal and its first ``n_components`` principal components, (T, k).

    ``series`` (T, L) holds the unsmoothed lesion voxels. Each voxel is demeaned and scaled to unit
    variance before the SVD (as CompCor does), so the components do not just follow the largest voxels.
    """
    x = np.asarray(series, np.float64)
    x = x[:, x.std(axis=0) > 0]
    if x.shape[1] == 0:
        raise InputError(
            "the lesion's voxels have constant signal",
            "lesion mask",
            "check the lesion mask against the BOLD, or use a strategy without +lesion",
        )
    mean = x.mean(axis=1)
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    k = int(min(n_components, z.shape[1] - 1, z.shape[0] - 1))
    columns = [mean - mean.mean()]
    names = ["lesion_mean"]
    if k > 0:
        u, sv, _ = np.linalg.svd(z, full_matrices=False)
        columns += [u[:, i] * sv[i] for i in range(k)]
        names += [f"lesion_comp_cor_{i:02d}" for i in range(k)]
    return np.column_stack(columns), names


def tsnr_map(data: np.ndarray, mask: np.ndarray, kept: np.ndarray, n_dummy: int) -> np.ndarray:
    """Temporal SNR (mean / SD over kept volumes) of each mask voxel of a 4D run, slab by slab (3D)."""
    volumes = np.flatnonzero(np.asarray(kept, bool)) + n_dummy
    out = np.zeros(mask.shape, np.float32)
    for x in range(mask.shape[0]):
        if not mask[x].any():
            continue
        series = np.asarray(data[x][mask[x]][:, volumes], dtype=np.float64)
        sd = series.std(axis=1)
        out[x][mask[x]] = np.where(sd > 0, series.mean(axis=1) / np.where(sd > 0, sd, 1.0), 0.0)
    return out


def denoise_run(
    bold_file: Path | str,
    mask_file: Path | str,
    tr: float,
    params: DenoiseParams,
    confounds_file: Path | str | None = None,
    lesion_mask: np.ndarray | None = None,
    exclude_mask: np.ndarray | None = None,
    keep_bandpassed: bool = False,
    lesion_confounds: Path | str | None = None,
) -> DenoisedRun:
    """Denoise one run: dummy scans cut, confounds regressed and band-pass applied together.

    Voxel series are detrended and z-scored over kept volumes (so window correlations are well
    conditioned); smoothing, when asked, happens inside the brain mask before cleaning.
    ``exclude_mask`` (bool, on the BOLD grid: the dilated lesion) leaves the analysis mask, so it is
    neither smoothed into its neighbours nor mapped; ``lesion_mask`` gives the lesion-signal
    regressors of the ``+lesion`` strategies. ``keep_bandpassed`` also returns the series detrended and
    band-passed without confound regression (for the hemodynamic-lag QC, whose global reference the
    regressors would partly remove). ``lesion_confounds`` (fMRIStroke's ``desc-confounds2`` table)
    swaps the WM/CSF signals for fMRIStroke's lesion-free ones and adds its lesion signals
    (:func:`fmristroke_columns`).
    """
    sibling = _confounds_path(bold_file)
    if confounds_file is not None and Path(confounds_file).resolve() != sibling.resolve():
        # nilearn's load_confounds finds the regressors by the BOLD's name: another table would only give
        # the dummy scans and FD, and the regressors would silently come from the sibling (or fail)
        raise InputError(
            f"the confounds table is not the one next to the preprocessed BOLD ({sibling.name}), where "
            "the confound regressors are read from",
            str(confounds_file),
            f"put fMRIPrep's confounds table next to the BOLD as {sibling.name}, as fMRIPrep writes it",
        )
    data, mask, bold_img, info = load_bold_masked(bold_file, mask_file)
    if params.strategy in LESION_STRATEGIES and lesion_mask is None:
        raise InputError(
            f"denoising strategy {params.strategy!r} needs a lesion mask, and this subject has none",
            str(bold_file),
            "give lesion masks (--lesion-dir, or label-lesion_roi masks in the raw dataset) or use "
            f"DenoiseParams.strategy {LESION_STRATEGIES[params.strategy]!r}",
            params=("DenoiseParams.strategy",),
        )
    lesion_series = None
    if params.strategy in LESION_STRATEGIES and lesion_mask is not None:
        in_lesion = np.asarray(lesion_mask, bool) & mask
        lesion_series = data[in_lesion].T  # before smoothing: the lesion's own signal
    if exclude_mask is not None:
        excluded = mask & np.asarray(exclude_mask, bool)
        info["LesionVoxelsExcluded"] = int(excluded.sum())
        mask = mask & ~excluded
    n_t = data.shape[3]
    table = read_confounds_table(sibling)
    confounds, kept, conf_info = load_run_confounds(bold_file, params, n_t)
    n_dummy = count_dummy_scans(table, params.dummy_scans)
    if n_dummy >= n_t - 2:
        raise InputError(
            f"{n_dummy} dummy scans leave no data in a {n_t}-volume run",
            str(bold_file),
            "lower DenoiseParams.dummy_scans",
            params=("DenoiseParams.dummy_scans",),
        )
    fd = (
        table["framewise_displacement"].to_numpy(float)
        if "framewise_displacement" in table
        else np.full(n_t, np.nan)
    )

    tsnr = tsnr_map(data, mask, kept[n_dummy:], n_dummy)
    ijk = np.argwhere(mask)[carpet_sample(int(mask.sum()))]  # C order, as data[mask]
    carpet = np.ascontiguousarray(data[ijk[:, 0], ijk[:, 1], ijk[:, 2]].T)  # (T, n) before smoothing
    if params.smoothing_fwhm:
        data = smooth_in_mask(data, mask, params.smoothing_fwhm, bold_img.header.get_zooms())
    series = data[mask].T[n_dummy:]  # (T', V)
    del data
    kept = kept[n_dummy:]
    if lesion_confounds is not None:
        confounds, conf_info["FMRIStrokeConfounds"] = fmristroke_columns(confounds, lesion_confounds, n_t)
        conf_info["ConfoundColumns"] = list(confounds.columns)
    conf = confounds.to_numpy(float)[n_dummy:]
    names = list(confounds.columns)
    if lesion_series is not None:
        regs, reg_names = lesion_signal_regressors(lesion_series[n_dummy:], params.lesion_components)
        conf = np.column_stack([conf, regs]) if conf.size else regs
        names += reg_names
        conf_info["ConfoundColumns"] = names
        conf_info["LesionRegressors"] = {
            "Columns": reg_names,
            "Voxels": int(lesion_series.shape[1]),
            "Method": "mean and principal components of the unsmoothed, voxelwise z-scored lesion signal",
        }
    constant = conf.std(axis=0) == 0 if conf.size else np.zeros(0, bool)
    design = pd.DataFrame(conf[:, ~constant], columns=[n for n, c in zip(names, constant) if not c])
    conf = conf[:, ~constant] if conf.size else None  # drop constant columns
    if kept.sum() < 3:
        raise InputError(
            "fewer than 3 volumes survive censoring",
            str(bold_file),
            "loosen DenoiseParams.fd_thresh / DenoiseParams.std_dvars_thresh",
            params=("DenoiseParams.fd_thresh", "DenoiseParams.std_dvars_thresh"),
        )
    censored_values = np.zeros(((~kept).sum(), series.shape[1]), np.float32)
    out, bandpassed = clean_and_bandpass(
        series, conf, kept, tr, params, bandpassed=keep_bandpassed, censored_values=censored_values
    )
    censored = not kept.all()
    mask_used = nb.Nifti1Image(mask.astype(np.uint8), bold_img.affine)
    mask_used.header.set_xyzt_units("mm")
    info.update(conf_info)
    info.update(
        {
            "DummyScans": n_dummy,
            "VolumesTotal": n_t,
            "VolumesCensored": int((~kept).sum()),
            "VolumesKept": int(kept.sum()),
            "MeanFramewiseDisplacement_mm": float(np.nanmean(fd[n_dummy:]))
            if np.isfinite(fd[n_dummy:]).any()
            else None,
            "MaxFramewiseDisplacement_mm": float(np.nanmax(fd[n_dummy:]))
            if np.isfinite(fd[n_dummy:]).any()
            else None,
            "RetainedTime_s": round(float(kept.sum() * tr), 2),
            "HighPass_Hz": params.high_pass,
            "LowPass_Hz": params.low_pass,
            "Filter": "butterworth (nilearn.signal.clean, together with confound regression)",
            "SmoothingFWHM_mm": params.smoothing_fwhm or 0.0,
            "Standardize": "zscore over kept volumes",
        }
    )
    if params.strategy == "scrubbing":
        info.update({"FDThreshold_mm": params.fd_thresh, "StdDVARSThreshold": params.std_dvars_thresh})
    if "framewise_displacement" not in table:
        info.setdefault("Warnings", []).append(MISSING_FD_NOTE[0].upper() + MISSING_FD_NOTE[1:] + ".")
    dof = degrees_of_freedom(
        int(kept.sum()), tr, params.high_pass, params.low_pass, 0 if conf is None else int(conf.shape[1])
    )
    info.update(dof)
    if dof["DegreesOfFreedomRemaining"] < DOF_WARNING_FRACTION * dof["DegreesOfFreedomInBand"]:
        info.setdefault("Warnings", []).append(
            f"Confound regression uses {dof['ConfoundRegressors']} of the "
            f"{dof['DegreesOfFreedomInBand']:.0f} degrees of freedom in the pass band, leaving "
            f"{dof['DegreesOfFreedomRemaining']:.0f}: windowed correlations will be noisy. Prefer longer "
            "runs or fewer regressors."
        )
    if censored:
        info["CensoredVolumesHandling"] = (
            "cubic-spline interpolation of data and confounds before filtering and regression, then "
            "removed (zero weight in every window)"
        )
    return DenoisedRun(
        out, kept, mask_used, fd[n_dummy:], info, design, bandpassed, tsnr, carpet, censored_values
    )


def _confounds_path(bold_file: Path | str) -> Path:
    """fMRIPrep's confounds TSV for a preprocessed BOLD (same entities up to ``desc``/``space``/``res``)."""
    name = Path(bold_file).name
    stem = name.split("_space-")[0] if "_space-" in name else name.split("_desc-")[0]
    return Path(bold_file).parent / f"{stem}_desc-confounds_timeseries.tsv"
