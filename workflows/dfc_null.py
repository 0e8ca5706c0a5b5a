"""A stationary null for sliding-window dFC: multivariate phase-randomised surrogates.

A surrogate keeps every series' power spectrum and every cross-spectrum (hence the static correlation
with the seed) but is stationary: the Fourier phases of all series are shifted by the same random
angle at each frequency (Prichard & Theiler 1994; used for dFC by Zalesky et al. 2014 and Hindriks et
al. 2016). The SD over windows of a surrogate is the variability a stationary process with this
subject's spectra and static FC would show; the *excess* of the observed SD over the surrogates,

.. math::  \\text{excess} = (SD_{obs} - \\overline{SD}_{surr}) / \\operatorname{sd}(SD_{surr}),

is the dFC variability that sampling alone does not explain (``stat-dfcexcess``, in surrogate SD units).

Censored volumes hold zeros in the denoised data; they keep zero weight in every window, but they are
part of the series whose phases are randomised (a run with much censoring has a slightly whiter null).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from workflows.dfc import WindowDesign, centre_kept, design_corr, fisher_z, window_design

#: Voxels with the strongest static coupling to the seed whose excess is tested per subject.
TOP_TARGET_FRACTION = 0.01


@dataclass(frozen=True)
class NullResult:
    """Observed SD, the surrogates' mean and SD per voxel, their excess, and the top-target test."""

    observed_sd: np.ndarray  # (V,)
    null_mean: np.ndarray  # (V,)
    null_sd: np.ndarray  # (V,)
    excess: np.ndarray  # (V,) (observed - null mean) / null SD
    top_targets: np.ndarray  # (V,) bool: the voxels of the subject-level test
    top_excess: float  # mean excess over the top targets
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


def stationary_null(
    seed: np.ndarray,
    data: np.ndarray,
    *,
    length: int,
    step: int = 1,
    shape: str = "rectangular",
    kept: np.ndarray | None = None,
    min_coverage: float = 0.8,
    estimator: str = "weighted",
    static: np.ndarray | None = None,
    n_surrogates: int = 100,
    random_seed: int = 0,
    chunk_size: int = 5000,
) -> NullResult:
    """Excess dFC variability over ``n_surrogates`` phase-randomised surrogates, voxel by voxel.

    ``seed`` (T,) and ``data`` (T, V) are the denoised series given to
    :func:`workflows.dfc.sliding_window_dfc`, with the same window parameters. ``static`` (V,), the
    static Fisher z, selects the top targets (:data:`TOP_TARGET_FRACTION` of voxels by |z|) of the
    subject-level test; without it every voxel is a target.
    """
    seed = np.asarray(seed, dtype=np.float64)
    n_t, n_v = data.shape
    kept = np.ones(n_t, bool) if kept is None else np.asarray(kept, bool)
    design = window_design(kept, length, step, shape, min_coverage)
    phases = surrogate_phases(n_t, n_surrogates, random_seed)
    if static is None:
        targets = np.ones(n_v, bool)
    else:
        k = max(1, round(TOP_TARGET_FRACTION * n_v))
        targets = np.zeros(n_v, bool)
        targets[np.argsort(-np.abs(static))[:k]] = True
    observed = np.empty(n_v)
    null_sum = np.zeros(n_v)
    null_sq = np.zeros(n_v)
    top_null = np.zeros(n_surrogates)
    for start in range(0, n_v, chunk_size):
        stop = min(start + chunk_size, n_v)
        block = np.column_stack([seed, np.asarray(data[:, start:stop], dtype=np.float64)])
        spectrum = np.fft.rfft(block, axis=0)  # once per chunk; each surrogate only rotates phases
        observed[start:stop] = _window_sd(design, block[:, 0], block[:, 1:], estimator)
        in_chunk = targets[start:stop]
        for i in range(n_surrogates):
            rotated = spectrum * np.exp(1j * phases[i])[:, None]
            surrogate = np.fft.irfft(rotated, n=n_t, axis=0)
            sd = _window_sd(design, surrogate[:, 0], surrogate[:, 1:], estimator)
            sd = sd.astype(np.float64)
            null_sum[start:stop] += sd
            null_sq[start:stop] += sd * sd
            top_null[i] += sd[in_chunk].sum()
    null_mean = null_sum / n_surrogates
    null_sd = np.sqrt(
        np.clip(null_sq / n_surrogates - null_mean**2, 0.0, None) * n_surrogates / max(1, n_surrogates - 1)
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = np.where(null_sd > 0, (observed - null_mean) / null_sd, 0.0)
    top_observed = observed[targets].mean()
    top_null /= targets.sum()
    return NullResult(
        observed_sd=observed.astype(np.float32),
        null_mean=null_mean.astype(np.float32),
        null_sd=null_sd.astype(np.float32),
        excess=excess.astype(np.float32),
        top_targets=targets,
        top_excess=float(excess[targets].mean()),
        top_p_value=float((1 + np.sum(top_null >= top_observed)) / (1 + n_surrogates)),
    )
