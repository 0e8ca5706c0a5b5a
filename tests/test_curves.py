"""Decision curves, learning curves and the sample-size curve of the group level."""

from __future__ import annotations

import numpy as np
import pytest

from workflows.cross_validation import cross_validate, fold_learning_curve, subject_folds
from workflows.decision_curve import (
    DCA_THRESHOLDS,
    beneficial_thresholds,
    decision_curves,
    decision_summary,
    threshold_ranges,
)
from workflows.learning_curve import learning_curve_summary, subsampled_folds
from workflows.params import GroupParams
from workflows.study_design import minimum_sample_size, net_benefit, r2cs_from_c, sample_size_curve


def rows(y, p, model="parcel", repeat=0):
    return [
        {"participant_id": f"sub-{i}", "repeat": repeat, "model": model, "y_true": t, "prob_severe": q}
        for i, (t, q) in enumerate(zip(y, p))
    ]


# ----------------------------------------------------------------------------- decision curves
def test_net_benefit_by_hand():
    # 5 patients, 2 severe. At t = 0.3 the risks 0.9, 0.4 (severe) and 0.6 (not) are treated:
    # TP/n = 2/5, FP/n = 1/5, odds 3/7 -> 0.4 - 0.2 * 3/7; treat all: 0.4 - 0.6 * 3/7.
    # At t = 0.5 only 0.9 (severe) and 0.6 (not): 0.2 - 0.2 * 1 = 0; treat all: 0.4 - 0.6 = -0.2.
    y = np.array([1, 1, 0, 0, 0])
    risk = np.array([0.9, 0.4, 0.6, 0.2, 0.1])
    out = net_benefit(y, risk, np.array([0.3, 0.5]))
    assert out["model"] == pytest.approx([0.4 - 0.2 * 3 / 7, 0.0])
    assert out["treat_all"] == pytest.approx([0.4 - 0.6 * 3 / 7, -0.2])
    assert out["treat_none"] == pytest.approx([0.0, 0.0])


def test_treat_all_and_treat_none_are_the_models_that_treat_everyone_and_no_one(rng):
    y = rng.random(50) < 0.3
    t = np.asarray(DCA_THRESHOLDS)
    everyone = net_benefit(y, np.ones(50), t)
    no_one = net_benefit(y, np.zeros(50), t)
    assert everyone["model"] == pytest.approx(everyone["treat_all"])
    assert no_one["model"] == pytest.approx(no_one["treat_none"])
    # treat all is the prevalence at t -> 0, and 0 where the threshold's odds equal the prevalence's
    prevalence = y.mean()
    assert net_benefit(y, y, np.array([1e-9]))["treat_all"][0] == pytest.approx(prevalence)
    assert net_benefit(y, y, np.array([prevalence]))["treat_all"][0] == pytest.approx(0.0, abs=1e-12)


def test_decision_curves_average_the_repeats_and_keep_their_range():
    y = [1, 1, 0, 0, 0]
    first = rows(y, [0.9, 0.4, 0.6, 0.2, 0.1], repeat=0)  # NB 0 at t = 0.5 (above)
    second = rows(y, [0.9, 0.8, 0.2, 0.2, 0.1], repeat=1)  # perfect at 0.5: NB 0.4
    table = decision_curves(first + second + rows(y, [1.0] * 5, model="all"), thresholds=(0.3, 0.5))
    half = next(r for r in table if r["model"] == "parcel" and r["threshold"] == 0.5)
    assert half["net_benefit"] == pytest.approx(0.2)
    assert (half["net_benefit_min"], half["net_benefit_max"]) == pytest.approx((0.0, 0.4))
    assert half["treat_all"] == pytest.approx(-0.2)
    assert half["treat_none"] == 0.0
    assert half["n_repeats"] == 2
    everyone = [r for r in table if r["model"] == "all"]
    assert [r["net_benefit"] for r in everyone] == pytest.approx([r["treat_all"] for r in everyone])
    # the perfect repeat beats both references at 0.5, the mean too; at 0.3 the mean (0.314 and 0.4)
    # beats treat-all (0.143)
    assert beneficial_thresholds(table, "parcel") == [0.3, 0.5]
    assert beneficial_thresholds(table, "all") == []  # never above itself


def test_decision_summary_names_the_useful_thresholds():
    assert threshold_ranges([0.1, 0.11, 0.12, 0.3, 0.5, 0.51]) == [(0.1, 0.12), (0.3, 0.3), (0.5, 0.51)]
    y = [1] * 10 + [0] * 10
    perfect = decision_curves(rows(y, [0.99] * 10 + [0.01] * 10))
    text = decision_summary(perfect, "parcel", "none")
    assert text["beneficial_ranges"] == [[0.05, 0.95]]
    assert "0.05 to 0.95" in text["statement"]
    useless = decision_curves(rows(y, [0.5] * 20))  # treats everybody below 0.5, nobody from 0.5 on
    assert decision_summary(useless, "parcel", "none")["beneficial_ranges"] == []
    assert "at no threshold" in decision_summary(useless, "parcel", "none")["statement"]
    assert decision_summary(useless, "cnn", "none") is None


# ----------------------------------------------------------------------------- learning curves
def two_session_cohort(n_subjects=30):
    """Subjects with two samples each (sessions), the first half severe."""
    split = np.repeat(np.arange(n_subjects), 2)
    y = (split < n_subjects // 2).astype(int)
    return y, split


def test_subsets_are_nested_stratified_whole_subjects_of_the_training_fold_only():
    y, split = two_session_cohort()
    fold = {"repeat": 0, "fold": 1, **subject_folds(y, split, 3, 1, seed=0)[1]}
    subsets = subsampled_folds(fold, y, split, (0.4, 0.6, 0.8, 1.0), seed=3)
    train_subjects, test_subjects = set(split[fold["train"]]), set(split[fold["test"]])
    previous: set = set()
    for subset in subsets:
        chosen = set(split[subset["train"]])
        assert chosen <= train_subjects
        assert not chosen & test_subjects
        assert np.array_equal(subset["test"], fold["test"])
        assert previous <= chosen  # nested
        # whole subjects: every sample of a chosen subject is in
        assert set(subset["train"]) == set(np.flatnonzero(np.isin(split, list(chosen))))
        per_class = [len({s for s in chosen if y[split == s][0] == c}) for c in (0, 1)]
        n_class = [len({s for s in train_subjects if y[split == s][0] == c}) for c in (0, 1)]
        assert per_class == [int(np.ceil(subset["fraction"] * n)) for n in n_class]
        assert subset["n_train_subjects"] == len(chosen)
        previous = chosen
    assert set(split[subsets[-1]["train"]]) == train_subjects
    with pytest.raises(ValueError, match="fraction"):
        subsampled_folds(fold, y, split, (0.0,))
    # a small fold: 3 training subjects per class give 2, 2, 3, 3 -> each subset once, the largest fraction
    small = {
        "repeat": 0,
        "fold": 0,
        "train": np.flatnonzero(np.isin(split, [0, 1, 2, 15, 16, 17])),
        "test": [],
    }
    assert [(s["fraction"], s["n_train_subjects"]) for s in subsampled_folds(small, y, split)] == [
        (0.6, 4),
        (1.0, 6),
    ]


def test_learning_curve_fits_only_on_training_subjects_and_scores_the_same_test_subjects():
    y, split = two_session_cohort()
    groups = split.copy()
    folds = subject_folds(y, split, 3, 1, seed=0)
    fold = folds[0]
    seen: list[tuple[np.ndarray, np.ndarray]] = []

    def spy(idx_train, y_train, g_train, idx_test, seed=0):
        seen.append((np.asarray(idx_train), np.asarray(idx_test)))
        assert np.array_equal(y_train, y[idx_train])
        assert np.array_equal(g_train, split[idx_train])
        return y[idx_test] * 0.8 + 0.1, []  # a perfect classifier: balanced accuracy 1

    full = {"balanced_accuracy": 0.75}
    params = GroupParams()
    out = fold_learning_curve(spy, fold, y, split, groups, params, full)
    assert [r["fraction"] for r in out] == [0.4, 0.6, 0.8, 1.0]
    assert len(seen) == 3  # fraction 1.0 is the fold's own fit, not refit
    for idx_train, idx_test in seen:
        assert not set(split[idx_train]) & set(split[fold["test"]])
        assert set(idx_train) <= set(fold["train"])
        assert np.array_equal(idx_test, fold["test"])
    assert [r["balanced_accuracy"] for r in out] == [1.0, 1.0, 1.0, 0.75]
    assert out[0]["n_train_subjects"] < out[-1]["n_train_subjects"] == len(set(split[fold["train"]]))
    # a regression records the MAE too, and its subsets are not stratified (a score has no class)
    regression = GroupParams(target="regression")
    scores = np.where(y == 1, 10.0, 50.0)
    out = fold_learning_curve(
        lambda a, b, c, d, seed=0: (scores[d], []), fold, scores, split, groups, regression, {"mae": 3.0}
    )
    assert [r["mae"] for r in out] == [0.0, 0.0, 0.0, 3.0]


def test_learning_curve_summary_over_folds():
    table = [
        {"fraction": 0.5, "n_train_subjects": 10, "balanced_accuracy": 0.6},
        {"fraction": 0.5, "n_train_subjects": 12, "balanced_accuracy": 0.8},
        {"fraction": 1.0, "n_train_subjects": 22, "balanced_accuracy": 0.9},
        {"fraction": 1.0, "n_train_subjects": 22, "balanced_accuracy": float("nan")},
    ]
    half, whole = learning_curve_summary(table, "balanced_accuracy")
    assert half["n_train_subjects"] == 11
    assert half["mean"] == pytest.approx(0.7)
    assert half["sd"] == pytest.approx(np.std([0.6, 0.8], ddof=1))
    assert (whole["mean"], whole["sd"], whole["n_folds"]) == (0.9, 0.0, 1)


# ----------------------------------------------------------------------------- sample size
def test_sample_size_curve_falls_with_c_and_marks_the_cohort():
    out = sample_size_curve(0.5, 20, 60, observed_c=0.8, c_statistics=(0.7, 0.8, 0.9), simulation=100_000)
    needed = [p["n"] for p in out["curve"]]
    assert needed == sorted(needed, reverse=True)
    expected = minimum_sample_size(0.5, 20, r2_cs=r2cs_from_c(0.8, 0.5, n=100_000))["n"]
    assert out["at_observed_c"]["n"] == expected == needed[1]
    assert f"needs at least {expected} patients" in out["statement"]
    assert "This cohort has 60 patients (50% severe)" in out["statement"]
    assert expected > 60
    assert "this cohort falls short of it" in out["statement"]
    assert "meets it" in sample_size_curve(0.5, 2, 10_000, 0.8, (0.8,), simulation=100_000)["statement"]
    chance = sample_size_curve(0.5, 20, 60, observed_c=0.45, c_statistics=(0.7, 0.9), simulation=100_000)
    assert chance["at_observed_c"] is None
    assert "is at chance" in chance["statement"]
    assert f"C = 0.90 needs at least {chance['curve'][1]['n']}" in chance["statement"]
    perfect = sample_size_curve(0.5, 20, 60, observed_c=1.0, c_statistics=(0.9,), simulation=100_000)
    assert "more likely luck" in perfect["statement"]


@pytest.mark.parametrize("effect", [0.0, 0.15])
def test_learning_curve_is_above_chance_with_an_effect_and_at_chance_without(effect):
    """Positive and negative control: the real primary parcel model, 60 subjects, a planted effect in 10
    of 100 parcels (or none), 5 subject-level folds. (Measured: 0.83, 0.82, 0.88, 0.87 at 40-100% of the
    training subjects with the effect; 0.45, 0.43, 0.45, 0.40 without. With 5 folds the curve's steps are
    within its noise, so only the level is asserted.)"""
    from workflows.models import fold_models

    n, shape = 60, (20, 20, 20)
    parcels = (np.arange(np.prod(shape)) // 80 + 1).reshape(shape)
    labels = np.array([f"{i:02d}" for i in range(n)])
    y = (np.arange(n) % 2).astype(int)
    x = np.random.default_rng(1).normal(size=(n, *shape)).astype(np.float32)
    x[y == 1] += effect * (parcels <= 10)
    data = {"x": x, "y": y, "groups": labels, "subjects": labels, "y_subject": y, "parcels": parcels}
    params = GroupParams()
    primary = fold_models(data, params)["parcel"]
    curves = []
    for fold in subject_folds(y, labels, 5, 1, seed=0):
        _, full, _ = cross_validate(np.arange(n), y, labels, [fold], {"parcel": primary})
        rows = fold_learning_curve(primary, fold, y, labels, labels, params, full[0])
        curves.append([r["balanced_accuracy"] for r in rows])
    mean = np.mean(curves, axis=0)
    if effect:
        assert np.all(mean >= 0.7)
    else:
        assert np.all(np.abs(mean - 0.5) < 0.15)
