"""The cohort-size benchmark's pure parts: nested stratified subsets, curve fits, paired differences."""

import itertools
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def cohort_size(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import cohort_size

    return cohort_size


def test_subsets_are_nested_stratified_and_seeded(cohort_size):
    y = np.r_[np.ones(60, int), np.zeros(90, int)]  # 40% severe
    np.random.default_rng(3).shuffle(y)
    sizes = [40, 60, 80, 120, 150]
    draw = cohort_size.cohort_subsets(y, sizes, draw=0)
    assert sorted(draw) == sizes
    for n, subset in draw.items():
        assert len(subset) == n
        assert len(np.unique(subset)) == n
        assert y[subset].sum() == round(0.4 * n)  # the cohort's class shares
    for small, large in itertools.pairwise(sizes):
        assert set(draw[small]) <= set(draw[large])
    again = cohort_size.cohort_subsets(y, sizes, draw=0)
    assert all(np.array_equal(again[n], draw[n]) for n in sizes)
    other = cohort_size.cohort_subsets(y, sizes, draw=1)
    assert not np.array_equal(other[40], draw[40])
    with pytest.raises(ValueError, match="cohort sizes"):
        cohort_size.cohort_subsets(y, [40, 200], draw=0)


def runs_of(scores_by_draw: dict[int, dict[int, dict[str, list[float]]]]) -> list[dict]:
    """Benchmark runs from {draw: {n: {model: fold scores}}}."""
    return [
        {"n": n, "draw": d, "scores": scores}
        for d, by_n in scores_by_draw.items()
        for n, scores in by_n.items()
    ]


def test_curve_replicates_are_draw_means_or_folds(cohort_size):
    runs = runs_of(
        {
            0: {40: {"p": [0.5, 0.7], "cnn": [0.4, 0.6]}, 80: {"p": [0.6, 0.8]}},
            1: {40: {"p": [0.7, 0.9]}, 80: {"p": [0.8, 0.8]}},
        }
    )
    assert cohort_size.curve_replicates(runs, "p") == ([40, 80], [[0.6, 0.8], [0.7, 0.8]], [2, 2])
    # one draw: the folds are what a refit resamples
    assert cohort_size.curve_replicates(runs, "cnn") == ([40], [[0.4, 0.6]], [1])


def test_curve_fit_and_its_sentence(cohort_size):
    sizes = [40, 60, 80, 120, 160]
    rising = runs_of({d: {n: {"p": [0.9 - 2.0 * n**-0.6 + 0.01 * d] * 5} for n in sizes} for d in range(3)})
    fit = cohort_size.curve_fit(rising, "p", 0.8)
    # mean over draws 0.91 - 2 n^-0.6: 0.797 at n = 120, 0.815 at 160; crosses 0.8 at (2 / 0.11)^(1 / 0.6)
    assert fit["reached_n"] == 160
    assert fit["n_target"] == pytest.approx((2 / 0.11) ** (1 / 0.6), rel=0.02)
    assert "the fit crosses 0.8 at n = " in cohort_size.fit_sentence("primary", fit)
    flat = runs_of({d: {n: {"p": [0.6 + 0.01 * d] * 5} for n in sizes} for d in range(3)})
    fit = cohort_size.curve_fit(flat, "p", 0.8)
    assert fit["n_target"] is None
    assert fit["reached_n"] is None
    assert "**not reached**: the fitted asymptote 0.61 lies below 0.8" in cohort_size.fit_sentence("p", fit)
    high = runs_of({d: {n: {"p": [0.92 + 0.01 * d] * 5} for n in sizes} for d in range(3)})
    fit = cohort_size.curve_fit(high, "p", 0.8)
    assert fit["reached_n"] == 40
    sentence = cohort_size.fit_sentence("p", fit)
    assert "the fit lies above 0.8 from the smallest measured size (40) on" in sentence
    assert "not reached" not in sentence
    assert cohort_size.curve_fit(runs_of({0: {40: {"p": [0.5]}, 80: {"p": [0.6]}}}), "p", 0.8) is None


def test_paired_differences_are_fold_by_fold(cohort_size):
    runs = runs_of(
        {
            0: {40: {"p": [0.8, 0.6, 0.7], "c": [0.6, 0.6, 0.5]}},
            1: {40: {"p": [0.5, 0.7, 0.6], "c": [0.6, 0.5, 0.5]}},
        }
    )
    d = cohort_size.paired_differences(runs, "p", "c", n_folds=3)[40]
    assert d["mean_difference"] == pytest.approx(np.mean([0.2, 0.0, 0.2, -0.1, 0.2, 0.1]))
    assert (d["wins"], d["losses"], d["folds"]) == (4, 1, 6)
    assert d["draw_means"] == pytest.approx([0.4 / 3, 0.2 / 3])
    assert 0 < d["p_two_sided"] < 1


def test_merge_runs_gathers_models_of_one_subset(cohort_size):
    def state(model, draws, command):
        runs = [
            {
                "n": n,
                "subjects": n,
                "draw": d,
                "scores": {model: [0.5]},
                "seconds": {model: 1},
                "load": {model: 2},
            }
            for d in draws
            for n in (40, 80)
        ]
        return {"command": command, "times": {}, "models": {}, "runs": runs}

    merged = cohort_size.merge_runs([state("parcel", [0, 1], "a"), state("cnn", [0], "b")])
    assert merged["commands"] == ["a", "b"]
    assert [(r["n"], r["draw"]) for r in merged["runs"]] == [(40, 0), (80, 0), (40, 1), (80, 1)]
    assert sorted(merged["runs"][0]["scores"]) == ["cnn", "parcel"]
    assert sorted(merged["runs"][2]["scores"]) == ["parcel"]
