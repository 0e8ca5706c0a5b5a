"""`make demo`'s cohort split: the model is applied to patients held out of training, both classes."""

import runpy
from pathlib import Path

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"


def test_held_out_patients_are_not_trained_on_and_cover_both_classes(tmp_path):
    split_cohort = runpy.run_path(str(DEMO))["split_cohort"]
    scores = [10, 50, 20, 21, 5, 66, 0, 40, 15, 30]  # severe: UL-FMA <= 20
    rows = ["participant_id\tlesion_hemisphere\tul_fma"]
    rows += [f"sub-{i:02d}\tL\t{s}" for i, s in enumerate(scores, 1)]
    (tmp_path / "participants.tsv").write_text("\n".join(rows) + "\n")
    train, held = split_cohort(tmp_path / "participants.tsv")
    assert held == ["07", "08", "09", "10"]  # the last two of each class
    assert not set(train) & set(held)
    assert sorted(train + held) == [f"{i:02d}" for i in range(1, 11)]
