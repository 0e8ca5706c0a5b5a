"""Statistics of the group level: metrics, summaries over folds, paired comparisons and p-values.

- :func:`classification_metrics` and :func:`regression_metrics`: the out-of-fold scores of one fold.
- :func:`summarise` / :func:`summarise_folds`: mean, SD and a t-interval over folds x repeats.
- :func:`bootstrap_comparison`: subject-level (cluster: sessions together) bootstrap 95% intervals of
  the pooled out-of-fold scores of every model, and of each model's paired difference from reference models.
- :func:`corrected_resampled_ttest` / :func:`paired_tests`: the Nadeau & Bengio (2003) test of a
  paired difference over repeated k-fold (its variance correction accounts for overlapping training sets).
- :func:`permutation_p_value`: the p-value of a label-permutation test (the null draws come from
  :mod:`workflows.permutation`).
- :func:`quality_by_class`: do quality measures differ by class (Mann-Whitney U)?
- :func:`calibration_statistics` / :func:`regression_calibration` and :func:`calibration_summary`: the
  calibration intercept and slope (Van Calster et al. 2019) and the scaled Brier score of out-of-fold
  predictions, with subject-bootstrap intervals.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats
from sklearn.metrics import f1_score

#: Out-of-fold metrics of every classification model.
METRICS = ("balanced_accuracy", "roc_auc", "sensitivity", "specificity", "f1", "brier")
#: Out-of-fold metrics of every regression model (``balanced_accuracy``: thresholded prediction).
REGRESSION_METRICS = ("mae", "rmse", "pearson_r", "spearman_r", "r2", "balanced_accuracy")
#: The metric of the paired comparisons, per target (MAE: UL-FMA points, lower is better).
COMPARE_METRIC = {"classification": "balanced_accuracy", "regression": "mae"}


#: Draws of every subject bootstrap in the summaries (percentile 95% intervals; Efron & Tibshirani 1993
#: advise about 1000 for percentile intervals).
BOOTSTRAP_DRAWS = 1000


# ------------------------------------------------------------------------------------ fold metrics
# NumPy versions of scikit-learn's scores, equal to them to rounding (tests/test_stats_scores.py): the
# subject bootstrap calls them thousands of times per model, and scikit-learn's input validation made
# them ~20 ms a call, most of a small group level's summary step.


def balanced_accuracy(y_true: np.ndarray, pred: np.ndarray) -> float:
    """Mean of the two classes' recalls (``y_true`` and ``pred`` in {0, 1}; both classes in ``y_true``)."""
    y, pred = np.asarray(y_true).astype(bool), np.asarray(pred).astype(bool)
    return float((pred[y].mean() + (~pred[~y]).mean()) / 2)


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: the Mann-Whitney U of the positives' scores over the negatives' (ties
    count one half, as the trapezoids of :func:`sklearn.metrics.roc_auc_score`)."""
    y = np.asarray(y_true).astype(bool)
    ranks = stats.rankdata(np.asarray(score, dtype=float))
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination; a constant truth gives 1 when predicted exactly, else 0 (as
    :func:`sklearn.metrics.r2_score`)."""
    residual = float(np.sum((y_true - y_pred) ** 2))
    total = float(np.sum((y_true - np.mean(y_true)) ** 2))
    if total == 0.0:
        return 1.0 if residual == 0.0 else 0.0
    return 1.0 - residual / total


def classification_metrics(y_true: npt.ArrayLike, prob: npt.ArrayLike, threshold: float = 0.5) -> dict:
    """Balanced accuracy, ROC AUC, sensitivity (severe = positive), specificity, F1 and Brier score.

    The Brier score (mean squared error of the probability) is for the probabilities as the models give
    them; class-weighted models are not recalibrated, so read it as a check, not as calibration.
    """
    y_true = np.asarray(y_true).astype(int)
    prob = np.asarray(prob, dtype=float)
    pred = (prob >= threshold).astype(int)
    pos, neg = y_true == 1, y_true == 0
    sens = float(pred[pos].mean()) if pos.any() else math.nan
    spec = float((1 - pred[neg]).mean()) if neg.any() else math.nan
    auc = roc_auc(y_true, prob) if pos.any() and neg.any() else math.nan
    return {
        "balanced_accuracy": balanced_accuracy(y_true, pred) if pos.any() and neg.any() else math.nan,
        "roc_auc": auc,
        "sensitivity": sens,
        "specificity": spec,
        "f1": float(f1_score(y_true, pred, zero_division=0)),
        "brier": float(np.mean((prob - y_true) ** 2)) if len(y_true) else math.nan,
    }


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, threshold: float) -> dict[str, float]:
    """MAE, RMSE, Pearson r, Spearman r, R² and the severe/mild balanced accuracy of thresholded scores.

    ``threshold``: UL-FMA <= threshold is severe, for the true and the predicted score alike.
    Correlations are NaN for a constant prediction (the mean reference), R² for fewer than 2 subjects
    and the balanced accuracy when one class is absent from ``y_true``.
    """
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    varies = len(y_true) > 1 and np.ptp(y_true) > 0 and np.ptp(y_pred) > 0
    r_squared = r2(y_true, y_pred) if len(y_true) > 1 else math.nan
    severe, predicted = y_true <= threshold, y_pred <= threshold
    both = severe.any() and (~severe).any()
    return {
        "mae": float(np.mean(np.abs(y_true - y_pred))),
        "rmse": float(math.sqrt(np.mean((y_true - y_pred) ** 2))),
        "pearson_r": float(np.corrcoef(y_true, y_pred)[0, 1]) if varies else math.nan,
        "spearman_r": float(stats.spearmanr(y_true, y_pred)[0]) if varies else math.nan,
        "r2": r_squared,
        "balanced_accuracy": float((predicted[severe].mean() + (~predicted[~severe]).mean()) / 2)
        if both
        else math.nan,
    }


def fold_metrics_for(target: str, threshold: float) -> Callable[[np.ndarray, np.ndarray], dict]:
    """The fold metrics of ``target``: :func:`classification_metrics` or thresholded regression metrics."""
    if target == "regression":
        return partial(regression_metrics, threshold=threshold)
    return classification_metrics


# ------------------------------------------------------------------------------ summaries over folds
def summarise(values: Iterable[float], bounds: tuple[float, float] | None = (0.0, 1.0)) -> dict:
    """Mean, SD and a 95% t-interval over folds x repeats (clipped to ``bounds``; None: not clipped).

    The folds of one repeat share subjects, so the interval is optimistic; it is a summary of the
    spread, not a formal test (the permutation test is).
    """
    v = np.asarray([x for x in values if not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return {"mean": math.nan, "sd": math.nan, "ci95": [math.nan, math.nan]}
    mean = float(v.mean())
    sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
    half = float(stats.t.ppf(0.975, len(v) - 1) * sd / np.sqrt(len(v))) if len(v) > 1 else 0.0
    low, high = bounds if bounds is not None else (-math.inf, math.inf)
    return {"mean": mean, "sd": sd, "ci95": [max(low, mean - half), min(high, mean + half)]}


def summarise_models(fold_metrics: list[dict]) -> dict:
    """``{model: {metric: summary}}`` of the classification metrics, from the per-fold metrics."""
    out = {}
    for name in dict.fromkeys(m["model"] for m in fold_metrics):
        rows = [m for m in fold_metrics if m["model"] == name]
        out[name] = {metric: summarise([r[metric] for r in rows]) for metric in METRICS}
    return out


def summarise_regression_models(fold_metrics: Sequence[Mapping]) -> dict:
    """``{model: {metric: summary}}`` of the regression metrics (errors and R² are not clipped)."""
    names = list(dict.fromkeys(str(m["model"]) for m in fold_metrics))  # NaN came back from JSON as None
    return {
        name: {
            metric: summarise(
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


# ------------------------------------------------------------------------------ subject bootstrap
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


def classification_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """The pooled scores :func:`bootstrap_comparison` reports by default: balanced accuracy and AUC."""
    y = np.asarray(y).astype(int)
    both = len(np.unique(y)) == 2
    return {
        "balanced_accuracy": balanced_accuracy(y, p >= 0.5) if both else math.nan,
        "roc_auc": roc_auc(y, p) if both else math.nan,
    }


def _classification_scores_of_draws(y: np.ndarray, p: np.ndarray, draws: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`classification_scores` of every bootstrap draw at once (``draws``: one row of indices per
    draw, all of one length), each equal to the per-draw call's: the same counts, ranks (row-wise
    :func:`scipy.stats.rankdata`) and divisions; rank sums are exact (multiples of one half)."""
    yb = np.asarray(y).astype(int).astype(bool)[draws]
    pb = np.asarray(p, dtype=float)[draws]
    n = yb.shape[1]
    n_pos = yb.sum(axis=1)
    n_neg = n - n_pos
    both = (n_pos > 0) & (n_neg > 0)
    pred = pb >= 0.5
    with np.errstate(invalid="ignore", divide="ignore"):
        recalls = (pred & yb).sum(axis=1) / n_pos + (~pred & ~yb).sum(axis=1) / n_neg
        rank_sums = np.where(yb, stats.rankdata(pb, axis=1), 0.0).sum(axis=1)
        auc = (rank_sums - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return {
        "balanced_accuracy": np.where(both, recalls / 2, math.nan),
        "roc_auc": np.where(both, auc, math.nan),
    }


def bootstrap_comparison(
    predictions: Sequence[Mapping],
    reference: str | Sequence[str],
    n_boot: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
    *,
    scores: Callable[[np.ndarray, np.ndarray], dict[str, float]] = classification_scores,
    value: str = "prob_severe",
    compare: str = "balanced_accuracy",
    clusters: Mapping[str, str] | None = None,
) -> dict[str, dict]:
    """Pooled out-of-fold scores per model with subject-bootstrap 95% intervals, and paired differences.

    For each repeat the out-of-fold predictions (column ``value``) of all units are pooled; a
    bootstrap draw resamples subjects (the same draw for every model, so differences are paired) and
    averages ``scores(y_true, prediction)`` over repeats. Returns ``{model: {"balanced_accuracy":
    {"value", "ci95"}, "roc_auc": {...}, "difference_from_<reference>": {"balanced_accuracy": {"value",
    "ci95", "p_two_sided"}}}}`` (the keys of ``scores``, and the difference in ``compare``, model minus
    reference, from each reference model). Regression passes its own ``scores`` (MAE, R², ...).
    ``clusters`` maps a row's ``participant_id`` (a unit: subject or subject-session) to its subject; a
    draw then takes whole subjects with all their sessions (a cluster bootstrap), since sessions of one
    patient are not independent evidence. Without it every unit is its own subject.
    """
    references = [reference] if isinstance(reference, str) else list(reference)
    models = sorted({str(r["model"]) for r in predictions})
    pooled = {m: _pooled_predictions(predictions, m, value) for m in models}
    first = next((r for r in references if r in pooled), models[0] if models else None)
    subjects = pooled[first][next(iter(pooled[first]))][2] if first is not None else []
    draws = cluster_draws(subjects, clusters, n_boot, seed)

    def score(model: str, idx: np.ndarray | None) -> dict[str, float]:
        values = [
            scores(y, p) if idx is None else scores(y[idx], p[idx]) for y, p, _ in pooled[model].values()
        ]
        return {k: _nanmean([v[k] for v in values]) for k in values[0]}

    def score_draws(model: str) -> dict[str, np.ndarray]:
        """The scores of every draw, ``{score: (n_boot,)}``: the default scores of draws of one length
        (one unit per subject) at once, else draw by draw (a thousand draws x ten models: a second)."""
        if scores is classification_scores and draws and len({len(d) for d in draws}) == 1:
            matrix = np.stack(draws)
            repeats = [_classification_scores_of_draws(y, p, matrix) for y, p, _ in pooled[model].values()]
            if len(repeats) == 1:  # the mean of one value, as _nanmean takes it
                return {k: np.where(np.isfinite(v), v, math.nan) for k, v in repeats[0].items()}
            return {k: np.array([_nanmean(col) for col in zip(*(r[k] for r in repeats))]) for k in repeats[0]}
        per_draw = [score(model, idx) for idx in draws]
        return {k: np.array([b[k] for b in per_draw]) for k in (per_draw[0] if per_draw else {})}

    boot = {m: score_draws(m) for m in models}
    plain = {m: score(m, None) for m in models}
    out: dict[str, dict] = {}
    for m in models:
        out[m] = {
            k: {"value": v, "ci95": _interval(boot[m].get(k, np.array([])))} for k, v in plain[m].items()
        }
        for ref in references:
            if m == ref or ref not in boot:
                continue
            diff = boot[m].get(compare, np.array([])) - boot[ref].get(compare, np.array([]))  # none: n_boot 0
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


def cluster_draws(
    units: Sequence[str], clusters: Mapping[str, str] | None, n_boot: int, seed: int
) -> list[np.ndarray]:
    """``n_boot`` bootstrap draws of row indices of ``units`` that resample clusters (subjects) whole.

    Each draw picks as many subjects as there are, with replacement, and takes every unit of each
    picked subject (``clusters[unit]``; None or a missing unit: the unit is its own subject).
    """
    of = [str((clusters or {}).get(str(u), u)) for u in units]
    names = sorted(set(of))
    rows = [np.flatnonzero(np.array(of) == name) for name in names]
    rng = np.random.default_rng(seed)
    if all(len(r) == 1 for r in rows) and [of[r[0]] for r in rows] == of:  # one unit each, in order
        return [rng.integers(0, len(units), len(units)) for _ in range(n_boot)]
    return [np.concatenate([rows[i] for i in rng.integers(0, len(names), len(names))]) for _ in range(n_boot)]


def regression_bootstrap(
    predictions: Sequence[Mapping],
    references: Sequence[str],
    threshold: float,
    seed: int = 0,
    n_boot: int = BOOTSTRAP_DRAWS,
    clusters: Mapping[str, str] | None = None,
) -> dict[str, dict]:
    """:func:`bootstrap_comparison` of predicted scores: regression metrics, differences in MAE."""
    return bootstrap_comparison(
        predictions,
        list(references),
        n_boot=n_boot,
        seed=seed,
        scores=partial(regression_metrics, threshold=threshold),
        value="predicted_score",
        compare=COMPARE_METRIC["regression"],
        clusters=clusters,
    )


#: Metrics of which a lower value is better (errors); for the others a higher value is better.
LOWER_IS_BETTER = frozenset({"mae", "rmse", "brier"})


def beats(bootstrap: Mapping, model: str, reference: str, metric: str | None = None) -> str | None:
    """``"better"``, ``"worse"`` or ``"same"``: ``model`` against ``reference`` on the subject bootstrap
    of their difference in ``metric`` (the MAE by default; ``balanced_accuracy`` for classes), as
    :func:`bootstrap_comparison` stores it under ``bootstrap[model]["difference_from_<reference>"]``;
    None when that difference was not computed. "same": the 95% interval holds 0."""
    metric = metric or COMPARE_METRIC["regression"]
    diff = bootstrap.get(model, {}).get(f"difference_from_{reference}", {}).get(metric)
    if not diff or diff["ci95"][0] is None or not np.isfinite(diff["ci95"]).all():
        return None
    low, high = diff["ci95"]
    if metric in LOWER_IS_BETTER:
        low, high = -high, -low
    return "better" if low > 0 else "worse" if high < 0 else "same"


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _interval(values: np.ndarray) -> list[float]:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return [math.nan, math.nan]
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


# ------------------------------------------------------------------------------------ paired tests
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


def paired_tests(
    fold_metrics: list[dict], reference: str, test_fraction: float, metric: str = "balanced_accuracy"
) -> dict[str, dict]:
    """:func:`corrected_resampled_ttest` of each model's fold-wise ``metric`` minus the reference's."""
    by_fold: dict[tuple[int, int], dict[str, float]] = {}
    for m in fold_metrics:
        by_fold.setdefault((int(m["repeat"]), int(m["fold"])), {})[m["model"]] = m[metric]
    names = sorted({m["model"] for m in fold_metrics} - {reference})
    return {
        name: corrected_resampled_ttest(
            [f[name] - f[reference] for f in by_fold.values() if name in f and reference in f], test_fraction
        )
        for name in names
    }


def permutation_p_value(observed: float, null: Iterable[float], *, lower_is_better: bool = False) -> float:
    """p = (1 + #{null >= observed}) / (1 + n) (never 0: the observed labelling counts as one draw).

    With ``lower_is_better`` (an error such as the MAE) a null draw counts when it is <= the observed.
    """
    null = [v for v in null if v is not None and not math.isnan(v)]
    as_good = sum((v <= observed) if lower_is_better else (v >= observed) for v in null)
    return float((1 + as_good) / (1 + len(null)))


#: The metrics of which lower values are better (the permutation test and comparisons turn around).
LOWER_IS_BETTER = frozenset({"mae", "rmse", "brier"})


def quality_by_class(
    confounds: np.ndarray, y_subject: np.ndarray, names: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Median of each quality measure (columns ``names``) by class and a Mann-Whitney U test."""
    out = {}
    for j, name in enumerate(names):
        severe, mild = confounds[y_subject == 1, j], confounds[y_subject == 0, j]
        severe, mild = severe[np.isfinite(severe)], mild[np.isfinite(mild)]
        if len(severe) < 2 or len(mild) < 2:
            continue
        out[name] = {
            "median_severe": float(np.median(severe)),
            "median_mild": float(np.median(mild)),
            "p_mann_whitney": float(stats.mannwhitneyu(severe, mild).pvalue),
        }
    return out


# ------------------------------------------------------------------------------------ calibration
#: Probabilities are clipped to [eps, 1 - eps] before their logit is taken.
_LOGIT_EPS = 1e-6


def _logistic_fit(x: np.ndarray, y: np.ndarray, offset: np.ndarray, slope: bool) -> np.ndarray | None:
    """Unpenalised maximum-likelihood logistic regression ``y ~ a (+ b x) + offset`` by Newton's method.

    Returns ``[a]`` or ``[a, b]``, or None when no finite estimate exists (a class absent, or the
    predictions separate the classes perfectly, so the likelihood keeps rising as ``b`` grows).
    """
    if y.min() == y.max():
        return None
    design = np.column_stack([np.ones_like(x), x]) if slope else np.ones((len(x), 1))
    beta = np.zeros(design.shape[1])
    for _ in range(100):
        eta = np.clip(design @ beta + offset, -500, 500)
        mu = 1.0 / (1.0 + np.exp(-eta))
        weight = mu * (1.0 - mu)
        hessian = design.T @ (design * weight[:, None])
        try:
            step = np.linalg.solve(hessian, design.T @ (y - mu))
        except np.linalg.LinAlgError:
            return None
        beta = beta + step
        if not np.all(np.isfinite(beta)) or np.abs(beta).max() > 1e3:
            return None  # diverging: perfect separation
        if np.abs(step).max() < 1e-8:
            return beta
    return None


def calibration_statistics(y_true: npt.ArrayLike, prob: npt.ArrayLike) -> dict[str, float]:
    """Calibration of predicted probabilities of severe (Van Calster et al. 2019, BMC Medicine 17:230).

    - ``calibration_intercept`` (calibration-in-the-large): ``a`` of ``logit P(y) = a + logit(p)``;
      0 when the mean prediction matches the observed rate, > 0 when the model under-predicts severe.
    - ``calibration_slope``: ``b`` of ``logit P(y) = a + b logit(p)``; 1 is ideal, < 1 means too
      extreme predictions (overfitting), > 1 too modest ones.
    - ``brier``: mean squared error of the probability; ``brier_reference``: that of always predicting
      the observed prevalence, ``prevalence (1 - prevalence)``; ``scaled_brier`` = 1 - brier /
      brier_reference (1 perfect, 0 no better than the prevalence, < 0 worse).

    Intercept and slope are NaN where no estimate exists (one class only, or perfect separation).
    """
    y = np.asarray(y_true, dtype=float)
    p = np.clip(np.asarray(prob, dtype=float), _LOGIT_EPS, 1 - _LOGIT_EPS)
    if not y.size:
        keys = ("calibration_intercept", "calibration_slope", "brier", "brier_reference", "scaled_brier")
        return dict.fromkeys(keys, math.nan)
    logit = np.log(p / (1 - p))
    intercept = _logistic_fit(logit, y, logit, slope=False)
    slope = _logistic_fit(logit, y, np.zeros_like(logit), slope=True)
    brier = float(np.mean((np.asarray(prob, dtype=float) - y) ** 2))
    prevalence = float(y.mean())
    reference = prevalence * (1 - prevalence)
    return {
        "calibration_intercept": float(intercept[0]) if intercept is not None else math.nan,
        "calibration_slope": float(slope[1]) if slope is not None else math.nan,
        "brier": brier,
        "brier_reference": reference,
        "scaled_brier": 1.0 - brier / reference if reference > 0 else math.nan,
    }


def regression_calibration(y_true: npt.ArrayLike, predicted: npt.ArrayLike) -> dict[str, float]:
    """Calibration of predicted scores: ``calibration_in_the_large`` = mean(true - predicted) (points;
    0 ideal) and ``calibration_slope``, the least-squares slope of the true on the predicted score (1
    ideal, < 1: predictions spread too far). The slope is NaN for a constant prediction."""
    y, pred = np.asarray(y_true, dtype=float), np.asarray(predicted, dtype=float)
    if not y.size:
        return {"calibration_in_the_large": math.nan, "calibration_slope": math.nan}
    spread = float(np.var(pred))
    slope = float(np.mean((pred - pred.mean()) * (y - y.mean())) / spread) if spread > 0 else math.nan
    return {"calibration_in_the_large": float(np.mean(y - pred)), "calibration_slope": slope}


def calibration_summary(
    predictions: Sequence[Mapping],
    model: str,
    target: str,
    *,
    n_boot: int = BOOTSTRAP_DRAWS,
    seed: int = 0,
    clusters: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """In-CV calibration of ``model``: :func:`calibration_statistics` (or :func:`regression_calibration`)
    of its pooled out-of-fold predictions, averaged over repeats, with subject-bootstrap 95% intervals
    (a subject's sessions drawn together). None when the model has no predictions."""
    rows = [r for r in predictions if r["model"] == model]
    if not rows:
        return None
    regression = target == "regression"
    boot = bootstrap_comparison(
        rows,
        model,
        n_boot=n_boot,
        seed=seed,
        scores=regression_calibration if regression else calibration_statistics,
        value="predicted_score" if regression else "prob_severe",
        compare="calibration_slope",
        clusters=clusters,
    )[model]
    return {
        "model": model,
        **boot,
        "predictions": "out-of-fold predictions of the cross-validation (each subject predicted by a "
        "model that never saw it), scored per repeat and averaged over repeats",
        "interval": "95% subject-level bootstrap (a subject's sessions drawn together)",
        "reference": "Van Calster et al. 2019, BMC Medicine 17:230 (calibration intercept and slope)",
    }
