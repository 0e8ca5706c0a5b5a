"""The model card's description of the training cohort, intended use and limitations (TRIPOD+AI).

TRIPOD+AI (Collins et al. 2024, BMJ 385:e078378) asks a prediction model's report to describe the
participants it was developed on (numbers per outcome class, predictors' measurement, exclusions, dates),
its intended use and its limitations. :func:`card_sections` gives those sections from what the group
level knows before training: the subjects' map sidecars and the exclusions; nothing is read from results.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from workflows.utils.bids import sidecar_path
from workflows.utils.images import load_nifti

REPORTING_GUIDELINE = "TRIPOD+AI (Collins et al. 2024, BMJ 385:e078378), in spirit; not a full checklist"
INTENDED_USE = (
    "Research only: ranking adult stroke patients' risk of severe upper-limb impairment (UL-FMA at or "
    "below the card's threshold) from resting-state fMRI preprocessed by fMRIPrep, in the card's template "
    "space and with the card's denoising and dFC parameters (participant --model refuses other ones). Not "
    "for diagnosis or treatment decisions of individual patients."
)
LIMITATIONS = (
    "Developed on the cohort described here only: its size, sites, scanners, lesion sides, time since "
    "stroke and run lengths bound where the probabilities hold; apply it elsewhere only after external "
    "validation (participant --model with true labels writes predictions_summary.json).",
    "Probabilities come from a class-weighted model and are not recalibrated for another prevalence; "
    "check the calibration bins of an external validation before reading them as risks.",
    "Cross-validated metrics are internal validation; with tens of subjects their intervals are wide.",
    "Maps on another voxel size are resampled to the model grid; large differences in resolution, "
    "repetition time or run length change the dFC maps in ways the model has not seen.",
    "Lesions are taken out of the maps only where a lesion mask was given; the lesion-size negative "
    "control (README) is the check that lesion size is not what the model reads.",
    "The conformal set or interval (card field 'conformal') covers the truth at the stated rate on "
    "average over patients exchangeable with the training cohort, not for every kind of patient, and not "
    "at another site or prevalence until an external validation (predictions_summary.json) shows it.",
)


def _summary(values: Sequence[float]) -> dict[str, float] | None:
    finite = np.asarray([v for v in values if v is not None and math.isfinite(float(v))], float)
    if not finite.size:
        return None
    return {
        "min": round(float(finite.min()), 3),
        "median": round(float(np.median(finite)), 3),
        "max": round(float(finite.max()), 3),
    }


def _sidecar(map_file: str) -> dict:
    path = sidecar_path(map_file)
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def _voxel_size(map_file: str) -> float | None:
    try:
        return round(float(load_nifti(map_file).header.get_zooms()[0]), 3)
    except (OSError, ValueError):  # a missing or unreadable map: the voxel size is not recorded
        return None


#: Fewest labelled subjects (not in training) whose external-validation metrics are informative.
MIN_VALIDATION_SUBJECTS = 10


def dataset_identity(description: Mapping[str, Any] | None) -> dict[str, Any]:
    """A BIDS dataset's identity from its ``dataset_description.json``: Name, DatasetDOI and their hash.

    Participant ids repeat across datasets (``sub-01``), so a training subject is recognised by its id
    within this identity (:func:`participant_hash`).
    """
    description = description or {}
    name, doi = description.get("Name"), description.get("DatasetDOI")
    digest = hashlib.sha256(f"{name or ''}|{doi or ''}".encode()).hexdigest()[:16]
    return {"Name": name, "DatasetDOI": doi, "DatasetId": digest}


def participant_hash(dataset_id: str, subject: str) -> str:
    """SHA-256 of a participant's id within a dataset (the card stores these, not the ids)."""
    label = subject[4:] if subject.startswith("sub-") else subject
    return hashlib.sha256(f"{dataset_id}/sub-{label}".encode()).hexdigest()


def training_participants(subjects: Sequence[Mapping[str, Any]], dataset: Mapping[str, Any]) -> dict:
    """The card's record of who trained the model: the dataset and a hash of every subject's id."""
    identity = dataset_identity(dataset) if "DatasetId" not in dataset else dict(dataset)
    labels = sorted({str(s.get("subject") or s["label"]) for s in subjects})
    return {
        "Dataset": identity,
        "N": len(labels),
        "ParticipantSHA256": sorted(participant_hash(identity["DatasetId"], label) for label in labels),
        "Hash": "SHA-256 of '<DatasetId>/sub-<label>' (workflows.model_card.participant_hash)",
    }


def in_training(card: Mapping[str, Any], dataset: Mapping[str, Any] | None, subject: str) -> bool | None:
    """Was ``subject`` of ``dataset`` (its dataset_description) among the model's training subjects?

    None when the card has no record of its training subjects (a card written before they were kept).
    """
    record = (card.get("TrainingCohort") or {}).get("Participants")
    if not record:
        return None
    identity = dataset_identity(dataset)
    return participant_hash(identity["DatasetId"], subject) in set(record.get("ParticipantSHA256", []))


def training_cohort(
    subjects: Sequence[Mapping[str, Any]],
    severe_threshold: float,
    excluded: Mapping[str, str] | None = None,
    date: str | None = None,
    dataset: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The training cohort as the card describes it, from the group inputs and their map sidecars.

    ``subjects`` are the group workflow's subject dicts (``label``, ``subject``, ``score``,
    ``lesion_side``, ``map_file``, ``qc``); ``excluded`` maps a left-out unit to its reason;
    ``dataset`` is the training dataset's ``dataset_description.json`` (its subjects are recorded by
    hash, :func:`training_participants`, so ``participant --model`` can flag them).
    """
    classes = ["severe" if float(s["score"]) <= severe_threshold else "mild-to-moderate" for s in subjects]
    metas = [_sidecar(str(s["map_file"])) for s in subjects]
    sides: dict[str, Counter] = {c: Counter() for c in ("severe", "mild-to-moderate")}
    for s, c in zip(subjects, classes):
        sides[c][str(s["lesion_side"])] += 1
    denoising = [m.get("Denoising", {}) for m in metas]
    reasons = Counter(
        "quality control" if "quality control" in why else why for why in (excluded or {}).values()
    )
    return {
        "Date": date or datetime.now(UTC).strftime("%Y-%m-%d"),
        "Subjects": len({s.get("subject") or s["label"] for s in subjects}),
        "Samples": len(subjects),
        "ClassCounts": dict(Counter(classes)),
        "LesionSidesByClass": {c: dict(sorted(n.items())) for c, n in sides.items()},
        "ULFMA": _summary([float(s["score"]) for s in subjects]),
        "RepetitionTime_s": sorted({float(m["RepetitionTime"]) for m in metas if m.get("RepetitionTime")}),
        "VolumesPerRun": _summary([d.get("VolumesTotal") for d in denoising]),
        "RetainedTime_s": _summary([d.get("RetainedTime_s") for d in denoising]),
        "MeanFramewiseDisplacement_mm": _summary([d.get("MeanFramewiseDisplacement_mm") for d in denoising]),
        "VoxelSize_mm": sorted({_voxel_size(str(s["map_file"])) for s in subjects} - {None}),
        "Excluded": {"N": len(excluded or {}), "Reasons": dict(reasons)},
        "Participants": training_participants(subjects, dataset or {}),
        # the scanning sites it was trained on, with units per class (None: no site information)
        "Sites": _sites_by_class(subjects, classes),
    }


def _sites_by_class(subjects: Sequence[Mapping[str, Any]], classes: Sequence[str]) -> dict | None:
    """``{site: {"severe": n, "mild-to-moderate": n}}`` of the training units, or None without sites."""
    sites = [str(s.get("site") or "") for s in subjects]
    if not all(sites):
        return None
    counts: dict[str, Counter] = {site: Counter() for site in sorted(set(sites))}
    for site, c in zip(sites, classes):
        counts[site][c] += 1
    return {site: {c: n[c] for c in ("severe", "mild-to-moderate")} for site, n in counts.items()}


def card_sections(cohort: Mapping[str, Any] | None, atlases: Mapping[str, Any]) -> dict[str, Any]:
    """The card's TRIPOD+AI sections: training cohort, intended use, limitations, atlases used."""
    return {
        "ReportingGuideline": REPORTING_GUIDELINE,
        "TrainingCohort": dict(cohort or {}),
        "IntendedUse": INTENDED_USE,
        "Limitations": list(LIMITATIONS),
        "Atlases": dict(atlases),
    }
