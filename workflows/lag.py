"""Hemodynamic lag maps for quality control of stroke fMRI.

Stroke disturbs perfusion beyond the infarct: in hypoperfused tissue the BOLD signal arrives late, and
this delay alone distorts functional connectivity (Siegel et al. 2016, J Cereb Blood Flow Metab
36:2162-2176, "The effects of hemodynamic lag on functional connectivity and behavior after stroke").
As there (and as fMRIStroke and rapidtide do), each voxel's lag is the shift that maximises its
cross-correlation with the global grey-matter signal; a run whose ipsilesional lag exceeds the
contralesional (mirror) lag by more than :data:`LAG_FLAG_S` is flagged.

The cross-correlation at each integer shift is a Pearson r over the volume pairs in which both samples
are kept (censored volumes are never used nor interpolated); the integer peak is refined to sub-TR
resolution by parabolic interpolation. The loop runs over the ``2K + 1`` shifts only: each shift is three
matrix-vector products over all voxels of a chunk, so the cost is linear in voxels, volumes and shifts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from workflows.params import QCParams
from workflows.utils.errors import InputError

#: A shift needs at least this many kept volume pairs for its correlation to be estimated.
_MIN_PAIRS = 10
#: Voxels processed together (bounds memory: two float64 arrays of volumes x chunk).
_CHUNK = 16384


@dataclass(frozen=True)
class LagResult:
    """Per-voxel hemodynamic lag.

    Attributes
    ----------
    lag : (V,) float32
        Seconds; positive = the voxel lags behind the reference (its signal arrives later). NaN for
        constant or non-finite voxels.
    peak_r : (V,) float32
        Pearson r at the best integer shift (NaN where ``lag`` is NaN).
    at_bound : (V,) bool
        The peak lies on the first or last shift (``±K·TR``): the true lag may be larger in magnitude
        and ``lag`` is not refined.
    """

    lag: npt.NDArray[np.float32]
    peak_r: npt.NDArray[np.float32]
    at_bound: npt.NDArray[np.bool_]


def _shift_windows(
    kept: npt.NDArray[np.bool_], k: int
) -> list[tuple[int, int, int, npt.NDArray[np.float64]]]:
    """For each shift ``s`` in ``-k..k``: the overlap ``[a, b)`` of reference times and its pair mask."""
    n = kept.size
    windows = []
    for s in range(-k, k + 1):
        a, b = max(0, -s), min(n, n - s)
        pairs = kept[a:b] & kept[a + s : b + s] if b > a else np.zeros(0, dtype=bool)
        if int(pairs.sum()) < _MIN_PAIRS:
            raise InputError(
                f"only {int(pairs.sum())} kept volume pairs at a shift of {s} volumes "
                f"(at least {_MIN_PAIRS} are needed)",
                "search_s",
                "lower search_s, or keep more volumes (less censoring, a longer run)",
            )
        windows.append((s, a, b, pairs.astype(np.float64)))
    return windows


def _validate(
    data: npt.ArrayLike, reference: npt.ArrayLike, tr: float, search_s: float, kept: npt.ArrayLike | None
) -> tuple[npt.NDArray, npt.NDArray[np.float64], npt.NDArray[np.bool_], int]:
    y = np.asarray(data)
    x = np.asarray(reference, dtype=np.float64)
    if y.ndim != 2:
        raise InputError(f"data must be volumes x voxels (2-D), got shape {y.shape}", "data", "reshape it")
    n = y.shape[0]
    if x.shape != (n,):
        raise InputError(
            f"reference has shape {x.shape}, data has {n} volumes",
            "reference",
            "give one reference value per volume",
        )
    if not (math.isfinite(tr) and tr > 0):
        raise InputError(f"TR {tr} is not a positive number of seconds", "tr", "give the TR in seconds")
    k = math.floor(search_s / tr + 1e-9) if math.isfinite(search_s) else -1
    if k < 1:
        raise InputError(
            f"lag search range {search_s} s is shorter than one TR ({tr} s)",
            "search_s",
            "search at least 1 TR",
        )
    mask = np.ones(n, dtype=bool) if kept is None else np.asarray(kept, dtype=bool)
    if mask.shape != (n,):
        raise InputError(
            f"kept has shape {mask.shape}, data has {n} volumes", "kept", "give one flag per volume"
        )
    xk = x[mask]
    if not np.all(np.isfinite(xk)) or xk.size == 0 or np.ptp(xk) == 0:
        raise InputError(
            "the reference signal is constant or not finite over the kept volumes",
            "reference",
            "check the grey-matter mask and the denoised series",
        )
    return y, x, mask, k


def lag_map(
    data: npt.ArrayLike,
    reference: npt.ArrayLike,
    tr: float,
    *,
    search_s: float = QCParams.lag_search,
    kept: npt.ArrayLike | None = None,
) -> LagResult:
    """Lag of every voxel relative to ``reference`` by cross-correlation, in seconds.

    Parameters
    ----------
    data : (T, V) array
        Denoised voxel series.
    reference : (T,) array
        The global grey-matter signal.
    tr : float
        Repetition time (s).
    search_s : float
        Lag search range (+/- s): shifts ``-K..K`` volumes with ``K = floor(search_s / tr)`` (``K >= 1``).
    kept : (T,) bool array, optional
        Volumes kept by censoring (default: all). A shift's correlation uses only pairs of kept volumes.

    Returns
    -------
    LagResult
        ``lag`` > 0 when the voxel's signal follows the reference. Peaks inside the shift range are refined
        by a parabola through the peak and its neighbours (refinement clipped to ±0.5 volume); peaks on the
        first or last shift are not refined and are flagged ``at_bound``.

    Raises
    ------
    InputError
        Shapes disagree, ``tr`` or ``search_s`` is invalid, the reference is constant, or some shift has
        fewer than 10 kept volume pairs.
    """
    y_all, x, mask, k = _validate(data, reference, tr, search_s, kept)
    n_vox = y_all.shape[1]
    windows = _shift_windows(mask, k)
    # Reference moments per shift (they depend on the shift's pairs, not on the voxel).
    # Censored volumes get zero weight; zeroing them too keeps a NaN there out of the products.
    x = np.where(mask, x - x[mask].mean(), 0.0)
    x_stats = []
    for _s, a, b, w in windows:
        xw = x[a:b] * w
        n_pairs = w.sum()
        mx = xw.sum() / n_pairs
        vx = (xw @ x[a:b]) / n_pairs - mx * mx
        x_stats.append((xw, n_pairs, mx, vx))

    lag = np.full(n_vox, np.nan, dtype=np.float32)
    peak_r = np.full(n_vox, np.nan, dtype=np.float32)
    at_bound = np.zeros(n_vox, dtype=bool)
    n_shifts = 2 * k + 1
    for start in range(0, n_vox, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n_vox))
        y = np.array(y_all[:, sl], dtype=np.float64)
        yk = y[mask]
        with np.errstate(invalid="ignore"):
            usable = np.all(np.isfinite(yk), axis=0) & (np.ptp(yk, axis=0) > 0)
        y -= yk.mean(axis=0)  # centring first keeps the moment formula below accurate
        y[~mask] = 0.0
        y2 = y * y
        r = np.empty((n_shifts, y.shape[1]))
        with np.errstate(invalid="ignore", divide="ignore"):
            for i, ((s, a, b, w), (xw, n_pairs, mx, vx)) in enumerate(zip(windows, x_stats)):
                ys, y2s = y[a + s : b + s], y2[a + s : b + s]
                my = (w @ ys) / n_pairs
                vy = (w @ y2s) / n_pairs - my * my
                cov = (xw @ ys) / n_pairs - mx * my
                r[i] = cov / np.sqrt(vx * vy)
        r[:, ~usable] = np.nan
        np.clip(r, -1.0, 1.0, out=r)
        lag_c, peak_c, bound_c = _refine_peaks(r[:, usable], k)
        lag[sl][usable] = lag_c * tr
        peak_r[sl][usable] = peak_c
        at_bound[sl][usable] = bound_c
    return LagResult(lag=lag, peak_r=peak_r, at_bound=at_bound)


def _refine_peaks(
    r: npt.NDArray[np.float64], k: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    """Sub-shift peak of each column of ``r`` (shifts ``-k..k`` by rows): lag in volumes, peak r, bound."""
    r = np.where(np.isfinite(r), r, -np.inf)  # a near-constant voxel can still give an odd NaN
    idx = np.argmax(r, axis=0)
    cols = np.arange(r.shape[1])
    peak = r[idx, cols]
    at_bound = (idx == 0) | (idx == 2 * k)
    lo = r[np.clip(idx - 1, 0, 2 * k), cols]
    hi = r[np.clip(idx + 1, 0, 2 * k), cols]
    denom = lo - 2.0 * peak + hi
    ok = ~at_bound & np.isfinite(denom) & (denom < 0)
    delta = np.zeros(r.shape[1])
    delta[ok] = np.clip(0.5 * (lo[ok] - hi[ok]) / denom[ok], -0.5, 0.5)
    found = np.isfinite(peak)
    return np.where(found, idx - k + delta, np.nan), np.where(found, peak, np.nan), at_bound & found


def lag_summary(
    lag: npt.ArrayLike,
    peak_r: npt.ArrayLike,
    ipsi_mask: npt.ArrayLike,
    contra_mask: npt.ArrayLike,
    *,
    min_r: float = 0.3,
) -> dict[str, float | int]:
    """Median lag in the ipsilesional and contralesional (mirror) masks, and their difference.

    Only voxels with a finite lag and ``peak_r >= min_r`` count. A mask without such voxels gives NaN
    medians (and a NaN difference), not an error; compare ``ipsi_minus_contra_s`` with :data:`LAG_FLAG_S`.

    Returns
    -------
    dict
        ``ipsi_median_s``, ``contra_median_s``, ``ipsi_minus_contra_s`` (s, float) and ``n_ipsi``,
        ``n_contra`` (voxels used, int).
    """
    lag_a = np.asarray(lag, dtype=np.float64).ravel()
    r_a = np.asarray(peak_r, dtype=np.float64).ravel()
    masks: Mapping[str, npt.NDArray[np.bool_]] = {
        "ipsi": np.asarray(ipsi_mask, dtype=bool).ravel(),
        "contra": np.asarray(contra_mask, dtype=bool).ravel(),
    }
    for name, m in {"peak_r": r_a, **masks}.items():
        if m.shape != lag_a.shape:
            raise InputError(
                f"{name} has {m.size} voxels, lag has {lag_a.size}",
                name,
                "give arrays over the same voxels",
            )
    good = np.isfinite(lag_a) & (np.nan_to_num(r_a, nan=-np.inf) >= min_r)
    out: dict[str, float | int] = {}
    for name, m in masks.items():
        values = lag_a[m & good]
        out[f"{name}_median_s"] = float(np.median(values)) if values.size else math.nan
        out[f"n_{name}"] = int(values.size)
    out["ipsi_minus_contra_s"] = float(out["ipsi_median_s"]) - float(out["contra_median_s"])
    return {
        key: out[key]
        for key in ("ipsi_median_s", "contra_median_s", "ipsi_minus_contra_s", "n_ipsi", "n_contra")
    }
