"""Decision-curve analysis of the out-of-fold probabilities: ``decision_curves.tsv`` (Vickers & Elkin 2006).

A model's net benefit at a threshold probability ``t`` (the risk at which a clinician would act) is
``TP/n - FP/n * t / (1 - t)`` (:func:`workflows.study_design.net_benefit`): true positives gained, false
positives charged at the odds of ``t``. It is compared with treating every patient (``treat_all``) and
treating none (``0``); a model helps only at thresholds where its curve lies above both. Net benefit reads
the probabilities as risks, so it is only as good as their calibration (the class-weighted models are
not calibrated unless ``--calibration`` ran).

Each CV repeat's out-of-fold probabilities are one complete set of predictions (every unit once), so
the net benefit is computed per repeat and averaged over repeats (with its range), never from
probabilities averaged over repeats (a smoother ensemble that no fitted model produced). Classification
only: a regression's predicted score is not a risk.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from workflows.study_design import net_benefit

#: Threshold probabilities of the curves (0.05 to 0.95 by 0.01).
DCA_THRESHOLDS = tuple(round(0.05 + 0.01 * i, 2) for i in range(91))
#: The columns of decision_curves.tsv.
DECISION_COLUMNS = (
    "model",
    "threshold",
    "net_benefit",
    "net_benefit_min",
    "net_benefit_max",
    "treat_all",
    "treat_none",
    "n_repeats",
)


def decision_curves(
    predictions: Sequence[Mapping[str, Any]],
    thresholds: Sequence[float] = DCA_THRESHOLDS,
    value: str = "prob_severe",
) -> list[dict[str, Any]]:
    """Net benefit of every model's out-of-fold probabilities at each threshold (rows of decision_curves.tsv).

    ``predictions`` are cv_predictions rows (``model``, ``repeat``, ``y_true``, ``value``). Per model and
    repeat the units' probabilities are pooled and scored with :func:`net_benefit`; a row holds the mean
    over repeats, its minimum and maximum, and the treat-all and treat-none references (from the same
    units' prevalence).
    """
    t = np.asarray(thresholds, dtype=float)
    pooled: dict[str, dict[int, tuple[list[int], list[float]]]] = {}
    for row in predictions:
        ys, ps = pooled.setdefault(str(row["model"]), {}).setdefault(int(row["repeat"]), ([], []))
        ys.append(int(row["y_true"]))
        ps.append(float(row[value]))
    out: list[dict[str, Any]] = []
    for model, repeats in pooled.items():
        curves = [net_benefit(np.array(y), np.array(p), t) for y, p in repeats.values()]
        model_nb = np.array([c["model"] for c in curves])
        treat_all = np.mean([c["treat_all"] for c in curves], axis=0)
        out.extend(
            {
                "model": model,
                "threshold": float(t[i]),
                "net_benefit": float(model_nb[:, i].mean()),
                "net_benefit_min": float(model_nb[:, i].min()),
                "net_benefit_max": float(model_nb[:, i].max()),
                "treat_all": float(treat_all[i]),
                "treat_none": 0.0,
                "n_repeats": len(curves),
            }
            for i in range(t.size)
        )
    return out


def beneficial_thresholds(rows: Sequence[Mapping[str, Any]], model: str) -> list[float]:
    """Thresholds at which ``model``'s mean net benefit exceeds both treating all and treating none."""
    return [
        float(r["threshold"])
        for r in rows
        if r["model"] == model and r["net_benefit"] > max(float(r["treat_all"]), float(r["treat_none"]))
    ]


def threshold_ranges(thresholds: Sequence[float], step: float = 0.01) -> list[tuple[float, float]]:
    """Consecutive thresholds (``step`` apart) merged into ``(first, last)`` ranges."""
    ranges: list[tuple[float, float]] = []
    for value in sorted(thresholds):
        if ranges and value - ranges[-1][1] <= step * 1.5:
            ranges[-1] = (ranges[-1][0], value)
        else:
            ranges.append((value, value))
    return ranges


def decision_summary(
    rows: Sequence[Mapping[str, Any]], model: str, calibration: str
) -> dict[str, Any] | None:
    """cv_summary.json's ``decision_curve``: where ``model`` beats treat-all and treat-none, in words."""
    if not any(r["model"] == model for r in rows):
        return None
    ranges = threshold_ranges(beneficial_thresholds(rows, model))
    spans = ", ".join(f"{a:.2f}" if a == b else f"{a:.2f} to {b:.2f}" for a, b in ranges)
    return {
        "model": model,
        "thresholds": [float(min(DCA_THRESHOLDS)), float(max(DCA_THRESHOLDS))],
        "beneficial_ranges": [list(r) for r in ranges],
        "calibration": calibration,
        "statement": (
            f"its mean out-of-fold net benefit exceeds both treating every patient and treating none at "
            f"threshold probabilities {spans}"
            if ranges
            else "its mean out-of-fold net benefit exceeds treating every patient and treating none at no "
            f"threshold probability between {min(DCA_THRESHOLDS):.2f} and {max(DCA_THRESHOLDS):.2f}"
        ),
    }
