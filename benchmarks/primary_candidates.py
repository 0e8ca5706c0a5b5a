"""Could another primary model reach the oracle? Candidates on the prepared inputs of a group run.

The planted-cohort benchmark (``planted_cohort.py``) leaves the group level's prepared inputs in its
work folder (``<work>/strokefc_group_wf/prepare/group_inputs.npz``: the dFC-SD and control maps on
the model grid, the HCPEx parcel volume, labels and subjects). This script scores, on strokefc's own
subject-level 5 x 5 folds, the primary model (nested L2 logistic regression on parcel means), the
sparse L1 parcel model, and a univariate score (the mean of the k parcels with the largest training
t-statistic, signed, then a one-feature logistic regression; k fixed, or chosen by the inner CV):
the simplest model that can average a few planted parcels instead of spreading weight over all.
Everything is fitted inside the training folds.

Usage: ``python benchmarks/primary_candidates.py GROUP_INPUTS.npz [--map maps|control_fc]``
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import stats
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from workflows.cross_validation import subject_folds
from workflows.models import (
    inner_splits,
    map_pipeline,
    nested_estimator,
    parcel_matrix,
    parcel_means,
    sparse_estimator,
)
from workflows.stats import classification_metrics

TOP_K = (3, 5, 10, 20, 40)


class TopKScore(BaseEstimator, ClassifierMixin):
    """The signed mean of the ``k`` features with the largest training |t|, then logistic regression."""

    def __init__(self, k: int = 10) -> None:
        self.k = k

    def fit(self, x: np.ndarray, y: np.ndarray) -> TopKScore:
        t = np.nan_to_num(stats.ttest_ind(x[y == 1], x[y == 0]).statistic)
        self.index_ = np.argsort(-np.abs(t))[: self.k]
        self.sign_ = np.sign(t[self.index_])
        self.lr_ = LogisticRegression(class_weight="balanced").fit(self._score(x), y)
        self.classes_ = self.lr_.classes_
        return self

    def _score(self, x: np.ndarray) -> np.ndarray:
        return (x[:, self.index_] * self.sign_).mean(axis=1, keepdims=True)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.lr_.predict_proba(self._score(x))


def candidates() -> dict:
    """name -> (y_train, groups_train) -> unfitted estimator on parcel features."""
    models = {
        "primary (nested L2)": lambda y, g: map_pipeline(nested_estimator("classification", y, g, 0)),
        "sparse L1 (parcel_l1)": lambda y, g: sparse_estimator(y, g, 0),
    }
    for k in TOP_K:
        models[f"top-{k} score"] = lambda y, g, k=k: map_pipeline(TopKScore(k))
    models["top-k score, k by inner CV"] = lambda y, g: GridSearchCV(
        map_pipeline(TopKScore()),
        {"topkscore__k": list(TOP_K)},
        cv=inner_splits("classification", y, g, 0),
        scoring="neg_log_loss",
    )
    return models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", type=Path, help="group_inputs.npz of a group run's work folder")
    parser.add_argument("--map", default="maps", help="array of the npz to read (maps = the dFC-SD maps)")
    args = parser.parse_args(argv)
    data = np.load(args.inputs)
    y, groups = data["y"], data["groups"]
    operator, ids = parcel_matrix(data["parcels"])
    x = parcel_means(data[args.map], operator)
    folds = subject_folds(y, groups, 5, 5, 0)
    print(f"{len(np.unique(groups))} subjects, {len(ids)} parcels, map {args.map}, 5 x 5 subject-level CV")
    print("| model | balanced accuracy (mean ± SD over folds) | s |\n|---|---|---|")
    warnings.simplefilter("ignore")
    for name, make in candidates().items():
        start, scores = time.time(), []
        for fold in folds:
            train, test = fold["train"], fold["test"]
            model = make(y[train], groups[train]).fit(x[train], y[train])
            prob = model.predict_proba(x[test])[:, 1]
            scores.append(classification_metrics(y[test], prob)["balanced_accuracy"])
        print(f"| {name} | {np.mean(scores):.2f} ± {np.std(scores):.2f} | {time.time() - start:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
