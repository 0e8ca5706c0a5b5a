"""The primary parcel model explained by its activation patterns (Haufe et al. 2014) over the fold models."""

import json

import numpy as np
import pytest

from workflows import activation_patterns as ap
from workflows import cross_validation as xv
from workflows.grid import grid_to_dict
from workflows.models import PRIMARY_MODEL
from workflows.params import CVParams, GroupParams

SHAPE = (8, 7, 6)


def test_the_pattern_is_the_covariance_with_the_decision_value_not_the_weight():
    """A suppressor: feature 1 = signal + noise, feature 2 = the noise alone (uncorrelated with the
    signal). The weights (1, -1) read both; the pattern shows that only feature 1 carries the signal."""
    signal, noise = np.array([1.0, -1.0, 1.0, -1.0]), np.array([1.0, 1.0, -1.0, -1.0])
    z = np.column_stack([signal + noise, noise])
    score = z @ np.array([1.0, -1.0])  # = signal
    # the signal's covariance with itself over its SD (4/3 / sqrt(4/3)); the noise: nothing
    np.testing.assert_allclose(ap.activation_pattern(z, score), [np.sqrt(4 / 3), 0.0], atol=1e-12)
    np.testing.assert_allclose(ap.activation_pattern(z, 7 * score), [np.sqrt(4 / 3), 0.0], atol=1e-12)
    # by hand: centred columns (-1, 0, 1) and (-1, -1, 2), centred s (-1, -1, 2): covariances (3, 6) / 2,
    # SD of s sqrt(6 / 2)
    z = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 3.0]])
    s = np.array([1.0, 1.0, 4.0])
    np.testing.assert_allclose(ap.activation_pattern(z, s), [1.5 / np.sqrt(3), 3 / np.sqrt(3)])
    assert np.isnan(ap.activation_pattern(z, np.ones(3))).all()  # a constant decision value


def _box_parcels():
    """Four box parcels (x halves x y halves): 1 and 2 left (world x < 0), 3 and 4 right."""
    parcels = np.zeros(SHAPE, np.int32)
    parcels[:4, :3], parcels[:4, 3:], parcels[4:, :3], parcels[4:, 3:] = 1, 2, 3, 4
    return parcels


def test_a_planted_parcel_leads_the_patterns_in_every_fold_and_names_its_side(tmp_path):
    gen = np.random.default_rng(2)
    n = 24
    labels = np.array([f"{i:02d}" for i in range(n)])
    y = np.arange(n) % 2
    x = gen.normal(size=(n, *SHAPE)).astype(np.float32)
    parcels = _box_parcels()
    x[y == 1] += 1.5 * (parcels == 3)
    data = {
        "x": x,
        "y": y,
        "groups": labels,
        "split_groups": labels,
        "subjects": labels,
        "parcels": parcels,
    }
    params = GroupParams(cv=CVParams(cv_folds=3, cv_repeats=2))
    subjects = [{"label": s, "score": 10.0 if t else 40.0} for s, t in zip(labels, y)]
    folds = xv.plan_folds(subjects, params)
    patterns, ids = ap.fold_patterns(data, folds, params)
    assert patterns.shape == (6, 4)
    assert ids.tolist() == [1, 2, 3, 4]
    assert (np.abs(patterns).argmax(1) == 2).all()  # every fold model: parcel 3 first
    assert (patterns[:, 2] > 0).all()  # higher in the subjects it calls severe
    aff = np.diag([4.0, 4.0, 4.0, 1.0])
    aff[:3, 3] = [-14.0, 0.0, 0.0]  # x centres -14 ... 14
    rows = ap.pattern_table(patterns, ids, parcels, aff, {3: "Planted_R"}, top=2)
    assert len(rows) == 2
    assert (rows[0]["region"], rows[0]["side"]) == ("Planted", "contralesional")
    assert rows[0]["fold_top_share"] == 1.0  # top 2 of 4 in every fold
    assert rows[0]["fold_sign_agreement"] == 1.0
    assert rows[0]["n_voxels"] == 4 * 3 * 6
    assert rows[1]["fold_top_share"] < 1.0  # the runner-up changes between folds

    # the group node's function writes the table and its stability, named by the registry's primary model
    np.savez(tmp_path / "data.npz", **data)
    grid = grid_to_dict(
        aff, SHAPE, np.ones(SHAPE, bool), source_shape=SHAPE, source_affine=aff, resolution=4.0
    )
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    files = ap.explain_parcel_model(tmp_path / "data.npz", tmp_path / "grid.json", folds, params, tmp_path)
    assert [f.rsplit("/", 1)[-1] for f in files] == ["parcel_patterns.tsv", "parcel_patterns.json"]
    header = (tmp_path / "parcel_patterns.tsv").read_text().splitlines()[0].split("\t")
    assert header == list(ap.PATTERN_COLUMNS)
    sidecar = json.loads((tmp_path / "parcel_patterns.json").read_text())
    assert sidecar["Model"] == PRIMARY_MODEL
    assert sidecar["Stability"]["FoldModels"] == 6
    assert -1 <= sidecar["Stability"]["FoldProfileSpearman"] <= 1


def test_no_patterns_when_the_fold_models_cannot_be_refit_as_they_were_fit(tmp_path):
    params = GroupParams(timescale="auto")
    assert ap.explain_parcel_model(tmp_path / "none.npz", tmp_path / "none.json", [], params, tmp_path) == []


@pytest.mark.parametrize("k", [1, 3])
def test_the_pattern_table_has_at_most_top_rows(k, rng):
    patterns = rng.normal(size=(4, 5))
    parcels = np.repeat(np.arange(1, 6), 10).reshape(5, 10, 1)
    rows = ap.pattern_table(patterns, np.arange(1, 6), parcels, np.eye(4), {}, top=k)
    assert len(rows) == k
    assert abs(rows[0]["activation_pattern"]) == pytest.approx(np.abs(patterns.mean(0)).max())
