"""The sparse parcel models (L1, elastic net): they find a focal effect (positive control) and stay at
chance on a null."""

from functools import partial

import numpy as np
import pytest

from workflows import cross_validation as xv
from workflows import models, stats
from workflows.params import CVParams, GroupParams


def _focal_cohort(effect: float, n: int = 48, shape=(18, 18, 18), seed: int = 0):
    """i.i.d. voxel noise in 216 cubic parcels; the severe half gets +effect SD in a ~94-voxel ball that
    straddles 8 parcels (a focal effect, as a small stroke-related change would be)."""
    gen = np.random.default_rng(seed)
    ijk = np.indices(shape)
    parcels = (ijk[0] // 3) * 36 + (ijk[1] // 3) * 6 + ijk[2] // 3 + 1
    ball = ((ijk - np.array([7.5, 9.0, 9.0])[:, None, None, None]) ** 2).sum(0) <= 2.7**2
    y = np.arange(n) % 2
    gen.shuffle(y)
    x = gen.normal(size=(n, *shape)).astype(np.float32)
    x[y == 1] += effect * ball
    return x, y, np.arange(n).astype(str), parcels


FITS = {"parcel_l1": models.sparse_fit_predict, "parcel_enet": models.enet_fit_predict}


def _sparse_ba(effect: float, name: str = "parcel_l1") -> float:
    x, y, groups, parcels = _focal_cohort(effect)
    operator, _ = models.parcel_matrix(parcels)
    # 2 folds (24 training subjects): half the cost of 4, and a harder positive control
    folds = xv.subject_folds(y, groups, 2, 1, seed=0)
    fit = partial(FITS[name], operator=operator)
    _, metrics, _ = xv.cross_validate(x, y, groups, folds, {name: fit})
    return stats.summarise_models(metrics)[name]["balanced_accuracy"]["mean"]


@pytest.mark.parametrize("name", list(FITS))
def test_positive_control_a_focal_effect_is_found(name):
    """+1 SD in 94 voxels of 216 parcels, 48 subjects, 2 folds: L1 1.00, elastic net 1.00 (with 4 folds:
    both 1.00, the dense L2 parcel model 0.875)."""
    assert _sparse_ba(1.0, name) >= 0.9


@pytest.mark.parametrize("name", list(FITS))
def test_negative_control_a_null_stays_at_chance(name):
    assert _sparse_ba(0.0, name) <= 0.7


@pytest.mark.parametrize("name", list(FITS))
def test_sparse_model_is_in_the_registry_for_classification_only(name):
    names = [spec.name for spec in models.models_for("classification")]
    assert name in names
    assert name not in [spec.name for spec in models.models_for("regression")]
    assert name in models.permuted_models(GroupParams(cv=CVParams(n_permutations=1)))


@pytest.mark.parametrize("estimator", [models.sparse_estimator, models.enet_estimator])
@pytest.mark.parametrize("n_train", [3, 20])
def test_sparse_estimator_without_inner_splits_keeps_c_at_one(n_train, estimator):
    y = np.arange(n_train) % 2
    est = estimator(y, np.arange(n_train).astype(str), seed=0)
    assert hasattr(est, "param_grid") == (n_train >= 4)


def test_elastic_net_searches_mixing_and_strength_over_the_whole_pipeline():
    """The inner CV refits scaler, imputer and classifier per inner split (no scaler fitted on the
    inner test subjects), over every L1 share and strength, on subject-level inner splits."""
    groups = np.repeat(np.arange(10), 2).astype(str)
    y = np.repeat(np.arange(10) % 2, 2)
    est = models.enet_estimator(y, groups, seed=0)
    assert [name for name, _ in est.estimator.steps][:2] == ["standardscaler", "simpleimputer"]
    assert set(est.param_grid) == {"logisticregression__C", "logisticregression__l1_ratio"}
    assert est.param_grid["logisticregression__l1_ratio"] == list(models.ENET_L1_RATIOS)
    for train, test in est.cv:
        assert not set(groups[train]) & set(groups[test])


def test_sparse_model_depends_on_its_seed_only():
    """liblinear shuffles the data with its random_state: the fold's seed, never NumPy's global state
    (which differs between processes: a SLURM job and a MultiProc worker gave other predictions)."""
    x, y, _, parcels = _focal_cohort(0.5, n=24)
    operator, _ = models.parcel_matrix(parcels)
    groups = np.arange(len(y)).astype(str)

    for fit in FITS.values():

        def predict(global_seed, seed=0, fit=fit):
            np.random.seed(global_seed)
            return fit(x[:16], y[:16], groups[:16], x[16:], operator=operator, seed=seed)[0]

        np.testing.assert_array_equal(predict(1), predict(2))


def test_a_sparse_model_is_exported_for_a_class_only():
    """--export-model parcel_enet with a regression target stops with what to do instead."""
    from workflows.utils.errors import InputError

    assert models.exported_model(GroupParams(export_model="parcel_enet")) == "parcel_enet"
    with pytest.raises(InputError, match="is a classifier"):
        GroupParams(target="regression", export_model="parcel_enet")
