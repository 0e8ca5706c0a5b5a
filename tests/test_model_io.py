"""Model export and safe loading: round trip, checksum, pickle refusal, card compatibility, prediction."""

import json

import nibabel as nb
import numpy as np
import pytest
import torch

from workflows import model_io
from workflows.cnn import StrokeCNN, fit_normaliser, predict_proba
from workflows.grid import make_grid
from workflows.metadata import shared_parameters
from workflows.params import TrainSettings
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
    assert result["model_id"] == model_io.read_card(out)["WeightsSHA256"][:12]
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
