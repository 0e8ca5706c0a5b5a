"""Lesion masks and the lesion side of each patient: where the app finds them and how it decides.

Masks are found in every form researchers have them (see :func:`find_lesion_masks`), per session;
T1w-space masks are warped into the template through fMRIPrep's own transform. The numeric parts
(which hemisphere a mask lies in, warping) live in :mod:`workflows.lesion` and
:mod:`workflows.lesion_warp`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nb

from workflows.lesion import OUTSIDE_BRAIN_WARNING, lesion_on_grid
from workflows.utils.atomic import atomic_path
from workflows.utils.bids import bids_uri
from workflows.utils.errors import InputError
from workflows.utils.images import load_image

if TYPE_CHECKING:
    from bids_app.config import RunConfig

_EXTENSIONS = (".nii.gz", ".nii")


@dataclass(frozen=True)
class LesionFile:
    """One lesion mask as found, before it is put on a run's grid."""

    path: Path
    session: str | None  # None: one mask for every session of the subject
    space: str  # the template space, or "T1w" for raw-dataset masks
    origin: str  # "lesion-dir" or "raw"
    transform: Path | None = None  # fMRIPrep's T1w -> template transform (T1w masks)


def _entities(name: str) -> dict[str, str]:
    stem = name
    for ext in _EXTENSIONS:
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    parts = stem.split("_")
    out = {"suffix": parts[-1]}
    for part in parts[:-1]:
        key, _, value = part.partition("-")
        out[key] = value
    return out


def is_lesion_name(name: str, lesion_desc: str | None = None) -> bool:
    """A lesion-mask file name: ``label-lesion_roi``, ``desc-lesion_mask``/``_roi`` (fMRIStroke), or
    ``desc-<lesion_desc>_mask``/``_roi``."""
    if not name.endswith(_EXTENSIONS):
        return False
    ent = _entities(name)
    if ent["suffix"] not in ("roi", "mask"):
        return False
    if ent.get("label") == "lesion" and ent["suffix"] == "roi":
        return True
    return ent.get("desc") in {"lesion", lesion_desc} - {None}


def _pick_session(found: list[LesionFile], session: str | None) -> LesionFile | None:
    """The session's own mask, else the subject-level (session-less) one; several is an error."""
    own = [f for f in found if f.session == session] if session is not None else []
    pool = own or [f for f in found if f.session is None]
    if len(pool) > 1:
        raise InputError(
            f"{len(pool)} lesion masks match" + (f" session {session}" if session else ""),
            ", ".join(str(f.path) for f in pool),
            "keep one lesion mask per subject/session (or name the one to use with --lesion-desc)",
        )
    return pool[0] if pool else None


def template_masks(
    lesion_dir: Path, label: str, space: str, res: str | None, lesion_desc: str | None
) -> list[LesionFile]:
    """Template-space masks of one subject in ``lesion_dir`` (flat, BIDS-like, or an fMRIStroke output)."""
    if not lesion_dir.is_dir():
        raise InputError("the lesion folder does not exist", str(lesion_dir), "check --lesion-dir")
    found = []
    for path in sorted(lesion_dir.rglob(f"sub-{label}_*")):
        ent = _entities(path.name)
        if ent.get("space") != space or not is_lesion_name(path.name, lesion_desc):
            continue
        found.append((ent, LesionFile(path, ent.get("ses"), space, "lesion-dir")))
    if res is not None and any(e.get("res") == res for e, _ in found):
        found = [(e, f) for e, f in found if e.get("res") in (res, None)]
    return [f for _, f in found]


def raw_masks(bids_dir: Path, label: str) -> list[LesionFile]:
    """T1w-space ``label-lesion_roi`` masks in the raw dataset (``sub-<l>/[ses-<s>/]anat``)."""
    found = []
    for path in sorted((bids_dir / f"sub-{label}").glob("**/anat/*")):
        ent = _entities(path.name)
        if ent.get("label") == "lesion" and ent["suffix"] == "roi" and ent.get("space", "T1w") == "T1w":
            if path.name.endswith(_EXTENSIONS):
                found.append(LesionFile(path, ent.get("ses"), "T1w", "raw"))
    return found


def t1w_transform(fmriprep_dir: Path, label: str, session: str | None, space: str) -> Path | None:
    """fMRIPrep's ``from-T1w_to-<space>_mode-image_xfm.h5`` (the session's, else the subject's)."""
    pattern = f"sub-{label}*_from-T1w_to-{space}_mode-image_xfm.h5"
    candidates = sorted((fmriprep_dir / f"sub-{label}").glob(f"**/anat/{pattern}"))
    same = [p for p in candidates if session and f"_ses-{session}_" in p.name]
    subject_level = [p for p in candidates if "_ses-" not in p.name]
    for pool in (same, subject_level, candidates if len(candidates) == 1 else []):
        if pool:
            return pool[0]
    return None


def find_lesion_masks(
    label: str,
    sessions: Iterable[str | None],
    space: str,
    *,
    bids_dir: Path,
    fmriprep_dir: Path,
    lesion_dir: Path | None = None,
    lesion_desc: str | None = None,
    res: str | None = None,
) -> dict[str | None, LesionFile]:
    """The lesion mask of each session of one subject, in the first place it is found.

    1. ``lesion_dir`` (template space): ``..._space-<space>[_res-<r>]_label-lesion_roi``,
       ``..._desc-lesion_mask``, fMRIStroke's ``..._desc-lesion_roi``, or ``desc-<lesion_desc>``;
    2. the raw dataset (T1w space): ``sub-<l>/[ses-<s>/]anat/*_label-lesion_roi.nii[.gz]``, with
       fMRIPrep's T1w -> template transform (an error when it is missing).

    A session's own mask wins over a session-less one. Sessions without a mask are absent.
    """
    in_dir = template_masks(lesion_dir, label, space, res, lesion_desc) if lesion_dir else []
    raw = raw_masks(bids_dir, label)
    out: dict[str | None, LesionFile] = {}
    for session in sorted(set(sessions), key=lambda s: s or ""):
        chosen = _pick_session(in_dir, session) or _pick_session(raw, session)
        if chosen is None:
            continue
        if chosen.space == "T1w":
            xfm = t1w_transform(fmriprep_dir, label, session, space)
            if xfm is None:
                raise InputError(
                    f"sub-{label} has a T1w-space lesion mask but fMRIPrep wrote no T1w -> {space} transform",
                    str(chosen.path),
                    f"keep fMRIPrep's anat/sub-{label}_from-T1w_to-{space}_mode-image_xfm.h5 in the "
                    "derivatives, or give a template-space mask with --lesion-dir",
                )
            chosen = LesionFile(chosen.path, chosen.session, chosen.space, chosen.origin, xfm)
        out[session] = chosen
    return out


def masks_expected(lesion_dir: Path | None, bids_dir: Path) -> bool:
    """Lesion masks are expected for everyone when ``--lesion-dir`` is given or any raw mask exists."""
    if lesion_dir:
        return True
    return any(p.name.endswith(_EXTENSIONS) for p in bids_dir.glob("sub-*/**/anat/*_label-lesion_roi.nii*"))


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


def check_lesion_placement(mask: Path, reference: Path, where: str, threshold: float) -> None:
    """Refuse a template-space lesion mask that is off the run's grid or mostly outside its brain mask.

    A shifted (or wrongly registered) mask can lie mostly in the other hemisphere: it must be reported
    as misplaced, not as a lesion side that disagrees with participants.tsv.
    """
    grid = lesion_on_grid(
        load_image(mask, "lesion mask"), load_image(reference, "brain mask"), where=where, threshold=threshold
    )
    outside = grid.info["LesionFractionOutsideBrain"]
    if outside > OUTSIDE_BRAIN_WARNING:
        raise InputError(
            f"the lesion mask is misplaced: {100 * outside:.0f}% of it lies outside the brain mask of the "
            "run (shifted, or in another space), so its side cannot be read from it",
            f"{where} (brain mask {reference})",
            "check the mask's affine and space (it must be in the BOLD's template space and overlap "
            "the brain); the side in participants.tsv is not the problem",
        )


def template_space_mask(
    config: RunConfig, label: str, lesion: LesionFile, reference: Path
) -> tuple[Path, list[str]]:
    """The lesion mask in the template space, and the URIs of what it was made from.

    Template-space masks are used as they are; T1w-space masks from the raw dataset are warped once
    onto the run grid (``reference``) through fMRIPrep's transform, into the working directory.
    """
    if lesion.origin == "lesion-dir" and config.queries.lesion_dir:
        return lesion.path, [bids_uri(lesion.path, config.queries.lesion_dir, "lesions")]
    uris = [bids_uri(lesion.path, config.bids_dir, "raw")]
    if lesion.transform is None:
        return lesion.path, uris
    from workflows.lesion_warp import warp_mask_to_template

    uris.append(bids_uri(lesion.transform, config.fmriprep_dir, "fmriprep"))
    out = (
        config.work_dir
        / "lesions"
        / (lesion.path.name.split(".nii")[0] + f"_to-{config.queries.space}.nii.gz")
    )
    if not out.exists() or out.stat().st_mtime < max(
        lesion.path.stat().st_mtime, lesion.transform.stat().st_mtime
    ):
        warped = warp_mask_to_template(nb.load(str(lesion.path)), lesion.transform, nb.load(str(reference)))
        with atomic_path(out) as tmp:  # reused by its mtime: a killed run must not leave half of it
            warped.to_filename(str(tmp))
    return out, uris
