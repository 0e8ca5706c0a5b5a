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


#: Largest crossing size, as a multiple of the largest measured size, that :func:`fit_learning_curve`
#: gives as a number (two doublings): beyond it the fit of a few measured sizes says nothing reliable.
MAX_EXTRAPOLATION = 4.0
#: The inverse power law's exponent is searched in this range (a profile over c, then refined).
EXPONENT_RANGE = (0.05, 2.0)


def inverse_power_law(n: np.ndarray | float, a: float, b: float, c: float) -> np.ndarray:
    """``score(n) = a - b * n**(-c)``: the learning curve of Figueroa et al. 2012 (BMC Med Inform Decis
    Mak 12:8); ``a`` is the asymptote, ``b`` how far below it the curve starts, ``c`` how fast it rises."""
    return a - b * np.power(np.asarray(n, dtype=float), -c)


def _fit_given_exponent(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float, float]:
    """Weighted least squares ``y = a - b x`` with ``b >= 0`` and ``a <= 1``: (a, b, weighted SSE)."""
    sw = w.sum()
    xm, ym = (w * x).sum() / sw, (w * y).sum() / sw
    sxx = (w * (x - xm) ** 2).sum()
    b = -(w * (x - xm) * (y - ym)).sum() / sxx if sxx > 0 else 0.0
    if b <= 0:  # a falling or flat curve: the best rising one is flat
        a, b = ym, 0.0
    else:
        a = ym + b * xm
    if a > 1:  # a score cannot pass 1: the asymptote at 1, b by least squares through it
        a = 1.0
        b = max(0.0, (w * x * (1 - y)).sum() / max((w * x * x).sum(), 1e-300))
    return a, b, float((w * (y - (a - b * x)) ** 2).sum())


def fit_inverse_power_law(
    sizes: Sequence[float] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    weights: Sequence[float] | np.ndarray | None = None,
) -> dict[str, float]:
    """Weighted least-squares fit of :func:`inverse_power_law` to mean scores by size.

    For each exponent ``c`` in :data:`EXPONENT_RANGE` the curve is linear in ``a`` and ``b``, solved
    with ``b >= 0`` (a learning curve does not fall; a falling one is fitted flat) and ``a <= 1``; the
    ``c`` of least weighted squared error is searched on a log grid and refined. Returns ``a``, ``b``,
    ``c`` and the weighted root-mean-square error ``rmse``. At least two sizes are needed; with fewer
    than four the three parameters are not all determined (the search still returns the best curve).
    """
    from scipy.optimize import minimize_scalar

    n = np.asarray(sizes, dtype=float)
    y = np.asarray(scores, dtype=float)
    w = np.ones_like(n) if weights is None else np.asarray(weights, dtype=float)
    if n.ndim != 1 or n.shape != y.shape or n.shape != w.shape or len(np.unique(n)) < 2:
        raise ValueError("a learning curve needs scores at two sizes or more, one score and weight per size")
    if np.any(n <= 0) or np.any(w <= 0) or not np.all(np.isfinite(y)):
        raise ValueError("sizes and weights must be positive and scores finite")
    low, high = np.log(EXPONENT_RANGE)
    grid = np.exp(np.linspace(low, high, 40))
    errors = [_fit_given_exponent(n**-c, y, w)[2] for c in grid]
    best = int(np.argmin(errors))
    bracket = np.log(grid[max(best - 1, 0)]), np.log(grid[min(best + 1, len(grid) - 1)])
    refined = minimize_scalar(
        lambda lc: _fit_given_exponent(n ** -np.exp(lc), y, w)[2], bounds=bracket, method="bounded"
    )
    c = float(np.exp(refined.x)) if refined.fun <= errors[best] else float(grid[best])
    a, b, sse = _fit_given_exponent(n**-c, y, w)
    return {"a": float(a), "b": float(b), "c": c, "rmse": float(np.sqrt(sse / w.sum()))}


def size_for_target(a: float, b: float, c: float, target: float) -> float | None:
    """The size at which :func:`inverse_power_law` reaches ``target``; None when its asymptote ``a`` does
    not pass the target; 0 when a flat curve (``b`` 0) lies above it at every size."""
    if a <= target:
        return None
    if b <= 0:
        return 0.0
    return float((b / (a - target)) ** (1 / c))


def fit_learning_curve(
    sizes: Sequence[int],
    replicates: Sequence[Sequence[float]],
    target: float,
    *,
    weights: Sequence[float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """An inverse power law fitted to a learning curve, the size at which it reaches ``target``, and
    intervals from refits on resampled replicates.

    ``replicates[i]`` are the scores measured at ``sizes[i]`` (e.g. the means of independent draws of
    that many subjects); the curve is fitted to their means, weighted by ``weights`` (default: the
    number of replicates). The interval refits ``n_boot`` times on replicates resampled with replacement
    within each size; a refit whose asymptote stays below the target counts as "not reached" (an
    infinite size), so the upper end of the interval is None when more than 2.5% of refits never get
    there. Returns the fit (``a``, ``b``, ``c``, ``rmse``), ``n_target`` (None: not reached),
    ``extrapolation`` (``n_target`` over the largest measured size), ``supported`` and ``caveats`` (a
    crossing beyond the measured sizes is not supported when it lies beyond :data:`MAX_EXTRAPOLATION`
    times the largest size, when fewer than four sizes determine the three parameters, or when more than
    2.5% of refits never reach the target), ``reached_share`` (of the refits), and 95% percentile
    intervals ``a_ci`` and ``n_target_ci``.
    """
    n = np.asarray(sizes, dtype=float)
    reps = [np.asarray(r, dtype=float) for r in replicates]
    if len(reps) != len(n) or any(r.size == 0 for r in reps):
        raise ValueError("one non-empty list of replicate scores per size is needed")
    w = np.array([r.size for r in reps], float) if weights is None else np.asarray(weights, float)
    fit = fit_inverse_power_law(n, [r.mean() for r in reps], w)
    n_target = size_for_target(fit["a"], fit["b"], fit["c"], target)
    rng = np.random.default_rng(seed)
    boot_a, boot_n = [], []
    for _ in range(n_boot):
        means = [rng.choice(r, size=r.size, replace=True).mean() for r in reps]
        refit = fit_inverse_power_law(n, means, w)
        boot_a.append(refit["a"])
        crossing = size_for_target(refit["a"], refit["b"], refit["c"], target)
        boot_n.append(np.inf if crossing is None else crossing)
    boot_n_arr = np.asarray(boot_n)
    # "nearest": no interpolation between a finite size and an infinite one
    low, high = np.percentile(boot_n_arr, [2.5, 97.5], method="nearest") if n_boot else (np.nan, np.nan)
    largest = float(n.max())
    caveats = []  # why a crossing beyond the measured sizes is not supported by the fit
    if n_target is not None and n_target > largest:
        if n_target > MAX_EXTRAPOLATION * largest:
            caveats.append(f"beyond {MAX_EXTRAPOLATION:g} times the largest measured size")
        if len(n) < 4:
            caveats.append("fewer than four sizes for three parameters")
        if n_boot and not np.isfinite(high):
            caveats.append("more than 2.5% of refits never reach the target")
    return {
        **fit,
        "target": float(target),
        "n_target": n_target,
        "extrapolation": None if n_target is None else n_target / largest,
        "supported": n_target is not None and not caveats,
        "caveats": caveats,
        "largest_n": largest,
        "smallest_n": float(n.min()),
        "reached_share": float(np.mean(np.isfinite(boot_n_arr))) if n_boot else None,
        "a_ci": [float(v) for v in np.percentile(boot_a, [2.5, 97.5])] if n_boot else None,
        "n_target_ci": [
            None if not np.isfinite(low) else float(low),
            None if not np.isfinite(high) else float(high),
        ],
        "n_boot": n_boot,
    }
