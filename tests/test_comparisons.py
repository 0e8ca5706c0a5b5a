"""Claims of the group level: "A beats B" needs the paired interval and A above chance; the warnings."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.reports.group import comparison_sentences, regression_sentences, result_sentences
from workflows.comparisons import above_chance, comparisons, cv_warnings, effect_kind, paired_verdict
from workflows.stats import bootstrap_comparison


def _predictions(rng: np.random.Generator, accuracy: dict[str, float], n: int = 160) -> list[dict]:
    """Out-of-fold rows of models whose predicted class is right with the given probability."""
    y = np.arange(n) % 2
    rows = []
    for model, acc in accuracy.items():
        right = rng.random(n) < acc
        prob = np.where(right == (y == 1), 0.7, 0.3)
        rows += [
            {
                "participant_id": f"sub-{i:03d}",
                "repeat": 0,
                "fold": 0,
                "model": model,
                "y_true": int(y[i]),
                "prob_severe": float(prob[i]),
            }
            for i in range(n)
        ]
    return rows


def _summary(rng, accuracy, permutation=None) -> dict:
    boot = bootstrap_comparison(_predictions(rng, accuracy), "parcel", n_boot=100)
    return {
        "target": "classification",
        "primary_model": "parcel",
        "bootstrap": boot,
        "permutation": permutation,
    }


def test_a_difference_between_two_models_at_chance_is_no_claim(rng):
    """The review's m3: the primary at chance and a control anti-learning below it (null cohort)."""
    summary = _summary(rng, {"parcel": 0.5, "parcel_fc": 0.3})
    record = paired_verdict(summary["bootstrap"], None, "parcel_fc", "parcel", "classification")
    assert record["ci95"][1] < 0  # the paired difference excludes 0 ...
    assert record["winner"] == "parcel"
    assert record["verdict"] == "winner_at_chance"  # ... but the primary is at chance: no claim
    assert "beats" not in record["sentence"]
    assert "not above chance itself" in record["sentence"]
    assert not any("beats" in s for s in comparison_sentences(summary))


def test_a_primary_above_chance_beats_a_control_at_chance(rng):
    permutation = {"models": {"parcel": {"p_value": 0.01}}}
    summary = _summary(rng, {"parcel": 0.85, "parcel_fc": 0.5}, permutation)
    untested = paired_verdict(summary["bootstrap"], None, "parcel_fc", "parcel", "classification")
    assert untested["verdict"] == "untested"  # no permutation test: no claim, whatever the bootstrap
    assert "beats" not in untested["sentence"]
    assert "--n-permutations" in untested["sentence"]
    record = paired_verdict(summary["bootstrap"], permutation, "parcel_fc", "parcel", "classification")
    assert record["verdict"] == "reference_better"
    assert record["sentence"].startswith("dFC-SD parcels (primary) beats Static FC (control)")
    primary, control = record["reference_score"], record["model_score"]
    for score in (primary, control):  # both scores, with their intervals, in the sentence
        assert (
            f"{score['value']:.2f} ({score['ci95'][0]:.2f} to {score['ci95'][1]:.2f})" in record["sentence"]
        )
    # the winner's score first and the paired difference as winner minus loser, whichever is the model
    text = record["sentence"].split("balanced accuracy ", 1)[1]
    assert text.startswith(f"{primary['value']:.2f} (")
    lo, hi = (float(v) for v in text.split("paired difference ", 1)[1].split(" (95%")[0].split(" to "))
    assert 0 < lo <= hi
    assert any(" beats " in s for s in comparison_sentences(summary))


def test_the_permutation_test_overrides_the_bootstrap(rng):
    summary = _summary(rng, {"parcel": 0.85, "parcel_fc": 0.5})
    failed = {"models": {"parcel": {"p_value": 0.3}}}
    assert above_chance(summary["bootstrap"], failed, "parcel", "classification")["above_chance"] is False
    record = paired_verdict(summary["bootstrap"], failed, "parcel_fc", "parcel", "classification")
    assert record["verdict"] == "winner_at_chance"
    passed = {"models": {"parcel": {"p_value": 0.01}}}
    record = paired_verdict(summary["bootstrap"], passed, "parcel_fc", "parcel", "classification")
    assert record["verdict"] == "reference_better"
    assert "permutation p = 0.01" in record["sentence"]


def test_models_that_do_not_differ_say_so(rng):
    summary = _summary(rng, {"parcel": 0.8, "cnn": 0.8})
    record = paired_verdict(summary["bootstrap"], None, "cnn", "parcel", "classification")
    assert record["verdict"] == "no_difference"
    assert "do not differ" in record["sentence"]
    assert [c["model"] for c in comparisons(summary)] == ["cnn"]


def _regression_boot(diff_mean: list[float], diff_confounds: list[float]) -> dict:
    mae = {"value": 10.0, "ci95": [8.0, 12.0]}
    return {
        "parcel": {
            "mae": mae,
            "r2": {"value": 0.1},
            "difference_from_mean": {"mae": {"value": sum(diff_mean) / 2, "ci95": diff_mean}},
            "difference_from_confounds": {"mae": {"value": sum(diff_confounds) / 2, "ci95": diff_confounds}},
        },
        "mean": {"mae": {"value": 13.0, "ci95": [11.0, 15.0]}, "r2": {"value": -0.05}},
        "confounds": {"mae": {"value": 12.0, "ci95": [10.0, 14.0]}, "r2": {"value": 0.0}},
    }


def test_regression_claims_need_the_model_below_the_training_mean():
    good = _regression_boot([-4.0, -1.0], [-3.0, -0.5])
    assert paired_verdict(good, None, "parcel", "confounds", "regression")["verdict"] == "untested"
    passed = {"models": {"parcel": {"p_value": 0.02, "metric": "mae"}}}
    record = paired_verdict(good, passed, "parcel", "confounds", "regression")
    assert record["verdict"] == "model_better"  # lower MAE than the confounds, and a permutation p
    summary = {"target": "regression", "bootstrap": good, "permutation": passed}
    assert sum(" beats " in s for s in regression_sentences(summary)) == 1
    # lower MAE than the confound control, but not below the training mean: no claim
    at_chance = _regression_boot([-2.0, 1.0], [-3.0, -0.5])
    record = paired_verdict(at_chance, None, "parcel", "confounds", "regression")
    assert record["verdict"] == "winner_at_chance"
    # worse than the training mean is worse than chance, and says so
    worse = _regression_boot([1.0, 3.0], [-1.0, 1.0])
    record = paired_verdict(worse, None, "parcel", "mean", "regression")
    assert record["verdict"] == "reference_better"
    assert "beats dFC-SD parcels (primary)" in record["sentence"]


def test_warnings_of_a_small_null_study(rng):
    summary = _summary(rng, {"parcel": 0.5, "cnn": 0.45, "parcel_fc": 0.55, "confounds": 0.8})
    warnings = cv_warnings(summary, {"severe": 6, "mild-to-moderate": 14}, exported="parcel")
    codes = [w["code"] for w in warnings]
    assert codes.count("model_at_chance") == 1  # the primary is the exported model: said once
    assert "few_subjects" in codes
    assert "6 severe" in next(w["message"] for w in warnings if w["code"] == "few_subjects")
    assert "cnn_below_controls" in codes
    assert "confounds_above_chance" in codes
    assert "no_permutation_test" in codes


def test_no_warnings_for_a_clear_result_with_a_permutation_test(rng):
    permutation = {"models": {"parcel": {"p_value": 0.01}, "confounds": {"p_value": 0.6}}}
    summary = _summary(rng, {"parcel": 0.85, "cnn": 0.9, "parcel_fc": 0.5, "confounds": 0.55}, permutation)
    assert cv_warnings(summary, {"severe": 30, "mild-to-moderate": 30}, exported="parcel") == []


def test_a_control_that_beats_the_primary_is_a_warning(rng):
    permutation = {"models": {"parcel": {"p_value": 0.04}, "parcel_fc": {"p_value": 0.001}}}
    summary = _summary(rng, {"parcel": 0.62, "parcel_fc": 0.95}, permutation)
    warnings = cv_warnings(summary, {"severe": 30, "mild-to-moderate": 30})
    assert [w["code"] for w in warnings] == ["control_beats_primary"]
    assert warnings[0]["message"].startswith("Static FC (control) beats dFC-SD parcels (primary)")


@pytest.mark.parametrize(("n", "warned"), [(12, True), (40, False)])
def test_a_small_regression_cohort_is_warned(n, warned):
    summary = {"target": "regression", "bootstrap": {}, "permutation": {"models": {}}}
    codes = [w["code"] for w in cv_warnings(summary, {"subjects": n})]
    assert ("few_subjects" in codes) is warned


def test_the_effect_is_dynamic_when_the_dfc_model_beats_static_fc(rng):
    permutation = {"models": {"parcel": {"p_value": 0.01}, "parcel_fc": {"p_value": 0.6}}}
    summary = _summary(rng, {"parcel": 0.85, "parcel_fc": 0.5}, permutation)
    kind = effect_kind(summary)
    assert (kind["kind"], kind["reason"]) == ("dynamic", "dynamic")
    assert kind["sentence"].startswith("The effect is dynamic: dFC-SD parcels (primary) beats Static FC")
    assert "permutation p = 0.01" in kind["sentence"]
    assert result_sentences(summary)[-1] == kind["sentence"]  # the Result section says it


def test_the_effect_is_static_when_the_static_fc_control_beats_the_dfc_model(rng):
    permutation = {"models": {"parcel": {"p_value": 0.3}, "parcel_fc": {"p_value": 0.001}}}
    summary = _summary(rng, {"parcel": 0.55, "parcel_fc": 0.95}, permutation)
    kind = effect_kind(summary)
    assert (kind["kind"], kind["reason"]) == ("static", "static")
    assert kind["sentence"].startswith("The effect is static: Static FC (control) beats dFC-SD parcels")
    assert "The effect is static" in " ".join(result_sentences(summary))


def test_the_static_fc_control_stored_on_the_primary_gives_the_same_answer(rng):
    """With several timescales (and in regression) the difference is stored on the primary model."""
    permutation = {"models": {"parcel": {"p_value": 0.3}, "parcel_fc": {"p_value": 0.001}}}
    rows = _predictions(rng, {"parcel": 0.55, "parcel_fc": 0.95})
    boot = bootstrap_comparison(rows, ["parcel_fc"], n_boot=100)
    assert "difference_from_parcel_fc" in boot["parcel"]
    assert "difference_from_parcel" not in boot["parcel_fc"]
    summary = {"primary_model": "parcel", "bootstrap": boot, "permutation": permutation}
    assert effect_kind(summary)["kind"] == "static"


@pytest.mark.parametrize(
    ("accuracy", "p_values", "reason"),
    [
        ({"parcel": 0.5, "parcel_fc": 0.5}, {"parcel": 0.5, "parcel_fc": 0.6}, "at_chance"),  # a null
        ({"parcel": 0.5, "parcel_fc": 0.3}, {"parcel": 0.5, "parcel_fc": 0.9}, "at_chance"),  # anti-learning
        ({"parcel": 0.85, "parcel_fc": 0.85}, {"parcel": 0.01, "parcel_fc": 0.01}, "no_difference"),  # both
        ({"parcel": 0.85, "parcel_fc": 0.5}, None, "untested"),  # no permutation test
    ],
)
def test_neither_winning_nor_above_chance_is_no_claim(rng, accuracy, p_values, reason):
    permutation = {"models": {m: {"p_value": p} for m, p in p_values.items()}} if p_values else None
    summary = _summary(rng, accuracy, permutation)
    kind = effect_kind(summary)
    assert (kind["kind"], kind["reason"]) == (None, reason)
    assert kind["sentence"].startswith("Dynamic or static: no claim")
    assert "The effect is" not in " ".join(result_sentences(summary))


def test_no_dynamic_map_or_no_static_control_is_no_claim(rng):
    permutation = {"models": {"parcel": {"p_value": 0.01}}}
    summary = _summary(rng, {"parcel": 0.85, "parcel_fc": 0.5}, permutation)
    fc = effect_kind({**summary, "map": {"stat": "fc"}})
    assert (fc["kind"], fc["reason"]) == (None, "static_map")
    assert "--map dfcsd" in fc["sentence"]
    assert effect_kind({**summary, "map": {"stat": "dfcexcess"}})["kind"] == "dynamic"  # a dynamic map
    alone = _summary(rng, {"parcel": 0.85}, permutation)
    assert effect_kind(alone)["reason"] == "no_control"
    unpaired = {
        **summary,
        "bootstrap": {
            m: {"balanced_accuracy": r["balanced_accuracy"]} for m, r in summary["bootstrap"].items()
        },
    }
    assert effect_kind(unpaired)["reason"] == "not_compared"


def test_a_regression_says_dynamic_when_the_primary_has_the_lower_error():
    def diff(lo, hi):
        return {"mae": {"value": (lo + hi) / 2, "ci95": [lo, hi]}}

    boot = {
        "parcel": {
            "mae": {"value": 8.0, "ci95": [6.0, 10.0]},
            "difference_from_mean": diff(-5.0, -1.0),
            "difference_from_parcel_fc": diff(-4.0, -0.5),  # lower error than the static-FC control
        },
        "parcel_fc": {"mae": {"value": 11.0, "ci95": [9.0, 13.0]}, "difference_from_mean": diff(-2.0, 1.0)},
        "mean": {"mae": {"value": 12.0, "ci95": [10.0, 14.0]}},
    }
    permutation = {"models": {"parcel": {"p_value": 0.02, "metric": "mae"}}}
    summary = {
        "target": "regression",
        "primary_model": "parcel",
        "bootstrap": boot,
        "permutation": permutation,
    }
    assert effect_kind(summary)["kind"] == "dynamic"
    assert effect_kind({**summary, "permutation": None})["reason"] == "untested"
