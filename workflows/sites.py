"""Sites of a multi-site cohort: how the classes spread over them, leave-one-site-out folds, per-site scores.

A model validated by subject-level folds has seen every site in training; a consortium's question is
whether it works on a site it has not seen. Leave-one-site-out validation holds out each site in turn and
trains on the others (every subject of the held-out site is a test subject, none trains), and the
held-out predictions are scored site by site with subject-bootstrap intervals. The subject-level
repeated k-fold stays the primary estimate (its permutation test, its comparisons); leave-one-site-out
runs next to it (:func:`wants_site_cv`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
from scipy.stats import rankdata

from workflows.group_inputs import is_severe
from workflows.params import MIN_SITES_AUTO, GroupParams
from workflows.stats import BOOTSTRAP_DRAWS, bootstrap_comparison, regression_metrics
from workflows.utils.errors import InputError

#: Class names of the per-site counts (1 = severe).
CLASS_NAMES = {1: "severe", 0: "mild-to-moderate"}


def site_class_counts(
    sites: Sequence[str] | np.ndarray, y: Sequence[int] | np.ndarray
) -> dict[str, dict[str, int]]:
    """Units per site and class: ``{site: {"severe": n, "mild-to-moderate": n}}`` (sites sorted)."""
    at, cls = np.asarray(sites).astype(str), np.asarray(y).astype(int)
    return {
        str(site): {name: int(((at == site) & (cls == c)).sum()) for c, name in CLASS_NAMES.items()}
        for site in sorted(set(at.tolist()))
    }


def sites_with_both_classes(sites: Sequence[str], y: Sequence[int]) -> list[str]:
    """The sites with at least one severe and one mild-to-moderate unit."""
    return [s for s, n in site_class_counts(sites, y).items() if min(n.values()) > 0]


def wants_site_cv(sites: Sequence[str] | None, y: Sequence[int], scheme: str) -> bool:
    """Whether leave-one-site-out validation runs next to the subject-level folds.

    ``scheme`` (:data:`workflows.params.CV_SCHEMES`): "subject" never, "site" always (at least two
    sites needed), "auto" when at least :data:`~workflows.params.MIN_SITES_AUTO` sites have both classes.
    """
    if scheme == "subject":
        return False
    named = sorted({str(s) for s in sites or [] if str(s)})
    if scheme == "site":
        if len(named) < 2:
            raise InputError(
                "leave-one-site-out validation needs at least 2 sites; the cohort has "
                + (f"one ({named[0]})" if named else "no site information"),
                "participants.tsv (the site column) or the BOLD sidecars (--site-from-sidecars)",
                "add a site column to participants.tsv, or use --cv subject",
                params=("CVParams.scheme",),
            )
        return True
    if not named:
        return False
    return len(sites_with_both_classes([str(s) for s in sites or []], y)) >= MIN_SITES_AUTO


def site_folds(y: np.ndarray, groups: np.ndarray, sites: np.ndarray) -> list[dict]:
    """Leave-one-site-out folds of sample indices: ``{"repeat": 0, "fold", "site", "train", "test"}``.

    Fold ``k`` tests every sample of the ``k``-th site (sorted) and trains on every other sample.
    ``groups`` are the subjects: a subject at two sites (its sessions) stops with a ValueError, since it
    would sit on both sides. A held-out site that leaves the training samples with one class stops with
    an :class:`InputError` naming it.
    """
    y, groups, sites = np.asarray(y), np.asarray(groups), np.asarray(sites).astype(str)
    for subject in np.unique(groups):
        at = np.unique(sites[groups == subject])
        if at.size > 1:
            raise ValueError(f"subject {subject} has samples at several sites ({', '.join(at)})")
    folds = []
    for k, site in enumerate(sorted(set(sites.tolist()))):
        test = np.flatnonzero(sites == site)
        train = np.flatnonzero(sites != site)
        missing = [CLASS_NAMES[c] for c in (1, 0) if not (y[train] == c).any()]
        if missing:
            raise InputError(
                f"leaving out site {site!r} leaves no {missing[0]} patient to train on",
                "participants.tsv (the site column)",
                "use --cv subject, or add patients of both classes at the other sites",
                params=("CVParams.scheme",),
            )
        folds.append({"repeat": 0, "fold": k, "site": site, "train": train, "test": test})
    for fold in folds:
        overlap = set(groups[fold["train"]]) & set(groups[fold["test"]])
        if overlap:  # cannot happen once every subject has one site; kept as the folds' contract
            raise RuntimeError(
                f"subject(s) {sorted(overlap)} in both training and test (site {fold['site']})"
            )
    return folds


def plan_site_folds(subjects: list[dict], params: GroupParams) -> list[dict]:
    """Leave-one-site-out folds as the group workflow runs them: ``{repeat, fold, scheme: "site", site,
    test: [unit labels], number, of}`` (:func:`site_folds` on the subjects' ``site``)."""
    labels = np.array([s["label"] for s in subjects])
    split = np.array([s.get("subject") or s["label"] for s in subjects])
    y = np.array([int(is_severe(s["score"], params.severe_threshold)) for s in subjects])
    folds = site_folds(y, split, np.array([str(s.get("site") or "") for s in subjects]))
    return [
        {
            "repeat": 0,
            "fold": int(f["fold"]),
            "scheme": "site",
            "site": f["site"],
            "test": labels[f["test"]].tolist(),
            "number": i + 1,
            "of": len(folds),
        }
        for i, f in enumerate(folds)
    ]


def site_scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Scores of one site's held-out predictions: accuracy, sensitivity and specificity exist with one
    class; balanced accuracy and ROC AUC (Mann-Whitney, ties counted half) need both (NaN otherwise).

    Plain NumPy: the bootstrap calls it thousands of times per site.
    """
    y, p = np.asarray(y).astype(int), np.asarray(p, dtype=float)
    pred = p >= 0.5
    pos, neg = y == 1, y == 0
    sens = float(pred[pos].mean()) if pos.any() else math.nan
    spec = float((~pred[neg]).mean()) if neg.any() else math.nan
    both = bool(pos.any() and neg.any())
    auc = math.nan
    if both:
        ranks = rankdata(p)
        n_pos, n_neg = int(pos.sum()), int(neg.sum())
        auc = float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    return {
        "balanced_accuracy": (sens + spec) / 2 if both else math.nan,
        "roc_auc": auc,
        "accuracy": float(np.mean(pred == pos)) if len(y) else math.nan,
        "sensitivity": sens,
        "specificity": spec,
    }


def site_summary(
    predictions: Sequence[Mapping[str, Any]],
    site_of: Mapping[str, str],
    params: GroupParams,
    primary: str,
    clusters: Mapping[str, str] | None = None,
    n_boot: int = BOOTSTRAP_DRAWS,
) -> dict[str, Any]:
    """Leave-one-site-out results: pooled over sites and per held-out site, each model with
    subject-bootstrap 95% intervals (:func:`workflows.stats.bootstrap_comparison`; a subject's sessions
    drawn together), and its difference from the ``primary`` model.

    ``predictions`` are the held-out rows (``participant_id`` "sub-<unit>", ``model``, ``y_true`` and the
    prediction), ``site_of`` maps a ``participant_id`` to its site.
    """
    regression = params.target == "regression"
    kwargs: dict[str, Any] = (
        {
            "scores": partial(regression_metrics, threshold=params.severe_threshold),
            "value": "predicted_score",
            "compare": "mae",
        }
        if regression
        else {"scores": site_scores, "value": "prob_severe", "compare": "balanced_accuracy"}
    )
    rows = [dict(r, repeat=0) for r in predictions]
    pooled = bootstrap_comparison(
        rows, primary, n_boot=n_boot, seed=params.random_seed, clusters=clusters, **kwargs
    )
    per_site: dict[str, Any] = {}
    for site in sorted({site_of[str(r["participant_id"])] for r in rows}):
        these = [r for r in rows if site_of[str(r["participant_id"])] == site]
        units = {str(r["participant_id"]): int(r["y_true"]) for r in these} if not regression else {}
        per_site[site] = {
            "n_units": len({str(r["participant_id"]) for r in these}),
            **(
                {
                    "class_counts": {
                        name: sum(1 for v in units.values() if v == c) for c, name in CLASS_NAMES.items()
                    }
                }
                if not regression
                else {}
            ),
            "models": bootstrap_comparison(
                these, primary, n_boot=n_boot, seed=params.random_seed, clusters=clusters, **kwargs
            ),
        }
    return {"pooled": pooled, "per_site": per_site}


def check_site_options(subjects: Sequence[Mapping[str, Any]], params: GroupParams) -> bool:
    """Check the subjects' sites against the options before anything runs; return whether
    leave-one-site-out validation runs (:func:`wants_site_cv`).

    ``--harmonize combat`` needs a site for every subject, at least 2 sites, and at least
    :data:`workflows.harmonize.MIN_NEW_SITE_SUBJECTS` subjects per site (a fold may test every subject
    of a small site, whose effect is then estimated from them).
    """
    from workflows.harmonize import MIN_NEW_SITE_SUBJECTS

    sites = [str(s.get("site") or "") for s in subjects]
    known = sites if all(sites) else None
    y = [int(is_severe(s["score"], params.severe_threshold)) for s in subjects]
    if params.harmonize != "none":
        if known is None or len(set(known)) < 2:
            raise InputError(
                "ComBat harmonisation needs each subject's site and at least 2 sites",
                "participants.tsv (the site column) or the BOLD sidecars (--site-from-sidecars)",
                "add a site column to participants.tsv, or leave --harmonize at none",
                params=("GroupParams.harmonize",),
            )
        subjects_at: dict[str, set[str]] = {}
        for s, site in zip(subjects, sites):
            subjects_at.setdefault(site, set()).add(str(s.get("subject") or s["label"]))
        small = {k: len(v) for k, v in sorted(subjects_at.items()) if len(v) < MIN_NEW_SITE_SUBJECTS}
        if small:
            raise InputError(
                "ComBat needs at least "
                f"{MIN_NEW_SITE_SUBJECTS} subjects per site to estimate a site's effect; "
                + ", ".join(f"{k} has {n}" for k, n in small.items()),
                "participants.tsv (the site column)",
                "merge small sites with a similar scanner, leave them out (--participant-label), or leave "
                "--harmonize at none",
                params=("GroupParams.harmonize",),
            )
    return wants_site_cv(known, y, params.cv.scheme)
