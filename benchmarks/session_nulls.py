"""Is the permutation test valid when subjects have two sessions? The false-positive rate on null cohorts.

Each draw generates a null cohort of 24 patients (12 severe, 12 mild-to-moderate) with two sessions
each, as in a test-retest or longitudinal design. A session's parcel features are the patient's own
values plus session noise, with a test-retest ICC drawn per cohort from 0.3-0.8 (Noble et al. 2019,
NeuroImage 203:116157: edge-level ICC of functional connectivity around 0.3, higher for averaged
measures such as parcel means); the class has no effect on them. Both sessions carry the patient's
class.

Each cohort goes through the group level's own code path: subject-level folds
(:func:`workflows.cross_validation.subject_folds`, the sessions of a patient on one side),
:func:`workflows.cross_validation.cross_validate` (sessions averaged per unit, as the app scores them),
and 99 null draws of :func:`workflows.permutation.permutation_nulls`, whose labels move between
whole subjects (:func:`workflows.permutation.permute_subject_labels`); p is
:func:`workflows.stats.permutation_p_value`. The same cohorts are also tested with the labels
shuffled between sessions (the scheme strokefc used before this was fixed): the rate it gives shows what the
benchmark can detect.

The model is the primary model's pipeline (standardised parcel means, L2 logistic regression with
balanced class weights) at C = 1: the nested choice of C costs about 100 times more and does not
change what is exchangeable. A valid test rejects at most at its nominal rate (5%). Usage::

    python benchmarks/session_nulls.py [--nulls 120] [--session-nulls 60] [--permutations 99]

Prints and writes ``benchmarks/results/session-nulls-<date>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # one thread per fit: threads only contend at this size

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workflows.cross_validation import cross_validate, subject_folds  # noqa: E402
from workflows.models import map_pipeline  # noqa: E402
from workflows.permutation import permutation_nulls, permute_subject_labels  # noqa: E402
from workflows.stats import permutation_p_value  # noqa: E402

N_SUBJECTS, N_SESSIONS, N_FEATURES, N_FOLDS = 24, 2, 12, 5
ICC_RANGE = (0.3, 0.8)


def null_cohort(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Features (units, parcels), class, unit and subject of every session; the cohort's ICC."""
    icc = rng.uniform(*ICC_RANGE)
    subject_values = rng.normal(scale=np.sqrt(icc), size=(N_SUBJECTS, N_FEATURES))
    x = np.repeat(subject_values, N_SESSIONS, axis=0)
    x += rng.normal(scale=np.sqrt(1 - icc), size=x.shape)
    subjects = np.repeat([f"sub-{i:02d}" for i in range(N_SUBJECTS)], N_SESSIONS)
    units = np.array([f"{s}_ses-{k % N_SESSIONS + 1}" for k, s in enumerate(subjects)])
    y = np.repeat(np.arange(N_SUBJECTS) % 2, N_SESSIONS)
    return x, y, units, subjects, np.array(icc)


def fit_predict(x_train, y_train, groups_train, x_test, *, seed: int = 0):
    """The primary model's pipeline at C = 1 (see the module docstring)."""
    model = map_pipeline(LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000))
    model.fit(x_train, y_train)
    return model.predict_proba(x_test)[:, 1], []


MODELS = {"parcel_c1": fit_predict}


def mean_balanced_accuracy(x, y, units, subjects, seed: int, *, session_labels: np.ndarray | None = None):
    """Cross-validated balanced accuracy with subject-level folds (stratified by ``session_labels``)."""
    strata = y if session_labels is None else session_labels
    folds = subject_folds(strata, subjects, N_FOLDS, 1, seed)
    _, metrics, _ = cross_validate(x, y, units, folds, MODELS, split_groups=subjects)
    return float(np.mean([m["balanced_accuracy"] for m in metrics]))


def one_cohort(seed: int, n_permutations: int, by_sessions: bool = True) -> dict:
    rng = np.random.default_rng([seed, 2025])
    x, y, units, subjects, icc = null_cohort(rng)
    observed = mean_balanced_accuracy(x, y, units, subjects, seed)
    by_subject = [
        permutation_nulls(x, y, units, MODELS, n_folds=N_FOLDS, seed=seed, index=i, split_groups=subjects)[
            "parcel_c1"
        ]
        for i in range(n_permutations)
    ]
    by_session = []
    for i in range(
        n_permutations if by_sessions else 0
    ):  # the old scheme: every session its own exchangeable unit
        y_perm = permute_subject_labels(y, units, np.random.default_rng([seed, 7919, i]))
        by_session.append(
            mean_balanced_accuracy(x, y_perm, units, subjects, seed + 100_000 + i, session_labels=y_perm)
        )
    return {
        "seed": seed,
        "icc": float(icc),
        "observed": observed,
        "p_subject": permutation_p_value(observed, by_subject),
        "p_session": permutation_p_value(observed, by_session) if by_sessions else None,
    }


def rate(ps: list[float], alpha: float = 0.05) -> dict:
    k, n = sum(p <= alpha for p in ps), len(ps)
    ci = stats.binomtest(k, n).proportion_ci(0.95, method="exact")
    return {"rejected": k, "n": n, "rate": k / n, "ci95": [float(ci.low), float(ci.high)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nulls", type=int, default=120)
    parser.add_argument("--permutations", type=int, default=99)
    parser.add_argument(
        "--session-nulls", type=int, default=60, help="of these, the first N also tested the earlier way"
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    cohorts = [one_cohort(s, args.permutations, s < args.session_nulls) for s in range(args.nulls)]
    seconds = time.perf_counter() - start
    subject, session = (
        rate([c["p_subject"] for c in cohorts]),
        rate([c["p_session"] for c in cohorts if c["p_session"] is not None]),
    )
    date = dt.date.today().isoformat()
    record = {
        "date": date,
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "design": f"{N_SUBJECTS} subjects x {N_SESSIONS} sessions, {N_FEATURES} features, {N_FOLDS}-fold",
        "permutations": args.permutations,
        "seconds": round(seconds, 1),
        "subject_level": subject,
        "session_level": session,
        "cohorts": cohorts,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"session-nulls-{date}.json").write_text(json.dumps(record, indent=1) + "\n")

    def line(name: str, r: dict) -> str:
        return (
            f"| {name} | {r['rejected']} / {r['n']} | {r['rate']:.3f} "
            f"| {r['ci95'][0]:.3f}-{r['ci95'][1]:.3f} |"
        )

    text = "\n".join(
        [
            f"# Permutation test on null cohorts with two sessions per subject ({date})",
            "",
            f"{args.nulls} null cohorts ({record['design']}, test-retest ICC drawn from "
            f"{ICC_RANGE[0]}-{ICC_RANGE[1]}), {args.permutations} permutations each; "
            f"`benchmarks/session_nulls.py` (see its docstring). {seconds:.0f} s on {record['machine']}.",
            "",
            "| labels exchanged between | p <= 0.05 | rate | 95% interval |",
            "|---|---|---|---|",
            line("subjects (strokefc, Winkler et al. 2015 blocks)", subject),
            line("sessions (the earlier scheme)", session),
            "",
        ]
    )
    (args.out / f"session-nulls-{date}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
