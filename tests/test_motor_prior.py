"""The a-priori motor-network model: its regions (from the literature, relative to the lesion side), its
place in the registry, a positive and a negative control, and its export round trip."""

import json

import numpy as np
import pytest

from workflows import cross_validation as xv
from workflows import model_io, models, stats
from workflows.grid import make_grid
from workflows.motor_prior import (
    MOTOR_PRIOR_REGIONS,
    motor_prior_labels,
    region_atlas_names,
    region_names,
)
from workflows.params import CVParams, GroupParams
from workflows.seeds import atlas_image, atlas_labels

PRIOR = models.MOTOR_PRIOR_MODEL


def test_the_prior_is_the_motor_network_of_the_stroke_literature_in_both_hemispheres():
    names = region_names()
    assert len(names) == 2 * len(MOTOR_PRIOR_REGIONS) == 12
    assert {r.name for r in MOTOR_PRIOR_REGIONS} == {
        "M1",
        "SMA",
        "premotor",
        "thalamus",
        "putamen",
        "cerebellum",
    }
    assert all(r.sources for r in MOTOR_PRIOR_REGIONS)  # each region says which study names it
    assert names[:2] == ["ipsilesional M1", "contralesional M1"]
    for atlas, regions in region_atlas_names("L").values():  # every name exists in its atlas
        assert set(regions) <= set(atlas_labels(atlas))


def test_the_lesion_side_decides_which_hemisphere_is_ipsilesional():
    left, right = region_atlas_names("L"), region_atlas_names("R")
    assert left["ipsilesional M1"] == ("HCPEx", ["Primary_Motor_Cortex_L"])
    assert right["ipsilesional M1"] == ("HCPEx", ["Primary_Motor_Cortex_R"])
    assert right["contralesional thalamus"] == ("AAL", ["Thalamus_L"])
    assert left["ipsilesional cerebellum"][1] == ["Cerebelum_4_5_L", "Cerebelum_6_L", "Cerebelum_8_L"]
    with pytest.raises(ValueError, match="not L or R"):
        region_atlas_names("left")


@pytest.fixture(scope="module")
def atlas_grid():
    img = atlas_image("AAL")
    return make_grid(img, np.asarray(img.dataobj) > 0, 4.0)


def test_on_the_aligned_grid_ipsilesional_regions_lie_left_and_a_right_lesion_mirrors_them(atlas_grid):
    labels = motor_prior_labels(atlas_grid)
    x0, dx = float(np.asarray(atlas_grid["affine"])[0][3]), float(np.asarray(atlas_grid["affine"])[0][0])
    for value, name in enumerate(region_names(), start=1):
        ijk = np.argwhere(labels == value)
        assert len(ijk) >= models.MIN_PARCEL_VOXELS, name
        x_mm = x0 + dx * ijk[:, 0].mean()
        assert (x_mm < 0) == name.startswith("ipsi"), (name, x_mm)
    mirrored = motor_prior_labels(atlas_grid, lesion_side="R")
    ipsi_m1_right = np.argwhere(mirrored == 1)
    assert x0 + dx * ipsi_m1_right[:, 0].mean() > 0


def _prior_cohort(effect: float, n: int = 40, seed: int = 0):
    """Group inputs with 12 prior regions among 60 whole-brain parcels; the severe half has +effect SD in
    two prior regions (i.i.d. voxel noise elsewhere)."""
    gen = np.random.default_rng(seed)
    shape = (12, 10, 8)
    ijk = np.indices(shape)
    parcels = ((ijk[0] // 2) * 10 + ijk[1] // 1 + 1).astype(np.int32)  # 60 parcels
    prior = np.where(parcels <= 12, parcels, 0).astype(np.int32)
    y = np.arange(n) % 2
    gen.shuffle(y)
    x = gen.normal(size=(n, *shape)).astype(np.float32)
    x[y == 1] += effect * np.isin(prior, [1, 4])
    units = np.array([f"{i:02d}" for i in range(n)])
    return {
        "x": x,
        "y": y,
        "groups": units,
        "split_groups": units,
        "subjects": units,
        "parcels": parcels,
        models.PRIOR_REGIONS: prior,
    }


def _prior_ba(effect: float) -> float:
    data = _prior_cohort(effect)
    fits = models.fold_models(data, GroupParams())
    folds = xv.subject_folds(data["y"], data["groups"], 5, 1, seed=0)
    n = np.arange(len(data["y"]))
    _, metrics, _ = xv.cross_validate(n, data["y"], data["groups"], folds, {PRIOR: fits[PRIOR]})
    return stats.summarise_models(metrics)[PRIOR]["balanced_accuracy"]["mean"]


def test_positive_control_an_effect_in_the_prior_regions_is_found():
    assert _prior_ba(0.6) >= 0.8  # 0.975 when written (0.75 at +0.4 SD)


def test_negative_control_a_null_stays_at_chance():
    assert _prior_ba(0.0) <= 0.7


def test_the_prior_model_is_in_the_registry_exported_and_runs_only_with_its_regions():
    spec = models.MODELS[PRIOR]
    assert (spec.input, spec.requires, spec.exported) == (models.DFCSD, models.PRIOR_REGIONS, True)
    assert PRIOR in [s.name for s in models.models_for("classification")]
    assert PRIOR in [s.name for s in models.models_for("regression")]
    assert models.exported_model(GroupParams(export_model=PRIOR)) == PRIOR
    assert PRIOR in models.permuted_models(GroupParams(cv=CVParams(n_permutations=1)))
    data = _prior_cohort(0.0, n=10)
    assert PRIOR in models.fold_models(data, GroupParams())
    del data[models.PRIOR_REGIONS]  # unaligned maps: no regions relative to the lesion, no model
    assert PRIOR not in models.fold_models(data, GroupParams())


def test_export_and_apply_round_trip(tmp_path):
    """--export-model motor_prior: the region volume travels with the weights, and the exported arrays
    predict as the fitted pipeline does on the region means."""
    from workflows.export import train_final
    from workflows.parcel_model import ParcelLinearModel, fit_parcel_model

    data = _prior_cohort(0.4, n=20)
    np.savez(tmp_path / "inputs.npz", **data)
    final = train_final(tmp_path / "inputs.npz", GroupParams(export_model=PRIOR), tmp_path / "work")
    arrays, card = model_io.load_arrays(final)
    assert (card["training"]["model"], card["training"]["n_parcels"]) == (PRIOR, 12)
    assert card["features"]["atlas"]["regions"] == region_names()
    assert json.dumps(card["features"])  # plain JSON
    loaded = ParcelLinearModel.from_arrays(arrays, "classification")
    np.testing.assert_array_equal(loaded.parcels, data[models.PRIOR_REGIONS])
    _, pipeline, _ = fit_parcel_model(
        data["x"], data["y"], data["groups"], data[models.PRIOR_REGIONS], name=PRIOR
    )
    new = np.random.default_rng(3).normal(size=(4, *data["x"].shape[1:]))
    features = models.parcel_means(new, models.parcel_matrix(data[models.PRIOR_REGIONS])[0])
    np.testing.assert_allclose(loaded.predict(new), pipeline.predict_proba(features)[:, 1], rtol=1e-9)


def test_exported_card_names_the_prior_and_participant_model_applies_it(tmp_path):
    """The card describes the motor prior (not the HCPEx primary) and cites AAL; predict_subject applies
    the exported arrays to a map on the card's grid."""
    import nibabel as nb

    from workflows.export import export_model, train_final
    from workflows.grid import apply_grid, grid_mask
    from workflows.metadata import shared_parameters
    from workflows.parcel_model import ParcelLinearModel
    from workflows.prediction import predict_subject

    meta = {
        "Space": "MNI152NLin2009cAsym",
        "WindowLength_s": 44.0,
        "WindowStep_vol": 1,
        "WindowShape": "rectangular",
        "MinWindowCoverage": 0.8,
        "Denoising": {"Strategy": "simple", "HighPass_Hz": 0.01, "LowPass_Hz": 0.08},
    }
    shape = (12, 10, 8)
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = [-22.0, -20.0, -20.0]
    grid = make_grid(nb.Nifti1Image(np.ones(shape, np.float32), affine), np.ones(shape, bool), 4.0)
    data = _prior_cohort(0.6, n=20)
    on_grid = tuple(grid["shape"])
    prior = np.zeros(on_grid, np.int32)
    prior[: on_grid[0] // 2], prior[on_grid[0] // 2 :] = 1, 2  # two regions fill the grid
    prior *= grid_mask(grid)
    data.update(x=np.random.default_rng(1).normal(size=(20, *on_grid)), parcels=prior)
    data[models.PRIOR_REGIONS] = prior
    np.savez(tmp_path / "inputs.npz", **data)
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    metrics = {"balanced_accuracy": {"mean": 0.6, "sd": 0.1, "ci95": [0.5, 0.7]}}
    summary = {
        "models": {PRIOR: metrics},
        "bootstrap": {PRIOR: {"balanced_accuracy": {"value": 0.62, "ci95": [0.41, 0.8]}}},
        "cv": {"folds": 2, "repeats": 1},
        "n_subjects": 20,
        "n_sessions": 20,
        "class_counts": {"severe": 10, "mild-to-moderate": 10},
    }
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    params = GroupParams(export_model=PRIOR)
    final = train_final(tmp_path / "inputs.npz", params, tmp_path / "work")
    out = export_model(
        final,
        tmp_path / "grid.json",
        tmp_path / "summary.json",
        params,
        shared_parameters(meta),
        tmp_path / "m",
    )
    card = model_io.read_card(out)
    assert card["DeployedModel"]["model"] == PRIOR
    assert "motor-network regions" in card["Description"]
    assert "HCPEx parcel means" not in card["Description"]
    assert card["Atlases"]["motor_prior_regions"]["Name"] == "AAL"
    img = nb.Nifti1Image(np.random.default_rng(2).normal(size=shape).astype(np.float32), affine)
    nb.save(img, tmp_path / "map.nii.gz")
    result = predict_subject(
        tmp_path / "map.nii.gz", out, subject="01", lesion_side="L", space=meta["Space"], meta=meta
    )
    arrays, _ = model_io.load_arrays(out)
    expected = ParcelLinearModel.from_arrays(arrays, "classification").predict(
        apply_grid(img, grid, "L", True, None)
    )
    assert result["prob_severe"] == pytest.approx(float(expected[0]), abs=1e-6)
