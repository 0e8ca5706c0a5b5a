"""The CNN's region table is shown only when the CNN beats chance in its own permutation test."""

import pytest

from bids_app.reports.group import saliency_withheld


def _summary(p):
    models = {} if p is None else {"cnn": {"p_value": p}}
    return {"target": "classification", "permutation": {"models": {"parcel": {"p_value": 0.01}, **models}}}


def test_shown_when_the_cnn_passes_its_permutation_test():
    assert saliency_withheld(_summary(0.01)) is None


@pytest.mark.parametrize(
    ("summary", "reason"),
    [
        (_summary(0.4), "does not beat chance (permutation p = 0.4"),  # a null cohort
        (_summary(0.05), "does not beat chance"),
        (_summary(None), "permutation test was not run"),  # the primary model's p does not count
        ({"target": "classification", "permutation": None}, "not run"),
        ({"target": "regression"}, "permutation test was not run"),
        (
            {"target": "regression", "permutation": {"models": {"cnn": {"p_value": 0.3, "metric": "mae"}}}},
            "does not beat chance",
        ),
        ({}, "not found"),
    ],
)
def test_withheld_with_the_reason(summary, reason):
    assert reason in saliency_withheld(summary)


def test_a_regression_cnn_that_passes_its_mae_permutation_test_is_explained():
    summary = {"target": "regression", "permutation": {"models": {"cnn": {"p_value": 0.01, "metric": "mae"}}}}
    assert saliency_withheld(summary) is None


def test_the_region_note_says_the_stability_and_the_null_or_that_there_is_none():
    from bids_app.reports.group import region_note

    stability = {"FoldModels": 25, "TopK": 20, "StableShare": 0.5, "FoldProfileSpearman": 0.314}
    null = {"Draws": 99, "Alpha": 0.05}
    text = region_note({"Stability": stability, "Null": null})
    assert "Stability over 25 fold models" in text
    assert "mean Spearman rho 0.31" in text
    assert "Null: 99 permuted-label CNNs" in text
    assert "fold_top_share >= 0.5 and null_p_fwe < 0.05" in text
    bare = region_note({"Stability": {**stability, "FoldProfileSpearman": None}, "Null": {"Draws": 0}})
    assert "rho n/a" in bare
    assert "No permuted-label null (the CNN was not permuted)" in bare
    assert region_note(None) == ""  # a table written before stability: no note


def test_the_primary_models_patterns_follow_its_own_permutation_test():
    from workflows.models import MODELS, PRIMARY_MODEL

    summary = {"permutation": {"models": {PRIMARY_MODEL: {"p_value": 0.01}, "cnn": {"p_value": 0.5}}}}
    assert saliency_withheld(summary, PRIMARY_MODEL) is None
    assert "does not beat chance" in saliency_withheld(summary)  # the CNN's own test
    summary["permutation"]["models"][PRIMARY_MODEL]["p_value"] = 0.2
    assert saliency_withheld(summary, PRIMARY_MODEL).startswith(f"{MODELS[PRIMARY_MODEL].noun} does not beat")
    untested = saliency_withheld({"permutation": None}, PRIMARY_MODEL)
    assert "permutation test was not run (--n-permutations)" in untested  # no --permute-cnn needed
