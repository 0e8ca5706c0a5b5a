"""Predictions that know whom the model was trained on: the card's hashed training subjects, the flag,
and an external validation that leaves training subjects out and warns when too few remain."""

import pandas as pd
import pytest
from helpers import fewer_bootstrap_draws

from bids_app.reporting import IN_TRAINING_NOTE, external_validation
from workflows.model_card import (
    MIN_VALIDATION_SUBJECTS,
    dataset_identity,
    in_training,
    participant_hash,
    training_cohort,
)

DATASET = {"Name": "stroke cohort A", "DatasetDOI": "doi:10.1/a"}


@pytest.fixture(autouse=True)
def _fewer_draws(monkeypatch):
    """These tests check who is scored and the notes, not the bootstrap intervals."""
    fewer_bootstrap_draws(monkeypatch)


def _card(subjects, dataset=DATASET):
    rows = [
        {"label": s, "subject": s, "score": 10.0, "lesion_side": "L", "map_file": "/none"} for s in subjects
    ]
    return {"TrainingCohort": training_cohort(rows, 20.0, dataset=dataset)}


def test_the_card_records_training_subjects_by_hash_within_their_dataset():
    card = _card(["01", "02", "03"])
    record = card["TrainingCohort"]["Participants"]
    assert record["N"] == 3
    assert record["Dataset"]["Name"] == "stroke cohort A"
    assert all(len(h) == 64 and "sub-" not in h for h in record["ParticipantSHA256"])  # hashes, not ids
    assert participant_hash(dataset_identity(DATASET)["DatasetId"], "sub-02") in record["ParticipantSHA256"]
    assert in_training(card, DATASET, "02") is True
    assert in_training(card, DATASET, "sub-02") is True
    assert in_training(card, DATASET, "04") is False
    # the same id in another dataset (another DOI) is another person
    assert in_training(card, {**DATASET, "DatasetDOI": "doi:10.1/b"}, "02") is False
    assert in_training({}, DATASET, "02") is None  # a card that does not record them


def test_sessions_of_one_subject_count_once():
    rows = [
        {"label": f"01_ses-{s}", "subject": "01", "score": 10.0, "lesion_side": "L", "map_file": "/x"}
        for s in (1, 2)
    ]
    assert training_cohort(rows, 20.0, dataset=DATASET)["Participants"]["N"] == 1


def _table(n_new: int, n_training: int) -> pd.DataFrame:
    rows = []
    for i in range(n_new + n_training):
        severe = i % 2 == 0
        rows.append(
            {
                "participant_id": f"sub-{i:02d}",
                "prob_severe": str(0.8 if severe else 0.3),
                "class_true": "severe" if severe else "mild-to-moderate",
                "in_training": "yes" if i >= n_new else "no",
            }
        )
    return pd.DataFrame(rows)


def test_external_validation_leaves_training_subjects_out_and_says_how_many():
    summary = external_validation(_table(12, 3))
    assert summary["n_excluded_in_training"] == 3
    assert summary["n_labelled"] == 12
    assert "3 prediction(s) of the model's training subjects left out" in summary["excluded_note"]
    assert "uninformative" not in summary


def test_only_training_subjects_give_no_validation():
    summary = external_validation(_table(0, 2))
    assert summary["n_labelled"] == 0
    assert IN_TRAINING_NOTE in summary["note"]
    assert "balanced_accuracy" not in summary


@pytest.mark.parametrize("n_new", [2, MIN_VALIDATION_SUBJECTS - 1])
def test_too_few_validation_subjects_are_called_uninformative(n_new):
    summary = external_validation(_table(n_new, 1))
    assert summary["n_subjects"] == n_new
    assert "uninformative" in summary["uninformative"]
    assert f"fewer than {MIN_VALIDATION_SUBJECTS}" in summary["uninformative"]


def test_an_empty_predictions_table_from_an_earlier_run_is_read_as_empty(tmp_path):
    from bids_app.reporting import _read_predictions

    table = tmp_path / "predictions.tsv"
    table.write_text("\n")  # what a run that predicted nobody left
    assert _read_predictions(table).empty
    assert _read_predictions(tmp_path / "absent.tsv").empty
