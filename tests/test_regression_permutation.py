"""The UL-FMA regression's permutation test: scores exchanged between whole subjects, MAE as statistic."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Ridge

from workflows import permutation
from workflows.cross_validation import cross_validate, subject_folds
from workflows.params import CVParams, GroupParams
from workflows.stats import fold_metrics_for, permutation_p_value, summarise_regression_models


def _ridge(x_train, y_train, g_train, x_test, seed=0):
    """A cheap linear model of the score (the test needs a learner, not the nested one)."""
    return Ridge(alpha=1.0).fit(x_train, y_train).predict(x_test), []


def _cohort(rng: np.random.Generator, planted: bool, n_subjects: int = 30, n_sessions: int = 2):
    """Subjects with ``n_sessions`` near-identical sessions; the score follows feature 0 when planted."""
    subjects = np.repeat([f"s{i:02d}" for i in range(n_subjects)], n_sessions)
    units = np.array([f"{s}_ses-{j % n_sessions}" for j, s in enumerate(subjects)])
    trait = rng.normal(size=(n_subjects, 4))
    x = np.repeat(trait, n_sessions, axis=0) + 0.05 * rng.normal(size=(len(units), 4))
    signal = trait[:, 0] if planted else rng.normal(size=n_subjects)
    score = np.clip(33 + 15 * signal + rng.normal(scale=3, size=n_subjects), 0, 66)
    return x, np.repeat(score, n_sessions), units, subjects


def _p_value(rng: np.random.Generator, planted: bool, n_perm: int = 19) -> float:
    x, y, units, subjects = _cohort(rng, planted)
    draw = {
        "n_folds": 5,
        "seed": 3,
        "split_groups": subjects,
        "severe_threshold": 20.0,
    }
    folds = subject_folds((y <= 20).astype(int), subjects, 5, 1, 3)
    _, metrics, _ = cross_validate(
        x,
        y,
        units,
        folds,
        {"ridge": _ridge},
        split_groups=subjects,
        metrics=fold_metrics_for("regression", 20.0),
        value="predicted_score",
    )
    observed = summarise_regression_models(metrics)["ridge"]["mae"]["mean"]
    null = [
        permutation.permutation_nulls(x, y, units, {"ridge": _ridge}, index=i, **draw)["ridge"]
        for i in range(n_perm)
    ]
    assert all(3 < v < 40 for v in null)  # MAE in UL-FMA points, not a balanced accuracy
    return permutation_p_value(observed, null, lower_is_better=True)


def test_a_planted_score_passes_and_a_null_score_does_not(rng):
    assert _p_value(rng, planted=True) == pytest.approx(1 / 20)  # positive control: the smallest p
    assert _p_value(rng, planted=False) > 0.2  # negative control: no relation, no evidence


def test_scores_move_with_their_subject_and_folds_follow_the_permuted_class(monkeypatch, rng):
    x, y, units, subjects = _cohort(rng, planted=True)
    seen = {}

    def spy(x, y_perm, groups, folds, models, split_groups=None, **kwargs):
        seen.update(y=y_perm, folds=folds, kwargs=kwargs)
        return [], [{"model": "ridge", "mae": 1.0}], []

    monkeypatch.setattr(permutation, "cross_validate", spy)
    permutation.permutation_nulls(
        x,
        y,
        units,
        {"ridge": _ridge},
        n_folds=3,
        seed=0,
        index=0,
        split_groups=subjects,
        severe_threshold=20.0,
    )
    y_perm = seen["y"]
    assert sorted(y_perm) == sorted(y)  # the same scores, exchanged
    assert not np.array_equal(y_perm, y)
    for s in np.unique(subjects):
        assert len(set(y_perm[subjects == s])) == 1  # a subject's sessions keep one score
    assert seen["kwargs"]["value"] == "predicted_score"
    for fold in seen["folds"]:  # stratified by the permuted class: both classes in every test fold
        assert len(set((y_perm[fold["test"]] <= 20).tolist())) == 2


def test_the_summary_counts_lower_mae_as_better():
    params = GroupParams(target="regression", cv=CVParams(n_permutations=4))
    models = {"parcel": {"mae": {"mean": 8.0}}}
    null = [{"parcel": v} for v in (12.0, 11.0, 7.5, 13.0)]
    out = permutation.permutation_summary(models, null, params)
    assert out["p_value"] == pytest.approx(2 / 5)  # one null draw at least as good (7.5 <= 8)
    assert out["models"]["parcel"]["null_mae"] == [12.0, 11.0, 7.5, 13.0]
    metric, draws, observed = permutation.null_scores(out)
    assert (metric, len(draws), observed) == ("mae", 4, 8.0)
    assert "UL-FMA scores permuted between subjects" in out["scheme"]
    assert permutation_p_value(0.6, [0.5, 0.7]) == pytest.approx(2 / 3)  # classification unchanged
