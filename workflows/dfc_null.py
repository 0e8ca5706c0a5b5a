"""A stationary null for sliding-window dFC: multivariate phase-randomised surrogates.

A surrogate keeps every series' power spectrum and every cross-spectrum (hence the static correlation
with the seed) but is stationary: the Fourier phases of all series are shifted by the same random
angle at each frequency (Prichard & Theiler 1994; used for dFC by Zalesky et al. 2014 and Hindriks et
al. 2016). The SD over windows of a surrogate is the variability a stationary process with this
subject's spectra and static FC would show; the *excess* of the observed SD over the surrogates,

.. math::  \\text{excess} = SD_{obs} - \\overline{SD}_{surr},

is the dFC variability that sampling alone does not explain (``stat-dfcexcess``, in Fisher z units: an
effect size comparable between subjects, unlike the z-statistic (excess / sd(SD_surr)) of the first
version, which grew with the number of windows).

Censored volumes hold zeros in the denoised data and zero weight in every window. The surrogates are
made from the *continuous* cleaned series (the censored volumes as the denoiser interpolated, filtered
and scaled them, ``censored_values``), then windowed with the same kept-volume weights as the data.
Randomising the zero-filled series instead whitens the null and biases the excess upwards: on 200
stationary generated runs of 180 volumes with 25% of volumes censored in bursts (44 s windows, 19
surrogates; tests/test_dfc_null.py), the mean excess was +0.088 and the 5% test rejected 53% of the
runs from zero-filled series, against -0.031 and 2.5% from the continuous series.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

from workflows.dfc import (
    WindowDesign,
    WindowSpec,
    centre_kept,
    design_corr,
    fisher_z,
    running_sums,
    window_design,
)

#: Voxels with the strongest static coupling to the seed whose excess is tested per subject.
TOP_TARGET_FRACTION = 0.01


@dataclass(frozen=True)
class NullResult:
    """Observed SD, the surrogates' mean and SD per voxel, their excess, and the top-target test."""

    observed_sd: np.ndarray  # (V,)
    null_mean: np.ndarray  # (V,)
    null_sd: np.ndarray  # (V,)
    excess: np.ndarray  # (V,) observed - null mean
    top_targets: np.ndarray  # (V,) bool: the voxels of the subject-level test
    top_excess: float  # mean excess over the top targets
    top_observed: float  # mean observed SD over the top targets
    top_null_mean: float  # mean over the top targets of the surrogates' mean SD
    top_p_value: float  # (1 + #surrogates with mean SD over the targets >= observed) / (1 + n)


def surrogate_phases(n_volumes: int, n_surrogates: int, seed: int = 0) -> np.ndarray:
    """Random phase shifts (n_surrogates, n_frequencies); zero at DC and at Nyquist (real series)."""
    n_freq = n_volumes // 2 + 1
    phases = np.random.default_rng(seed).uniform(0.0, 2 * np.pi, (n_surrogates, n_freq))
    phases[:, 0] = 0.0
    if n_volumes % 2 == 0:
        phases[:, -1] = 0.0
    return phases


def phase_randomise(x: np.ndarray, phases: np.ndarray) -> np.ndarray:
    """One multivariate surrogate of the columns of ``x`` (T, N): the same phase shift for every column."""
    spectrum = np.fft.rfft(x, axis=0)
    return np.fft.irfft(spectrum * np.exp(1j * phases)[:, None], n=x.shape[0], axis=0)


def _window_sd(design: WindowDesign, seed: np.ndarray, y: np.ndarray, estimator: str) -> np.ndarray:
    """SD over windows (ddof=1) of the Fisher-z seed correlation, as the dFC kernel computes it.

    In float64: float32 products differ with the number of BLAS threads by about 1e-5, so the same run on
    MultiProc and on SLURM would not give the same excess map.
    """
    seed_c = centre_kept(seed, design.kept)
    y = centre_kept(y, design.kept)
    return fisher_z(design_corr(design, seed_c, y, estimator)).std(axis=0, ddof=1)


class BoxcarSD:
    """SD over rectangular windows (ddof=1) of the Fisher-z correlation of a seed with voxels, repeatedly.

    Windows of ``length`` volumes start every ``step`` volumes (as :func:`workflows.dfc.plan_windows`
    lays them) and only the ``valid`` ones count; censored volumes (``kept`` False) count in no window.
    Pearson r is :func:`workflows.dfc.design_corr`'s, ``(n Sxy - Sx Sy) / sqrt((n Sxx - Sx^2)(n Syy -
    Sy^2))`` from running sums, in float32 for the voxels (the seed's in float64): about 1e-6 in r, far
    below the Monte-Carlo error of a null of 100 surrogates, for half the memory traffic. The buffers
    are allocated once and reused by every call (fresh arrays of this size cost page faults, 4x the
    arithmetic here). No matrix product: the result does not depend on BLAS threads.

    The series and their products are written straight into the running sums' buffer, which is then
    summed in place; a caller that makes the series (the surrogates' inverse FFT) can write them there
    itself (:meth:`series`) and save a copy.
    """

    def __init__(self, kept: np.ndarray, length: int, step: int, valid: np.ndarray, n_voxels: int) -> None:
        self.kept = np.asarray(kept, bool)
        self.length, self.step = length, step
        n_t = self.kept.size
        self.last = n_t - length + 1  # one past the last window start
        self.invalid = ~np.asarray(valid, bool)
        self.n_valid = int(valid.sum())
        n_w = len(range(0, self.last, step))
        f4 = np.float32
        self.sums = np.empty((n_t + 1, 3, n_voxels), f4)  # running sums of y, y^2, x*y (row 0: zeros)
        self.win = np.empty((n_w, 3, n_voxels), f4)
        self.num, self.den = np.empty((n_w, n_voxels), f4), np.empty((n_w, n_voxels), f4)

    def series(self, n_v: int) -> np.ndarray:
        """Where a call's voxel series (T, ``n_v``) may be written before ``self(x, that view)``."""
        return self.sums[1:, 0, :n_v]

    def _edges(self, cs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Running sums ``cs`` (T + 1, ...) at the ends and at the starts of the windows."""
        return cs[self.length : self.last + self.length : self.step], cs[0 : self.last : self.step]

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """SD over valid windows of z(``x`` (T,), ``y`` (T, V)); both should be centred (zero mean)."""
        kept, n_v = self.kept, y.shape[1]
        x = np.where(kept, x, 0.0)
        end, start = self._edges(np.concatenate([np.zeros((1, 3)), np.cumsum([x, x * x, kept], axis=1).T]))
        sx, sxx, n = (end - start).T
        n = np.maximum(n, 1.0)
        sums, win = self.sums[..., :n_v], self.win[..., :n_v]
        num, den = self.num[:, :n_v], self.den[:, :n_v]
        series = sums[1:, 0]
        if not np.shares_memory(y, sums):
            series[...] = y
        series[~kept] = 0.0
        np.multiply(series, series, out=sums[1:, 1])
        np.multiply(series, x[:, None].astype(np.float32), out=sums[1:, 2])
        running_sums(sums[1:], out=sums)  # in place
        np.subtract(*self._edges(sums), out=win)
        sy, syy, sxy = win[:, 0], win[:, 1], win[:, 2]
        np.multiply(sxy, n[:, None].astype(np.float32), out=num)
        np.multiply(sy, sx[:, None].astype(np.float32), out=den)
        num -= den
        np.multiply(syy, n[:, None].astype(np.float32), out=den)
        np.multiply(sy, sy, out=syy)
        den -= syy
        den *= np.clip(n * sxx - sx**2, 0.0, None)[:, None].astype(np.float32)
        den[den <= 0] = np.inf  # a constant window has r = 0
        np.sqrt(den, out=den)
        num /= den
        z = fisher_z(num, out=num)
        z[self.invalid] = 0.0
        total = z.sum(axis=0, dtype=np.float64)
        np.multiply(z, z, out=den)
        squares = den.sum(axis=0, dtype=np.float64)
        var = (squares - total**2 / self.n_valid) / max(1, self.n_valid - 1)
        return np.sqrt(np.clip(var, 0.0, None))


def _chunk_null(
    seed: np.ndarray,
    y: np.ndarray,
    design: WindowDesign,
    phases: np.ndarray,
    estimator: str,
    targets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Observed SD, the surrogates' SD summed and squared, and per-surrogate target sums, of voxels ``y``.

    The spectra are taken once; each surrogate only rotates their phases. The DC term is dropped (a
    constant changes no window's r, and zero-mean series keep the running sums exact).
    """
    n_t = y.shape[0]
    rows = design.plan.valid
    window_sd: Callable[[np.ndarray, np.ndarray], np.ndarray]
    if design.boxcar:
        step = int(design.plan.starts[1] - design.plan.starts[0]) if design.plan.starts.size > 1 else 1
        window_sd = BoxcarSD(design.kept, design.plan.length, step, rows, y.shape[1])
        y = np.asarray(y, dtype=np.float32)
    else:
        window_sd = partial(_window_sd, design, estimator=estimator)
        y = np.asarray(y, dtype=np.float64)
    seed_spec = np.fft.rfft(seed)
    spectrum = np.fft.rfft(y, axis=0)
    seed_spec[0] = 0.0
    spectrum[0] = 0.0
    observed = window_sd(np.fft.irfft(seed_spec, n=n_t), np.fft.irfft(spectrum, n=n_t, axis=0))
    total = np.zeros(y.shape[1])
    squares = np.zeros(y.shape[1])
    top = np.zeros(len(phases))
    rotation = np.exp(1j * phases).astype(spectrum.dtype)
    rotated = np.empty_like(spectrum)  # reused: fresh arrays of this size cost page faults
    # the surrogates go straight where the SD reads them (BoxcarSD's running-sum buffer)
    surrogate = window_sd.series(y.shape[1]) if isinstance(window_sd, BoxcarSD) else np.empty_like(y)
    for i, turn in enumerate(rotation):
        x = np.fft.irfft(seed_spec * turn, n=n_t)
        np.multiply(spectrum, turn[:, None], out=rotated)
        sd = window_sd(x, np.fft.irfft(rotated, n=n_t, axis=0, out=surrogate)).astype(np.float64)
        total += sd
        squares += sd * sd
        top[i] = sd[targets].sum()
    return observed, total, squares, top


def stationary_null(
    seed: np.ndarray,
    data: np.ndarray,
    window: WindowSpec,
    *,
    n_surrogates: int,
    kept: np.ndarray | None = None,
    censored_values: np.ndarray | None = None,
    seed_censored: np.ndarray | None = None,
    static: np.ndarray | None = None,
    random_seed: int = 0,
    chunk_size: int = 1000,
    n_jobs: int = 1,
) -> NullResult:
    """Excess dFC variability over ``n_surrogates`` phase-randomised surrogates, voxel by voxel.

    ``seed`` (T,) and ``data`` (T, V) are the denoised series given to
    :func:`workflows.dfc.sliding_window_dfc`, with the same ``window``. ``static`` (V,), the
    static Fisher z, selects the top targets (:data:`TOP_TARGET_FRACTION` of voxels by |z|) of the
    subject-level test; without it every voxel is a target. Voxels are processed in chunks small enough
    to stay in cache, on ``n_jobs`` threads; the result does not depend on either. ``censored_values``
    (censored volumes, V) and ``seed_censored`` (censored volumes,) are the cleaned series where the
    data hold zeros; the surrogates are made from the series with them put back.
    """
    seed = np.asarray(seed, dtype=np.float64)
    n_t, n_v = data.shape
    kept = np.ones(n_t, bool) if kept is None else np.asarray(kept, bool)
    design = window_design(kept, window)
    phases = surrogate_phases(n_t, n_surrogates, random_seed)
    if static is None:
        targets = np.ones(n_v, bool)
    else:
        k = max(1, round(TOP_TARGET_FRACTION * n_v))
        targets = np.zeros(n_v, bool)
        targets[np.argsort(-np.abs(static))[:k]] = True
    chunks = [slice(a, min(a + chunk_size, n_v)) for a in range(0, n_v, chunk_size)]

    if seed_censored is not None:
        seed = seed.copy()
        seed[~kept] = seed_censored

    def run(c: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        y = data[:, c]
        if censored_values is not None:  # a chunk-sized copy with the censored rows put back
            y = np.array(y)
            y[~kept] = censored_values[:, c]
        return _chunk_null(seed, y, design, phases, window.estimator, targets[c])

    with ThreadPoolExecutor(max(1, n_jobs)) as pool:
        parts = list(pool.map(run, chunks))  # in chunk order: sums are added in a fixed order
    observed = np.concatenate([p[0] for p in parts])
    null_sum = np.concatenate([p[1] for p in parts])
    null_sq = np.concatenate([p[2] for p in parts])
    top_null = np.sum([p[3] for p in parts], axis=0)
    null_mean = null_sum / n_surrogates
    null_sd = np.sqrt(
        np.clip(null_sq / n_surrogates - null_mean**2, 0.0, None) * n_surrogates / max(1, n_surrogates - 1)
    )
    excess = observed - null_mean
    top_observed = observed[targets].mean()
    top_null /= targets.sum()
    return NullResult(
        observed_sd=observed.astype(np.float32),
        null_mean=null_mean.astype(np.float32),
        null_sd=null_sd.astype(np.float32),
        excess=excess.astype(np.float32),
        top_targets=targets,
        top_excess=float(excess[targets].mean()),
        top_observed=float(top_observed),
        top_null_mean=float(null_mean[targets].mean()),
        top_p_value=float((1 + np.sum(top_null >= top_observed)) / (1 + n_surrogates)),
    )
