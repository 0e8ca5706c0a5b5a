"""The inverse-power-law learning curve (workflows.learning_curve.fit_learning_curve): recovery of a
known curve, "not reached" on flat and falling curves, the limit on extrapolation."""

from __future__ import annotations

import numpy as np
import pytest

from workflows.learning_curve import (
    MAX_EXTRAPOLATION,
    fit_inverse_power_law,
    fit_learning_curve,
    inverse_power_law,
    size_for_target,
)

SIZES = [40, 60, 80, 120, 160]


def test_a_known_curve_is_recovered():
    a, b, c = 0.86, 1.5, 0.5
    fit = fit_inverse_power_law(SIZES, inverse_power_law(np.array(SIZES), a, b, c))
    assert fit["a"] == pytest.approx(a, abs=1e-3)
    assert fit["b"] == pytest.approx(b, rel=0.02)
    assert fit["c"] == pytest.approx(c, rel=0.02)
    assert fit["rmse"] < 1e-4
    # reaches 0.8 at (b / (a - 0.8))**(1/c) = 625 subjects, within four times the largest size
    assert size_for_target(a, b, c, 0.8) == pytest.approx(625)
    summary = fit_learning_curve(SIZES, [[v] for v in inverse_power_law(np.array(SIZES), a, b, c)], 0.8)
    assert summary["n_target"] == pytest.approx(625, rel=0.02)
    assert summary["extrapolation"] == pytest.approx(625 / 160, rel=0.02)
    assert summary["supported"]


def test_noisy_draws_give_an_interval_around_the_true_crossing():
    rng = np.random.default_rng(1)
    a, b, c, target = 0.9, 2.0, 0.6, 0.8
    truth = size_for_target(a, b, c, target)  # about 105: inside the measured range
    replicates = [inverse_power_law(n, a, b, c) + rng.normal(0, 0.02, 3) for n in SIZES]
    summary = fit_learning_curve(SIZES, replicates, target, n_boot=300)
    low, high = summary["n_target_ci"]
    assert low is not None
    assert high is not None
    assert low <= truth <= high
    assert summary["a_ci"][0] <= summary["a"] <= summary["a_ci"][1]


def test_a_flat_curve_is_not_reached():
    rng = np.random.default_rng(0)
    replicates = [0.6 + rng.normal(0, 0.01, 3) for _ in SIZES]
    summary = fit_learning_curve(SIZES, replicates, 0.8, n_boot=200)
    assert summary["n_target"] is None
    assert summary["extrapolation"] is None
    assert not summary["supported"]
    assert summary["a"] < 0.65
    assert summary["reached_share"] == 0.0
    assert summary["n_target_ci"] == [None, None]


def test_a_flat_curve_above_the_target_is_reached_at_every_size():
    rng = np.random.default_rng(0)
    replicates = [0.92 + rng.normal(0, 0.01, 3) for _ in SIZES]
    summary = fit_learning_curve(SIZES, replicates, 0.8, n_boot=200)
    assert summary["b"] == 0.0
    assert summary["n_target"] == 0.0
    assert summary["supported"]
    assert summary["reached_share"] == 1.0
    assert summary["smallest_n"] == min(SIZES)
    assert size_for_target(0.92, 0.0, 1.0, 0.8) == 0.0
    assert size_for_target(0.7, 0.0, 1.0, 0.8) is None


def test_a_falling_curve_is_fitted_flat_and_a_stays_below_one():
    falling = fit_inverse_power_law(SIZES, [0.7, 0.68, 0.66, 0.64, 0.62])
    assert falling["b"] == 0.0
    assert falling["a"] == pytest.approx(0.66)
    steep = fit_inverse_power_law(SIZES, [0.5, 0.8, 0.95, 1.0, 1.0])
    assert steep["a"] <= 1.0


def test_a_far_crossing_is_flagged_as_unsupported():
    a, b, c = 0.82, 0.5, 0.3  # reaches 0.8 near 22,000 subjects
    values = inverse_power_law(np.array(SIZES), a, b, c)
    summary = fit_learning_curve(SIZES, [[v] for v in values], 0.8, n_boot=0)
    assert summary["n_target"] > MAX_EXTRAPOLATION * max(SIZES)
    assert not summary["supported"]
    assert summary["caveats"] == [f"beyond {MAX_EXTRAPOLATION:g} times the largest measured size"]


def test_three_sizes_do_not_support_an_extrapolation():
    sizes = [40, 60, 80]
    values = inverse_power_law(np.array(sizes), 0.86, 1.5, 0.5)  # crosses 0.8 at 625
    summary = fit_learning_curve(sizes, [[v] for v in values], 0.8, n_boot=0)
    assert summary["n_target"] is not None
    assert not summary["supported"]
    assert summary["caveats"] == [
        f"beyond {MAX_EXTRAPOLATION:g} times the largest measured size",
        "fewer than four sizes for three parameters",
    ]


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="two sizes"):
        fit_inverse_power_law([40], [0.6])
    with pytest.raises(ValueError, match="replicate"):
        fit_learning_curve([40, 80], [[0.6], []], 0.8)
