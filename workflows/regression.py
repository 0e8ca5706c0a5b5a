"""UL-FMA regression (``GroupParams.target = "regression"``): the models, their metrics and their summary.

The same subject-level folds as classification (planned from the severe/mild class, so the two targets
are compared on identical splits), the same inputs and the same fold loop
(:func:`workflows.evaluation.cross_validate`); only the models and the metrics change:

- ``parcel`` (primary): parcel means of the map (:func:`workflows.linear_models.parcel_means`),
  standardised, and a ridge whose penalty is chosen by an inner group k-fold over the training subjects
  only (nested CV); the static-FC and mean-dFC controls are the same model on those maps;
- ``baseline``: the voxel PCA pipeline of classification (:func:`workflows.evaluation.make_baseline`)
  ending in the same nested ridge;
- ``confounds``: a ridge on the quality measures and lesion volume of the classification control;
- ``cnn``: the compact 3D CNN with a one-output head (:func:`workflows.cnn.train_model` with
  ``regression=True``: Huber loss on the score standardised with training-fold statistics);
- ``mean``: the training subjects' mean score, the reference every model must beat.

Metrics (:func:`regression_metrics`): MAE, RMSE, Pearson and Spearman r, R² and the balanced accuracy of
severe (score <= threshold) obtained by thresholding the predicted score.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from functools import partial

import numpy as np
from scipy import sparse, stats
from scipy.linalg import LinAlgWarning
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import GroupKFold

from workflows import evaluation as ev
from workflows.cnn import StrokeCNN, fit_predict
from workflows.linear_models import CONFOUND_FEATURES, bootstrap_comparison, parcel_means
from workflows.params import TrainSettings

#: Ridge penalties searched by the inner cross-validation (standardised features).
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 15))
#: Out-of-fold metrics of every regression model (``balanced_accuracy``: thresholded prediction).
REGRESSION_METRICS = ("mae", "rmse", "pearson_r", "spearman_r", "r2", "balanced_accuracy")
#: The metric of the paired comparisons (UL-FMA points, lower is better).
COMPARE_METRIC = "mae"
#: The references every model is compared with: the training mean and the confound-only model.
REFERENCES = ("mean", "confounds")

_RIDGE = (
    f"a ridge whose penalty is chosen among {len(RIDGE_ALPHAS)} values (1e-2 to 1e5) by an inner group "
    "5-fold CV (mean squared error) on the training subjects only"
)
REGRESSION_MODELS = {
    "parcel": "dFC-SD parcel model (primary): mean of the map in each HCPEx parcel (lesion-aligned CNN "
    "grid), standardised, and " + _RIDGE,
    "cnn": "3D CNN on the dFC-SD maps with a one-output head (Huber loss on the UL-FMA standardised with "
    "the training fold's mean and SD)",
    "baseline": "voxel PCA (up to 20 components of the z-scored maps) and " + _RIDGE,
    "parcel_fc": "control: the parcel model on static-FC maps",
    "parcel_dfcmean": "control: the parcel model on mean-dFC maps",
    "confounds": "control: ridge (alpha = 1) on quality measures and lesion volume only: "
    + ", ".join(CONFOUND_FEATURES)
    + " (median-imputed and standardised inside each training fold)",
    "mean": "reference: every test subject predicted at the training subjects' mean UL-FMA",
}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, threshold: float) -> dict[str, float]:
    """MAE, RMSE, Pearson r, Spearman r, R² and the severe/mild balanced accuracy of thresholded scores.

    Parameters
    ----------
    y_true, y_pred : array (n,)
        True and predicted UL-FMA of the test subjects.
    threshold : float
        UL-FMA <= threshold is severe, for the true and the predicted score alike.

    Correlations are NaN for a constant prediction (the mean reference), R² for fewer than 2 subjects
    and the balanced accuracy when one class is absent from ``y_true``.
    """
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    varies = len(y_true) > 1 and np.ptp(y_true) > 0 and np.ptp(y_pred) > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # R² of one subject; constant inputs are caught above
        r2 = float(r2_score(y_true, y_pred)) if len(y_true) > 1 else math.nan
    severe, predicted = y_true <= threshold, y_pred <= threshold
    both = severe.any() and (~severe).any()
    return {
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "rmse": float(math.sqrt(mean_squared_error(y_true, y_pred))),
        "pearson_r": float(np.corrcoef(y_true, y_pred)[0, 1]) if varies else math.nan,
        "spearman_r": float(stats.spearmanr(y_true, y_pred)[0]) if varies else math.nan,
        "r2": r2,
        "balanced_accuracy": float((predicted[severe].mean() + (~predicted[~severe]).mean()) / 2)
        if both
        else math.nan,
    }


def inner_group_splits(groups: np.ndarray, seed: int, n_splits: int = 5) -> list | None:
    """Subject-level splits of the training data for choosing a penalty (None with < 3 subjects)."""
    n_subjects = len(np.unique(groups))
    if n_subjects < 3:
        return None
    splitter = GroupKFold(min(n_splits, n_subjects), shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(groups)), groups=groups))


def nested_ridge(groups_train: np.ndarray, seed: int) -> Ridge | RidgeCV:
    """A ridge whose penalty is chosen by :func:`inner_group_splits` (alpha = 1 when it cannot be)."""
    inner = inner_group_splits(groups_train, seed)
    if inner is None:
        return Ridge(alpha=1.0)
    return RidgeCV(alphas=RIDGE_ALPHAS, cv=inner, scoring="neg_mean_squared_error")


def parcel_ridge_fit_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    x_test: np.ndarray,
    *,
    operator: sparse.csr_matrix,
    seed: int = 0,
) -> tuple[np.ndarray, list]:
    """Nested-CV parcel ridge: fit on one training fold, return the predicted test scores."""
    model = ev.map_pipeline(nested_ridge(groups_train, seed))
    with warnings.catch_warnings():  # the smallest penalties on p >> n features: expected, harmless
        warnings.simplefilter("ignore", LinAlgWarning)
        model.fit(parcel_means(x_train, operator), y_train)
    return model.predict(parcel_means(x_test, operator)), []


def pca_ridge_fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, groups_train: np.ndarray, x_test: np.ndarray, *, seed: int = 0
) -> tuple[np.ndarray, list]:
    """The voxel PCA baseline ending in the nested ridge (flattened voxels)."""
    model = ev.make_baseline(len(y_train), seed=seed, final=nested_ridge(groups_train, seed))
    with warnings.catch_warnings():  # see parcel_ridge_fit_predict
        warnings.simplefilter("ignore", LinAlgWarning)
        model.fit(x_train.reshape(len(x_train), -1), y_train)
    return model.predict(x_test.reshape(len(x_test), -1)), []


def confound_ridge_fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, groups_train: np.ndarray, x_test: np.ndarray, *, seed: int = 0
) -> tuple[np.ndarray, list]:
    """Ridge on (n, features) quality measures; NaN (unknown) values are imputed in-fold."""
    del groups_train, seed  # the signature of every model; this one needs neither
    model = ev.confound_pipeline(Ridge(alpha=1.0))
    model.fit(x_train, y_train)
    return model.predict(x_test), []


def mean_fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, groups_train: np.ndarray, x_test: np.ndarray, *, seed: int = 0
) -> tuple[np.ndarray, list]:
    """Predict the training subjects' mean score (each subject counted once, whatever its samples)."""
    del x_train, seed
    _, first = np.unique(groups_train, return_index=True)
    return np.full(len(x_test), float(np.mean(np.asarray(y_train, dtype=float)[first]))), []


def cnn_regression_fit_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    x_test: np.ndarray,
    *,
    seed: int,
    train: TrainSettings,
    explain: Callable[[StrokeCNN, np.ndarray], None] | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Train the one-output CNN on one training fold, predict the test scores (curve rows returned too).

    ``explain`` sees the fold's model and its test samples only (:func:`workflows.cnn.fit_predict`).
    """
    settings = replace(train, seed=seed)
    return fit_predict(x_train, y_train, groups_train, x_test, settings, regression=True, explain=explain)


def model_functions(
    operator: sparse.csr_matrix,
    train: TrainSettings,
    random_seed: int,
    explain: Callable[[StrokeCNN, np.ndarray], None] | None = None,
) -> dict:
    """The regression model of each name of :data:`REGRESSION_MODELS`, as ``fit_predict`` on arrays.

    ``parcel`` also serves the static-FC and mean-dFC controls; ``confounds`` and ``mean`` take the
    quality measures; ``explain`` goes to the CNN (:func:`cnn_regression_fit_predict`).
    """

    def cnn(
        x_train: np.ndarray,
        y_train: np.ndarray,
        groups_train: np.ndarray,
        x_test: np.ndarray,
        *,
        seed: int = 0,
    ) -> tuple[np.ndarray, list[dict]]:
        return cnn_regression_fit_predict(
            x_train, y_train, groups_train, x_test, seed=random_seed + seed, train=train, explain=explain
        )

    def baseline(
        x_train: np.ndarray,
        y_train: np.ndarray,
        groups_train: np.ndarray,
        x_test: np.ndarray,
        *,
        seed: int = 0,
    ) -> tuple[np.ndarray, list]:
        return pca_ridge_fit_predict(x_train, y_train, groups_train, x_test, seed=random_seed + seed)

    return {
        "cnn": cnn,
        "baseline": baseline,
        "parcel": partial(parcel_ridge_fit_predict, operator=operator),
        "confounds": confound_ridge_fit_predict,
        "mean": mean_fit_predict,
    }


def summarise_regression(
    predictions: Sequence[Mapping],
    fold_metrics: Sequence[Mapping],
    threshold: float,
    seed: int = 0,
    n_boot: int = 1000,
) -> dict:
    """Fold summaries, subject-bootstrap intervals and paired differences from the references.

    Returns ``{"models": {model: {metric: {mean, sd, ci95}}}, "bootstrap": {model: {metric: {value,
    ci95}, "difference_from_mean": {"mae": ...}, "difference_from_confounds": {...}}}}``; a
    difference below 0 (MAE) means the model is closer to the true scores than the reference.
    """
    names = list(dict.fromkeys(str(m["model"]) for m in fold_metrics))  # NaN came back from JSON as None
    models = {
        name: {
            metric: ev.summarise(
                [
                    math.nan if m[metric] is None else float(m[metric])
                    for m in fold_metrics
                    if m["model"] == name
                ],
                bounds=None if metric in ("mae", "rmse", "r2") else (-1.0, 1.0),
            )
            for metric in REGRESSION_METRICS
        }
        for name in names
    }
    boot = bootstrap_comparison(
        predictions,
        [r for r in REFERENCES if r in names],
        n_boot=n_boot,
        seed=seed,
        scores=partial(regression_metrics, threshold=threshold),
        value="predicted_score",
        compare=COMPARE_METRIC,
    )
    return {"models": models, "bootstrap": boot}


def beats(bootstrap: Mapping, model: str, reference: str) -> str | None:
    """``"better"``, ``"worse"`` or ``"same"``: ``model`` against ``reference`` on the bootstrap of MAE."""
    diff = bootstrap.get(model, {}).get(f"difference_from_{reference}", {}).get(COMPARE_METRIC)
    if not diff or diff["ci95"][0] is None or not np.isfinite(diff["ci95"]).all():
        return None
    low, high = diff["ci95"]
    return "better" if high < 0 else "worse" if low > 0 else "same"
