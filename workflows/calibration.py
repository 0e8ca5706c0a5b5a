"""Recalibrating a classifier's probabilities inside the training fold (Platt scaling or isotonic).

The group level's classifiers use balanced class weights, so their probabilities describe a world in
which both classes are equally common; they are not calibrated risks. :func:`calibrated` wraps a
``fit_predict`` (see :data:`workflows.models.FitPredict`) so that its test probabilities pass
through a map fit on out-of-fold predictions of the *training* subjects only: the training fold is
split again by subject (stratified group k-fold), the model is refit on each inner training part and
predicts the inner held-out part, and a sigmoid (Platt 1999) or isotonic map from those predictions to
the true labels is applied to the outer model's test probabilities. No test subject is seen.

Calibrated probabilities follow the training prevalence: on an unbalanced cohort, cutting them at 0.5
favours the larger class, so the balanced accuracy can drop while the Brier score improves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold

from workflows.params import CALIBRATION_METHODS, GroupParams

#: How each recalibration method is called in the summary and the methods text.
CALIBRATION_NAMES = {"sigmoid": "Platt scaling", "isotonic": "isotonic regression"}
#: Inner subject-level splits of the training fold that give the calibration data.
CALIBRATION_SPLITS = 3
_EPS = 1e-6


def fit_calibrator(
    prob: np.ndarray, y: np.ndarray, method: str = "sigmoid"
) -> Callable[[np.ndarray], np.ndarray]:
    """A map from predicted probabilities to calibrated ones, fit on ``(prob, y)`` pairs.

    ``sigmoid``: logistic regression on the logit of the probability (Platt scaling); ``isotonic``: a
    monotone step function (clipped outside the fitted range).
    """
    prob = np.clip(np.asarray(prob, dtype=float), _EPS, 1 - _EPS)
    y = np.asarray(y).astype(int)
    if method == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(prob, y)
        return lambda p: np.asarray(iso.predict(np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)))
    if method != "sigmoid":
        raise ValueError(f"unknown calibration method {method!r}; use one of {CALIBRATION_METHODS[1:]}")
    platt = LogisticRegression(C=1e4, max_iter=1000).fit(np.log(prob / (1 - prob))[:, None], y)

    def apply(p: np.ndarray) -> np.ndarray:
        p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
        return platt.predict_proba(np.log(p / (1 - p))[:, None])[:, 1]

    return apply


def _calibration_splits(y: np.ndarray, groups: np.ndarray, seed: int) -> list | None:
    """Subject-level stratified splits of the training fold; None when a class has < 2 subjects."""
    _, first = np.unique(groups, return_index=True)
    smallest = int(np.bincount(np.asarray(y)[first].astype(int), minlength=2).min())
    if smallest < 2:
        return None
    k = min(CALIBRATION_SPLITS, smallest)
    splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed + 50_000)
    return list(splitter.split(np.zeros(len(y)), y, groups))


def calibrated(fit_predict: Callable[..., Any], method: str = "sigmoid") -> Callable[..., Any]:
    """``fit_predict`` whose test probabilities are recalibrated inside the training fold (see above).

    With ``method="none"`` the model is returned unchanged; with fewer than 2 training subjects in a
    class the probabilities stay as they are (no inner split could hold both classes).
    """
    if method == "none":
        return fit_predict

    def fit(
        x_train: np.ndarray, y_train: np.ndarray, groups_train: np.ndarray, x_test: np.ndarray, seed: int = 0
    ) -> tuple[np.ndarray, list]:
        prob, curve = fit_predict(x_train, y_train, groups_train, x_test, seed=seed)
        splits = _calibration_splits(y_train, groups_train, seed)
        if splits is None:
            return prob, curve
        inner = np.empty(len(y_train), dtype=float)
        for tr, te in splits:
            inner[te] = fit_predict(x_train[tr], y_train[tr], groups_train[tr], x_train[te], seed=seed)[0]
        return fit_calibrator(inner, y_train, method)(prob), curve

    return fit


def calibration_text(params: GroupParams) -> str | None:
    """What ``cv_summary.json`` and the report say about the probabilities' calibration."""
    if params.target == "regression":
        return None
    if params.calibration == "none":
        return (
            "none: probabilities of the class-weighted models are not recalibrated (the Brier score and "
            "calibration curves describe them as they are)"
        )
    return (
        f"{params.calibration}: the probabilities of every model but the CNN were recalibrated by "
        f"{CALIBRATION_NAMES[params.calibration]} fit inside each training fold on out-of-fold predictions "
        "of the training subjects (subject-level inner splits); the CNN's are not recalibrated"
    )
