"""Seed-based sliding-window dynamic functional connectivity (dFC).

For window :math:`k` with weights :math:`w_{kt} = h_{t - s_k}\\,m_t` (taper :math:`h`, kept-volume mask
:math:`m`), the weighted Pearson correlation between the seed :math:`x` and a voxel :math:`y` is

.. math::  r_k = \\frac{S^{xy}_k/S_k - \\bar x_k \\bar y_k}
                 {\\sqrt{(S^{xx}_k/S_k - \\bar x_k^2)(S^{yy}_k/S_k - \\bar y_k^2)}},
           \\quad S^{ab}_k = \\sum_t w_{kt} a_t b_t .

For rectangular windows the sums are differences of running sums of ``(y, y**2, x*y)`` (O(T) per voxel,
whatever the window length; the whole-run sums of the static map are their last row); for tapered
windows they are the matrix product ``W @ (y, y**2, x*y)`` (``W`` is windows x volumes), taken block of
windows by block over the volumes each block covers. Everything is float64 over cache-sized chunks of
voxels, so the cost is linear in voxels and windows, any taper and any censoring pattern work, and
memory stays bounded (only per-voxel summaries are kept unless all window maps are requested).
Censored volumes get zero weight: they are never interpolated into a correlation. Correlations are
Fisher z-transformed (``arctanh``) before the summary over windows (SD, mean).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from workflows.params import WINDOW_ESTIMATORS, WINDOW_SHAPES, WindowParams, parse_duration
from workflows.utils.errors import InputError, check_choice
from workflows.utils.images import as_image

_R_CLIP = 1.0 - 1e-7  # keeps arctanh finite for (numerically) perfect correlations


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
    kept: np.ndarray, length: int, step: int, min_coverage: float, taper: np.ndarray | None = None
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
class WindowSpec:
    """:class:`~workflows.params.WindowParams` resolved on one run (length in volumes); no defaults."""

    length: int
    step: int
    shape: str
    estimator: str
    min_coverage: float

    @classmethod
    def from_params(cls, params: WindowParams, tr: float) -> WindowSpec:
        return cls(
            length=parse_duration(params.window_length, tr),
            step=params.window_step,
            shape=params.window_shape,
            estimator=params.window_estimator,
            min_coverage=params.min_window_coverage,
        )

    @classmethod
    def volumes(cls, length: int, **changes: Any) -> WindowSpec:
        """``WindowParams()`` with a window of ``length`` volumes, then ``changes`` (WindowSpec fields)."""
        return replace(cls.from_params(WindowParams(window_length=f"{length}vol"), 1.0), **changes)


@dataclass(frozen=True)
class WindowDesign:
    """Everything the estimators need about the windows of one run."""

    plan: WindowPlan
    weights: np.ndarray  # (n_windows, T): taper times kept mask
    counts: np.ndarray  # (n_windows,) samples each window's Pearson r is taken over
    kept: np.ndarray  # (T,) bool
    boxcar: bool = False  # rectangular windows: sums are running sums (see design_corr)


def window_design(kept: np.ndarray, window: WindowSpec) -> WindowDesign:
    """Plan the windows of a run and build their weights.

    For ``tapered-circular`` (GIFT), each window is :func:`circular_taper` rolled so that its
    rectangle covers volumes ``s .. s + length - 1``, for ``s = 1 .. T - length`` (GIFT's
    ``circshift(A, round(-nT/2) + round(wsize/2) + ii)``, ``ii = 1 .. nT - wsize``): the window
    starting at volume 0 is not used, as in GIFT. Every window spans the whole run, so a window's
    Pearson r is taken over all kept volumes and its coverage is the kept share of its weight.
    """
    kept = np.asarray(kept, dtype=bool)
    length, step, shape, min_coverage = window.length, window.step, window.shape, window.min_coverage
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
    z = np.clip(r, -_R_CLIP, _R_CLIP, out=out)
    return np.arctanh(z, out=z)


def _sums_corr(
    sx: np.ndarray, sxx: np.ndarray, norm: np.ndarray, sy: np.ndarray, syy: np.ndarray, sxy: np.ndarray
) -> np.ndarray:
    """Pearson r per window from weighted sums; the voxel sums' buffers are overwritten (r is in ``sxy``).

    ``sx``, ``sxx`` (W,) are the seed's first and second sums, ``norm`` (W,) what they are divided by
    (the weight sum, or the number of kept volumes), ``sy``, ``syy``, ``sxy`` (W, V) the voxels'. With
    ``n`` the norm: ``n cov = Sxy - Sx Sy / n``, ``n var = Syy - Sy^2 / n``. Windows with a constant
    series (or no weight) get r = 0. In place, in float64: about ten passes over the (W, V) sums.
    """
    inv = np.divide(1.0, norm, out=np.zeros(norm.shape), where=norm > 0)
    vx = np.maximum(sxx - sx * sx * inv, 0.0)  # n var(x), per window
    tmp = np.multiply(sy, (sx * inv)[:, None])
    sxy -= tmp  # n cov
    np.multiply(sy, sy, out=tmp)
    tmp *= inv[:, None]
    syy -= tmp  # n var(y)
    np.maximum(syy, 0.0, out=syy)
    syy *= vx[:, None]
    np.sqrt(syy, out=syy)
    np.copyto(syy, np.inf, where=~(syy > 0))  # constant series: r = 0
    return np.divide(sxy, syy, out=sxy)


def _band_matmul(weights: np.ndarray, a: np.ndarray, block: int = 32) -> np.ndarray:
    """``weights @ a`` for a windows x volumes ``weights``, multiplying each block of rows only over the
    columns where it is non-zero: a sliding window of L volumes costs O(L) per window, not O(T)."""
    n_w, n_t = weights.shape
    out = np.zeros((n_w, *a.shape[1:]))
    flat = a.reshape(n_t, -1)
    for b in range(0, n_w, block):
        cols = np.flatnonzero((weights[b : b + block] != 0).any(axis=0))
        if cols.size:
            lo, hi = cols[0], cols[-1] + 1
            out[b : b + block].reshape(-1, flat.shape[1])[...] = weights[b : b + block, lo:hi] @ flat[lo:hi]
    return out


def _matrix_corr(
    first: np.ndarray, second: np.ndarray, norm: np.ndarray, x: np.ndarray, y: np.ndarray
) -> np.ndarray:
    """Pearson r from sums with the weight matrices ``first`` (means) and ``second`` (second moments)."""
    n_t, n_v = y.shape
    terms = np.empty((n_t, 3, n_v))  # y, y*y, x*y: one matrix product per weight matrix
    terms[:, 0] = y
    np.multiply(y, y, out=terms[:, 1])
    np.multiply(y, x[:, None], out=terms[:, 2])
    if first is second:
        sums = _band_matmul(first, terms)
        sy, syy, sxy = sums[:, 0], sums[:, 1], sums[:, 2]
    else:
        sy = _band_matmul(first, terms[:, 0])
        sums = _band_matmul(second, terms[:, 1:])
        syy, sxy = sums[:, 0], sums[:, 1]
    return _sums_corr(first @ x, second @ (x * x), norm, sy, syy, sxy)


def tapered_series_corr(weights: np.ndarray, counts: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r of the tapered series ``h*x`` and ``h*y`` over each window's kept volumes.

    ``weights`` (windows, T) holds ``h * kept`` (as :func:`window_weights` builds it) and ``counts``
    (windows,) the number of kept volumes per window: the tapered series' moments are
    ``weights @ x / n`` and ``weights**2 @ (x*y) / n``.
    """
    counts = np.asarray(counts, float).reshape(-1)
    return _matrix_corr(weights, weights * weights, counts, np.asarray(x, float), np.asarray(y, float))


def window_corr(
    weights: np.ndarray, counts: np.ndarray, x: np.ndarray, y: np.ndarray, estimator: str
) -> np.ndarray:
    """Windowed seed correlation by the chosen estimator (:data:`WINDOW_ESTIMATORS`)."""
    check_estimator(estimator)
    if estimator == "weighted":
        return weighted_corr(weights, x, y)
    return tapered_series_corr(weights, counts, x, y)


def check_estimator(estimator: str) -> None:
    check_choice(estimator, WINDOW_ESTIMATORS, "window estimator", "WindowParams.window_estimator")


def centre_kept(a: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """``a`` (T,) or (T, V) minus its mean over kept volumes, zero on censored ones (float64 copy).

    Centring first keeps the one-pass moment formulas free of float cancellation on large offsets.
    """
    kept = np.asarray(kept, bool)
    out = np.array(a, dtype=np.float64)
    out -= out[kept].mean(axis=0) if not kept.all() else out.mean(axis=0)
    out[~kept] = 0.0
    return out


def weighted_corr(weights: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Weighted correlation of seed ``x`` (T,) with voxels ``y`` (T, V) for every row of ``weights``."""
    return _matrix_corr(weights, weights, weights.sum(axis=1), np.asarray(x, float), np.asarray(y, float))


def running_sums(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Cumulative sums along the first axis with a leading row of zeros, (T + 1, ...), float64 by default.

    Row by row: numpy's ``cumsum`` along the first axis of a C-ordered (T, V) array walks each column
    with a stride of V and is several times slower. ``out`` (T + 1, ...) is filled instead of a new
    float64 array (its dtype is the accumulator's); ``a`` may be ``out[1:]`` itself (summed in place).
    """
    if out is None:
        out = np.empty((a.shape[0] + 1, *a.shape[1:]))
    out[0] = 0.0
    if a.ndim == 1:
        np.cumsum(a, out=out[1:])
        return out
    rows = out[1:]
    if not (a.shape == rows.shape and a.strides == rows.strides and a.ctypes.data == rows.ctypes.data):
        rows[...] = a
    for t in range(1, out.shape[0]):
        np.add(out[t], out[t - 1], out=out[t])
    return out


def boxcar_sums(starts: np.ndarray, length: int, a: np.ndarray) -> np.ndarray:
    """Sums of ``a`` (T, ...) over the rectangular windows ``[s, s + length)``, from running sums.

    O(T) per column instead of O(windows x T) for the matrix product; the running sums are taken in
    float64 on series centred over the run (:func:`centre_kept`), so differencing them loses at most
    about log10(T / length) digits.
    """
    cs = running_sums(a)
    return cs[starts + length] - cs[starts]


def _boxcar_corr(
    starts: np.ndarray, length: int, counts: np.ndarray, kept: np.ndarray, x: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Rectangular-window r (len(starts), V) and the whole-run r (V,) over kept volumes, from running sums.

    The running sums of ``y``, ``y*y`` and ``x*y`` (censored rows zeroed) are built once; each window's
    sums are two rows' difference, and the whole run's sums are the last row.
    """
    k = kept.astype(np.float64)
    xk = x * k
    n_t, n_v = y.shape
    terms = np.empty((n_t, 3, n_v))
    np.multiply(y, k[:, None], out=terms[:, 0])
    np.multiply(terms[:, 0], y, out=terms[:, 1])
    np.multiply(terms[:, 0], x[:, None], out=terms[:, 2])
    run = running_sums(terms)
    del terms
    step = int(starts[1] - starts[0]) if starts.size > 1 else 1
    if starts.size and np.array_equal(starts, starts[0] + step * np.arange(starts.size)):
        stop = starts[0] + step * (starts.size - 1) + 1
        sums = run[starts[0] + length : stop + length : step] - run[starts[0] : stop : step]
    else:
        sums = run[starts + length] - run[starts]
    r = _sums_corr(
        boxcar_sums(starts, length, xk),
        boxcar_sums(starts, length, xk * x),
        counts.astype(float),
        sums[:, 0],
        sums[:, 1],
        sums[:, 2],
    )
    whole = run[-1].copy()
    n_kept = np.array([k.sum()])
    static = _sums_corr(
        np.array([xk.sum()]),
        np.array([(xk * x).sum()]),
        n_kept,
        whole[None, 0],
        whole[None, 1],
        whole[None, 2],
    )
    return r, static[0]


def design_corr(
    design: WindowDesign,
    x: np.ndarray,
    y: np.ndarray,
    estimator: str,
    *,
    valid_only: bool = True,
) -> np.ndarray:
    """Windowed correlation of centred seed ``x`` (T,) with centred voxels ``y`` (T, V).

    Rectangular windows use running sums (:func:`boxcar_sums`; both estimators coincide for them),
    other tapers the weight matrix. ``valid_only`` keeps the windows with enough coverage.
    """
    return _design_corr_static(design, x, y, estimator, valid_only=valid_only)[0]


def _design_corr_static(
    design: WindowDesign, x: np.ndarray, y: np.ndarray, estimator: str, *, valid_only: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`design_corr` and, for rectangular windows, the whole-run r that comes free with it."""
    check_estimator(estimator)
    rows = design.plan.valid if valid_only else np.ones(design.plan.starts.size, bool)
    counts = np.maximum(design.counts[rows], 1)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if design.boxcar:
        return _boxcar_corr(design.plan.starts[rows], design.plan.length, counts, design.kept, x, y)
    return window_corr(design.weights[rows], counts, x, y, estimator), None


@dataclass
class DFCResult:
    """Per-voxel summaries of the windowed seed correlation (all Fisher z)."""

    sd: np.ndarray  # (V,) SD over valid windows (ddof=1): the dFC variability map
    mean: np.ndarray  # (V,) mean over valid windows
    static: np.ndarray  # (V,) whole-run correlation over kept volumes
    plan: WindowPlan
    windows: np.ndarray | None = None  # (n_valid, V) float32, only when requested


#: Voxels per block of the dFC kernel: its (windows, 3, voxels) float64 sums stay in the CPU caches.
KERNEL_CHUNK = 1024


def sliding_window_dfc(
    seed: np.ndarray,
    data: np.ndarray,
    window: WindowSpec,
    *,
    kept: np.ndarray | None = None,
    keep_windows: bool = False,
    chunk_size: int = KERNEL_CHUNK,
) -> DFCResult:
    """Seed-to-voxel sliding-window correlation and its summaries.

    Parameters
    ----------
    seed : (T,) array
        Seed time series (mean of the seed voxels of the denoised data).
    data : (T, V) array
        Denoised voxel time series; rows of censored volumes are ignored (any value).
    window : WindowSpec
        Length and step (volumes), taper, estimator (:data:`WINDOW_ESTIMATORS`), and the minimum kept
        share of a window's taper weight below which the window is dropped.
    kept : (T,) bool array, optional
        False for censored volumes; they get zero weight in every window.
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
    design = window_design(kept, window)
    plan = design.plan
    if plan.n_valid < 2:
        raise InputError(
            f"only {plan.n_valid} window(s) have at least {window.min_coverage:.0%} of their taper weight "
            f"kept ({n_t} volumes, {int(kept.sum())} kept, window {window.length}, step {window.step})",
            "WindowParams.min_window_coverage / censoring",
            "loosen the censoring thresholds, lower WindowParams.min_window_coverage, or shorten the window",
            params=("WindowParams.min_window_coverage",),
        )
    seed_c = centre_kept(seed, kept)
    n_v = data.shape[1]
    sd = np.empty(n_v, np.float32)
    mean = np.empty(n_v, np.float32)
    static = np.empty(n_v, np.float32)
    windows = np.empty((plan.n_valid, n_v), np.float32) if keep_windows else None
    # one BLAS thread: the tapered windows' banded products are small, and a second OpenBLAS thread
    # spins more than it helps (2 mm Hamming run: 5.1 s of CPU with two threads, 1.1 s with one)
    with threadpool_limits(limits=1, user_api="blas"):
        _kernel_chunks(design, seed_c, data, kept, window.estimator, chunk_size, sd, mean, static, windows)
    return DFCResult(sd=sd, mean=mean, static=static, plan=plan, windows=windows)


def _kernel_chunks(
    design: WindowDesign,
    seed_c: np.ndarray,
    data: np.ndarray,
    kept: np.ndarray,
    estimator: str,
    chunk_size: int,
    sd: np.ndarray,
    mean: np.ndarray,
    static: np.ndarray,
    windows: np.ndarray | None,
) -> None:
    """The voxel chunks of :func:`sliding_window_dfc`, written into its output arrays."""
    n_v = data.shape[1]
    n_w = design.plan.n_valid
    static_w = kept.astype(float)[None, :]
    for start in range(0, n_v, chunk_size):
        stop = min(start + chunk_size, n_v)
        y = centre_kept(data[:, start:stop], kept)
        r, r_static = _design_corr_static(design, seed_c, y, estimator)
        if r_static is None:
            r_static = weighted_corr(static_w, seed_c, y)[0]
        z = fisher_z(r, out=r)
        total = z.sum(axis=0)
        mean[start:stop] = total / n_w
        # SD from the sums of z and z^2 (|z| < 9, so no cancellation beyond ~1e-13)
        sq = np.einsum("wv,wv->v", z, z)
        sd[start:stop] = np.sqrt(np.maximum(sq - total * total / n_w, 0.0) / (n_w - 1))
        static[start:stop] = fisher_z(r_static)
        if windows is not None:  # keep_windows
            windows[:, start:stop] = z


def window_region_z(
    seed: np.ndarray, region_series: np.ndarray, window: WindowSpec, *, kept: np.ndarray | None = None
) -> tuple[np.ndarray, WindowPlan]:
    """Windowed Fisher-z correlation of the seed with a few region series (T, R) -> (n_windows, R).

    Dropped windows are NaN (for plotting the time course with gaps).
    """
    seed = np.asarray(seed, float)
    kept = np.ones(seed.size, bool) if kept is None else np.asarray(kept, bool)
    design = window_design(kept, window)
    plan = design.plan
    y = np.asarray(region_series, float)
    y = centre_kept(y, kept)
    seed_c = centre_kept(seed, kept)
    z = fisher_z(design_corr(design, seed_c, y, window.estimator, valid_only=False))
    z[~plan.valid] = np.nan
    return z, plan


def naive_sliding_window_dfc(
    seed: np.ndarray, data: np.ndarray, window: WindowSpec, *, kept: np.ndarray | None = None
) -> np.ndarray:
    """Reference implementation: ``numpy.corrcoef`` (or ``numpy.cov`` with the taper as weights) per window.

    Slow on purpose; used by tests and benchmarks to check :func:`sliding_window_dfc`. Censored
    volumes (``kept`` False) are left out of each window; ``tapered-series`` correlates the run-centred
    series multiplied by the taper. Returns the (n_windows, V) Fisher-z maps of every window (valid or
    not); ``tapered-circular`` windows are not covered.
    """
    n_t = len(seed)
    length, step, shape, estimator = window.length, window.step, window.shape, window.estimator
    kept = np.ones(n_t, bool) if kept is None else np.asarray(kept, bool)
    taper = window_taper(length, shape)
    series = np.column_stack([seed, data]).astype(np.float64)
    if estimator == "tapered-series":
        series = centre_kept(series, kept)
    out = []
    for s in range(0, n_t - length + 1, step):
        rows = kept[s : s + length]
        block, w = series[s : s + length][rows], taper[rows]
        if estimator == "tapered-series":
            c = np.corrcoef((block * w[:, None]).T)
        elif shape == "rectangular":
            c = np.corrcoef(block.T)
        else:
            cov = np.cov(block.T, aweights=w)
            c = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
        out.append(fisher_z(np.nan_to_num(c[0, 1:])))
    return np.asarray(out)


def window_warnings(length: int, tr: float, high_pass: float | None, null_surrogates: int) -> list[str]:
    """Leonardi & Van De Ville (2015): windows shorter than 1/high-pass produce spurious fluctuations.

    With the stationary null on (``null_surrogates`` > 0) that floor is measured per run and
    ``stat-dfcexcess`` subtracts it, so only a short window without the null is warned about.
    """
    if high_pass and length * tr < 1.0 / high_pass and null_surrogates <= 0:
        return [
            f"The window ({length * tr:g} s) is shorter than 1/high-pass ({1.0 / high_pass:g} s) and the "
            "stationary null is off: part of the windowed-correlation variability may be spurious "
            "(Leonardi & Van De Ville 2015). Keep the null on (--null-surrogates) and read "
            "stat-dfcexcess, or use a longer window or a higher high-pass cutoff."
        ]
    return []


def seed_dfc_images(
    data: np.ndarray,
    kept: np.ndarray,
    mask_img: nb.Nifti1Image,
    seed_img: nb.Nifti1Image,
    window: WindowSpec,
    *,
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
    res = sliding_window_dfc(seed, data, window, kept=kept, keep_windows=keep_windows)

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
            z, _ = window_region_z(seed, data[:, inside].mean(axis=1, keepdims=True), window, kept=kept)
            table[f"z_{name}"] = z[:, 0].round(6)
    out: dict[str, Any] = {
        "sd": to_img(res.sd),
        "mean": to_img(res.mean),
        "static": to_img(res.static),
        "seed": seed,
        "seed_columns": seed_in_mask,  # (V,) bool: the voxel columns averaged into the seed
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
