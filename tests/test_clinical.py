"""The clinical baseline model and the primary model's value over it (workflows.incremental)."""

from __future__ import annotations

import numpy as np
import pytest

from bids_app.group_level import clinical_values
from workflows.group_inputs import clinical_inputs
from workflows.incremental import clinical_value_sentence, incremental_value, unit_predictions
from workflows.models import CLINICAL, CLINICAL_NAMES, fold_models
from workflows.params import GroupParams
from workflows.utils.errors import InputError


def _cohort(rng, n=80):
    """Clinical covariates (age-like, time-like, lesion-like; 10% unknown), a latent severity the
    clinic does not see, and the class both decide."""
    clinical = rng.normal(size=(n, 3))
    latent = rng.normal(size=n)
    y = (clinical[:, 0] + latent + 0.5 * rng.normal(size=n) > 0).astype(int)
    clinical[rng.random((n, 3)) < 0.1] = np.nan
    return clinical, latent, y


@pytest.mark.parametrize("target", ["classification", "regression"])
def test_a_prediction_with_new_information_adds_and_a_clinical_echo_does_not(rng, target):
    """Positive control: an out-of-fold prediction that reads the latent severity adds to the clinical
    variables. Negative control: one that only re-encodes a clinical variable adds nothing."""
    clinical, latent, y = _cohort(rng)
    known = np.nan_to_num(clinical[:, 0])
    if target == "regression":
        y = 30 + 10 * known + 10 * latent + rng.normal(scale=3.0, size=len(y))
        informative = 30 + 10 * latent + rng.normal(scale=5.0, size=len(y))
        echo = 30 + 10 * known + rng.normal(scale=3.0, size=len(y))
    else:
        informative = 1 / (1 + np.exp(-(latent + 0.5 * rng.normal(size=len(y)))))
        echo = 1 / (1 + np.exp(-(known + 0.3 * rng.normal(size=len(y)))))
    adds = incremental_value(y, clinical, informative, target=target)
    assert adds["adds_value"]
    assert adds["p_value"] < 1e-3
    assert adds["coefficient"] > 0
    none = incremental_value(y, clinical, echo, target=target)
    assert not none["adds_value"]
    assert none["p_value"] > 0.05
    assert none["n_clinical_columns_used"] == 3
    record = {"covariates": ["age", "time_since_stroke_months", "lesion_volume_ml"], "test_result": adds}
    assert " adds predictive information over the clinical variables (age, " in clinical_value_sentence(
        record, "primary parcel model"
    )
    record["test_result"] = none
    assert "does not add" in clinical_value_sentence(record, "primary parcel model")


def test_a_model_pointing_the_wrong_way_does_not_add(rng):
    clinical, latent, y = _cohort(rng)
    wrong = 1 / (1 + np.exp(latent))  # informative, but predicts mild for the severe
    result = incremental_value(y, clinical, wrong, target="classification")
    assert result["p_value"] < 0.05
    assert not result["adds_value"]


def test_unit_predictions_average_repeats_on_the_logit_scale():
    rows = [
        {"participant_id": "sub-1", "model": "parcel", "prob_severe": 0.9},
        {"participant_id": "sub-1", "model": "parcel", "prob_severe": 0.5},
        {"participant_id": "sub-1", "model": "cnn", "prob_severe": 0.0},
    ]
    mean_logit = np.mean([np.log(9.0), 0.0])
    assert unit_predictions(rows, "parcel", "prob_severe", "classification")["sub-1"] == pytest.approx(
        1 / (1 + np.exp(-mean_logit))
    )


def test_clinical_columns_are_read_and_bad_ones_refused():
    rows = {
        "01": {"participant_id": "sub-01", "age": "61", "time_since_stroke_months": "n/a", "nihss": "4"},
        "02": {"participant_id": "sub-02", "age": "70", "time_since_stroke_months": "3.5", "nihss": "x"},
    }
    values = clinical_values({"01": rows["01"]}, ["nihss"], "participants.tsv")
    assert list(values["01"]) == ["age", "time_since_stroke_months", "nihss"]
    assert values["01"]["age"] == 61.0
    assert np.isnan(values["01"]["time_since_stroke_months"])
    assert clinical_values(rows, [], "p.tsv")["02"] == {"age": 70.0, "time_since_stroke_months": 3.5}
    with pytest.raises(InputError, match="no column 'moca'") as exc:
        clinical_values(rows, ["moca"], "bids/participants.tsv")
    assert exc.value.where == "bids/participants.tsv"
    assert "--clinical-covariates" in exc.value.fix
    with pytest.raises(InputError, match="'nihss' of sub-02 is 'x'") as exc:
        clinical_values(rows, ["nihss"], "bids/participants.tsv")
    assert exc.value.where == "bids/participants.tsv, line 3"


def test_clinical_inputs_keep_known_columns_and_the_model_runs_on_them(rng):
    subjects = [
        {
            "clinical": {"age": 50.0 + i, "time_since_stroke_months": np.nan},
            "qc": {"lesion_volume_ml": float(i % 3)},
        }
        for i in range(10)
    ]
    arrays = clinical_inputs(subjects)
    assert arrays[CLINICAL_NAMES].tolist() == ["age", "lesion_volume_ml"]  # unknown for all: left out
    assert arrays["clinical"].shape == (10, 2)
    assert clinical_inputs([{"clinical": {}, "qc": {}}]) == {}
    n = 10
    data = {
        "parcels": np.ones((2, 2, 2), int),
        "subjects": np.array([f"{i}" for i in range(n)]),
        "groups": np.array([f"{i}" for i in range(n)]),
        "x": rng.normal(size=(n, 2, 2, 2)),
        "confounds": rng.normal(size=(n, 6)),
        **arrays,
    }
    models = fold_models(data, GroupParams())
    assert CLINICAL in models
    y = (np.arange(n) % 2).astype(int)
    prob, _ = models[CLINICAL](np.arange(8), y[:8], data["groups"][:8], np.arange(8, 10))
    assert prob.shape == (2,)
    assert "clinical" not in fold_models({k: v for k, v in data.items() if k != "clinical"}, GroupParams())


def test_the_options_reach_the_group_parameters_and_survive_the_saved_config(tmp_path):
    from bids_app import parser
    from bids_app.config import to_toml

    (tmp_path / "dataset_description.json").write_text("{}")
    (tmp_path / "derivatives" / "fmriprep").mkdir(parents=True)
    (tmp_path / "derivatives" / "fmriprep" / "dataset_description.json").write_text("{}")
    args = [str(tmp_path), str(tmp_path / "out"), "group"]
    default = parser.parse_args(args)
    assert default.group.clinical_covariates == ()
    assert default.group.conformal_coverage == 0.9
    config = parser.parse_args(
        [*args, "--clinical-covariates", "nihss", "moca", "--conformal-coverage", "0.8"]
    )
    assert config.group.clinical_covariates == ("nihss", "moca")
    assert config.group.conformal_coverage == 0.8
    assert GroupParams.from_dict(config.group.to_dict()) == config.group
    saved = tmp_path / "config.toml"
    saved.write_text(to_toml(config))
    again = parser.parse_args([*args, "--config-file", str(saved)])
    assert again.group.clinical_covariates == ("nihss", "moca")
    assert again.group.conformal_coverage == 0.8
    with pytest.raises(InputError, match="conformal coverage"):
        GroupParams(conformal_coverage=1.0)
