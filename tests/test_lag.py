"""Hemodynamic lag maps: known planted lags are recovered (sign, sub-TR accuracy, censoring, bounds)."""

import math

import numpy as np
import pytest

from workflows.lag import lag_map, lag_summary
from workflows.params import LAG_FLAG_S
from workflows.utils.errors import InputError

TR = 2.0
N_VOLS = 300
LAGS = (-3.3, -1.0, 0.0, 0.7, 1.5, 2.4)
_DT = 0.05  # fine grid (s) on which fractional delays are interpolated
_MARGIN = 30.0  # s of signal before the first and after the last volume


def _smooth_signal(rng, duration):
    """Band-limited (0.01-0.1 Hz, BOLD-like) Gaussian noise on the fine grid, unit variance."""
    n = round(duration / _DT)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, _DT)
    spectrum[(freqs < 0.01) | (freqs > 0.1)] = 0
    signal = np.fft.irfft(spectrum, n)
    return signal / signal.std()


def _delayed(rng, lags, *, noise=0.3, n_vols=N_VOLS):
    """Reference sampled every TR and voxels y(t) = x(t - lag) + noise (positive lag: the voxel is later)."""
    fine = _smooth_signal(rng, n_vols * TR + 2 * _MARGIN)
    t_fine = np.arange(fine.size) * _DT
    t_vol = _MARGIN + np.arange(n_vols) * TR
    reference = np.interp(t_vol, t_fine, fine)
    data = np.stack([np.interp(t_vol - lag, t_fine, fine) for lag in lags], axis=1)
    return reference, data + noise * rng.standard_normal(data.shape)


def test_planted_lags_are_recovered_with_their_sign(rng):
    reference, data = _delayed(rng, LAGS)
    result = lag_map(data, reference, TR, search_s=6.0)
    assert result.lag.dtype == np.float32
    assert result.peak_r.dtype == np.float32
    assert result.at_bound.dtype == bool
    np.testing.assert_allclose(result.lag, LAGS, atol=0.5)
    assert result.lag[LAGS.index(1.5)] > 1.0  # the voxel delayed by +1.5 s lags behind: positive
    assert result.lag[LAGS.index(-3.3)] < -2.8
    assert np.all(result.peak_r > 0.8)
    assert not result.at_bound.any()


def test_sub_tr_refinement_beats_integer_shifts(rng):
    # A half-TR lag sits between two shifts: without the parabola it would be off by a full second.
    reference, data = _delayed(rng, [1.0] * 20, noise=0.2)
    lag = lag_map(data, reference, TR).lag
    assert abs(float(np.median(lag)) - 1.0) < 0.3


def test_matches_pearson_r_on_the_kept_pairs(rng):
    reference, data = _delayed(rng, [0.7, -1.0], noise=0.5, n_vols=120)
    kept = rng.random(120) > 0.2
    result = lag_map(data, reference, TR, search_s=2.0, kept=kept)
    # K = 1: shifts -1, 0, 1 volumes; r at each by a plain loop, voxel sample t + s against reference t.
    for v in range(2):
        rs = []
        for s in (-1, 0, 1):
            t = np.arange(max(0, -s), min(120, 120 - s))
            pairs = t[kept[t] & kept[t + s]]
            rs.append(np.corrcoef(reference[pairs], data[pairs + s, v])[0, 1])
        assert result.peak_r[v] == pytest.approx(max(rs), abs=1e-5)


def test_censored_volumes_are_not_used(rng):
    reference, data = _delayed(rng, LAGS)
    kept = rng.random(N_VOLS) > 0.25
    kept[100:130] = False
    # Huge spikes in the censored volumes: they wreck the lags unless censoring is honoured.
    bad = ~kept
    reference[bad] += 50 * rng.standard_normal(bad.sum())
    data[bad] += 50 * rng.standard_normal((bad.sum(), data.shape[1]))
    result = lag_map(data, reference, TR, kept=kept)
    np.testing.assert_allclose(result.lag, LAGS, atol=0.5)
    assert np.all(result.peak_r > 0.8)
    spoiled = lag_map(data, reference, TR)  # the same spikes, not censored
    assert np.any(np.abs(spoiled.lag - np.array(LAGS)) > 0.5) or np.all(spoiled.peak_r < 0.8)


def test_non_finite_censored_volumes_are_harmless(rng):
    reference, data = _delayed(rng, LAGS)
    kept = np.ones(N_VOLS, dtype=bool)
    kept[[5, 50, 51, 200]] = False
    reference[5] = np.nan
    data[50] = np.inf
    data[200, 2] = np.nan
    result = lag_map(data, reference, TR, kept=kept)
    np.testing.assert_allclose(result.lag, LAGS, atol=0.5)
    data[60, 3] = np.nan  # a kept NaN spoils only its own voxel
    result = lag_map(data, reference, TR, kept=kept)
    assert np.isnan(result.lag[3])
    assert np.isfinite(np.delete(result.lag, 3)).all()


def test_noise_voxel_has_low_peak_r(rng):
    reference, data = _delayed(rng, [0.7])
    noise = rng.standard_normal((N_VOLS, 1))
    result = lag_map(np.hstack([data, noise]), reference, TR)
    assert result.peak_r[0] > 0.8
    assert result.peak_r[1] < 0.25


def test_lag_beyond_the_search_range_is_flagged_at_bound(rng):
    reference, data = _delayed(rng, [9.0, -9.0, 1.5])
    result = lag_map(data, reference, TR, search_s=6.0)
    assert result.at_bound.tolist() == [True, True, False]
    assert result.lag[0] == pytest.approx(6.0)  # the last shift, unrefined
    assert result.lag[1] == pytest.approx(-6.0)


def test_constant_voxel_gives_nan_not_an_error(rng):
    reference, data = _delayed(rng, [0.0])
    result = lag_map(np.hstack([data, np.full((N_VOLS, 1), 3.7)]), reference, TR)
    assert np.isfinite(result.lag[0])
    assert np.isnan(result.lag[1])
    assert np.isnan(result.peak_r[1])
    assert not result.at_bound[1]


@pytest.mark.parametrize(
    ("kwargs", "where"),
    [
        ({"search_s": 1.0}, "search_s"),  # shorter than one TR
        ({"kept": np.arange(N_VOLS) < 12}, "search_s"),  # too few kept pairs at the largest shifts
        ({"kept": np.ones(N_VOLS - 1, dtype=bool)}, "kept"),
    ],
)
def test_invalid_inputs_raise_input_error(rng, kwargs, where):
    reference, data = _delayed(rng, [0.0], n_vols=N_VOLS)
    with pytest.raises(InputError) as exc:
        lag_map(data, reference, TR, **kwargs)
    assert exc.value.where == where


def test_summary_of_a_planted_ipsilesional_lag(rng):
    n_ipsi, n_contra, n_noise = 30, 30, 10
    reference, data = _delayed(rng, [1.5] * n_ipsi + [0.0] * n_contra)
    noise = rng.standard_normal((N_VOLS, n_noise))  # poorly correlated ipsilesional voxels: left out
    result = lag_map(np.hstack([data, noise]), reference, TR)
    ipsi = np.r_[np.ones(n_ipsi, bool), np.zeros(n_contra, bool), np.ones(n_noise, bool)]
    contra = np.r_[np.zeros(n_ipsi, bool), np.ones(n_contra, bool), np.zeros(n_noise, bool)]
    summary = lag_summary(result.lag, result.peak_r, ipsi, contra)
    assert list(summary) == ["ipsi_median_s", "contra_median_s", "ipsi_minus_contra_s", "n_ipsi", "n_contra"]
    assert summary["ipsi_minus_contra_s"] == pytest.approx(1.5, abs=0.5)
    assert summary["ipsi_minus_contra_s"] > LAG_FLAG_S
    assert summary["n_ipsi"] == n_ipsi
    assert summary["n_contra"] == n_contra
    empty = lag_summary(result.lag, result.peak_r, np.zeros_like(ipsi), contra)
    assert math.isnan(empty["ipsi_median_s"])
    assert math.isnan(empty["ipsi_minus_contra_s"])
    assert empty["n_ipsi"] == 0
    assert empty["contra_median_s"] == pytest.approx(summary["contra_median_s"])


def test_summary_rejects_mismatched_masks():
    with pytest.raises(InputError):
        lag_summary(np.zeros(5), np.ones(5), np.ones(4, bool), np.ones(5, bool))
