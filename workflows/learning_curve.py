"""Learning curves from the same folds: the primary model's score by training size (``learning_curves.tsv``).

Inside each outer subject-level fold the primary model is refit on nested subsets of the fold's
*training* subjects (:func:`subsampled_folds`: whole subjects, stratified by class for a classification,
the smaller subsets inside the larger) and scored on the fold's unchanged test subjects. The test
subjects are never drawn into a subset, so the curve is as leak-free as the folds. A curve still rising at
the full training set says more patients would help; a flat one says the model has learned what this
kind of data can give it. Only the primary parcel model is refit (its linear fits are cheap; the CNN
is not).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Shares of a fold's training subjects the primary model is refit on (1.0: the fold's own fit).
LEARNING_FRACTIONS = (0.4, 0.6, 0.8, 1.0)
#: The columns of learning_curves.tsv (``mae`` only for a regression).
LEARNING_COLUMNS = ("model", "repeat", "fold", "fraction", "n_train_subjects", "balanced_accuracy")


def subsampled_folds(
    fold: Mapping[str, Any],
    y: np.ndarray,
    split: np.ndarray,
    fractions: Sequence[float] = LEARNING_FRACTIONS,
    *,
    stratify: bool = True,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The fold with its training samples cut to nested subject-level subsets, one per fraction.

    ``fold`` has sample indices ``train`` and ``test`` (:func:`workflows.cross_validation.fold_indices`);
    ``split`` is each sample's subject and ``y`` its class (or score). Subjects of the training samples
    are shuffled once (``seed``), within each class when ``stratify``; a fraction keeps the first
    ``ceil(fraction * n)`` subjects of each stratum (at least 2, when it has them), every sample of a kept
    subject with it, so that smaller subsets lie inside larger ones. The test samples are unchanged.
    Returns ``{repeat, fold, fraction, n_train_subjects, train, test}`` per fraction; fractions that give
    the same subset (a small fold) appear once, under the largest of them.
    """
    train = np.asarray(fold["train"])
    subjects, first = np.unique(split[train], return_index=True)
    strata = np.asarray(y)[train][first].astype(int) if stratify else np.zeros(len(subjects), int)
    rng = np.random.default_rng(seed)
    order = {s: rng.permutation(subjects[strata == s]) for s in np.unique(strata)}
    out: list[dict[str, Any]] = []
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise ValueError(f"a learning-curve fraction must lie in (0, 1], not {fraction}")
        kept = np.concatenate(
            [o[: min(len(o), max(2, math.ceil(fraction * len(o))))] for o in order.values()]
        )
        idx = train[np.isin(split[train], kept)]
        if out and out[-1]["n_train_subjects"] == len(kept):  # nested: the same subset again
            out.pop()
        out.append(
            {
                "repeat": fold["repeat"],
                "fold": fold["fold"],
                "fraction": float(fraction),
                "n_train_subjects": len(kept),
                "train": np.sort(idx),
                "test": np.asarray(fold["test"]),
            }
        )
    return out


def learning_curve_summary(rows: Sequence[Mapping[str, Any]], metric: str) -> list[dict[str, Any]]:
    """Per fraction: mean training subjects, and the mean, SD, minimum and maximum of ``metric`` over
    folds x repeats (cv_summary.json's ``learning_curve``)."""
    out = []
    for fraction in sorted({float(r["fraction"]) for r in rows}):
        same = [r for r in rows if float(r["fraction"]) == fraction]
        values = np.array([float(r[metric]) for r in same], dtype=float)
        values = values[np.isfinite(values)]
        out.append(
            {
                "fraction": fraction,
                "n_train_subjects": float(np.mean([r["n_train_subjects"] for r in same])),
                "metric": metric,
                "mean": float(values.mean()) if values.size else math.nan,
                "sd": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                "min": float(values.min()) if values.size else math.nan,
                "max": float(values.max()) if values.size else math.nan,
                "n_folds": int(values.size),
            }
        )
    return out
