"""The group report's sites section: patients by site and class, and the leave-one-site-out results.

Reads ``sites`` of ``cv_summary.json`` (:func:`workflows.cv_summary.site_section`), or, before a run has
written it, the cohort rows' ``site`` column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from workflows.models import LABELS, PRIMARY_MODEL, ordered

#: The score shown per held-out site, by target (classification falls back to the accuracy at a site of
#: one class, where a balanced accuracy and an AUC do not exist).
SITE_METRIC = {"classification": "balanced_accuracy", "regression": "mae"}


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def class_rows(summary: Mapping[str, Any], cohort: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``[{"site", "severe", "mild-to-moderate"}]``: included units per site and class."""
    counts = (summary.get("sites") or {}).get("class_counts")
    if not counts:
        counts = {}
        for row in cohort:
            site, cls = row.get("site"), row.get("class")
            if site and cls and str(row.get("included")).strip().lower() in ("true", "1", "yes"):
                counts.setdefault(str(site), {"severe": 0, "mild-to-moderate": 0})
                counts[str(site)][str(cls)] = counts[str(site)].get(str(cls), 0) + 1
    return [{"site": site, **n} for site, n in sorted(counts.items())]


def _cell(record: Mapping[str, Any], metric: str) -> dict[str, Any] | None:
    """``{"metric", "value", "ci95"}`` of one model at one site (accuracy when ``metric`` is undefined)."""
    for name in (metric, "accuracy") if metric == "balanced_accuracy" else (metric,):
        entry = record.get(name) or {}
        if _finite(entry.get("value")):
            return {"metric": name, "value": entry["value"], "ci95": entry.get("ci95")}
    return None


def site_table(summary: Mapping[str, Any]) -> dict[str, Any] | None:
    """The leave-one-site-out table: one row per held-out site and one pooled row, one cell per model
    (value and subject-bootstrap 95% interval); None when leave-one-site-out did not run."""
    loso = (summary.get("sites") or {}).get("leave_site_out")
    if not loso:
        return None
    target = summary.get("target", "classification")
    metric = SITE_METRIC[target]
    models = ordered(loso.get("pooled") or {})
    rows = []
    for site, rec in (loso.get("per_site") or {}).items():
        counts = rec.get("class_counts") or {}
        rows.append(
            {
                "site": site,
                "n": rec.get("n_units"),
                "counts": ", ".join(f"{n} {c}" for c, n in counts.items()),
                "trained_on": ", ".join((loso.get("training_sites") or {}).get(site, [])),
                "cells": [_cell((rec.get("models") or {}).get(m, {}), metric) for m in models],
            }
        )
    rows.append(
        {
            "site": "all sites (pooled)",
            "n": sum(int(r["n"] or 0) for r in rows),
            "counts": "",
            "trained_on": "",
            "cells": [_cell((loso.get("pooled") or {}).get(m, {}), metric) for m in models],
        }
    )
    return {
        "models": [LABELS[target].get(m, m) for m in models],
        "metric": metric,
        "rows": rows,
    }


def site_sentences(summary: Mapping[str, Any]) -> list[str]:
    """What the sites section shows, in words: whether leave-one-site-out ran, how the primary model did
    on unseen sites against the subject-level folds, and whether features were harmonised."""
    sites = summary.get("sites")
    if not sites:
        return []
    n = len(sites.get("class_counts") or {})
    out = [f"The cohort comes from {n} site{'s' if n != 1 else ''}."]
    loso = sites.get("leave_site_out")
    target = summary.get("target", "classification")
    metric = SITE_METRIC[target]
    if loso:
        pooled = _cell((loso.get("pooled") or {}).get(PRIMARY_MODEL, {}), metric)
        subject = _cell((summary.get("bootstrap") or {}).get(PRIMARY_MODEL, {}), metric)
        text = (
            "Leave-one-site-out validation held out each site once and trained on the others (table "
            "below: the held-out site's subjects scored with a subject-bootstrap 95% interval)."
        )
        if pooled and pooled["metric"] == metric:
            name = "balanced accuracy" if metric == "balanced_accuracy" else "MAE"
            low, high = pooled.get("ci95") or [math.nan, math.nan]
            text += (
                f" On sites it had not seen, the primary model's pooled {name} was {pooled['value']:.2f} "
                f"(95% interval {low:.2f} to {high:.2f})"
                + (
                    f", against {subject['value']:.2f} in the subject-level folds, which train on every site"
                    if subject and subject["metric"] == metric
                    else ""
                )
                + ". A gap says the model partly reads site (scanner, or who each site recruits)."
            )
        out.append(text)
    else:
        out.append(
            "Leave-one-site-out validation was not run (--cv subject, or fewer sites with both classes "
            "than --cv auto needs)."
        )
    if summary.get("harmonization"):
        out.append("Harmonisation: " + str(summary["harmonization"]) + ".")
    return out
