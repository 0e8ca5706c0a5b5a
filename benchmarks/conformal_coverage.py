"""Do the conformal sets and intervals cover what they state on held-out generated subjects?

Each draw generates a development cohort and, from the same generator, new subjects the development
never sees. Maps are i.i.d. voxel noise in 8 box parcels (12x13x14 grid); a latent severity raises the
mean of one parcel and sets the UL-FMA (33 + 15 x severity + noise, clipped to 0-66; severe <= 20).
The primary model's own code path runs from the parcel means on (:func:`workflows.models.
parcel_fit_predict`, :func:`workflows.parcel_model.fit_parcel_model`):

* **cross-validation** (5 folds on the development cohort): each fold's threshold from out-of-fold
  predictions of its training subjects only (:func:`workflows.cross_validation.conformal_fold`), the
  fold's test subjects scored;
* **exported model**: calibration from the development cohort's cross-validated predictions
  (:func:`workflows.conformal.cv_calibration`), the model refit on every development subject
  (the exported parcel model) and applied to the held-out subjects (:func:`workflows.conformal.
  apply_calibration`, as ``participant --model`` does).

Prints and writes (``benchmarks/results/conformal-coverage-<date>.md`` and ``.json``) the empirical
coverage with its 95% binomial (Clopper-Pearson) interval, by target, against the stated coverage and the
issue's criterion (within 5 points). Usage::

    python benchmarks/conformal_coverage.py [--draws 10] [--n-dev 60] [--n-test 200] [--coverage 0.9]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflows.conformal import UL_FMA_RANGE, apply_calibration, cv_calibration
from workflows.cross_validation import conformal_fold, cross_validate, subject_folds
from workflows.models import parcel_fit_predict, parcel_matrix
from workflows.params import GroupParams
from workflows.parcel_model import fit_parcel_model
from workflows.stats import fold_metrics_for

SHAPE = (12, 13, 14)


def parcels() -> np.ndarray:
    """8 box parcels on the grid."""
    labels = np.zeros(SHAPE, int)
    for k, (i, j) in enumerate([(a, b) for a in (0, 6) for b in (0, 6)], start=1):
        labels[i : i + 6, j : j + 6, :7] = k
        labels[i : i + 6, j : j + 6, 7:] = k + 4
    return labels


def cohort(rng: np.random.Generator, n: int, labels: np.ndarray, effect: float) -> tuple[np.ndarray, ...]:
    """Maps, UL-FMA scores and classes of ``n`` generated subjects."""
    severity = rng.normal(size=n)
    x = rng.normal(size=(n, *SHAPE)).astype(np.float32)
    x -= effect * severity[:, None, None, None] * (labels == 3)
    score = np.clip(np.round(33 + 15 * severity + rng.normal(scale=6.0, size=n)), *UL_FMA_RANGE)
    return x, score, (score <= 20).astype(int)


def one_draw(seed: int, target: str, args: argparse.Namespace, labels: np.ndarray) -> dict:
    rng = np.random.default_rng(seed)
    x, score, cls = cohort(rng, args.n_dev, labels, args.effect)
    x_new, score_new, cls_new = cohort(rng, args.n_test, labels, args.effect)
    y, y_new = (score, score_new) if target == "regression" else (cls, cls_new)
    params = GroupParams(target=target, conformal_coverage=args.coverage)
    operator, _ = parcel_matrix(labels)
    groups = np.array([f"d{i:03d}" for i in range(args.n_dev)])

    def fit_predict(idx_train, y_train, g_train, idx_test, seed=0):
        return parcel_fit_predict(
            x[idx_train], y_train, g_train, x[idx_test], operator=operator, target=target, seed=seed
        )

    value = "predicted_score" if target == "regression" else "prob_severe"
    folds = subject_folds(cls, groups, 5, 1, seed)  # stratified by class, as the app plans them
    rows = []
    for fold in folds:
        predictions, _, _ = cross_validate(
            np.arange(args.n_dev),
            y,
            groups,
            [fold],
            {"parcel": fit_predict},
            metrics=fold_metrics_for(target, 20.0),
            value=value,
        )
        conformal_fold(predictions, fit_predict, fold, y, groups, groups, params)
        rows += predictions
    cv_hits = [r["conformal_covered"] for r in rows]
    calibration = cv_calibration(rows, "parcel", target, value, args.coverage)
    model, _, _ = fit_parcel_model(x, y, groups, labels, target=target, seed=seed)
    predicted = model.predict(x_new)
    hits, sizes = [], []
    for p, truth in zip(predicted, y_new):
        out = apply_calibration(calibration, target, float(p), UL_FMA_RANGE)
        if target == "regression":
            hits.append(out["ul_fma_lower"] <= truth <= out["ul_fma_upper"])
            sizes.append(out["ul_fma_upper"] - out["ul_fma_lower"])
        else:
            name = "severe" if truth == 1 else "mild-to-moderate"
            hits.append(name in out["prediction_set"].split("|"))
            sizes.append(0 if out["prediction_set"] == "none" else len(out["prediction_set"].split("|")))
    return {"cv_hits": cv_hits, "held_out_hits": hits, "sizes": sizes}


def clopper_pearson(k: int, n: int) -> list[float]:
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    return [float(ci.low), float(ci.high)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--n-dev", type=int, default=60, help="development subjects per draw")
    parser.add_argument("--n-test", type=int, default=200, help="held-out subjects per draw")
    parser.add_argument("--coverage", type=float, default=0.9)
    parser.add_argument("--effect", type=float, default=0.6, help="parcel shift per SD of severity")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    labels = parcels()
    started = time.time()
    results = {}
    for target in ("classification", "regression"):
        draws = [one_draw(seed, target, args, labels) for seed in range(args.draws)]
        out: dict[str, Any] = {}
        for key in ("cv_hits", "held_out_hits"):
            hits = [int(h) for d in draws for h in d[key]]
            out[key.removesuffix("_hits")] = {
                "n": len(hits),
                "coverage": float(np.mean(hits)),
                "ci95": clopper_pearson(sum(hits), len(hits)),
                "within_5_points": bool(abs(np.mean(hits) - args.coverage) <= 0.05),
            }
        sizes = [s for d in draws for s in d["sizes"]]
        out["mean_size"] = float(np.mean(sizes))  # interval width (points) or classes in the set
        results[target] = out
    record = {
        "date": dt.date.today().isoformat(),
        "settings": vars(args),
        "results": results,
        "seconds": round(time.time() - started, 1),
    }
    lines = [
        f"# Conformal coverage on held-out generated subjects ({record['date']})",
        "",
        f"Stated coverage {args.coverage:g}; {args.draws} draws of {args.n_dev} development and "
        f"{args.n_test} held-out subjects; effect {args.effect:g}; {record['seconds']} s.",
        "",
        "| Target | Where | Subjects | Coverage | 95% CI | Within 5 points | Mean size |",
        "|---|---|---|---|---|---|---|",
    ]
    for target, out in results.items():
        for where in ("cv", "held_out"):
            r = out[where]
            place = "CV test folds" if where == "cv" else "held-out (exported model)"
            lines.append(
                f"| {target} | {place} | {r['n']} "
                f"| {r['coverage']:.3f} | {r['ci95'][0]:.3f}-{r['ci95'][1]:.3f} | "
                f"{'yes' if r['within_5_points'] else 'no'} | "
                + (f"{out['mean_size']:.2f}" if where == "held_out" else "")
                + " |"
            )
    lines += [
        "",
        "Mean size: interval width in UL-FMA points (regression) or classes in the set (classification).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        results_dir = Path(__file__).parent / "results"
        stem = results_dir / f"conformal-coverage-{record['date']}"
        stem.with_suffix(".md").write_text(text)
        stem.with_suffix(".json").write_text(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
