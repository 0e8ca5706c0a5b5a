"""In-CV calibration of the exported model: intercept, slope and scaled Brier, with subject bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from workflows.stats import calibration_statistics, calibration_summary, regression_calibration


def _risk_cohort(rng: np.random.Generator, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """True log-odds of severe and labels drawn from them."""
    logit = rng.normal(0.0, 1.5, n)
    return logit, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)


def _prob(logit: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-logit))


def test_true_risks_are_calibrated_and_overfit_risks_are_not(rng):
    logit, y = _risk_cohort(rng)
    good = calibration_statistics(y, _prob(logit))  # positive control: the true risks
    assert good["calibration_slope"] == pytest.approx(1.0, abs=0.3)
    assert good["calibration_intercept"] == pytest.approx(0.0, abs=0.3)
    assert good["scaled_brier"] > 0.1
    overfit = calibration_statistics(y, _prob(3 * logit))  # negative control: too extreme
    assert overfit["calibration_slope"] == pytest.approx(1 / 3, abs=0.1)
    shifted = calibration_statistics(y, _prob(logit - 2))  # under-predicts severe
    assert shifted["calibration_intercept"] > 1.0


def test_intercept_and_slope_match_an_unpenalised_logistic_fit(rng):
    from scipy.optimize import minimize

    logit, y = _risk_cohort(rng, 120)
    p = _prob(0.5 * logit + 0.7)
    lp = np.log(p / (1 - p))

    def nll(beta: np.ndarray, offset: np.ndarray, x: np.ndarray) -> float:
        eta = beta[0] + beta[-1] * x + offset
        return float(np.sum(np.logaddexp(0, eta) - y * eta))

    slope = minimize(nll, [0.0, 1.0], args=(np.zeros_like(lp), lp), method="BFGS").x
    intercept = minimize(lambda b: nll(np.array([b[0], 0.0]), lp, lp), [0.0], method="BFGS").x
    stats = calibration_statistics(y, p)
    assert stats["calibration_slope"] == pytest.approx(slope[1], abs=1e-3)
    assert stats["calibration_intercept"] == pytest.approx(intercept[0], abs=1e-3)


def test_the_prevalence_scores_zero_and_perfect_separation_has_no_slope():
    y = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    flat = calibration_statistics(y, np.full(8, 0.5))
    assert flat["brier"] == pytest.approx(0.25)
    assert flat["scaled_brier"] == pytest.approx(0.0)
    assert flat["calibration_intercept"] == pytest.approx(0.0, abs=1e-6)
    separated = calibration_statistics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    assert math.isnan(separated["calibration_slope"])  # no finite maximum-likelihood estimate
    assert math.isnan(calibration_statistics([1, 1, 1], [0.2, 0.5, 0.9])["scaled_brier"])


def test_regression_calibration(rng):
    y = rng.normal(30, 10, 200)
    assert regression_calibration(y, y)["calibration_slope"] == pytest.approx(1.0)
    centre = y.mean()
    shrunk = regression_calibration(y, centre + 0.5 * (y - centre) + 2)  # too modest, 2 points high
    assert shrunk["calibration_slope"] == pytest.approx(2.0)
    assert shrunk["calibration_in_the_large"] == pytest.approx(-2.0)
    assert math.isnan(regression_calibration(y, np.full(200, 30.0))["calibration_slope"])


def test_calibration_summary_pools_repeats_and_draws_subjects_with_their_sessions(rng):
    logit, y = _risk_cohort(rng, 60)
    rows = [
        {
            "participant_id": f"sub-{i // 2:02d}_ses-{i % 2}",
            "repeat": r,
            "fold": 0,
            "model": name,
            "y_true": int(y[i // 2]),
            "prob_severe": float(_prob(logit[i // 2] + 0.1 * r)),
        }
        for r in range(2)
        for i in range(120)
        for name in ("parcel", "cnn")
    ]
    clusters = {f"sub-{i // 2:02d}_ses-{i % 2}": f"{i // 2:02d}" for i in range(120)}
    out = calibration_summary(rows, "parcel", "classification", n_boot=200, clusters=clusters)
    assert out is not None
    assert out["model"] == "parcel"
    slope = out["calibration_slope"]
    assert slope["ci95"][0] < slope["value"] < slope["ci95"][1]
    assert slope["ci95"][0] < 1.0 < slope["ci95"][1]
    assert out["scaled_brier"]["value"] > 0
    # the whole-subject bootstrap is wider than one that treats the two sessions as two patients
    units = calibration_summary(rows, "parcel", "classification", n_boot=200)
    width = np.diff(slope["ci95"])[0]
    assert width > 1.2 * np.diff(units["calibration_slope"]["ci95"])[0]
    assert calibration_summary(rows, "baseline", "classification") is None
