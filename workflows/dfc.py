"""Seed-based sliding-window dynamic functional connectivity (dFC).

For window :math:`k` with weights :math:`w_{kt} = h_{t - s_k}\\,m_t` (taper :math:`h`, kept-volume mask
:math:`m`), the weighted Pearson correlation between the seed :math:`x` and a voxel :math:`y` is

.. math::  r_k = \\frac{S^{xy}_k/S_k - \\bar x_k \\bar y_k}
                 {\\sqrt{(S^{xx}_k/S_k - \\bar x_k^2)(S^{yy}_k/S_k - \\bar y_k^2)}},
           \\quad S^{ab}_k = \\sum_t w_{kt} a_t b_t .

All windows' sums are one matrix product ``W @ (y, y**2, x*y)`` (``W`` is windows x volumes), computed in
float64 over chunks of voxels, so the cost is linear in voxels and windows, any taper and any censoring
pattern work, and memory stays bounded (only per-voxel running moments are kept unless all window maps
are requested). Censored volumes get zero weight: they are never interpolated into a correlation.
Correlations are Fisher z-transformed (``arctanh``) before the summary over windows (SD, mean).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np
import pandas as pd

from workflows.utils.errors import InputError
from workflows.utils.images import as_image

#: ``tapered-circular`` is GIFT's window: the tapered window over the whole run, circularly shifted
#: (its Gaussian tails reach every volume), laid as GIFT lays it (see :func:`circular_taper`).
WINDOW_SHAPES = ("rectangular", "hamming", "tapered", "tapered-circular")
#: How a window's correlation is estimated: "weighted" = Pearson r with the taper as sample weights;
#: "tapered-series" = multiply both series by the taper, then Pearson r (DPABI's y_SCA_Window, GIFT).
WINDOW_ESTIMATORS = ("weighted", "tapered-series")


@dataclass(frozen=True)
class WindowParams:
    """Sliding windows of the dFC step (``window_length``: ``'60s'`` or ``'30vol'``; step in volumes)."""

    # >= 1/high-pass (100 s at 0.01 Hz): shorter windows let slow stationary fluctuations pass for
    # dynamics (Leonardi & Van De Ville 2015)
    window_length: str = "100s"
    window_step: int = 1
    window_shape: str = "rectangular"
    window_estimator: str = "weighted"  # see WINDOW_ESTIMATORS; identical for rectangular windows
    min_window_coverage: float = 0.8  # windows with a smaller kept fraction are dropped
    save_windows: bool = False  # also write the 4D window maps
    # phase-randomised surrogates of the stationary null behind stat-dfcexcess (0 = no null)
    null_surrogates: int = 50


#: Window settings of the tools and papers they name (``--dfc-preset``).
DFC_PRESETS: dict[str, dict[str, Any]] = {
    # DPABI Temporal Dynamic Analysis: 30-TR Hamming window, step 1 TR; y_SCA_Window multiplies the
    # series by the window, then correlates.
    "dpabi": {
        "window_length": "30vol",
        "window_step": 1,
        "window_shape": "hamming",
        "window_estimator": "tapered-series",
    },
    # DynamicBC: 50-TR rectangular window, 60% overlap (step 20 TRs).
    "dynamicbc": {"window_length": "50vol", "window_step": 20, "window_shape": "rectangular"},
    # Allen et al. 2014: 22-TR rectangle convolved with a Gaussian (sigma 3 TRs), step 1 TR; GIFT
    # multiplies the series by the full-run window, Gaussian tails included, then correlates.
    "allen": {
        "window_length": "22vol",
        "window_step": 1,
        "window_shape": "tapered-circular",
        "window_estimator": "tapered-series",
    },
}
_R_CLIP = 1.0 - 1e-7  # keeps arctanh finite for (numerically) perfect correlations


def parse_duration(value: str | int | float, tr: float, name: str = "WindowParams.window_length") -> int:
    """Convert ``'60s'``, ``'30vol'`` or a bare number of seconds to a whole number of volumes.

    Seconds are rounded to the nearest whole volume (at least 2).
    """
    text = str(value).strip().lower()
    try:
        if text.endswith("vol"):
            n = int(text[:-3])
        elif text.endswith("s"):
            n = round(float(text[:-1]) / tr)
        else:
            n = round(float(text) / tr)
    except ValueError:
        raise InputError(
            f"{name} {value!r} is not a duration",
            name,
            "give seconds ('60s') or volumes ('30vol')",
            params=(name,),
        ) from None
    if n < 1:
        raise InputError(
            f"{name} {value!r} is shorter than one volume (TR {tr} s)",
            name,
            "give a longer duration",
            params=(name,),
        )
    return n


def window_taper(length: int, shape: str = "rectangular", sigma: float = 3.0) -> np.ndarray:
    """Weights of one window (max 1).

    ``tapered`` is the central ``length`` samples of a rectangle of ``length`` convolved with a
    Gaussian of ``sigma`` volumes (Allen et al. 2014), so the edges are attenuated to about one half.
    """
    if shape == "rectangular":
        return np.ones(length)
    if shape == "hamming":
        return np.hamming(length) if length > 1 else np.ones(1)
    if shape in ("tapered", "tapered-circular"):
        half = math.ceil(4 * sigma)
        g = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma) ** 2)
        full = np.convolve(np.ones(length), g / g.sum(), mode="full")  # length + 2 * half
        taper = full[half : half + length]
        return taper / taper.max()
    raise InputError(
        f"window shape {shape!r} is unknown",
        "WindowParams.window_shape",
        f"use one of {', '.join(WINDOW_SHAPES)}",
        params=("WindowParams.window_shape",),
    )


def circular_taper(n_t: int, length: int, sigma: float = 3.0) -> np.ndarray:
    """GIFT's sliding window over a whole run of ``n_t`` volumes (``icatb_compute_sliding_window``).

    A Gaussian (``sigma`` volumes) centred at volume ``m = ceil(n_t / 2)`` is convolved with a
    rectangle of ``2 * round(length / 2)`` ones centred on ``m``, scaled to a maximum of 1 and cut
    back to ``n_t`` samples: nothing is truncated to the window, so the tails reach every volume
    once the window is circularly shifted.
    """
    n_even = n_t + (n_t % 2)
    m = n_even // 2
    w = int(np.floor(length / 2 + 0.5))  # MATLAB round (half away from zero)
    gauss = np.exp(-((np.arange(n_even) - m) ** 2) / (2.0 * sigma * sigma))
    box = np.zeros(n_even)
    box[m - w : m + w] = 1.0  # MATLAB b((m-w+1):(m+w)) = 1
    full = np.convolve(gauss, box)
    full = full / full.max()
    return full[m : m + n_even][:n_t]


@dataclass(frozen=True)
class WindowPlan:
    """Which volumes each window covers and whether it has enough kept volumes."""

    starts: np.ndarray  # (n_windows,) first volume of each window
    length: int
    kept_volumes: np.ndarray  # (n_windows,) kept (uncensored) volumes in each window
    coverage: np.ndarray  # kept_volumes / length
    valid: np.ndarray  # bool, coverage >= min_coverage

    @property
    def n_valid(self) -> int:
        return int(self.valid.sum())


def plan_windows(
    kept: np.ndarray, length: int, step: int = 1, min_coverage: float = 0.8, taper: np.ndarray | None = None
) -> WindowPlan:
    """Lay windows of ``length`` volumes every ``step`` volumes over a run of ``len(kept)`` volumes.

    A window's coverage is the fraction of its taper weight on kept volumes (for a rectangular window,
    the fraction of kept volumes): a Hamming window censored at its centre loses more than its edges.
    """
    kept = np.asarray(kept, dtype=bool)
    n = kept.size
    if length > n:
        raise InputError(
            f"the window ({length} volumes) is longer than the run ({n} volumes after dummy scans)",
            "WindowParams.window_length",
            "use a shorter window or a longer run",
            params=("WindowParams.window_length",),
        )
    if step < 1:
        raise InputError(
            f"window step {step} must be at least one volume",
            "WindowParams.window_step",
            "give a positive step",
            params=("WindowParams.window_step",),
        )
    starts = np.arange(0, n - length + 1, step)
    csum = np.concatenate([[0], np.cumsum(kept)])
    kept_vols = csum[starts + length] - csum[starts]
    if taper is None or np.all(taper == taper[0]):
        coverage = kept_vols / float(length)
    else:
        taper = np.asarray(taper, dtype=float)
        coverage = np.correlate(kept.astype(float), taper, mode="valid")[starts] / taper.sum()
    return WindowPlan(starts, length, kept_vols, coverage, coverage >= min_coverage - 1e-12)


def window_weights(plan: WindowPlan, kept: np.ndarray, taper: np.ndarray) -> np.ndarray:
    """Weight matrix ``W`` (n_windows, n_volumes): taper times kept mask, zero outside each window."""
    n = len(kept)
    w = np.zeros((plan.starts.size, n))
    for k, s in enumerate(plan.starts):  # windows x length: small, built once
        w[k, s : s + plan.length] = taper
    return w * np.asarray(kept, dtype=float)[None, :]


@dataclass(frozen=True)
class WindowDesign:
    """Everything the estimators need about the windows of one run."""

    plan: WindowPlan
    weights: np.ndarray  # (n_windows, T): taper times kept mask
    counts: np.ndarray  # (n_windows,) samples each window's Pearson r is taken over
    kept: np.ndarray  # (T,) bool
    boxcar: bool = False  # rectangular windows: sums are running sums (see design_corr)


def window_design(
    kept: np.ndarray, length: int, step: int = 1, shape: str = "rectangular", min_coverage: float = 0.8
) -> WindowDesign:
    """Plan the windows of a run and build their weights.

    For ``tapered-circular`` (GIFT), each window is :func:`circular_taper` rolled so that its
    rectangle covers volumes ``s .. s + length - 1``, for ``s = 1 .. T - length`` (GIFT's
    ``circshift(A, round(-nT/2) + round(wsize/2) + ii)``, ``ii = 1 .. nT - wsize``): the window
    starting at volume 0 is not used, as in GIFT. Every window spans the whole run, so a window's
    Pearson r is taken over all kept volumes and its coverage is the kept share of its weight.
    """
    kept = np.asarray(kept, dtype=bool)
    taper = window_taper(length, shape)
    plan = plan_windows(kept, length, step, min_coverage, taper)
    if shape != "tapered-circular":
        weights = window_weights(plan, kept, taper)
        return WindowDesign(plan, weights, plan.kept_volumes, kept, boxcar=shape == "rectangular")
    n_t = kept.size
    base = circular_taper(n_t, length)
    n_even = n_t + (n_t % 2)
    shift0 = -round_half_away(n_even / 2) + round_half_away(length / 2)
    starts = np.arange(1, n_t - length + 1, step)
    weights = np.stack([np.roll(base, shift0 + s) for s in starts]) if starts.size else np.zeros((0, n_t))
    weights = weights * kept[None, :]
    coverage = weights.sum(axis=1) / base.sum()
    kept_vols = np.full(starts.size, int(kept.sum()))
    plan = WindowPlan(starts, length, kept_vols, coverage, coverage >= min_coverage - 1e-12)
    return WindowDesign(plan, weights, kept_vols, kept)


def round_half_away(x: float) -> int:
    """MATLAB's ``round`` (halves away from zero), for GIFT's window arithmetic."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def fisher_z(r: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Fisher z-transform, clipped so that |r| = 1 stays finite (in place with ``out=r``)."""
    return np.arctanh(np.clip(r, -_R_CLIP, _R_CLIP, out=out), out=out)


WindowSums = Callable[[np.ndarray], np.ndarray]  # a (T, ...) -> weighted sums per window (n_windows, ...)


def _moment_corr(
    first: WindowSums, second: WindowSums, norm: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Pearson r from moments: means ``first(a) / norm``, second moments ``second(a*b) / norm``."""
    mx = first(x)[:, None] / norm
    vx = second(x * x)[:, None] / norm - mx**2
    my = first(y) / norm
    vy = second(y * y) / norm - my**2
    cov = second(x[:, None] * y) / norm - mx * my
    denom = np.sqrt(np.clip(vx, 0, None) * np.clip(vy, 0, None))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, cov / denom, 0.0)


def tapered_series_corr(weights: np.ndarray, counts: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of the tapered series ``h*x`` and ``h*y`` over each window's kept volumes.

    ``weights`` (windows, T) holds ``h * kept`` (as :func:`window_weights` builds it) and ``counts``
    (windows,) the number of kept volumes per window: the tapered series' moments are
    ``weights @ x / n`` and ``weights**2 @ (x*y) / n``.
    """
    return _moment_corr(
        weights.__matmul__, (weights * weights).__matmul__, counts[:, None].astype(float), x, y
    )


def window_corr(
    weights: np.ndarray, counts: np.ndarray, x: np.ndarray, y: np.ndarray, estimator: str = "weighted"
) -> np.ndarray:
    """Windowed seed correlation by the chosen estimator (:data:`WINDOW_ESTIMATORS`)."""
    check_estimator(estimator)
    if estimator == "weighted":
        return weighted_corr(weights, x, y)
    return tapered_series_corr(weights, counts, x, y)


def check_estimator(estimator: str) -> None:
    if estimator not in WINDOW_ESTIMATORS:
        raise InputError(
            f"window estimator {estimator!r} is unknown",
            "WindowParams.window_estimator",
            f"use one of {', '.join(WINDOW_ESTIMATORS)}",
            params=("WindowParams.window_estimator",),
        )


def centre_kept(a: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """``a`` (T,) or (T, V) minus its mean over kept volumes, zero on censored ones.

    Centring first keeps the one-pass moment formulas free of float cancellation on large offsets.
    """
    mask = kept if a.ndim == 1 else kept[:, None]
    return np.where(mask, a - a[kept].mean(axis=0), 0.0)


def weighted_corr(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weighted correlation of seed ``x`` (T,) with voxels ``y`` (T, V) for every row of ``weights``."""
    return _moment_corr(weights.__matmul__, weights.__matmul__, weights.sum(axis=1)[:, None], x, y)


def boxcar_sums(starts: np.ndarray, length: int, a: np.ndarray) -> np.ndarray:
    """Sums of ``a`` (T, ...) over the rectangular windows ``[s, s + length)``, from running sums.

    O(T) per column instead of O(windows x T) for the matrix product; the running sums are taken in
    float64 on series centred over the run (:func:`centre_kept`), so differencing them loses at most
    about log10(T / length) digits.
    """
    cs = np.zeros((a.shape[0] + 1, *a.shape[1:]))
    np.cumsum(a, axis=0, out=cs[1:])
    return cs[starts + length] - cs[starts]


def design_corr(
    design: WindowDesign,
    x: np.ndarray,
    y: np.ndarray,
    estimator: str = "weighted",
    *,
    valid_only: bool = True,
) -> np.ndarray:
    """Windowed correlation of centred seed ``x`` (T,) with centred voxels ``y`` (T, V).

    Rectangular windows use running sums (:func:`boxcar_sums`; both estimators coincide for them),
    other tapers the weight matrix. ``valid_only`` keeps the windows with enough coverage.
    """
    rows = design.plan.valid if valid_only else np.ones(design.plan.starts.size, bool)
    counts = np.maximum(design.counts[rows], 1)
    if not design.boxcar:
        return window_corr(design.weights[rows], counts, x, y, estimator)
    check_estimator(estimator)
    kept = design.kept
    x = np.where(kept, x, 0.0)
    y = np.where(kept[:, None], y, 0.0)
    starts, length = design.plan.starts[rows], design.plan.length

    def sums(a: np.ndarray) -> np.ndarray:
        return boxcar_sums(starts, length, a)

    return _moment_corr(sums, sums, counts[:, None].astype(float), x, y)


@dataclass
class DFCResult:
    """Per-voxel summaries of the windowed seed correlation (all Fisher z)."""

    sd: np.ndarray  # (V,) SD over valid windows (ddof=1): the dFC variability map
    mean: np.ndarray  # (V,) mean over valid windows
    static: np.ndarray  # (V,) whole-run correlation over kept volumes
    plan: WindowPlan
    windows: np.ndarray | None = None  # (n_valid, V) float32, only when requested


def sliding_window_dfc(
    seed: np.ndarray,
    data: np.ndarray,
    *,
    length: int,
    step: int = 1,
    shape: str = "rectangular",
    estimator: str = "weighted",
    kept: np.ndarray | None = None,
    min_coverage: float = 0.8,
    keep_windows: bool = False,
    chunk_size: int = 5000,
) -> DFCResult:
    """Seed-to-voxel sliding-window correlation and its summaries.

    Parameters
    ----------
    seed : (T,) array
        Seed time series (mean of the seed voxels of the denoised data).
    data : (T, V) array
        Denoised voxel time series; rows of censored volumes are ignored (any value).
    length, step : int
        Window length and step, in volumes.
    shape : {'rectangular', 'hamming', 'tapered'}
        Window taper.
    estimator : {'weighted', 'tapered-series'}
        Taper-weighted Pearson r, or Pearson r of the tapered series (see :data:`WINDOW_ESTIMATORS`).
    kept : (T,) bool array, optional
        False for censored volumes; they get zero weight in every window.
    min_coverage : float
        Windows with fewer than this fraction of their volumes kept are dropped.
    keep_windows : bool
        Also return the (n_valid_windows, V) z maps, as float32.

    Returns
    -------
    DFCResult
        ``sd``, ``mean`` (over valid windows) and ``static`` Fisher-z maps, the window plan, and the
        window maps when asked for.
    """
    seed = np.asarray(seed, dtype=np.float64)
    n_t = seed.shape[0]
    if data.ndim != 2 or data.shape[0] != n_t:
        raise ValueError(f"data must be (T={n_t}, V); got {data.shape}")
    kept = np.ones(n_t, bool) if kept is None else np.asarray(kept, bool)
    design = window_design(kept, length, step, shape, min_coverage)
    plan = design.plan
    if plan.n_valid < 2:
        raise InputError(
            f"only {plan.n_valid} window(s) have at least {min_coverage:.0%} of their taper weight kept "
            f"({n_t} volumes, {int(kept.sum())} kept, window {length}, step {step})",
            "WindowParams.min_window_coverage / censoring",
            "loosen the censoring thresholds, lower WindowParams.min_window_coverage, or shorten the window",
            params=("WindowParams.min_window_coverage",),
        )
    static_w = kept.astype(float)[None, :]

    seed_c = centre_kept(seed, kept)
    n_v = data.shape[1]
    sd = np.empty(n_v, np.float32)
    mean = np.empty(n_v, np.float32)
    static = np.empty(n_v, np.float32)
    windows = np.empty((plan.n_valid, n_v), np.float32) if keep_windows else None
    for start in range(0, n_v, chunk_size):
        stop = min(start + chunk_size, n_v)
        y = np.asarray(data[:, start:stop], dtype=np.float64)
        y = centre_kept(y, kept)
        z = fisher_z(design_corr(design, seed_c, y, estimator))
        sd[start:stop] = z.std(axis=0, ddof=1)
        mean[start:stop] = z.mean(axis=0)
        static[start:stop] = fisher_z(weighted_corr(static_w, seed_c, y))[0]
        if windows is not None:  # keep_windows
            windows[:, start:stop] = z
    return DFCResult(sd=sd, mean=mean, static=static, plan=plan, windows=windows)


def window_region_z(
    seed: np.ndarray,
    region_series: np.ndarray,
    *,
    length: int,
    step: int = 1,
    shape: str = "rectangular",
    kept: np.ndarray | None = None,
    min_coverage: float = 0.8,
    estimator: str = "weighted",
) -> tuple[np.ndarray, WindowPlan]:
    """Windowed Fisher-z correlation of the seed with a few region series (T, R) -> (n_windows, R).

    Dropped windows are NaN (for plotting the time course with gaps).
    """
    seed = np.asarray(seed, float)
    kept = np.ones(seed.size, bool) if kept is None else np.asarray(kept, bool)
    design = window_design(kept, length, step, shape, min_coverage)
    plan = design.plan
    y = np.asarray(region_series, float)
    y = centre_kept(y, kept)
    seed_c = centre_kept(seed, kept)
    z = fisher_z(design_corr(design, seed_c, y, estimator, valid_only=False))
    z[~plan.valid] = np.nan
    return z, plan


def naive_sliding_window_dfc(seed: np.ndarray, data: np.ndarray, *, length: int, step: int = 1) -> np.ndarray:
    """Reference implementation: ``numpy.corrcoef`` per window (rectangular, no censoring).

    Slow on purpose; used by tests and benchmarks to check :func:`sliding_window_dfc`.
    Returns the (n_windows, V) Fisher-z maps.
    """
    n_t = len(seed)
    out = []
    for s in range(0, n_t - length + 1, step):
        c = np.corrcoef(np.column_stack([seed[s : s + length], data[s : s + length]]).T)
        out.append(fisher_z(np.nan_to_num(c[0, 1:])))
    return np.asarray(out)


def window_warnings(length: int, tr: float, high_pass: float | None) -> list[str]:
    """Leonardi & Van De Ville (2015): windows shorter than 1/high-pass produce spurious fluctuations."""
    if high_pass and length * tr < 1.0 / high_pass:
        return [
            f"The window ({length * tr:g} s) is shorter than 1/high-pass ({1.0 / high_pass:g} s): "
            "part of the windowed-correlation variability may be spurious (Leonardi & Van De "
            "Ville 2015). Consider a longer window or a higher high-pass cutoff."
        ]
    return []


def seed_dfc_images(
    data: np.ndarray,
    kept: np.ndarray,
    mask_img: nb.Nifti1Image,
    seed_img: nb.Nifti1Image,
    *,
    length: int,
    step: int,
    shape: str,
    min_coverage: float,
    estimator: str = "weighted",
    keep_windows: bool = False,
    regions: Mapping[str, nb.Nifti1Image] | None = None,
) -> dict[str, Any]:
    """dFC maps of one denoised run as images, plus the seed series and the window table.

    Parameters
    ----------
    data : (T, V) array
        Denoised series of the voxels inside ``mask_img`` (C order of ``mask_img > 0``).
    kept : (T,) bool
        Kept (uncensored) volumes.
    mask_img, seed_img : Nifti1Image
        Brain mask that defines the voxel columns, and the seed mask on the same grid.
    regions : dict[str, Nifti1Image], optional
        A few regions whose windowed correlation with the seed is traced (for the report).

    Returns
    -------
    dict
        ``sd``, ``mean``, ``static`` (and ``windows``) images, ``seed`` (T,) series, ``table``
        (one row per window: start/end volume, kept volumes, coverage, valid, z per region),
        ``plan``.
    """
    mask = np.asarray(mask_img.dataobj) > 0
    seed_in_mask = (np.asarray(seed_img.dataobj) > 0)[mask]
    if seed_in_mask.sum() == 0:
        raise InputError(
            "the seed has no voxel inside the brain mask",
            "seed mask",
            "check the seed definition and the brain mask",
        )
    seed = data[:, seed_in_mask].mean(axis=1)
    res = sliding_window_dfc(
        seed,
        data,
        length=length,
        step=step,
        shape=shape,
        kept=kept,
        min_coverage=min_coverage,
        estimator=estimator,
        keep_windows=keep_windows,
    )

    def to_img(values: np.ndarray) -> nb.Nifti1Image:
        vol = np.zeros(mask.shape + values.shape[:-1][::-1], np.float32)
        if values.ndim == 1:
            vol[mask] = values
        else:
            vol[mask] = values.T
        img = nb.Nifti1Image(vol, mask_img.affine)
        img.header.set_xyzt_units("mm")
        return img

    plan = res.plan
    table = pd.DataFrame(
        {
            "start_volume": plan.starts,
            "end_volume": plan.starts + plan.length - 1,
            "kept_volumes": plan.kept_volumes,
            "coverage": plan.coverage.round(4),
            "valid": plan.valid.astype(int),
        }
    )
    for name, img in (regions or {}).items():
        inside = (np.asarray(img.dataobj) > 0)[mask]
        if inside.sum():
            z, _ = window_region_z(
                seed,
                data[:, inside].mean(axis=1, keepdims=True),
                length=length,
                step=step,
                shape=shape,
                kept=kept,
                min_coverage=min_coverage,
                estimator=estimator,
            )
            table[f"z_{name}"] = z[:, 0].round(6)
    out: dict[str, Any] = {
        "sd": to_img(res.sd),
        "mean": to_img(res.mean),
        "static": to_img(res.static),
        "seed": seed,
        "table": table,
        "plan": plan,
    }
    if res.windows is not None:  # keep_windows
        out["windows"] = to_img(res.windows)
    return out


def weighted_mean_maps(
    imgs: Sequence[nb.Nifti1Image | Path | str], weights: Sequence[float] | np.ndarray
) -> nb.Nifti1Image:
    """Subject-level map: mean of run maps weighted by their number of valid windows."""
    weights = np.asarray(weights, float)
    if len(imgs) != weights.size or weights.sum() <= 0:
        raise ValueError("one positive weight per map is needed")
    ref = as_image(imgs[0])
    acc = np.zeros(ref.shape, np.float64)
    for img, w in zip(imgs, weights):
        img = as_image(img)
        if img.shape != ref.shape or not np.allclose(img.affine, ref.affine, atol=1e-3):
            raise InputError(
                "the runs of one subject are on different grids",
                str(img.get_filename()),
                "process runs in one space and resolution",
            )
        acc += w * np.asarray(img.dataobj, np.float64)
    out = nb.Nifti1Image((acc / weights.sum()).astype(np.float32), ref.affine)
    out.header.set_xyzt_units("mm")
    return out
