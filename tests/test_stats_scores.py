"""The NumPy scores of the subject bootstrap equal scikit-learn's (they replace it for speed only)."""

import math

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, r2_score, roc_auc_score

from workflows.stats import balanced_accuracy, classification_metrics, r2, regression_metrics, roc_auc


@pytest.mark.parametrize("seed", range(20))
def test_scores_equal_scikit_learn_with_ties_and_imbalance(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 60))
    y = rng.integers(0, 2, n)
    y[:2] = [0, 1]  # both classes
    prob = np.round(rng.random(n), 1)  # ties
    assert balanced_accuracy(y, prob >= 0.5) == pytest.approx(
        balanced_accuracy_score(y, prob >= 0.5), abs=1e-12
    )
    assert roc_auc(y, prob) == pytest.approx(roc_auc_score(y, prob), abs=1e-12)
    truth, pred = rng.normal(30, 15, n), rng.normal(30, 15, n)
    assert r2(truth, pred) == pytest.approx(r2_score(truth, pred), abs=1e-12)


def test_r2_of_a_constant_truth_and_the_metric_dictionaries():
    assert r2(np.full(4, 3.0), np.full(4, 3.0)) == 1.0
    assert r2(np.full(4, 3.0), np.arange(4.0)) == 0.0
    metrics = classification_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    assert metrics["balanced_accuracy"] == 0.5
    assert metrics["roc_auc"] == 0.75
    assert math.isnan(classification_metrics([1, 1], [0.2, 0.9])["roc_auc"])
    scores = regression_metrics(np.array([10.0, 20.0, 40.0]), np.array([12.0, 18.0, 40.0]), threshold=20)
    assert scores["mae"] == pytest.approx(4 / 3)
    assert scores["rmse"] == pytest.approx(np.sqrt(8 / 3))
