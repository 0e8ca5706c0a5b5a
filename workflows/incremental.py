"""Does the dFC model add anything over what the clinic already knows? The test of Dinga et al. 2020.

A clinical reader compares a new predictor with age, time since stroke and lesion size, not with
chance. Dinga et al. (2020, bioRxiv 10.1101/2020.08.17.255034, "Controlling for effects of confounding
variables on machine learning predictions") test it on the model's *out-of-fold* predictions: fit the
outcome on the clinical variables alone, then on the clinical variables plus the cross-validated
prediction, and compare the two nested models with a likelihood-ratio test (logistic regression of the
class; for a score, the Gaussian likelihood, i.e. the partial F-test of ordinary least squares).

Chosen over nested stacking because it reads the predictions the cross-validation already made (no
model is trained again, so it works for every registry model, the CNN included), it answers exactly
"is there information in the dFC prediction beyond the clinical variables" with a test, and its
effect size (the gain in explained deviance) is in the same units for both targets. Stacking would
give a combined out-of-fold score but no test without a permutation of the whole nested procedure.
The prediction is cross-validated, so it carries no in-sample optimism into the test; the two
regressions themselves are fit on all units, with unknown clinical values imputed by the median.
Rows are units (subject-sessions when sessions are separate), taken as independent.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression

#: Significance level of the sentence in the report ("adds" / "does not add").
ALPHA = 0.05
_EPS = 1e-6
METHOD = (
    "likelihood-ratio test of nested models on the out-of-fold predictions (Dinga et al. 2020): the "
    "outcome regressed on the clinical variables, then on the clinical variables plus the model's "
    "cross-validated prediction (logit of the probability of severe for a class, the predicted score for "
    "UL-FMA); logistic regression (chi-square, 1 df) or least squares (partial F-test, 1 df)"
)


def clinical_design(clinical: np.ndarray) -> np.ndarray:
    """Clinical covariates (units, k) median-imputed and standardised; constant or empty columns dropped."""
    x = np.asarray(clinical, dtype=float).reshape(len(clinical), -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column
        median = np.nanmedian(x, axis=0)
    x = np.where(np.isfinite(x), x, median)
    keep = np.all(np.isfinite(x), axis=0) & (np.nanstd(x, axis=0) > 0)
    x = x[:, keep]
    return (x - x.mean(0)) / x.std(0) if x.size else x


def _log_likelihood_logistic(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Maximised log-likelihood of a (barely penalised) logistic regression and its coefficients."""
    if x.shape[1] == 0:
        p = np.full(len(y), y.mean())
        return float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))), np.array([])
    model = LogisticRegression(C=1e6, max_iter=10_000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # near-separation: the likelihood still rises
        model.fit(x, y)
    p = np.clip(model.predict_proba(x)[:, 1], _EPS, 1 - _EPS)
    return float(np.sum(y * np.log(p) + (1 - y) * np.log(1 - p))), np.ravel(model.coef_)


def _rss(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    if x.shape[1] == 0:
        return float(np.sum((y - y.mean()) ** 2)), np.array([])
    model = LinearRegression().fit(x, y)
    return float(np.sum((y - model.predict(x)) ** 2)), np.ravel(model.coef_)


def incremental_value(
    y: np.ndarray, clinical: np.ndarray, prediction: np.ndarray, *, target: str
) -> dict[str, Any]:
    """Likelihood-ratio test of ``prediction`` (out-of-fold, per unit) over ``clinical`` (units, k).

    Classification: ``y`` is the class (1 = severe) and ``prediction`` the probability of severe, entered
    as its logit; regression: ``y`` the score and ``prediction`` the predicted score. Returns the
    statistic, its p-value, the prediction's coefficient (on the standardised prediction: positive when
    it points the right way), the variance (deviance) explained with and without it, and whether it
    adds (p < :data:`ALPHA` with a positive coefficient).
    """
    y = np.asarray(y, dtype=float)
    pred = np.asarray(prediction, dtype=float)
    if target != "regression":
        pred = np.clip(pred, _EPS, 1 - _EPS)
        pred = np.log(pred / (1 - pred))
    base = clinical_design(clinical)
    z = (pred - pred.mean()) / pred.std() if pred.std() > 0 else np.zeros_like(pred)
    full = np.column_stack([base, z])
    n = len(y)
    if target == "regression":
        rss0, _ = _rss(base, y)
        rss1, coef = _rss(full, y)
        tss = float(np.sum((y - y.mean()) ** 2))
        df_resid = n - full.shape[1] - 1
        if df_resid < 1 or rss1 <= 0:
            statistic, p_value = float("nan"), float("nan")
        else:
            statistic = (rss0 - rss1) / (rss1 / df_resid)
            p_value = float(stats.f.sf(statistic, 1, df_resid))
        explained = {"r2_clinical": 1 - rss0 / tss, "r2_combined": 1 - rss1 / tss}
        test = f"partial F (1, {df_resid} df)"
    else:
        ll_null, _ = _log_likelihood_logistic(np.empty((n, 0)), y)
        ll0, _ = _log_likelihood_logistic(base, y)
        ll1, coef = _log_likelihood_logistic(full, y)
        statistic = max(0.0, 2.0 * (ll1 - ll0))
        p_value = float(stats.chi2.sf(statistic, 1))
        explained = {
            "pseudo_r2_clinical": 1 - ll0 / ll_null,  # McFadden: share of the null deviance explained
            "pseudo_r2_combined": 1 - ll1 / ll_null,
        }
        test = "likelihood-ratio chi-square (1 df)"
    coefficient = float(coef[-1]) if coef.size else float("nan")
    return {
        "test": test,
        "statistic": float(statistic),
        "p_value": p_value,
        "coefficient": coefficient,
        **{k: float(v) for k, v in explained.items()},
        "n_units": n,
        "n_clinical_columns_used": int(base.shape[1]),
        "adds_value": bool(np.isfinite(p_value) and p_value < ALPHA and coefficient > 0),
    }


def unit_predictions(rows: Sequence[dict[str, Any]], model: str, value: str, target: str) -> dict[str, float]:
    """Each unit's out-of-fold prediction of ``model`` (cv_predictions rows), averaged over repeats
    (on the logit scale for a probability)."""
    by_unit: dict[str, list[float]] = {}
    for row in rows:
        if row["model"] == model:
            by_unit.setdefault(str(row["participant_id"]), []).append(float(row[value]))
    if target == "regression":
        return {u: float(np.mean(v)) for u, v in by_unit.items()}
    out = {}
    for unit, values in by_unit.items():
        p = np.clip(np.asarray(values), _EPS, 1 - _EPS)
        out[unit] = float(1 / (1 + np.exp(-np.mean(np.log(p / (1 - p))))))
    return out


def clinical_value_sentence(record: dict[str, Any], model_label: str) -> str:
    """The result in words for the group report."""
    covariates = ", ".join(record.get("covariates") or []) or "none"
    test = record["test_result"]
    p = test["p_value"]
    p_text = "p n/a" if p is None or not np.isfinite(p) else f"p = {p:.3g}" if p >= 1e-4 else "p < 0.0001"
    stat = test["statistic"]
    verb = "adds" if test["adds_value"] else "does not add"
    gain = (
        f"R² {test['r2_clinical']:.2f} -> {test['r2_combined']:.2f}"
        if "r2_clinical" in test
        else f"explained deviance {test['pseudo_r2_clinical']:.2f} -> {test['pseudo_r2_combined']:.2f}"
    )
    return (
        f"The {model_label} {verb} predictive information over the clinical variables ({covariates}): "
        f"{test['test']} = {stat:.2f}, {p_text} ({gain}; Dinga et al. 2020 test on out-of-fold "
        f"predictions of {test['n_units']} units)."
    )
