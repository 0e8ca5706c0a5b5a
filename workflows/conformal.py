"""Conformal prediction: a prediction set (class) or interval (UL-FMA) with a stated coverage per subject.

Split conformal prediction (Vovk et al. 2005; Lei et al. 2018, JASA 113:1094; Angelopoulos & Bates 2023,
Found Trends Mach Learn 16:494) turns any model into one whose sets contain the truth with probability
at least the stated coverage, for a subject exchangeable with the calibration subjects. The nonconformity
score of a calibration subject is how wrong the model was about it: ``|y - predicted score|`` for a
regression, ``1 - probability of its true class`` for a classification (LAC, Sadinle et al. 2019, JASA
114:223). The threshold is the ``ceil((n + 1) coverage)``-th smallest of the ``n`` scores (the
finite-sample correction; infinite when ``n`` is too small for the coverage); a new subject's set holds
every class whose score would not exceed it, its interval is the prediction +/- the threshold.

The calibration scores come only from subjects the model was not trained on: inside a cross-validation
fold, out-of-fold predictions of the fold's training subjects (:func:`out_of_fold_scores`, subject-level
inner splits, the test subjects never seen); for the exported model, the cross-validated predictions of
every subject (:func:`cv_calibration`). The model that predicts the new subject is then refit on all of
them (the "cross-conformal with refit" variant of Vovk 2015 and MAPIE's ``method="base"``): its coverage
is not guaranteed exactly, but holds in practice when the refit model is no worse than the inner ones
(``benchmarks/conformal_coverage.py`` measures it on held-out generated subjects).

Why not MAPIE (which installs here): the group level's models are ``fit_predict`` functions over
subject-grouped samples (windows, sessions), not scikit-learn estimators, and the exported model must
carry its calibration as plain numbers in its card (no pickle); the method itself is the few lines below.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

#: ``GroupParams.conformal_coverage``'s default: the share of subjects whose set or interval holds the truth.
DEFAULT_COVERAGE = 0.9
#: The range of the UL-FMA score (intervals are clipped to it: the truth lies inside, no coverage is lost).
UL_FMA_RANGE = (0.0, 66.0)
#: Inner subject-level splits of a training fold that give its calibration scores.
CONFORMAL_SPLITS = 5
#: Class names of a prediction set, in the order of the classes (0 = mild-to-moderate, 1 = severe).
CLASS_NAMES = ("mild-to-moderate", "severe")
#: The set of no class (every class too unlike the calibration subjects' true classes).
EMPTY_SET = "none"
#: How a prediction set is written in one TSV cell (classes joined by this).
SET_SEPARATOR = "|"


def conformal_threshold(scores: Sequence[float] | np.ndarray, coverage: float, n: int | None = None) -> float:
    """The ``ceil((n + 1) * coverage)``-th smallest calibration score (infinite when it exceeds ``n``).

    ``n`` is the number of exchangeable calibration subjects; by default the number of scores. Given
    pooled scores of ``r`` repeated cross-validations (``r * n`` values), the same rank on the pooled
    empirical distribution is its ``ceil((n + 1) * coverage) / n`` quantile.
    """
    values = np.sort(np.asarray(scores, dtype=float)[np.isfinite(np.asarray(scores, dtype=float))])
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage {coverage!r} is not in (0, 1)")
    n = len(values) if n is None else int(n)
    if n == 0 or not values.size:
        return math.inf
    rank = math.ceil((n + 1) * coverage)
    if rank > n:
        return math.inf
    # the smallest value with at least rank / n of the (pooled) scores at or below it
    k = math.ceil(rank * len(values) / n - 1e-9)
    return float(values[min(max(k, 1), len(values)) - 1])


def regression_scores(y_true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Absolute residuals ``|y - predicted|`` (the score of a regression)."""
    return np.abs(np.asarray(y_true, dtype=float) - np.asarray(predicted, dtype=float))


def classification_scores(y_true: np.ndarray, prob_severe: np.ndarray) -> np.ndarray:
    """``1 - probability of the true class`` (LAC) of binary labels (1 = severe)."""
    prob = np.asarray(prob_severe, dtype=float)
    return np.where(np.asarray(y_true).astype(int) == 1, 1.0 - prob, prob)


def nonconformity(target: str, y_true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The target's nonconformity scores (:func:`regression_scores` or :func:`classification_scores`)."""
    if target == "regression":
        return regression_scores(y_true, predicted)
    return classification_scores(y_true, predicted)


def prediction_sets(prob_severe: np.ndarray, threshold: float) -> list[tuple[str, ...]]:
    """Each subject's classes (:data:`CLASS_NAMES`) whose LAC score ``1 - p(class)`` is <= ``threshold``."""
    prob = np.asarray(prob_severe, dtype=float)
    return [
        tuple(name for name, p_class in zip(CLASS_NAMES, (1.0 - p, p)) if 1.0 - p_class <= threshold)
        for p in prob
    ]


def set_label(classes: Sequence[str]) -> str:
    """A prediction set as one string: ``severe``, ``mild-to-moderate|severe`` or ``none``."""
    return SET_SEPARATOR.join(classes) if classes else EMPTY_SET


def intervals(
    predicted: np.ndarray, threshold: float, bounds: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``predicted -/+ threshold``, clipped to the score's possible range ``bounds`` (which loses no
    coverage: the true score lies inside it)."""
    predicted = np.asarray(predicted, dtype=float)
    lower, upper = predicted - threshold, predicted + threshold
    if bounds is not None:
        lower, upper = np.clip(lower, *bounds), np.clip(upper, *bounds)
    return lower, upper


def covered(target: str, y_true: np.ndarray, predicted: np.ndarray, threshold: float) -> np.ndarray:
    """Whether each subject's set or interval holds its truth (score <= threshold, the same rule)."""
    return nonconformity(target, y_true, predicted) <= threshold


def _inner_splits(target: str, y: np.ndarray, groups: np.ndarray, seed: int) -> list | None:
    """Subject-level splits of the training samples (stratified by class for a classification)."""
    # imported here: the participant level reads this module's constants and need not load scikit-learn
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    subjects, first = np.unique(groups, return_index=True)
    if target == "regression":
        if len(subjects) < 3:
            return None
        splitter: Any = GroupKFold(min(CONFORMAL_SPLITS, len(subjects)), shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(groups)), groups=groups))
    smallest = int(np.bincount(np.asarray(y)[first].astype(int), minlength=2).min())
    if smallest < 2:
        return None
    splitter = StratifiedGroupKFold(min(CONFORMAL_SPLITS, smallest), shuffle=True, random_state=seed + 70_000)
    return list(splitter.split(np.zeros(len(y)), y, groups))


def out_of_fold_scores(
    fit_predict: Callable[..., Any],
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    units_train: np.ndarray,
    *,
    target: str,
    seed: int = 0,
) -> np.ndarray:
    """Nonconformity scores of the training units, each predicted by a model that did not see its subject.

    The training samples are split again by subject (``groups_train``; stratified by class for a
    classification); ``fit_predict`` (:data:`workflows.models.FitPredict`) is refit on each inner
    training part and predicts the held-out part, predictions are averaged per unit (``units_train``:
    subject or subject-session; soft vote over windows), and scored against the unit's truth. Empty
    when the subjects are too few to split. Only the training samples given are seen.
    """
    y_train, groups_train, units_train = map(np.asarray, (y_train, groups_train, units_train))
    splits = _inner_splits(target, y_train, groups_train, seed)
    if splits is None:
        return np.array([], dtype=float)
    predicted = np.empty(len(y_train), dtype=float)
    for inner_train, inner_test in splits:
        predicted[inner_test] = fit_predict(
            x_train[inner_train],
            y_train[inner_train],
            groups_train[inner_train],
            x_train[inner_test],
            seed=seed,
        )[0]
    units = np.unique(units_train)
    mean = np.array([predicted[units_train == u].mean() for u in units])
    truth = np.array([y_train[units_train == u][0] for u in units])
    return nonconformity(target, truth, mean)


def cv_calibration(
    rows: Sequence[dict[str, Any]], model: str, target: str, value: str, coverage: float
) -> dict[str, Any]:
    """The exported model's conformal calibration from the cross-validated predictions (``rows`` of
    cv_predictions: ``participant_id``, ``model``, ``y_true`` and the ``value`` column).

    Every repeat's out-of-fold prediction of every unit gives a score; the threshold is their pooled
    quantile at the rank corrected for the number of distinct units (:func:`conformal_threshold`).
    The scores are kept (sorted), so that a prediction can use another coverage.
    """
    mine = [r for r in rows if r["model"] == model]
    scores = nonconformity(
        target, np.array([r["y_true"] for r in mine], float), np.array([r[value] for r in mine], float)
    )
    n = len({r["participant_id"] for r in mine})
    return {
        "method": "cross-conformal with refit (workflows.conformal): calibration scores are the "
        "cross-validated (out-of-fold) predictions of the training subjects; the exported model is refit "
        "on all of them",
        "score": SCORE_TEXT[target],
        "coverage": float(coverage),
        "n_calibration": n,
        "threshold": conformal_threshold(scores, coverage, n=n),
        "scores": sorted(float(s) for s in scores),
    }


#: What the nonconformity score is, per target (the card and cv_summary.json).
SCORE_TEXT = {
    "classification": "1 - predicted probability of the true class (LAC); the prediction set holds every "
    "class whose score would be <= threshold",
    "regression": "|true - predicted UL-FMA|; the interval is the prediction +/- threshold, clipped to 0-66",
}


def apply_calibration(
    calibration: dict[str, Any], target: str, predicted: float, bounds: tuple[float, float] | None = None
) -> dict[str, Any]:
    """One subject's conformal output from a model card's ``conformal`` record (:func:`cv_calibration`).

    Classification: ``prediction_set`` (:func:`set_label`); regression: ``ul_fma_lower`` and
    ``ul_fma_upper``. The threshold is recomputed from the stored scores at the stored coverage.
    """
    coverage = float(calibration["coverage"])
    threshold = conformal_threshold(
        calibration["scores"], coverage, n=int(calibration.get("n_calibration") or len(calibration["scores"]))
    )
    out: dict[str, Any] = {"conformal_coverage": coverage}
    if target == "regression":
        lower, upper = intervals(np.array([predicted]), threshold, bounds)
        out.update(ul_fma_lower=round(float(lower[0]), 3), ul_fma_upper=round(float(upper[0]), 3))
    else:
        out["prediction_set"] = set_label(prediction_sets(np.array([predicted]), threshold)[0])
    return out


def cv_coverage(
    rows: Sequence[dict[str, Any]], folds: Sequence[dict[str, Any]], target: str, coverage: float, model: str
) -> dict[str, Any]:
    """How the conformal sets of ``model`` did on the cross-validation's held-out units (``rows`` of
    cv_predictions with ``conformal_covered``; ``folds`` the folds' threshold records)."""
    mine = [r for r in rows if r["model"] == model and r.get("conformal_covered") is not None]
    hit = np.array([int(r["conformal_covered"]) for r in mine], dtype=float)
    out: dict[str, Any] = {
        "model": model,
        "coverage": float(coverage),
        "method": "split conformal per fold: the threshold is the ceil((n + 1) coverage)-th smallest "
        "nonconformity score of the fold's training subjects, each predicted out-of-fold by subject-level "
        "inner splits of the training fold (no test subject is seen); the test subjects' sets come from "
        "the fold's model fit on all its training subjects",
        "score": SCORE_TEXT[target],
        "n_predictions": len(mine),
        "empirical_coverage": float(hit.mean()) if hit.size else None,
        "folds": list(folds),
    }
    if target == "regression":
        widths = [float(r["interval_upper"]) - float(r["interval_lower"]) for r in mine]
        out["mean_interval_width"] = float(np.mean(widths)) if widths else None
        out["median_interval_width"] = float(np.median(widths)) if widths else None
        return out
    sets = [str(r["prediction_set"]) for r in mine]
    out["by_class"] = {
        name: float(np.mean([h for h, r in zip(hit, mine) if int(r["y_true"]) == c]))
        for c, name in enumerate(CLASS_NAMES)
        if any(int(r["y_true"]) == c for r in mine)
    }
    out["set_shares"] = {
        "single class": float(np.mean([s in CLASS_NAMES for s in sets])) if sets else None,
        "both classes": float(np.mean([SET_SEPARATOR in s for s in sets])) if sets else None,
        "empty": float(np.mean([s == EMPTY_SET for s in sets])) if sets else None,
    }
    return out
