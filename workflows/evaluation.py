"""Honest evaluation: repeated stratified k-fold split by subject, in-fold fitting, metrics, permutation test.

Every sample (a subject map, or one window map of a subject) carries its subject as ``group``.
Folds come from :class:`sklearn.model_selection.StratifiedGroupKFold` on the samples grouped by
subject, and :func:`check_folds` refuses any fold in which a subject would sit on both sides. Models
are given the training samples only (``fit_predict(x_train, y_train, groups_train, x_test)``): any
normalisation, PCA or early-stopping split is fit inside that call, never on test subjects.
Window predictions are averaged per subject (soft vote) before any metric is computed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from workflows.utils.errors import InputError

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

LOGGER = logging.getLogger("strokefc.group")


METRICS = ("balanced_accuracy", "roc_auc", "sensitivity", "specificity", "f1", "brier")

BASELINE_DESCRIPTION = (
    "L2-regularised logistic regression (C=1, balanced class weights) on the principal "
    "components (up to 20) of the voxelwise z-scored masked maps; scaler, PCA and "
    "classifier fit inside each training fold (scikit-learn pipeline)"
)


def subject_labels(y: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique subjects and their label; refuses a subject whose samples disagree on the label."""
    subjects, first = np.unique(groups, return_index=True)
    labels = np.asarray(y)[first]
    for subject, label in zip(subjects, labels):
        if np.any(np.asarray(y)[groups == subject] != label):
            raise ValueError(f"samples of subject {subject} have different labels")
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


def classification_metrics(y_true: npt.ArrayLike, prob: npt.ArrayLike, threshold: float = 0.5) -> dict:
    """Balanced accuracy, ROC AUC, sensitivity (severe = positive), specificity, F1 and Brier score.

    The Brier score (mean squared error of the probability) is for the probabilities as the models give
    them; class-weighted models are not recalibrated, so read it as a check, not as calibration.
    """
    from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

    y_true = np.asarray(y_true).astype(int)
    prob = np.asarray(prob, dtype=float)
    pred = (prob >= threshold).astype(int)
    pos, neg = y_true == 1, y_true == 0
    sens = float(pred[pos].mean()) if pos.any() else math.nan
    spec = float((1 - pred[neg]).mean()) if neg.any() else math.nan
    auc = float(roc_auc_score(y_true, prob)) if pos.any() and neg.any() else math.nan
    return {
        "balanced_accuracy": float(balanced_accuracy_score(y_true, pred))
        if pos.any() and neg.any()
        else math.nan,
        "roc_auc": auc,
        "sensitivity": sens,
        "specificity": spec,
        "f1": float(f1_score(y_true, pred, zero_division=0)),
        "brier": float(np.mean((prob - y_true) ** 2)) if len(y_true) else math.nan,
    }


def summarise(values: Iterable[float], bounds: tuple[float, float] | None = (0.0, 1.0)) -> dict:
    """Mean, SD and a 95% t-interval over folds x repeats (clipped to ``bounds``; None: not clipped).

    The folds of one repeat share subjects, so the interval is optimistic; it is a summary of the
    spread, not a formal test (the permutation test is).
    """
    from scipy import stats

    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return {"mean": math.nan, "sd": math.nan, "ci95": [math.nan, math.nan]}
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    half = float(stats.t.ppf(0.975, len(v) - 1) * sd / np.sqrt(len(v))) if len(v) > 1 else 0.0
    low, high = bounds if bounds is not None else (-math.inf, math.inf)
    return {"mean": mean, "sd": sd, "ci95": [max(low, mean - half), min(high, mean + half)]}


def subject_mean(prob: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average sample probabilities per subject (soft vote over windows); returns (subjects, prob)."""
    subjects = np.unique(groups)
    return subjects, np.array([float(np.mean(prob[groups == s])) for s in subjects])


def map_pipeline(*steps: Any) -> Pipeline:
    """Standardise map features, unknown (NaN: lesion-excluded) ones at the training mean, then ``steps``."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        StandardScaler(), SimpleImputer(strategy="constant", fill_value=0.0, keep_empty_features=True), *steps
    )


def confound_pipeline(estimator: Any) -> Pipeline:
    """Impute unknown quality measures by the training median, standardise, then ``estimator``."""
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(), estimator
    )


def make_baseline(n_train: int, max_components: int = 20, seed: int = 0, final: Any = None) -> Pipeline:
    """StandardScaler -> PCA -> L2 logistic regression (or the estimator ``final``), for one training fold.

    Excluded voxels (NaN: a lesion or its mirror) are ignored by the scaler and then set to 0, the
    training mean. UL-FMA regression passes a ridge as ``final``.
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression

    n_components = max(1, min(max_components, n_train - 1))
    return map_pipeline(
        PCA(n_components=n_components, random_state=seed),
        LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000) if final is None else final,
    )


def baseline_fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, groups_train: np.ndarray, x_test: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Fit the baseline on the training samples (flattened voxels) and return test probabilities."""
    del groups_train
    model = make_baseline(len(y_train), seed=seed)
    model.fit(x_train.reshape(len(x_train), -1), y_train)
    return model.predict_proba(x_test.reshape(len(x_test), -1))[:, 1], []


#: ``fit_predict(x_train, y_train, groups_train, x_test, seed=...) -> (prob_test_samples, curve_rows)``
FitPredict = Callable[..., tuple[np.ndarray, list[dict[str, Any]]]]


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
    ``(prob_test_samples, curve_rows)``. Returns ``(predictions, fold_metrics, curves)``:
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
        LOGGER.info("fold %d of repeat %d done", fold["fold"] + 1, fold["repeat"] + 1)
    return predictions, fold_metrics, curves


def summarise_models(fold_metrics: list[dict]) -> dict:
    """``{model: {metric: summary}}`` from the per-fold metrics."""
    out = {}
    for name in dict.fromkeys(m["model"] for m in fold_metrics):
        rows = [m for m in fold_metrics if m["model"] == name]
        out[name] = {metric: summarise([r[metric] for r in rows]) for metric in METRICS}
    return out


def permute_subject_labels(y: np.ndarray, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shuffle labels between subjects (all samples of a subject keep one label)."""
    subjects, labels = subject_labels(y, groups)
    mapping = dict(zip(subjects, rng.permutation(labels)))
    return np.array([mapping[g] for g in groups])


def permutation_nulls(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    models: dict[str, FitPredict],
    *,
    n_folds: int,
    seed: int,
    index: int,
    n_repeats: int = 1,
    split_groups: npt.ArrayLike | None = None,
) -> dict[str, float]:
    """One null draw for every model: labels permuted between units, then the same repeated k-fold.

    Each model's mean balanced accuracy over ``n_repeats`` repeats of subject-level k-fold (use as many
    repeats as the observed score, so that null and observed means average the same number of folds).
    Folds are grouped by ``split_groups`` (default ``groups``) and shared by every model.
    """
    split = np.asarray(groups if split_groups is None else split_groups)
    rng = np.random.default_rng([seed, 7919, index])
    y_perm = permute_subject_labels(y, groups, rng)
    folds = subject_folds(y_perm, split, n_folds, n_repeats, seed + 100_000 + index)
    _, metrics, _ = cross_validate(x, y_perm, groups, folds, models, split_groups=split)
    return {
        name: float(np.nanmean([m["balanced_accuracy"] for m in metrics if m["model"] == name]))
        for name in models
    }


def permutation_null(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    fit_predict: FitPredict,
    *,
    n_folds: int,
    seed: int,
    index: int,
    n_repeats: int = 1,
) -> float:
    """Mean balanced accuracy of one model on labels permuted between subjects (one null draw)."""
    return permutation_nulls(
        x, y, groups, {"null": fit_predict}, n_folds=n_folds, seed=seed, index=index, n_repeats=n_repeats
    )["null"]


def permutation_p_value(observed: float, null: Iterable[float]) -> float:
    """p = (1 + #{null >= observed}) / (1 + n) (never 0: the observed labelling counts as one draw)."""
    null = [v for v in null if not math.isnan(v)]
    return float((1 + sum(v >= observed for v in null)) / (1 + len(null)))


def permutation_test(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    fit_predict: FitPredict,
    observed: float,
    *,
    n_permutations: int,
    n_folds: int,
    n_repeats: int = 1,
    seed: int = 0,
) -> dict:
    """Label-permutation test of the mean balanced accuracy (``n_repeats`` repeats of k-fold per draw,
    as many as the observed score averaged)."""
    null = [
        permutation_null(x, y, groups, fit_predict, n_folds=n_folds, seed=seed, index=i, n_repeats=n_repeats)
        for i in range(n_permutations)
    ]
    return {
        "n": n_permutations,
        "p_value": permutation_p_value(observed, null),
        "null_balanced_accuracy": null,
        "observed_balanced_accuracy": float(observed),
    }
