"""The models the CNN is compared with on the same folds, and how the comparison is summarised.

- :func:`parcel_fit_predict` (the primary analysis for small cohorts): the mean of a map in each atlas
  parcel, standardised, and an L2 logistic regression whose strength is chosen by an inner
  cross-validation over the training subjects only (nested CV).
- The same parcel model on other maps gives the controls: static FC (``stat-fc``) and mean dFC
  (``stat-dfcmean``): does dFC variability tell anything beyond static connectivity (Thompson &
  Fransson 2015)?
- :func:`confound_fit_predict`: a logistic regression on quality measures only (mean framewise
  displacement, censored fraction, kept volumes and windows). When it matches the map models, the maps
  may encode motion rather than impairment.
- :func:`bootstrap_comparison`: subject-level bootstrap 95% intervals of the out-of-fold balanced
  accuracy and AUC of every model, and of each model's paired difference from a reference model.
- :func:`corrected_resampled_ttest`: the Nadeau & Bengio (2003) test of a paired difference over
  repeated k-fold, whose variance correction accounts for the overlap of training sets.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from scipy import sparse, stats
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.metrics import balanced_accuracy_score, roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold

from workflows.evaluation import confound_pipeline, map_pipeline

#: Regularisation strengths searched by the inner cross-validation of the parcel model.
PARCEL_CS = tuple(float(c) for c in np.logspace(-4, 1, 11))
#: Parcels with fewer voxels than this on the CNN grid are left out (their mean is too noisy).
MIN_PARCEL_VOXELS = 3
#: L2 penalty, spelled as the installed scikit-learn wants it (1.8 moved it to ``l1_ratios=(0,)``).
_LRCV_L2 = {
    key: value
    for key, value in {"l1_ratios": (0.0,), "use_legacy_attributes": False}.items()
    if key in inspect.signature(LogisticRegressionCV).parameters
}
#: Quality measures of the confound-only model (sidecar fields, per subject).
#: Quality measures and lesion volume (which tracks impairment: a model that only sees lesion size must
#: not be mistaken for one that reads connectivity).
CONFOUND_FEATURES = (
    "mean_fd_mm",
    "censored_fraction",
    "volumes_kept",
    "windows_kept",
    "dof_remaining",
    "lesion_volume_ml",
)

PARCEL_DESCRIPTION = (
    "mean of the map in each parcel of the HCPEx atlas (lesion-aligned CNN grid), standardised, and an "
    "L2 logistic regression (balanced class weights) whose regularisation is chosen among "
    f"{len(PARCEL_CS)} values by an inner stratified group 5-fold CV on the training subjects only"
)
CONFOUND_DESCRIPTION = (
    "L2 logistic regression (C=1, balanced class weights) on quality measures and lesion volume only: "
    + ", ".join(CONFOUND_FEATURES)
    + " (median-imputed and standardised inside each training fold)"
)


def parcel_matrix(
    labels: np.ndarray, min_voxels: int = MIN_PARCEL_VOXELS
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Averaging operator ``A`` (voxels x parcels) of an integer label image, and the parcel ids kept.

    ``x.reshape(n, -1) @ A`` gives the (n, parcels) parcel means of samples ``x`` on the same grid.
    """
    flat = np.asarray(labels).reshape(-1).astype(int)
    ids, counts = np.unique(flat[flat > 0], return_counts=True)
    ids = ids[counts >= min_voxels]
    if ids.size == 0:
        raise ValueError("no parcel has enough voxels on this grid")
    column = {int(p): j for j, p in enumerate(ids)}
    rows = np.flatnonzero(np.isin(flat, ids))
    cols = np.array([column[int(flat[r])] for r in rows])
    weights = 1.0 / np.bincount(cols, minlength=ids.size)[cols]
    return sparse.csr_matrix((weights, (rows, cols)), shape=(flat.size, ids.size)), ids


def parcel_means(x: np.ndarray, operator: sparse.csr_matrix) -> np.ndarray:
    """Parcel means (n, parcels) of samples ``x`` (n, X, Y, Z) over their finite voxels.

    Excluded voxels (NaN: a lesion or its mirror) leave the mean; a parcel with no finite voxel in a
    sample is NaN there (the model imputes it from its training fold).
    """
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    finite = np.isfinite(flat)
    sums = np.asarray(operator.T @ np.where(finite, flat, 0.0).T).T
    weights = np.asarray(operator.T @ finite.T.astype(np.float64)).T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weights > 0, sums / weights, np.nan)


def _inner_splits(y: np.ndarray, groups: np.ndarray, seed: int, n_splits: int = 5) -> list | None:
    """Subject-level stratified splits of the training data (for choosing the regularisation).

    None when a class has fewer than 2 training subjects: no inner split could hold both classes.
    """
    _, first = np.unique(groups, return_index=True)
    smallest = int(np.bincount(np.asarray(y)[first].astype(int), minlength=2).min())
    if smallest < 2:
        return None
    k = min(n_splits, smallest)
    return list(StratifiedGroupKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y, groups))


def parcel_fit_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    x_test: np.ndarray,
    *,
    operator: sparse.csr_matrix,
    seed: int = 0,
) -> tuple[np.ndarray, list]:
    """Nested-CV parcel model: fit on one training fold, return the test probabilities (and no curve).

    With fewer than 2 training subjects in a class the strength cannot be chosen and stays at C = 1.
    """
    inner = _inner_splits(y_train, groups_train, seed)
    classifier = (
        LogisticRegressionCV(
            Cs=list(PARCEL_CS),
            cv=inner,
            class_weight="balanced",
            scoring="neg_log_loss",
            max_iter=5000,
            **_LRCV_L2,
        )
        if inner is not None
        else LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000)
    )
    model = map_pipeline(classifier)
    model.fit(parcel_means(x_train, operator), y_train)
    return model.predict_proba(parcel_means(x_test, operator))[:, 1], []


def confound_fit_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    x_test: np.ndarray,
    *,
    seed: int = 0,
) -> tuple[np.ndarray, list]:
    """Confound-only model on (n, features) quality measures; NaN (unknown) values are imputed in-fold."""
    del groups_train, seed  # same signature as the other models; this one needs neither
    model = confound_pipeline(LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000))
    model.fit(x_train, y_train)
    return model.predict_proba(x_test)[:, 1], []


def _pooled_predictions(
    rows: Sequence[Mapping], model: str, value: str = "prob_severe"
) -> dict[int, tuple[np.ndarray, np.ndarray, list]]:
    """Out-of-fold predictions of ``model`` per repeat: ``{repeat: (y_true, prediction, subjects)}``."""
    out: dict[int, tuple[np.ndarray, np.ndarray, list]] = {}
    for repeat in sorted({int(r["repeat"]) for r in rows if r["model"] == model}):
        these = sorted(
            (r for r in rows if r["model"] == model and int(r["repeat"]) == repeat),
            key=lambda r: str(r["participant_id"]),
        )
        out[repeat] = (
            np.array([float(r["y_true"]) for r in these]),
            np.array([float(r[value]) for r in these]),
            [str(r["participant_id"]) for r in these],
        )
    return out


def _scores(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    y = np.asarray(y).astype(int)
    ba = float(balanced_accuracy_score(y, p >= 0.5)) if len(np.unique(y)) == 2 else math.nan
    auc = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else math.nan
    return ba, auc


def classification_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The pooled scores :func:`bootstrap_comparison` reports by default: balanced accuracy and AUC."""
    ba, auc = _scores(y, p)
    return {"balanced_accuracy": ba, "roc_auc": auc}


def bootstrap_comparison(
    predictions: Sequence[Mapping],
    reference: str | Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    *,
    scores: Callable[[np.ndarray, np.ndarray], dict[str, float]] = classification_scores,
    value: str = "prob_severe",
    compare: str = "balanced_accuracy",
) -> dict[str, dict]:
    """Pooled out-of-fold scores per model with subject-bootstrap 95% intervals, and paired differences.

    For each repeat the out-of-fold predictions (column ``value``) of all subjects are pooled; a
    bootstrap draw resamples subjects (the same draw for every model, so differences are paired) and
    averages ``scores(y_true, prediction)`` over repeats. Returns ``{model: {"balanced_accuracy":
    {"value", "ci95"}, "roc_auc": {...}, "difference_from_<reference>": {"balanced_accuracy": {"value",
    "ci95", "p_two_sided"}}}}`` (the keys of ``scores``, and the difference in ``compare``, model minus
    reference, from each reference model). Regression passes its own ``scores`` (MAE, R², ...).
    """
    references = [reference] if isinstance(reference, str) else list(reference)
    models = sorted({str(r["model"]) for r in predictions})
    pooled = {m: _pooled_predictions(predictions, m, value) for m in models}
    first = next((r for r in references if r in pooled), models[0] if models else None)
    subjects = pooled[first][next(iter(pooled[first]))][2] if first is not None else []
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(subjects), len(subjects)) for _ in range(n_boot)]

    def score(model: str, idx: np.ndarray | None) -> dict[str, float]:
        values = [
            scores(y, p) if idx is None else scores(y[idx], p[idx]) for y, p, _ in pooled[model].values()
        ]
        return {k: _nanmean([v[k] for v in values]) for k in values[0]}

    boot = {m: [score(m, idx) for idx in draws] for m in models}
    plain = {m: score(m, None) for m in models}
    out: dict[str, dict] = {}
    for m in models:
        out[m] = {
            k: {"value": v, "ci95": _interval(np.array([b[k] for b in boot[m]]))} for k, v in plain[m].items()
        }
        for ref in references:
            if m == ref or ref not in boot:
                continue
            diff = np.array([b[compare] for b in boot[m]]) - np.array([b[compare] for b in boot[ref]])
            diff = diff[np.isfinite(diff)]
            p_two = (
                float(min(1.0, 2 * min((diff <= 0).mean(), (diff >= 0).mean()))) if diff.size else math.nan
            )
            out[m][f"difference_from_{ref}"] = {
                compare: {
                    "value": plain[m][compare] - plain[ref][compare],
                    "ci95": _interval(diff),
                    "p_two_sided": p_two,
                }
            }
    return out


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _interval(values: np.ndarray) -> list[float]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [math.nan, math.nan]
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def corrected_resampled_ttest(differences: Sequence[float], test_fraction: float) -> dict[str, float]:
    """Nadeau & Bengio (2003) corrected resampled t-test of fold-wise score differences.

    ``test_fraction`` is n_test / n_train of one fold (1 / (k - 1) for k-fold). The variance of the
    mean difference is inflated by that ratio because the folds' training sets overlap.
    """
    d = np.asarray([v for v in differences if np.isfinite(v)], dtype=float)
    if d.size < 2:
        return {
            "mean_difference": float(d.mean()) if d.size else math.nan,
            "t": math.nan,
            "p_two_sided": math.nan,
        }
    var = d.var(ddof=1)
    if var == 0:
        return {
            "mean_difference": float(d.mean()),
            "t": math.nan,
            "p_two_sided": 1.0 if d.mean() == 0 else 0.0,
        }
    t = float(d.mean() / math.sqrt((1.0 / d.size + test_fraction) * var))
    return {
        "mean_difference": float(d.mean()),
        "t": t,
        "p_two_sided": float(2 * stats.t.sf(abs(t), d.size - 1)),
    }
