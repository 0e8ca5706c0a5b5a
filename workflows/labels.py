"""The class rule of the study, apart from the group level's heavy modules (the participant level uses it)."""

from __future__ import annotations


def is_severe(score: float, threshold: float) -> bool:
    """The label rule of the mission: UL-FMA <= threshold is severe impairment."""
    return float(score) <= float(threshold)
