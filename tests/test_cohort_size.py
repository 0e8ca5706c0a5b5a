"""The cohort-size benchmark's pure parts: nested stratified subsets and the size a curve reaches a target."""

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


def test_size_to_reach(cohort_size):
    sizes = [40, 80, 160]
    rising = cohort_size.size_to_reach(sizes, [0.6, 0.7, 0.8], 0.8)
    assert rising["reached_n"] == 160
    assert rising["slope_per_doubling"] == pytest.approx(0.1)
    short = cohort_size.size_to_reach(sizes, [0.6, 0.65, 0.7], 0.8)
    assert short["reached_n"] is None
    assert short["trend_n"] == 640
    flat = cohort_size.size_to_reach(sizes, [0.55, 0.5, 0.52], 0.8)
    assert flat["reached_n"] is None
    assert flat["trend_n"] is None


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
