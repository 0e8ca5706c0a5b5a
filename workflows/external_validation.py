"""External validation of a trained model on labelled patients of another site (``participant --model``).

The metrics are scikit-learn's (confusion matrix) or their NumPy equivalents in :mod:`workflows.stats`
(balanced accuracy, ROC AUC; equal to rounding, and fast enough for a thousand bootstrap draws); intervals
are percentile bootstraps over subjects (a subject's sessions are drawn together, so repeated scans of
one patient never count as independent evidence). Calibration is shown in fixed-width probability bins
with the observed share of severe patients in each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import confusion_matrix

from workflows.stats import BOOTSTRAP_DRAWS, balanced_accuracy, roc_auc

CLASS_NAMES = ("mild-to-moderate", "severe")  # label 0, label 1 (the positive class)


def _point(y: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, float]:
    both = 0 < y.sum() < y.size
    pred = (prob >= threshold).astype(int)
    return {
        "balanced_accuracy": balanced_accuracy(y, pred) if both else math.nan,
        "roc_auc": roc_auc(y, prob) if both else math.nan,
        "brier": float(np.mean((prob - y) ** 2)) if y.size else math.nan,
    }


def calibration_bins(y: npt.ArrayLike, prob: npt.ArrayLike, n_bins: int = 5) -> list[dict[str, Any]]:
    """Fixed-width bins over [0, 1]: count, mean predicted probability and observed severe fraction.

    Same bins as :func:`sklearn.calibration.calibration_curve` (``strategy='uniform'``), but empty bins are
    kept (``n = 0``) so that the table always has ``n_bins`` rows.
    """
    y, prob = np.asarray(y, int), np.asarray(prob, float)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.searchsorted(edges[1:-1], prob)  # as calibration_curve: (a, b] bins
    rows = []
    for b in range(n_bins):
        sel = index == b
        rows.append(
            {
                "bin": [round(float(edges[b]), 4), round(float(edges[b + 1]), 4)],
                "n": int(sel.sum()),
                "mean_predicted": float(prob[sel].mean()) if sel.any() else None,
                "observed_severe": float(y[sel].mean()) if sel.any() else None,
            }
        )
    return rows


def validation_summary(
    y_true: npt.ArrayLike,
    prob: npt.ArrayLike,
    subjects: Sequence[str],
    *,
    threshold: float = 0.5,
    n_bins: int = 5,
    n_boot: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
) -> dict[str, Any]:
    """Metrics of a model's predictions against true labels, with subject-bootstrap 95% intervals.

    Parameters
    ----------
    y_true : array (n,)
        1 = severe, 0 = mild-to-moderate (one entry per prediction: subject or subject-session).
    prob : array (n,)
        Predicted probability of severe impairment.
    subjects : sequence of str (n,)
        The subject of each prediction; the bootstrap resamples subjects with all their predictions.
    threshold : float
        Probability at or above which the predicted class is severe.

    Returns
    -------
    dict
        ``n_predictions``, ``n_subjects``, ``class_counts``, ``balanced_accuracy``/``roc_auc``/``brier``
        (each ``{"value", "ci95"}``), ``confusion`` (matrix rows = true class, columns = predicted,
        in :data:`CLASS_NAMES` order), ``calibration`` (:func:`calibration_bins`), ``interval``.
    """
    y, p = np.asarray(y_true, int), np.asarray(prob, float)
    ids = np.asarray(subjects, dtype=str)
    point = _point(y, p, threshold)
    unique = np.unique(ids)
    rows_of = [np.flatnonzero(ids == s) for s in unique]
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot):
        idx = np.concatenate([rows_of[i] for i in rng.integers(0, unique.size, unique.size)])
        draws.append(_point(y[idx], p[idx], threshold))
    matrix = confusion_matrix(y, (p >= threshold).astype(int), labels=[0, 1])
    out: dict[str, Any] = {
        "n_predictions": int(y.size),
        "n_subjects": int(unique.size),
        "class_counts": {CLASS_NAMES[1]: int(y.sum()), CLASS_NAMES[0]: int(y.size - y.sum())},
        "decision_threshold": threshold,
        "confusion": {
            "labels": list(CLASS_NAMES),
            "matrix": matrix.astype(int).tolist(),
            "rows": "true class",
            "columns": "predicted class",
        },
        "calibration": calibration_bins(y, p, n_bins),
        "interval": f"95% percentile bootstrap over subjects ({n_boot} draws, seed {seed})",
    }
    for name, value in point.items():
        values = np.array([d[name] for d in draws], float)
        values = values[np.isfinite(values)]
        ci = [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))] if values.size else None
        out[name] = {"value": value, "ci95": ci}
    return out
