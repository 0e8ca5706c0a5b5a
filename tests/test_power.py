"""strokefc-power: the study-design calculator finds a planted effect and nothing in a null."""

from __future__ import annotations

import pytest

from strokefc_sim.power import Design, build_parser, expected_accuracy, format_answer

#: A design small enough for a unit test (20 patients, 2 cohorts, 12 parcels of 8 voxels, 3 folds).
TINY = {
    "n_patients": 20,
    "n_volumes": 200,
    "n_parcels": 12,
    "voxels_per_parcel": 8,
    "repeats": 2,
    "n_folds": 3,
}


def test_a_strong_dynamic_effect_is_found_by_the_oracle():
    result = expected_accuracy(Design(**TINY, effect=0.9))
    assert result["summary"]["oracle"]["mean"] >= 0.75
    assert len(result["values"]["parcel"]) == 2
    assert "oracle" in format_answer(result)


def test_a_null_design_stays_at_chance():
    result = expected_accuracy(Design(**TINY, effect_type="none"))
    for name, summary in result["summary"].items():
        assert summary["mean"] <= 0.7, name


def test_impossible_designs_are_refused_with_the_flag_named():
    with pytest.raises(SystemExit, match="--n-folds"):
        Design(n_patients=6).check()
    with pytest.raises(SystemExit, match="--window-s"):
        Design(n_volumes=40, window_s=60).check()
    args = build_parser().parse_args(["--n-patients", "30", "--tr", "0.8"])
    assert (args.n_patients, args.tr) == (30, 0.8)


def test_the_a_priori_model_reads_its_parcels_and_a_wrong_prior_misses_the_effect():
    """The prior holds the planted parcels unless --planted-outside-prior moves them out of it."""
    from strokefc_sim.power import prior_columns

    design = Design(**{**TINY, "n_parcels": 40}, prior_parcels=6, effect=0.9)
    assert prior_columns(design).tolist() == [0, 1, 2, 3, 4, 5]
    wrong = Design(**{**TINY, "n_parcels": 40}, prior_parcels=6, planted_outside_prior=4, effect=0.9)
    assert prior_columns(wrong).tolist() == [4, 5, 6, 7, 8, 9]  # no planted parcel (0-3)
    assert expected_accuracy(design)["summary"]["prior"]["mean"] >= 0.75
    assert expected_accuracy(wrong)["summary"]["prior"]["mean"] <= 0.7
    with pytest.raises(SystemExit, match="--planted-outside-prior"):
        Design(planted_outside_prior=5).check()
