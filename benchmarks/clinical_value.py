"""Does the report tell a dFC model that adds to the clinical variables from one that does not?

Two generated cohorts share the clinic's view: age (unrelated to the outcome), time since stroke and
lesion volume (which explains part of the severity). Severity is ``0.6 x lesion + 0.8 x hidden``; the
UL-FMA follows it (severe <= 20).

* **adds**: the maps (8 box parcels of noise, as in ``conformal_coverage.py``) carry the *hidden* part,
  which no clinical variable sees;
* **does not add**: the maps carry the lesion volume only (a map that re-encodes lesion size).

The primary parcel model and the clinical baseline run as the app runs them (:func:`workflows.models.
fold_models`, the same subject-level 5 x ``--repeats`` folds, :func:`workflows.cross_validation.
cross_validate`); the group summary's test (:func:`workflows.cv_summary.clinical_value`, Dinga et al.
2020) and the group report's sentence (:func:`bids_app.reports.group.clinical_and_conformal_sentences`)
are computed from them. Writes ``benchmarks/results/clinical-value-<date>.md``. Usage::

    python benchmarks/clinical_value.py [--n-subjects 60] [--repeats 2] [--seeds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from conformal_coverage import SHAPE, parcels  # the sibling script (benchmarks/ is on sys.path when run)

from bids_app.reports.group import clinical_and_conformal_sentences
from workflows.cross_validation import cross_validate, subject_folds
from workflows.cv_summary import clinical_value
from workflows.models import CLINICAL, CLINICAL_NAMES, PRIMARY_MODEL, fold_models
from workflows.params import CVParams, GroupParams
from workflows.stats import fold_metrics_for


def cohort(rng: np.random.Generator, n: int, adds: bool, effect: float) -> dict[str, np.ndarray]:
    """Group inputs (the arrays :func:`workflows.models.fold_models` reads) of one generated cohort."""
    labels = parcels()
    lesion = rng.normal(size=n)
    hidden = rng.normal(size=n)
    severity = 0.6 * lesion + 0.8 * hidden
    score = np.clip(np.round(33 - 15 * severity + rng.normal(scale=5.0, size=n)), 0, 66)
    x = rng.normal(size=(n, *SHAPE)).astype(np.float32)
    x += effect * (hidden if adds else lesion)[:, None, None, None] * (labels == 3)
    clinical = np.column_stack(
        [
            rng.integers(38, 85, n).astype(float),  # age
            np.round(np.exp(rng.uniform(np.log(1), np.log(60), n)), 1),  # time since stroke (months)
            np.exp(3 + 0.5 * lesion),  # lesion volume (ml)
        ]
    )
    clinical[rng.random(clinical.shape) < 0.05] = np.nan  # a few unknown values
    units = np.array([f"{i:03d}" for i in range(n)])
    return {
        "x": x,
        "parcels": labels,
        "subjects": units,
        "groups": units,
        "scores": score,
        "y_subject": (score <= 20).astype(int),
        "clinical": clinical,
        CLINICAL_NAMES: np.array(["age", "time_since_stroke_months", "lesion_volume_ml"]),
    }


def one(seed: int, adds: bool, target: str, args: argparse.Namespace) -> dict:
    data = cohort(np.random.default_rng(seed), args.n_subjects, adds, args.effect)
    params = GroupParams(target=target, cv=CVParams(cv_folds=5, cv_repeats=args.repeats), random_seed=seed)
    models = {k: v for k, v in fold_models(data, params).items() if k in (PRIMARY_MODEL, CLINICAL)}
    y = data["scores"] if target == "regression" else data["y_subject"]
    folds = subject_folds(data["y_subject"], data["groups"], 5, args.repeats, seed)
    value = "predicted_score" if target == "regression" else "prob_severe"
    predictions, _, _ = cross_validate(
        np.arange(len(y)),
        y,
        data["groups"],
        folds,
        models,
        metrics=fold_metrics_for(target, 20.0),
        value=value,
    )
    for row in predictions:
        row["participant_id"] = f"sub-{row['participant_id']}"
    record = clinical_value(data, predictions, params, set(models))
    summary = {"clinical_value": record, "primary_model": PRIMARY_MODEL, "target": target}
    return {"record": record, "sentence": clinical_and_conformal_sentences(summary)[0]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-subjects", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--effect", type=float, default=0.8, help="parcel shift per SD")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    started = time.time()
    lines = [
        f"# The primary model's value over the clinical baseline ({dt.date.today().isoformat()})",
        "",
        f"{args.n_subjects} generated subjects per cohort, 5-fold CV x {args.repeats}, effect "
        f"{args.effect:g}, seeds 0-{args.seeds - 1}. Test: likelihood-ratio (classification) or partial F "
        "(regression) of the primary model's out-of-fold prediction over age, time since stroke and lesion "
        "volume (Dinga et al. 2020); 'adds' = p < 0.05 with a positive coefficient.",
        "",
        "| Cohort | Target | Seed | Statistic | p | Adds | Explained (clinical -> combined) |",
        "|---|---|---|---|---|---|---|",
    ]
    sentences = []
    for adds in (True, False):
        for target in ("classification", "regression"):
            for seed in range(args.seeds):
                out = one(seed, adds, target, args)
                t = out["record"]["test_result"]
                gain = (
                    f"{t['r2_clinical']:.2f} -> {t['r2_combined']:.2f}"
                    if "r2_clinical" in t
                    else f"{t['pseudo_r2_clinical']:.2f} -> {t['pseudo_r2_combined']:.2f}"
                )
                lines.append(
                    f"| {'maps carry the hidden severity' if adds else 'maps re-encode lesion volume'} "
                    f"| {target} | {seed} | {t['statistic']:.2f} | {t['p_value']:.3g} | "
                    f"{'yes' if t['adds_value'] else 'no'} | {gain} |"
                )
                if seed == 0:
                    sentences.append(f"- {'adds' if adds else 'does not add'}, {target}: {out['sentence']}")
    lines += ["", "The group report's sentence (seed 0):", "", *sentences, ""]
    lines.append(f"{time.time() - started:.0f} s on the shared 2-core sandbox.")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        path = Path(__file__).parent / "results" / f"clinical-value-{dt.date.today().isoformat()}.md"
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
