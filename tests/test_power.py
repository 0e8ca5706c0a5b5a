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
