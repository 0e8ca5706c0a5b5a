"""The subject-level cross-validation: folds planned by subject, every model fit in-fold, one fold per node.

Every sample (a subject map, or one window map of a subject) carries its unit (subject or
subject-session) as ``group`` and its subject as ``split_group``. Folds come from
:class:`sklearn.model_selection.StratifiedGroupKFold` on the samples grouped by subject (repeated, seed
``random_seed + repeat``), and :func:`check_folds` refuses any fold in which a subject would sit on both
sides. Models (:func:`workflows.models.fold_models`) are given the training samples only: any
normalisation, PCA, inner CV or early-stopping split is fit inside that call, never on test subjects.
Window predictions are averaged per unit (soft vote) before any metric is computed.

The group workflow plans the folds when it is built (:func:`plan_folds`) and runs :func:`run_fold` once
per fold (a MapNode); :mod:`workflows.cv_summary` gathers the folds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from workflows.conformal import (
    UL_FMA_RANGE,
    conformal_threshold,
    covered,
    intervals,
    out_of_fold_scores,
    prediction_sets,
    set_label,
)
from workflows.explain import held_out_explainer
from workflows.group_inputs import is_severe
from workflows.learning_curve import LEARNING_FRACTIONS, subsampled_folds
from workflows.model_io import json_clean
from workflows.models import PRIMARY_MODEL, FitPredict, fold_models
from workflows.params import GroupParams
from workflows.stats import classification_metrics, fold_metrics_for
from workflows.utils.errors import InputError
from workflows.utils.io import atomic_write_json

LOGGER = logging.getLogger("strokefc.group")


class FoldFiles(NamedTuple):
    """Files written by :func:`run_fold`."""

    out_file: str  # predictions, metrics and training curve (JSON)
    saliency_file: str  # per-class sums of the CNN's held-out saliency over the fold's test units (npz)


def subject_labels(y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique subjects and their label; refuses a subject whose samples disagree on the label."""
    y = np.asarray(y)
    subjects, first, inverse = np.unique(groups, return_index=True, return_inverse=True)
    labels = y[first]
    differ = np.flatnonzero(y != labels[inverse.reshape(-1)])
    if differ.size:
        raise ValueError(
            f"samples of subject {subjects[inverse.reshape(-1)[differ[0]]]} have different labels"
        )
    return subjects, labels


def effective_folds(y: np.ndarray, groups: np.ndarray, n_folds: int) -> int:
    """``n_folds`` lowered to the number of subjects of the smaller class (at least 2).

    A subject counts for every class its samples have (sessions of one subject may differ in class).
    """
    y, groups = np.asarray(y), np.asarray(groups)
    smallest = min(len(np.unique(groups[y == c])) for c in (0, 1))
    if smallest < 2:
        raise InputError(
            f"a class has {smallest} subject(s); cross-validation needs at least 2 per class",
            "participants.tsv (labels)",
            "add subjects or change GroupParams.severe_threshold",
            params=("GroupParams.severe_threshold",),
        )
    if smallest < n_folds:
        LOGGER.warning(
            "only %d subjects in the smaller class: using %d folds instead of %d", smallest, smallest, n_folds
        )
    return min(n_folds, smallest)


def check_folds(folds: Iterable[dict], groups: np.ndarray) -> None:
    """Raise if a subject appears in both the training and test samples of any fold."""
    for fold in folds:
        overlap = set(groups[fold["train"]]) & set(groups[fold["test"]])
        if overlap:
            raise RuntimeError(
                f"subject(s) {sorted(overlap)} in both training and test samples "
                f"(repeat {fold['repeat']}, fold {fold['fold']})"
            )


def subject_folds(y: np.ndarray, groups: np.ndarray, n_folds: int, n_repeats: int, seed: int) -> list[dict]:
    """Repeated stratified k-fold at the subject level.

    Returns a list of ``{"repeat", "fold", "train", "test"}`` with sample indices; all samples of a
    subject (``groups``: every session and window of it) are on the same side. Repeat ``r`` shuffles
    with seed ``seed + r``.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    y, groups = np.asarray(y), np.asarray(groups)
    k = effective_folds(y, groups, n_folds)
    folds = []
    for repeat in range(n_repeats):
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed + repeat)
        for fold, (train, test) in enumerate(splitter.split(np.zeros(len(y)), y, groups)):
            folds.append({"repeat": repeat, "fold": fold, "train": train, "test": test})
    check_folds(folds, groups)
    return folds


def subject_mean(prob: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average sample predictions per unit (soft vote over windows); returns (units, prediction)."""
    subjects = np.unique(groups)
    return subjects, np.array([float(np.mean(prob[groups == s])) for s in subjects])


def cross_validate(
    x: np.ndarray,
    y: npt.ArrayLike,
    groups: npt.ArrayLike,
    folds: Sequence[dict],
    models: dict[str, FitPredict],
    split_groups: npt.ArrayLike | None = None,
    *,
    metrics: Callable[[np.ndarray, np.ndarray], dict] = classification_metrics,
    value: str = "prob_severe",
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Run every model on every fold, fitting on the training samples only.

    ``models[name](x_train, y_train, groups_train, x_test, seed=...)`` returns
    ``(prediction_test_samples, curve_rows)``. Returns ``(predictions, fold_metrics, curves)``:
    per-unit out-of-fold rows, per-fold metric dicts, and training-curve rows. ``groups`` are the
    units scored (a subject, or a subject-session); ``split_groups`` (default ``groups``) the subjects
    that must never straddle a fold, also given to the models for their inner splits. Regression
    passes its own ``metrics(y_true, predicted)`` and names the predicted ``value`` column
    (``predicted_score``; ``y_true`` then keeps the score).
    """
    cast = int if value == "prob_severe" else float
    y, groups = np.asarray(y), np.asarray(groups)
    split = groups if split_groups is None else np.asarray(split_groups)
    check_folds(folds, split)
    predictions: list[dict[str, Any]] = []
    fold_metrics: list[dict[str, Any]] = []
    curves: list[dict[str, Any]] = []
    for fold in folds:
        train, test = fold["train"], fold["test"]
        seed = 1000 * fold["repeat"] + fold["fold"]
        for name, fit_predict in models.items():
            prob, curve = fit_predict(x[train], y[train], split[train], x[test], seed=seed)
            subjects, subject_prob = subject_mean(np.asarray(prob), groups[test])
            _, truth = subject_labels(y[test], groups[test])
            fold_metrics.append(
                {
                    "model": name,
                    "repeat": fold["repeat"],
                    "fold": fold["fold"],
                    **metrics(truth, subject_prob),
                }
            )
            predictions.extend(
                {
                    "participant_id": str(s),
                    "repeat": fold["repeat"],
                    "fold": fold["fold"],
                    "model": name,
                    "y_true": cast(t),
                    value: float(p),
                }
                for s, t, p in zip(subjects, truth, subject_prob)
            )
            curves.extend({"repeat": fold["repeat"], "fold": fold["fold"], **row} for row in curve)
        LOGGER.debug("fold %d of repeat %d done", fold["fold"] + 1, fold["repeat"] + 1)
    return predictions, fold_metrics, curves


def plan_folds(subjects: list[dict], params: GroupParams) -> list[dict]:
    """Subject-level folds, fixed when the workflow is built: ``{repeat, fold, test: [unit labels],
    number, of}`` (``number`` counts the folds of every repeat from 1 to ``of``).

    Every sample of a subject (each of its sessions, each window) follows the subject, so a subject is
    never on both sides of a fold.
    """
    labels = np.array([s["label"] for s in subjects])
    split = np.array([s.get("subject") or s["label"] for s in subjects])
    y = np.array([int(is_severe(s["score"], params.severe_threshold)) for s in subjects])
    folds = subject_folds(y, split, params.cv.cv_folds, params.cv.cv_repeats, params.random_seed)
    return [
        {
            "repeat": int(f["repeat"]),
            "fold": int(f["fold"]),
            "test": labels[f["test"]].tolist(),
            "number": i + 1,  # for progress lines: fold <number>/<of>
            "of": len(folds),
        }
        for i, f in enumerate(folds)
    ]


def fold_indices(groups: np.ndarray, fold: dict) -> dict:
    """A planned fold (test unit labels) as training and test sample indices."""
    test = np.isin(groups, fold["test"])
    return {
        "repeat": fold["repeat"],
        "fold": fold["fold"],
        "train": np.flatnonzero(~test),
        "test": np.flatnonzero(test),
    }


def targets(data: Mapping[str, np.ndarray], params: GroupParams) -> np.ndarray:
    """What the models learn for each sample: the class (1 = severe), or the UL-FMA score."""
    if params.target != "regression":
        return data["y"]
    row = {str(s): i for i, s in enumerate(data["subjects"])}
    return np.array([data["scores"][row[str(g)]] for g in data["groups"]], dtype=float)


def split_groups(data: Mapping[str, np.ndarray]) -> np.ndarray:
    """The subject of each sample (inputs written before sessions had one: the sample's unit)."""
    return data["split_groups"] if "split_groups" in data else data["groups"]


def prediction_column(params: GroupParams) -> str:
    """The prediction column of cv_predictions.tsv: the probability of severe, or the predicted score."""
    return "predicted_score" if params.target == "regression" else "prob_severe"


#: Columns of cv_predictions.tsv with the primary model's conformal set or interval (n/a for the others).
CONFORMAL_COLUMNS = {
    "classification": ("prediction_set", "conformal_threshold", "conformal_covered"),
    "regression": ("interval_lower", "interval_upper", "conformal_threshold", "conformal_covered"),
}


def conformal_fold(
    predictions: list[dict[str, Any]],
    fit_predict: FitPredict,
    fold: dict,
    y: np.ndarray,
    split: np.ndarray,
    groups: np.ndarray,
    params: GroupParams,
    model: str = PRIMARY_MODEL,
) -> dict[str, Any]:
    """Give the fold's test units of ``model`` their conformal set or interval (columns added in place).

    The threshold comes from out-of-fold nonconformity scores of the fold's *training* subjects only
    (:func:`workflows.conformal.out_of_fold_scores`: ``fit_predict`` refit on subject-level inner
    splits of the training samples); the test units' predictions (already in ``predictions``) are then
    given their set or interval and whether it holds the truth. Returns the fold's threshold record.
    """
    train = fold["train"]
    scores = out_of_fold_scores(
        fit_predict,
        train,  # fit_predict takes sample indices (workflows.models.fold_models)
        y[train],
        split[train],
        groups[train],
        target=params.target,
        seed=1000 * fold["repeat"] + fold["fold"],
    )
    threshold = conformal_threshold(scores, params.conformal_coverage)
    regression = params.target == "regression"
    value = prediction_column(params)
    for row in predictions:
        if row["model"] != model:
            continue
        predicted = np.array([row[value]])
        if regression:
            lower, upper = intervals(predicted, threshold, UL_FMA_RANGE)
            row.update(interval_lower=float(lower[0]), interval_upper=float(upper[0]))
        else:
            row["prediction_set"] = set_label(prediction_sets(predicted, threshold)[0])
        row["conformal_threshold"] = threshold
        row["conformal_covered"] = int(
            covered(params.target, np.array([row["y_true"]]), predicted, threshold)[0]
        )
    return {
        "repeat": fold["repeat"],
        "fold": fold["fold"],
        "model": model,
        "n_calibration": len(scores),
        "threshold": threshold,
    }


def fold_learning_curve(
    fit_predict: FitPredict,
    fold: dict,
    y: np.ndarray,
    split: np.ndarray,
    groups: np.ndarray,
    params: GroupParams,
    full: Mapping[str, Any],
    model: str = PRIMARY_MODEL,
    fractions: Sequence[float] = LEARNING_FRACTIONS,
) -> list[dict[str, Any]]:
    """``model``'s learning curve in one fold: refit on nested subject-level subsets of the fold's
    training subjects only (:func:`workflows.learning_curve.subsampled_folds`), scored on the fold's
    unchanged test units; fraction 1.0 is the fold's own fit (``full``: its fold metrics).

    Rows of learning_curves.tsv: ``model, repeat, fold, fraction, n_train_subjects`` and the balanced
    accuracy (plus the MAE for a regression).
    """
    regression = params.target == "regression"
    metric_names = ["balanced_accuracy"] + (["mae"] if regression else [])
    subsets = subsampled_folds(
        fold,
        y,
        split,
        fractions,
        stratify=not regression,
        seed=params.random_seed + 1000 * fold["repeat"] + fold["fold"],
    )
    rows = []
    for subset in subsets:
        if subset["fraction"] >= 1.0:
            metrics: Mapping[str, Any] = full
        else:
            _, scored, _ = cross_validate(
                np.arange(len(y)),
                y,
                groups,
                [subset],
                {model: fit_predict},
                split_groups=split,
                metrics=fold_metrics_for(params.target, params.severe_threshold),
                value=prediction_column(params),
            )
            metrics = scored[0]
        rows.append(
            {
                "model": model,
                "repeat": fold["repeat"],
                "fold": fold["fold"],
                "fraction": subset["fraction"],
                "n_train_subjects": subset["n_train_subjects"],
                **{m: metrics.get(m, float("nan")) for m in metric_names},
            }
        )
    return rows


def run_fold(data_file: str | Path, fold: dict, params: GroupParams, work_dir: str | Path) -> FoldFiles:
    """Fit every model (:func:`workflows.models.fold_models`) on one fold's training subjects, predict
    its test subjects.

    Writes a JSON file with the fold's predictions, metrics and training curve, and an npz with the
    fold CNN's signed saliency on the fold's test units (held out), summed per class.
    """
    import torch  # here, not at the top: the modules that read this one's tables train no CNN

    torch.set_num_threads(params.threads)  # folds run in parallel as separate Nipype nodes
    data = np.load(data_file)
    y, groups = targets(data, params), data["groups"]
    folds = [fold_indices(groups, fold)]
    saliency: dict[str, np.ndarray] = {}
    explain = held_out_explainer(data, folds[0]["test"], params, saliency)
    timescales: list[dict] = []  # the window lengths chosen in the fold (GroupParams.timescale auto)
    models = fold_models(data, params, explain, record=timescales)
    # every model sees the same folds; each takes its own inputs by sample index
    predictions, metrics, curves = cross_validate(
        np.arange(len(y)),
        y,
        groups,
        folds,
        models,
        split_groups=split_groups(data),
        metrics=fold_metrics_for(params.target, params.severe_threshold),
        value=prediction_column(params),
    )
    # the primary model's conformal sets, calibrated on the fold's training subjects only
    conformal = conformal_fold(
        predictions, models[PRIMARY_MODEL], folds[0], y, split_groups(data), groups, params
    )
    # the primary model's learning curve (subject-level folds only: a held-out site is scored apart)
    learning = (
        []
        if fold.get("scheme") == "site"
        else fold_learning_curve(
            models[PRIMARY_MODEL],
            folds[0],
            y,
            split_groups(data),
            groups,
            params,
            next(m for m in metrics if m["model"] == PRIMARY_MODEL),
        )
    )
    scheme = "_site" if fold.get("scheme") == "site" else ""
    stem = Path(work_dir) / f"fold{scheme}_r{fold['repeat']}_f{fold['fold']}"
    out = atomic_write_json(
        stem.with_suffix(".json"),
        json_clean(
            {
                "predictions": predictions,
                "metrics": metrics,
                "curves": curves,
                "conformal": conformal,
                "learning_curve": learning,
                # leave-one-site-out folds say so (workflows.sites.plan_site_folds)
                "scheme": fold.get("scheme", "subject"),
                "site": fold.get("site"),
                # the fold's own choice (calibration's inner fits choose on fewer subjects)
                "timescales": [
                    {"repeat": fold["repeat"], "fold": fold["fold"], "timescale": t["timescale"]}
                    for t in timescales
                    if t["n_train"] == len(folds[0]["train"])
                ][:1],
            }
        ),
    )
    saliency_file = stem.parent / f"{stem.name}_saliency.npz"
    np.savez_compressed(saliency_file, **saliency)  # type: ignore[arg-type]
    if "number" in fold:  # progress (the app shows strokefc's INFO lines)
        what = "leave-one-site-out" if fold.get("scheme") == "site" else "cross-validation"
        LOGGER.info("%s: fold %d/%d done", what, fold["number"], fold["of"])
    return FoldFiles(str(out), str(saliency_file))
