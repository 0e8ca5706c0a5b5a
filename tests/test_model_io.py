"""Model export and safe loading: round trip, checksum, pickle refusal, card compatibility, prediction."""

import json

import nibabel as nb
import numpy as np
import pytest
import torch

from workflows import model_io, models
from workflows.cnn import StrokeCNN, fit_normaliser, predict_proba
from workflows.grid import make_grid
from workflows.metadata import shared_parameters
from workflows.params import TrainSettings
from workflows.parcel_model import ParcelLinearModel
from workflows.utils.errors import InputError

SHAPE = (9, 10, 11)
META = {
    "Space": "MNI152NLin2009cAsym",
    "WindowLength_s": 60.0,
    "WindowStep_vol": 1,
    "WindowShape": "rectangular",
    "MinWindowCoverage": 0.8,
    "Denoising": {"Strategy": "simple", "HighPass_Hz": 0.01, "LowPass_Hz": 0.08, "SmoothingFWHM_mm": 6.0},
}


def _affine(shape, vox=4.0):
    aff = np.diag([vox, vox, vox, 1.0])
    aff[:3, 3] = [-(shape[0] - 1) * vox / 2, -20.0, -20.0]
    return aff


@pytest.fixture
def exported(tmp_path, rng):
    """A small model exported with a card whose grid fits SHAPE maps at 4 mm."""
    ref = nb.Nifti1Image(np.ones(SHAPE, np.float32), _affine(SHAPE))
    grid = make_grid(ref, np.ones(SHAPE, bool), 4.0)
    model = StrokeCNN(grid["shape"], TrainSettings(channels=(2, 2, 4, 4)))
    fit_normaliser(model, rng.normal(size=(5, *grid["shape"])).astype(np.float32))
    model.eval()
    card = {
        "input": {"grid": grid, "space": META["Space"], "align_lesion": True},
        "label": {"severe_threshold": 20.0},
        "cross_validation": {"cnn": {"balanced_accuracy": 0.7}},
        "dfc_parameters": shared_parameters(META),
    }
    out = model_io.save_model(model, card, tmp_path / "model")
    return out, model, grid


def test_round_trip_gives_the_same_predictions(exported, rng):
    out, model, grid = exported
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors", "model_card.json"]
    loaded, card = model_io.load_model(out)
    assert card["WeightsSHA256"] == model_io.sha256(out / "model.safetensors")
    assert card["architecture"] == model.architecture()
    x = rng.normal(size=(3, *grid["shape"])).astype(np.float32)
    np.testing.assert_allclose(predict_proba(loaded, x), predict_proba(model, x), rtol=1e-6)
    # the normaliser buffers travel with the weights
    assert torch.equal(loaded.in_mean, model.in_mean)
    # the weights file path itself is accepted too
    model_io.load_model(out / "model.safetensors")


def test_tampered_weights_are_refused(exported):
    out, _, _ = exported
    weights = out / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(InputError, match="SHA-256"):
        model_io.load_model(out)


def test_card_with_another_checksum_is_refused(exported):
    out, _, _ = exported
    card = json.loads((out / "model_card.json").read_text())
    card["WeightsSHA256"] = "0" * 64
    (out / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="edited after export"):  # the checksum is part of the model id
        model_io.load_model(out)
    card["ModelId"] = model_io.model_id(card)  # a consistent forgery still fails on the weights
    (out / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="does not match the model card"):
        model_io.load_model(out)


def test_missing_files_and_other_versions_are_refused(exported, tmp_path):
    out, _, _ = exported
    with pytest.raises(InputError, match="does not exist"):
        model_io.load_model(tmp_path / "nowhere")
    card = json.loads((out / "model_card.json").read_text())
    (out / "model_card.json").write_text(json.dumps({**card, "CardVersion": 99}))
    with pytest.raises(InputError, match="version 99"):
        model_io.load_model(out)
    (out / "model_card.json").write_text(json.dumps(card))
    (out / "model.safetensors").unlink()
    with pytest.raises(InputError, match="missing"):
        model_io.load_model(out)
    (out / "model_card.json").unlink()
    with pytest.raises(InputError, match=r"no model_card\.json"):
        model_io.load_model(out)


def test_pickle_files_are_never_loaded(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("torch.load must not be called")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr("pickle.load", forbidden)
    pt = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, pt)
    for name in ("model.pt", "weights.pth", "model.pkl"):
        with pytest.raises(InputError, match="pickle"):
            model_io.load_model(tmp_path / name)
    with pytest.raises(InputError, match=r"pickle-based file\(s\) model.pt"):
        model_io.load_model(tmp_path)


def test_card_compatibility_names_the_mismatch(exported):
    out, _, _ = exported
    card = model_io.read_card(out)
    params = shared_parameters(META)
    model_io.check_card_compatible(card, space=META["Space"], dfc_params=params)
    with pytest.raises(InputError, match="space: model 'MNI152NLin2009cAsym' vs subject 'MNI152NLin6Asym'"):
        model_io.check_card_compatible(card, space="MNI152NLin6Asym", dfc_params=params)
    with pytest.raises(InputError, match=r"WindowLength_s: model 60\.0 vs subject 30\.0"):
        model_io.check_card_compatible(
            card, space=META["Space"], dfc_params={**params, "WindowLength_s": 30.0}
        )
    # another repetition time: 60 s is 20 volumes of 3 s but 27 volumes (59.4 s) of 2.2 s
    model_io.check_card_compatible(
        card, space=META["Space"], dfc_params={**params, "WindowLength_s": 59.4}, tr=2.2
    )
    with pytest.raises(InputError, match="WindowLength_s"):
        model_io.check_card_compatible(
            card, space=META["Space"], dfc_params={**params, "WindowLength_s": 59.4}
        )


def test_predict_subject_uses_the_card(exported, tmp_path, rng):
    from workflows.prediction import predict_subject

    out, _, _ = exported
    img = nb.Nifti1Image(rng.random(SHAPE).astype(np.float32), _affine(SHAPE))
    path = tmp_path / "map.nii.gz"
    nb.save(img, path)
    result = predict_subject(path, out, subject="01", lesion_side="R", space=META["Space"], meta=META)
    assert 0 <= result["prob_severe"] <= 1
    assert result["model_id"] == model_io.read_card(out)["ModelId"][:12]
    assert result["model_type"] == "cnn"
    assert result["model_cv_balanced_accuracy"] == 0.7
    assert result["resampled"] is False
    assert result["resampling"].startswith("none")
    # a second site at 3 mm on another field of view: resampled to the model grid, and said so
    shape3 = (13, 14, 15)
    aff3 = np.diag([3.0, 3.0, 3.0, 1.0])
    aff3[:3, 3] = [-18.0, -21.0, -21.0]
    nb.save(nb.Nifti1Image(rng.random(shape3).astype(np.float32), aff3), tmp_path / "map3.nii.gz")
    other = predict_subject(
        tmp_path / "map3.nii.gz", out, subject="02", lesion_side="L", space=META["Space"], meta=META
    )
    assert other["resampled"] is True
    assert other["source_voxel_size_mm"] == 3.0
    assert other["model_source_voxel_size_mm"] == 4.0
    assert "3x3x3 mm" in other["resampling"]
    assert other["grid_coverage"] > 0.9
    # a map that misses most of the model's brain (another field of view or space) is refused
    far = aff3.copy()
    far[:3, 3] += 60.0
    nb.save(nb.Nifti1Image(rng.random(shape3).astype(np.float32), far), tmp_path / "far.nii.gz")
    with pytest.raises(InputError, match="covers"):
        predict_subject(
            tmp_path / "far.nii.gz", out, subject="03", lesion_side="L", space=META["Space"], meta=META
        )


def test_json_clean_makes_valid_json():
    cleaned = model_io.json_clean({"a": float("nan"), "b": np.float32(1.5), "c": np.arange(2), "d": (1, 2)})
    assert json.loads(json.dumps(cleaned, allow_nan=False)) == {"a": None, "b": 1.5, "c": [0, 1], "d": [1, 2]}


# ------------------------------------- the card bound to its weights (reliability-2.md, rows 62-63)
def _edit_card(out, **changes):
    card = json.loads((out / "model_card.json").read_text())
    for dotted, value in changes.items():
        *path, key = dotted.split("__")
        node = card
        for part in path:
            node = node[part]
        node[key] = value
    (out / "model_card.json").write_text(json.dumps(card))
    return card


@pytest.mark.parametrize(
    "weights_file",
    ["../model_good/model.safetensors", "/abs/model.safetensors", "sub/model.safetensors", "..", ""],
)
def test_fault_62_weights_file_must_be_a_plain_name_inside_the_folder(exported, tmp_path, weights_file):
    """Row 62: a card-only folder whose WeightsFile points elsewhere never loads those weights."""
    out, _, _ = exported
    other = tmp_path / "model_trav"
    other.mkdir()
    card = json.loads((out / "model_card.json").read_text())
    card["WeightsFile"] = weights_file
    card["ModelId"] = model_io.model_id(card)  # WeightsFile is not a prediction field: id still valid
    (other / "model_card.json").write_text(json.dumps(card))
    with pytest.raises(InputError, match="not a plain file name inside the model folder") as err:
        model_io.load_model(other)
    assert "model_card.json" in str(err.value)
    assert "How to fix" in str(err.value)


def test_fault_62_a_weights_link_out_of_the_folder_is_refused(exported, tmp_path):
    out, _, _ = exported
    linked = tmp_path / "model_link"
    linked.mkdir()
    (linked / "model_card.json").write_text((out / "model_card.json").read_text())
    (linked / "model.safetensors").symlink_to(out / "model.safetensors")
    with pytest.raises(InputError, match="outside the model folder"):
        model_io.load_model(linked)
    # a link inside the folder is fine
    inside = tmp_path / "model_inside"
    inside.mkdir()
    (inside / "model_card.json").write_text((out / "model_card.json").read_text())
    (inside / "weights.bin.real").write_bytes((out / "model.safetensors").read_bytes())
    (inside / "model.safetensors").symlink_to(inside / "weights.bin.real")
    model_io.load_model(inside)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("label__severe_threshold", 60.0),  # row 63
        ("input__align_lesion", False),
        ("input__grid__resolution_mm", 2.0),
        ("dfc_parameters__WindowLength_s", 30.0),
        ("target", "regression"),
    ],
)
def test_fault_63_editing_a_prediction_field_of_the_card_is_refused(exported, field, value):
    """Row 63: the severe threshold 20 -> 60 (or any field that changes a prediction) is refused."""
    out, _, _ = exported
    _edit_card(out, **{field: value})
    with pytest.raises(InputError, match="edited after export") as err:
        model_io.read_card(out)
    assert "label.severe_threshold" in str(err.value)
    with pytest.raises(InputError, match="edited after export"):
        model_io.load_model(out)


def test_editing_descriptive_fields_keeps_the_model_loadable(exported):
    out, _, _ = exported
    _edit_card(out, Description="a note added by a user")
    model_io.load_model(out)


def test_model_id_covers_the_weights_and_prediction_fields(exported):
    out, _, _ = exported
    card = model_io.read_card(out)
    assert card["ModelId"] == model_io.model_id(card)
    for key in model_io.PREDICTION_FIELDS:
        assert model_io.model_id({**card, key: "other"}) != card["ModelId"]
    assert model_io.model_id({**card, "WeightsSHA256": "0" * 64}) != card["ModelId"]


# ------------------------------------------------------------ the primary parcel model, exported as arrays
def _parcel_cohort(rng, n=30, shape=(6, 7, 8)):
    parcels = np.zeros(shape, np.int32)
    parcels[:3, :, :4], parcels[3:, :, :4], parcels[:3, :, 4:], parcels[3:, :, 4:] = 1, 2, 3, 4
    parcels[0, 0, 0] = 9  # a one-voxel parcel: below the minimum, left out
    y = np.arange(n) % 2
    x = rng.normal(0.3, 0.05, size=(n, *shape))
    x[y == 1, :3, :, :4] += 0.05  # the severe subjects' parcel 1 differs
    x[0, 3:, :, :4] = np.nan  # a lesion covering parcel 2 in subject 0
    return x, y, np.array([f"s{i}" for i in range(n)]), parcels


@pytest.mark.parametrize("target", ["classification", "regression"])
def test_parcel_model_round_trip_predicts_as_the_fitted_pipeline(tmp_path, rng, target):
    from workflows.models import parcel_matrix, parcel_means
    from workflows.parcel_model import PARCEL_TYPE, ParcelLinearModel, fit_parcel_model

    x, y, groups, parcels = _parcel_cohort(rng)
    labels = y if target == "classification" else 10.0 + 30.0 * y + rng.normal(0, 2, len(y))
    model, pipeline, facts = fit_parcel_model(x, labels, groups, parcels, target=target)
    assert facts["n_parcels"] == 4
    assert model.parcel_ids.tolist() == [1, 2, 3, 4]
    out = model_io.save_arrays(
        model.to_arrays(), {"ModelType": PARCEL_TYPE, "input": {}, "target": target}, tmp_path / "m"
    )
    arrays, card = model_io.load_arrays(out)
    loaded = ParcelLinearModel.from_arrays(arrays, card["target"])
    new = rng.normal(0.3, 0.05, size=(5, *x.shape[1:]))
    new[1, :3] = np.nan  # unknown parcels are set to the training mean, as the pipeline's imputer does
    features = parcel_means(new, parcel_matrix(parcels)[0])
    expected = (
        pipeline.predict(features) if target == "regression" else pipeline.predict_proba(features)[:, 1]
    )
    np.testing.assert_allclose(loaded.predict(new), expected, rtol=1e-9, atol=1e-12)
    with pytest.raises(InputError, match="not a CNN"):
        model_io.load_model(out)


def test_parcel_model_prediction_through_the_card(tmp_path, rng):
    """The exported primary model is applied by predict_subject to a map on the card's grid."""
    from workflows.grid import apply_grid
    from workflows.parcel_model import PARCEL_TYPE, features_record, fit_parcel_model
    from workflows.prediction import predict_subject

    ref = nb.Nifti1Image(np.ones(SHAPE, np.float32), _affine(SHAPE))
    grid = make_grid(ref, np.ones(SHAPE, bool), 4.0)
    shape = tuple(grid["shape"])
    parcels = np.zeros(shape, np.int32)
    parcels[: shape[0] // 2] = 1
    parcels[shape[0] // 2 :] = 2
    x = rng.normal(0.3, 0.05, size=(20, *shape))
    y = np.arange(20) % 2
    x[y == 1, : shape[0] // 2] += 0.1
    model, _, _ = fit_parcel_model(x, y, np.arange(20).astype(str), parcels)
    card = {
        "ModelType": PARCEL_TYPE,
        "target": "classification",
        "features": features_record(model),
        "input": {"grid": grid, "space": META["Space"], "align_lesion": False},
        "label": {"severe_threshold": 20.0},
        "DeployedModel": {"model": "parcel"},
        "cross_validation": {"parcel": {"balanced_accuracy": 0.8}},
        "dfc_parameters": shared_parameters(META),
    }
    out = model_io.save_arrays(model.to_arrays(), card, tmp_path / "model")
    img = nb.Nifti1Image(rng.normal(0.3, 0.05, SHAPE).astype(np.float32), _affine(SHAPE))
    nb.save(img, tmp_path / "map.nii.gz")
    result = predict_subject(
        tmp_path / "map.nii.gz", out, subject="01", lesion_side="L", space=META["Space"], meta=META
    )
    on_grid = apply_grid(nb.load(tmp_path / "map.nii.gz"), grid, "L", False, None)
    assert result["prob_severe"] == pytest.approx(float(model.predict(on_grid)[0]), abs=1e-6)
    assert (result["model_type"], result["model_cv_balanced_accuracy"]) == ("parcel", 0.8)
    assert result["model_id"] == model_io.read_card(out)["ModelId"][:12]


@pytest.mark.parametrize("choice", ["primary", "cnn", "parcel_enet"])
def test_train_final_and_export_the_chosen_model(tmp_path, rng, choice):
    """--export-model primary (default) exports the parcel model with its honest evidence; cnn the CNN;
    parcel_enet the elastic-net parcel model as the same plain arrays, applied by the same code."""
    from workflows.export import export_model, train_final
    from workflows.params import GroupParams

    ref = nb.Nifti1Image(np.ones(SHAPE, np.float32), _affine(SHAPE))
    grid = make_grid(ref, np.ones(SHAPE, bool), 4.0)
    shape = tuple(grid["shape"])
    parcels = np.zeros(shape, np.int32)
    parcels[: shape[0] // 2], parcels[shape[0] // 2 :] = 1, 2
    y = np.arange(12) % 2
    units = np.array([f"{i:02d}" for i in range(12)])
    np.savez(
        tmp_path / "inputs.npz",
        x=rng.normal(size=(12, *shape)).astype(np.float32),
        y=y,
        groups=units,
        split_groups=units,
        parcels=parcels,
    )
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    metrics = {"balanced_accuracy": {"mean": 0.6, "sd": 0.1, "ci95": [0.5, 0.7]}}
    summary = {
        "models": {"parcel": metrics, "cnn": metrics},
        "bootstrap": {"parcel": {"balanced_accuracy": {"value": 0.62, "ci95": [0.41, 0.8]}}},
        "permutation": {"models": {"parcel": {"p_value": 0.04, "null_balanced_accuracy": [0.5] * 24}}},
        "calibration_metrics": {
            "model": "parcel",
            "calibration_slope": {"value": 0.7, "ci95": [0.2, 1.4]},
            "scaled_brier": {"value": 0.1, "ci95": [-0.2, 0.3]},
        },
        "cv": {"folds": 2, "repeats": 1},
        "n_subjects": 12,
        "n_sessions": 12,
        "class_counts": {"severe": 6, "mild-to-moderate": 6},
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    params = GroupParams(
        export_model=choice, train=TrainSettings(epochs=1, channels=(2, 2, 4, 4), device="cpu")
    )
    final = train_final(tmp_path / "inputs.npz", params, tmp_path / "work")
    out = export_model(
        final,
        tmp_path / "grid.json",
        tmp_path / "summary.json",
        params,
        shared_parameters(META),
        tmp_path / "m",
    )
    card = model_io.read_card(out)
    deployed = card["DeployedModel"]
    if choice == "primary":
        assert card["ModelType"] == "parcel_linear"
        assert (deployed["model"], deployed["permutation_p_value"]) == ("parcel", 0.04)
        assert deployed["balanced_accuracy"] == {
            "value": 0.62,
            "ci95": [0.41, 0.8],
        }  # not the fold t-interval
        assert card["cross_validation"]["permutation_p_value"] == 0.04
        calibration = deployed["calibration"]  # in-CV calibration of the deployed model
        assert calibration["calibration_slope"] == {"value": 0.7, "ci95": [0.2, 1.4]}
        assert calibration["scaled_brier"]["value"] == 0.1
        model_io.load_arrays(out)
    elif choice == "parcel_enet":
        assert card["ModelType"] == "parcel_linear"
        assert deployed["model"] == "parcel_enet"
        assert deployed["permutation_p_value"] is None  # the summary has no permutation of it
        training = card["training"]
        assert (training["model"], training["estimator"]) == ("parcel_enet", "LogisticRegression")
        assert training["strength"]["l1_ratio"] in models.ENET_L1_RATIOS
        arrays, _ = model_io.load_arrays(out)
        fitted = ParcelLinearModel.from_arrays(arrays, "classification")
        x = np.load(tmp_path / "inputs.npz")["x"]
        assert np.all((fitted.predict(x) >= 0) & (fitted.predict(x) <= 1))
    else:
        assert card["ModelType"] == "cnn"
        assert deployed["model"] == "cnn"
        assert deployed["permutation_p_value"] is None  # the CNN was not permuted
        assert deployed["calibration"] is None  # the summary's calibration is the parcel model's
        model_io.load_model(out)
