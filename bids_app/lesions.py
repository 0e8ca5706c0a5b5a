"""Lesion masks and the lesion side of each patient: where the app finds them and how it decides.

The numeric part (which hemisphere a mask lies in) is :func:`workflows.lesion.lesion_side_from_mask`.
"""

from __future__ import annotations

from pathlib import Path

from workflows.utils.errors import InputError


def find_lesion_mask(lesion_dir: str | Path, label: str, session: str | None, space: str) -> Path | None:
    """The lesion mask of one subject in ``lesion_dir`` (flat, or BIDS-like ``sub-*/[ses-*/]anat``)."""
    lesion_dir = Path(lesion_dir)
    if not lesion_dir.is_dir():
        raise InputError("the lesion folder does not exist", str(lesion_dir), "check --lesion-dir")
    suffixes = (
        "label-lesion_roi.nii.gz",
        "label-lesion_roi.nii",
        "desc-lesion_mask.nii.gz",
        "desc-lesion_mask.nii",
    )
    found = []
    for path in sorted(lesion_dir.rglob(f"sub-{label}_*")):
        name = path.name
        if f"space-{space}_" not in name or not name.endswith(suffixes):
            continue
        ses = next((p[4:] for p in name.split("_") if p.startswith("ses-")), None)
        found.append((ses, path))
    if session is not None and any(s == session for s, _ in found):
        found = [(s, p) for s, p in found if s == session]
    else:
        found = [(s, p) for s, p in found if s is None]
    if len(found) > 1:
        raise InputError(
            f"sub-{label} has {len(found)} lesion masks",
            ", ".join(str(p) for _, p in found),
            "keep one lesion mask per subject/session",
        )
    return found[0][1] if found else None


def resolve_lesion_side(tsv_side: str | None, mask_side: str | None, label: str) -> tuple[str, str]:
    """Decide the lesion side from ``participants.tsv`` and/or a lesion mask; they must agree."""
    if tsv_side is None and mask_side is None:
        raise InputError(
            f"no lesion hemisphere for sub-{label}",
            "participants.tsv and --lesion-dir",
            "fill the lesion_hemisphere column (L/R) or give a lesion mask with --lesion-dir",
        )
    if tsv_side and mask_side and tsv_side != mask_side:
        raise InputError(
            f"sub-{label}: participants.tsv says the lesion is on the {tsv_side} side but the "
            f"lesion mask lies mostly on the {mask_side} side",
            "participants.tsv / lesion mask",
            "correct whichever is wrong (check the mask's orientation)",
        )
    if tsv_side and mask_side:
        return tsv_side, "participants.tsv and lesion mask (agree)"
    return (tsv_side, "participants.tsv") if tsv_side else (mask_side, "lesion mask")
