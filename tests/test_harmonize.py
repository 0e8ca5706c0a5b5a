"""In-fold ComBat: removes site effects, keeps protected covariates, and does not leak (issue 27)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedKFold

from workflows.harmonize import ComBat


def _sites_data(seed: int = 0, n: int = 90, p: int = 30):
    """Features with a per-site shift and scale, and an age effect on every feature."""
    rng = np.random.default_rng(seed)
    sites = np.repeat(np.array(["a", "b", "c"]), n // 3)
    age = rng.uniform(40, 80, n)
    x = rng.standard_normal((n, p))
    shift = {"a": 0.0, "b": 1.5, "c": -1.0}
    scale = {"a": 1.0, "b": 2.0, "c": 0.6}
    for s in shift:  # the scanner scales the noise and shifts the mean, feature by feature
        x[sites == s] = x[sites == s] * scale[s] * rng.uniform(0.9, 1.1, p) + shift[s] + rng.normal(0, 0.3, p)
    x += 0.05 * (age[:, None] - 60)  # a biological effect, the same at every site
    return x, sites, age


def test_site_location_and_scale_are_removed_and_age_is_kept():
    x, sites, age = _sites_data()
    out = ComBat().fit_transform(x, sites=sites, covariates=age)
    means = np.array([out[sites == s].mean(axis=0) for s in "abc"])
    sds = np.array([out[sites == s].std(axis=0) for s in "abc"])
    raw_means = np.array([x[sites == s].mean(axis=0) for s in "abc"])
    assert np.abs(means - means.mean(axis=0)).max() < 0.45 < np.abs(raw_means - raw_means.mean(axis=0)).max()
    raw_sds = np.array([x[sites == s].std(axis=0) for s in "abc"]).mean(axis=1)
    assert sds.mean(axis=1).max() / sds.mean(axis=1).min() < 1.3 < 2.5 < raw_sds.max() / raw_sds.min()
    slope = np.polyfit(age, out.mean(axis=1), 1)[0]
    assert slope == pytest.approx(0.05, abs=0.015)  # the protected age effect survives


def test_test_subjects_are_transformed_with_the_training_estimates_only():
    x, sites, age = _sites_data(1)
    train, test = np.arange(x.shape[0]) % 3 != 0, np.arange(x.shape[0]) % 3 == 0
    combat = ComBat().fit(x[train], sites=sites[train], covariates=age[train])
    a = combat.transform(x[test], sites=sites[test], covariates=age[test])
    changed = x[test].copy()
    changed[0] += 10.0  # another test subject's data must not move the others
    b = combat.transform(changed, sites=sites[test], covariates=age[test])
    np.testing.assert_allclose(a[1:], b[1:])
    np.testing.assert_allclose(
        combat.transform(x[train], sites=sites[train], covariates=age[train]),
        ComBat().fit_transform(x[train], sites=sites[train], covariates=age[train]),
    )


def test_a_new_site_needs_enough_subjects():
    x, sites, _ = _sites_data(2)
    seen = sites != "c"
    combat = ComBat().fit(x[seen], sites=sites[seen])
    out = combat.transform(x[~seen], sites=sites[~seen])
    assert abs(out.mean() - x[seen].mean()) < 0.3 < abs(x[~seen].mean() - x[seen].mean())
    with pytest.raises(ValueError, match="at least 3"):
        combat.transform(x[~seen][:2], sites=sites[~seen][:2])


def _cv_accuracy(x: np.ndarray, y: np.ndarray) -> float:
    pred = np.zeros_like(y)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        pred[test] = LogisticRegression(max_iter=2000).fit(x[train], y[train]).predict(x[test])
    return balanced_accuracy_score(y, pred)


def _in_fold_accuracy(x: np.ndarray, y: np.ndarray, sites: np.ndarray) -> float:
    pred = np.zeros_like(y)
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(x, y):
        combat = ComBat().fit(x[train], sites=sites[train])  # in the fold, no outcome
        model = LogisticRegression(max_iter=2000).fit(
            combat.transform(x[train], sites=sites[train]), y[train]
        )
        pred[test] = model.predict(combat.transform(x[test], sites=sites[test]))
    return balanced_accuracy_score(y, pred)


def test_combat_on_all_subjects_with_the_outcome_protected_leaks():
    # nulls: features carry sites but no class information (45 subjects, 200 features, 3 draws)
    leaked, in_fold = [], []
    for seed in range(3):
        x, sites, _ = _sites_data(seed, n=45, p=200)
        y = np.random.default_rng(seed).permutation(np.repeat([0, 1], 23)[:45])
        # fitted on all subjects with the outcome "protected": the labels reach the features, and
        # cross-validation lands far from chance (below it here: anti-learning, just as invalid)
        leaked.append(_cv_accuracy(ComBat().fit_transform(x, sites=sites, covariates=y), y))
        in_fold.append(_in_fold_accuracy(x, y, sites))
    assert abs(np.mean(leaked) - 0.5) > 0.25
    assert abs(np.mean(in_fold) - 0.5) < 0.15
