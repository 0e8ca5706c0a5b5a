"""The sensitivity statement: the smallest effect a cohort of this size could show above chance."""

from __future__ import annotations

import numpy as np
import pytest

from workflows.study_design import detectable_balanced_accuracy, detectable_correlation, detectable_effect


def _rejection_rate(true_ba: float, n_severe: int, n_mild: int, critical: float, rng) -> float:
    """Share of simulated cohorts (a fixed classifier, sensitivity = specificity = true_ba) whose
    observed balanced accuracy reaches ``critical``."""
    sens = rng.binomial(n_severe, true_ba, 40_000) / n_severe
    spec = rng.binomial(n_mild, true_ba, 40_000) / n_mild
    return float(np.mean((sens + spec) / 2 >= critical))


@pytest.mark.parametrize(("n_severe", "n_mild"), [(20, 49), (35, 35)])
def test_the_critical_score_holds_alpha_and_the_detectable_one_has_the_power(rng, n_severe, n_mild):
    out = detectable_balanced_accuracy(n_severe, n_mild)
    assert 0.5 < out["critical"] < out["detectable"] < 1
    # negative control: a classifier at chance reaches the critical score about 5% of the time
    assert _rejection_rate(0.5, n_severe, n_mild, out["critical"], rng) == pytest.approx(0.05, abs=0.02)
    # positive control: at the detectable balanced accuracy, about 80% of cohorts reach it
    assert _rejection_rate(out["detectable"], n_severe, n_mild, out["critical"], rng) == pytest.approx(
        0.8, abs=0.04
    )


def test_fewer_subjects_need_a_larger_effect():
    small, large = detectable_balanced_accuracy(6, 6), detectable_balanced_accuracy(40, 40)
    assert small["detectable"] > large["detectable"] + 0.1
    assert detectable_correlation(20) > detectable_correlation(70) > 0
    assert detectable_correlation(3) == 1.0


def test_the_correlation_bound_has_the_power(rng):
    n, r = 40, detectable_correlation(40)
    critical = np.tanh(1.6448536269514722 / np.sqrt(n - 3))  # one-sided 5% for r under the null
    cov = [[1, r], [r, 1]]
    hits = 0
    for _ in range(3000):
        a, b = rng.multivariate_normal([0, 0], cov, n).T
        hits += np.corrcoef(a, b)[0, 1] >= critical
    assert hits / 3000 == pytest.approx(0.8, abs=0.04)


def test_the_statement_names_the_counts_and_the_caveat():
    out = detectable_effect({"severe": 20, "mild-to-moderate": 49}, "classification")
    assert out["subjects_per_class"] == {"severe": 20, "mild-to-moderate": 49}
    assert "20 severe and 49 mild-to-moderate" in out["statement"]
    assert f"{out['detectable_balanced_accuracy']:.2f}" in out["statement"]
    assert "lower bounds" in out["statement"]
    regression = detectable_effect({"subjects": 69}, "regression")
    assert "69 subjects" in regression["statement"]
    assert regression["detectable_pearson_r"] == pytest.approx(detectable_correlation(69), abs=1e-3)
    assert (
        "no subject" in detectable_effect({"severe": 0, "mild-to-moderate": 9}, "classification")["statement"]
    )
