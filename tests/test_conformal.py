"""Conformal prediction sets and intervals (workflows.conformal): the threshold, coverage, no leakage."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

from workflows import conformal as cf
from workflows.cross_validation import conformal_fold
from workflows.params import GroupParams


def test_threshold_is_the_corrected_rank_and_infinite_when_too_few():
    scores = np.arange(1.0, 20.0)  # n = 19: rank ceil(20 * 0.9) = 18
    assert cf.conformal_threshold(scores, 0.9) == 18.0
    assert cf.conformal_threshold(scores[::-1], 0.9) == 18.0  # order does not matter
    assert cf.conformal_threshold(np.arange(1.0, 5.0), 0.9) == np.inf  # n = 4: rank 5 > n
    assert cf.conformal_threshold([], 0.9) == np.inf
    # five repeats of the same 19 scores, corrected for 19 units: the same threshold
    assert cf.conformal_threshold(np.tile(scores, 5), 0.9, n=19) == 18.0
    with pytest.raises(ValueError, match="coverage"):
        cf.conformal_threshold(scores, 1.0)


def test_sets_and_intervals_follow_the_threshold():
    prob = np.array([0.95, 0.5, 0.05, 0.7])
    sets = [cf.set_label(s) for s in cf.prediction_sets(prob, 0.6)]
    assert sets == ["severe", "mild-to-moderate|severe", "mild-to-moderate", "severe"]
    assert cf.set_label(cf.prediction_sets(np.array([0.5]), 0.2)[0]) == cf.EMPTY_SET
    # a unit is covered exactly when its true class is in its set
    y = np.array([1, 0, 1, 0])
    hit = cf.covered("classification", y, prob, 0.6)
    assert hit.tolist() == [("severe" if t else "mild-to-moderate") in s for t, s in zip(y, sets)]
    lower, upper = cf.intervals(np.array([3.0, 40.0]), 5.0, (0.0, 66.0))
    assert lower.tolist() == [0.0, 35.0]
    assert upper.tolist() == [8.0, 45.0]


def _linear_fit_predict(target):
    def fit(x_train, y_train, groups_train, x_test, seed=0):
        del groups_train, seed
        if target == "regression":
            return Ridge(alpha=1.0).fit(x_train, y_train).predict(x_test), []
        return LogisticRegression(C=1.0).fit(x_train, y_train).predict_proba(x_test)[:, 1], []

    return fit


def _data(rng, n, target):
    x = rng.normal(size=(n, 5))
    signal = x @ np.array([1.0, -0.5, 0.5, 0.0, 0.0])
    if target == "regression":
        return x, 30 + 8 * signal + rng.normal(scale=6.0, size=n)
    return x, (signal + rng.normal(scale=1.0, size=n) > 0).astype(int)


@pytest.mark.parametrize("target", ["classification", "regression"])
def test_empirical_coverage_holds_within_binomial_tolerance(target):
    """Cross-conformal with refit on synthetic data: out-of-fold scores of 80 training subjects, the model
    refit on all of them, 40 new subjects; 30 draws (1,200 test subjects) must cover near 90%."""
    rng = np.random.default_rng(7)
    fit_predict = _linear_fit_predict(target)
    hits = []
    for draw in range(30):
        x, y = _data(rng, 120, target)
        train, test = np.arange(80), np.arange(80, 120)
        groups = train.astype(str)
        scores = cf.out_of_fold_scores(
            fit_predict, x[train], y[train], groups, groups, target=target, seed=draw
        )
        assert len(scores) == 80  # one per training subject
        threshold = cf.conformal_threshold(scores, 0.9)
        predicted = fit_predict(x[train], y[train], groups, x[test])[0]
        hits += cf.covered(target, y[test], predicted, threshold).tolist()
    coverage = float(np.mean(hits))
    # split conformal covers between 0.9 and 0.9 + 1/(n + 1); around that, the binomial tolerance of
    # 1,200 subjects (3 SD), widened by the spread of the 30 calibration draws
    tolerance = 3 * np.sqrt(0.9 * 0.1 / len(hits)) + 3 * np.sqrt(0.9 * 0.1 / 80 / 30)
    assert 0.9 - tolerance < coverage < 0.9 + 1 / 81 + tolerance, coverage


def test_calibration_never_sees_the_test_subject(rng):
    """conformal_fold refits the model only on the fold's training subjects, never on a test one."""
    n = 30
    x, y = _data(rng, n, "classification")
    groups = np.array([f"s{i // 2}" for i in range(n)])  # two samples (windows) per subject
    test = np.flatnonzero(np.isin(groups, ["s0", "s3", "s7"]))
    fold = {"repeat": 0, "fold": 0, "train": np.setdiff1d(np.arange(n), test), "test": test}
    seen = []
    fit = _linear_fit_predict("classification")

    def spy(idx_train, y_train, g_train, idx_test, seed=0):
        seen.extend(np.concatenate([idx_train, idx_test]).tolist())
        return fit(x[idx_train], y_train, g_train, x[idx_test])

    predictions = [
        {"participant_id": g, "model": "parcel", "y_true": int(y[groups == g][0]), "prob_severe": 0.6}
        for g in np.unique(groups[test])
    ]
    y_unit = np.array([y[groups == g][0] for g in groups])
    record = conformal_fold(predictions, spy, fold, y_unit, groups, groups, GroupParams())
    assert seen
    assert not set(seen) & set(test.tolist())
    assert record["n_calibration"] == 12  # one score per training subject, not per sample
    assert all(r["prediction_set"] in ("severe", "mild-to-moderate|severe", "none") for r in predictions)
    assert all(r["conformal_covered"] in (0, 1) for r in predictions)


def test_exported_calibration_round_trip():
    rows = [
        {"participant_id": f"sub-{i}", "model": "parcel", "y_true": 30.0, "predicted_score": 30.0 + d}
        for i, d in enumerate(range(-9, 10))
    ] + [{"participant_id": "sub-0", "model": "cnn", "y_true": 30.0, "predicted_score": 0.0}]
    record = cf.cv_calibration(rows, "parcel", "regression", "predicted_score", 0.9)
    assert record["n_calibration"] == 19
    assert record["threshold"] == 9.0
    out = cf.apply_calibration(record, "regression", 5.0, cf.UL_FMA_RANGE)
    assert (out["ul_fma_lower"], out["ul_fma_upper"]) == (0.0, 14.0)
    probs = [
        {"participant_id": f"sub-{i}", "model": "parcel", "y_true": 1, "prob_severe": 0.8} for i in range(20)
    ]
    record = cf.cv_calibration(probs, "parcel", "classification", "prob_severe", 0.9)
    assert cf.apply_calibration(record, "classification", 0.9)["prediction_set"] == "severe"
    assert cf.apply_calibration(record, "classification", 0.5)["prediction_set"] == cf.EMPTY_SET


def test_the_calibration_is_bound_to_the_model_id_and_old_cards_keep_theirs():
    from workflows.model_io import PREDICTION_FIELDS, model_id

    old = {"WeightsSHA256": "ab" * 32, **{key: {"x": 1} for key in PREDICTION_FIELDS}}
    with_calibration = {**old, "conformal": {"coverage": 0.9, "scores": [0.1, 0.2]}}
    edited = {**old, "conformal": {"coverage": 0.9, "scores": [0.1, 0.9]}}
    assert model_id(old) == model_id({**old, "Name": "renamed"})  # unbound fields change nothing
    assert len({model_id(old), model_id(with_calibration), model_id(edited)}) == 3


def test_external_validation_reports_the_coverage_of_labelled_new_subjects():
    import pandas as pd

    from bids_app.reporting import conformal_validation

    table = pd.DataFrame(
        {
            "participant_id": ["sub-1", "sub-2", "sub-3", "sub-4"],
            "class_true": ["severe", "severe", "mild-to-moderate", None],
            "prediction_set": ["severe", "mild-to-moderate", "mild-to-moderate|severe", "severe"],
            "conformal_coverage": ["0.9"] * 4,
        }
    )
    out = conformal_validation(table)["conformal"]
    assert out == {"stated_coverage": 0.9, "n_labelled": 3, "empirical_coverage": 2 / 3}
    scores = pd.DataFrame(
        {
            "ul_fma_true": ["10", "50", "n/a"],
            "ul_fma_lower": ["5", "10", "0"],
            "ul_fma_upper": ["15", "40", "66"],
            "conformal_coverage": ["0.8"] * 3,
        }
    )
    assert conformal_validation(scores)["conformal"]["empirical_coverage"] == 0.5
    assert conformal_validation(table.drop(columns="conformal_coverage")) == {}


def test_the_reports_say_the_set_and_the_coverage_in_words():
    from bids_app.reports.group import clinical_and_conformal_sentences
    from bids_app.reports.participant import _prediction_context

    both = _prediction_context(
        {"prob_severe": 0.5, "prediction_set": "mild-to-moderate|severe", "conformal_coverage": 0.9}
    )
    assert both["conformal"].startswith("mild-to-moderate or severe (90% conformal prediction set;")
    assert "cannot tell" in both["conformal"]
    empty = _prediction_context({"prob_severe": 0.5, "prediction_set": "none", "conformal_coverage": 0.9})
    assert empty["conformal"].startswith("no class at 90%")
    score = _prediction_context(
        {"predicted_ul_fma": 30.0, "ul_fma_lower": 18.0, "ul_fma_upper": 42.0, "conformal_coverage": 0.8}
    )
    assert score["conformal"].startswith("UL-FMA between 18")
    assert _prediction_context({"prob_severe": 0.5})["conformal"] is None  # a card without calibration
    summary = {
        "primary_model": "parcel",
        "target": "classification",
        "conformal": {
            "coverage": 0.9,
            "empirical_coverage": 0.88,
            "n_predictions": 50,
            "by_class": {"mild-to-moderate": 0.9, "severe": 0.85},
            "set_shares": {"single class": 0.7},
        },
    }
    (sentence,) = clinical_and_conformal_sentences(summary)
    assert "stated coverage 90%" in sentence
    assert "held the truth for 88% of 50 held-out predictions (mild-to-moderate 90%, severe 85%)" in sentence
