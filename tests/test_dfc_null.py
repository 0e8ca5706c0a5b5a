"""The stationary null on censored runs: unbiased when built from the continuous cleaned series."""

import numpy as np

from workflows import dfc
from workflows.denoise import clean_and_bandpass
from workflows.dfc_null import stationary_null
from workflows.params import DenoiseParams

TR = 2.0
N_T = 180  # 6 minutes at TR 2 s


def _burst_censoring(rng, n_t, fraction=0.25):
    """Censored volumes in bursts of 4-12 (head motion comes in bursts), ``fraction`` of the run."""
    kept = np.ones(n_t, bool)
    while (~kept).mean() < fraction:
        start = rng.integers(0, n_t - 12)
        kept[start : start + rng.integers(4, 13)] = False
    return kept


def _censored_stationary_run(seed_value):
    """A stationary run (static coupling 0.4 to a shared slow signal), spikes on censored volumes,
    cleaned as the denoiser does; returns what the dFC step receives."""
    rng = np.random.default_rng(seed_value)
    n_v = 25
    slow = np.cumsum(rng.standard_normal(N_T))  # red noise: the band-pass keeps its slow part
    raw = rng.standard_normal((N_T, n_v)) + 0.4 * (slow - slow.mean())[:, None] / slow.std()
    kept = _burst_censoring(rng, N_T)
    raw[~kept] += 5 * rng.standard_normal(((~kept).sum(), n_v))  # what censoring removes
    fill = np.zeros(((~kept).sum(), n_v), np.float32)
    data, _ = clean_and_bandpass(raw, None, kept, TR, DenoiseParams(), bandpassed=False, censored_values=fill)
    return data, fill, kept


def _null(data, fill, kept, i, continuous=True):
    seed_cols = np.zeros(data.shape[1], bool)
    seed_cols[:5] = True  # the seed: the mean of five voxels, as seed_dfc_images takes it
    seed = data[:, seed_cols].mean(axis=1)
    return stationary_null(
        seed,
        data[:, ~seed_cols],
        dfc.WindowSpec.volumes(22),  # 44 s at TR 2 s
        kept=kept,
        censored_values=fill[:, ~seed_cols] if continuous else None,
        seed_censored=fill[:, seed_cols].mean(axis=1) if continuous else None,
        n_surrogates=19,
        random_seed=i,
    )


def test_clean_and_bandpass_returns_the_censored_rows_scaled_as_the_kept_ones(rng):
    raw = rng.standard_normal((N_T, 4)).cumsum(axis=0)
    kept = _burst_censoring(rng, N_T)
    fill = np.zeros(((~kept).sum(), 4), np.float32)
    data, _ = clean_and_bandpass(raw, None, kept, TR, DenoiseParams(), bandpassed=False, censored_values=fill)
    assert (data[~kept] == 0).all()  # the data keep zeros on censored volumes
    continuous = data.copy()
    continuous[~kept] = fill
    steps = np.abs(np.diff(continuous, axis=0))  # band-passed series are smooth across the gaps
    assert steps.max() < 1.5
    assert np.abs(fill).max() > 0.1


def test_censoring_does_not_bias_the_null():
    """100 stationary runs with 25% of volumes censored in bursts: the mean excess (observed minus null
    mean SD of Fisher z) is within +-0.05 of zero and the 5% test rejects at about its nominal rate.
    The zero-filled series (the first version) are the positive control of this check: clearly biased.
    """
    runs = [_censored_stationary_run(i) for i in range(100)]
    nulls = [_null(*run, i) for i, run in enumerate(runs)]
    excess = np.mean([n.excess.mean() for n in nulls])
    rejected = np.mean([n.top_p_value <= 0.05 for n in nulls])
    assert abs(excess) < 0.05
    assert rejected <= 0.10  # nominal 5%; binomial SD over 100 runs is 2.2%
    zero_filled = [_null(*run, i, continuous=False) for i, run in enumerate(runs[:30])]
    assert np.mean([n.excess.mean() for n in zero_filled]) > excess + 0.02
