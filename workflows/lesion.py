"""Lesion side, left-right mirroring, and a lesion mask on a run's grid (what leaves the maps).

Mirroring happens about x = 0 in world (scanner/MNI) coordinates, so that a map of a right-lesion
patient is brought to the left, whatever the voxel grid, as long as the grid is symmetric about
x = 0 (true of the fMRIPrep MNI152NLin2009cAsym grids); otherwise the mirrored image is resampled.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import nibabel as nb
import numpy as np
from scipy import ndimage

from workflows.params import LesionParams
from workflows.utils.errors import InputError
from workflows.utils.images import resample_binary

_SIDES = {"l": "L", "left": "L", "r": "R", "right": "R"}


def normalise_hemisphere(value: object, where: str = "participants.tsv") -> str:
    """Return ``'L'`` or ``'R'`` for a user-given lesion side (L/R/left/right, any case)."""
    key = str(value).strip().lower()
    if key not in _SIDES:
        raise InputError(
            f"lesion hemisphere {value!r} is not one of L, R, left, right",
            where,
            "write L or R (case-insensitive; 'left'/'right' are accepted) for every patient",
        )
    return _SIDES[key]


def lesion_voxels(data: np.ndarray, threshold: float = LesionParams.threshold) -> np.ndarray:
    """The lesion of a mask's values: ``>= threshold`` (a binary 0/1 or 0/255 mask is unchanged)."""
    return np.asarray(data) >= threshold


def hemisphere_fractions(
    mask_img: nb.Nifti1Image, threshold: float = LesionParams.threshold
) -> dict[str, float]:
    """Fraction of a mask's volume in the left (x < 0) and right (x > 0) hemisphere (world x)."""
    data = lesion_voxels(np.asarray(mask_img.dataobj), threshold)
    ijk = np.argwhere(data)
    if ijk.size == 0:
        return {"L": 0.0, "R": 0.0}
    x = nb.affines.apply_affine(mask_img.affine, ijk)[:, 0]
    n = float(len(x))
    return {"L": float((x < 0).sum()) / n, "R": float((x > 0).sum()) / n}


def lesion_side_from_mask(
    mask_img: nb.Nifti1Image, where: str = "lesion mask", threshold: float = LesionParams.threshold
) -> str:
    """Return the hemisphere (``'L'``/``'R'``) holding most of the lesion volume."""
    if mask_img.ndim != 3:
        raise InputError(f"the lesion mask has {mask_img.ndim} dimensions", where, "give a 3D mask")
    frac = hemisphere_fractions(mask_img, threshold)
    if frac["L"] == 0 and frac["R"] == 0:
        raise InputError(
            f"the lesion mask is empty (no voxel >= {threshold:g}, LesionParams.threshold)",
            where,
            "check the mask, or give the side in participants.tsv instead",
        )
    if frac["L"] == frac["R"]:
        raise InputError(
            "the lesion mask is split evenly between hemispheres",
            where,
            "give the lesion side in participants.tsv",
        )
    return "L" if frac["L"] > frac["R"] else "R"


def mirror_lr(img: nb.Nifti1Image) -> nb.Nifti1Image:
    """Mirror an image left-right about world x = 0, on the same grid.

    For a grid symmetric about x = 0 this is an exact voxel flip; otherwise values are resampled
    (nearest neighbour for integer data, linear otherwise) from the mirrored positions.
    """
    affine = img.affine
    shape = img.shape[:3]
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    # voxel -> mirrored world -> voxel of the same grid
    vox2vox = np.linalg.inv(affine) @ flip @ affine
    data = np.asanyarray(img.dataobj)
    if (
        np.allclose(vox2vox[:3, :3], np.diag([-1, 1, 1]))
        and np.allclose(vox2vox[0, 3], shape[0] - 1)
        and np.allclose(vox2vox[1:3, 3], 0)
    ):
        out = data[::-1, ...].copy()
    else:
        from scipy.ndimage import affine_transform

        order = 0 if np.issubdtype(data.dtype, np.integer) or data.dtype == bool else 1
        vols = data if data.ndim == 4 else data[..., None]
        out = np.stack(
            [
                affine_transform(vols[..., t], vox2vox[:3, :3], vox2vox[:3, 3], order=order)
                for t in range(vols.shape[-1])
            ],
            axis=-1,
        )
        out = out if data.ndim == 4 else out[..., 0]
    return nb.Nifti1Image(out, affine, img.header)


#: Voxels of dilation around the lesion before it leaves the maps: BOLD voxels at the lesion's border
#: mix cavity and tissue signal.
LESION_DILATION = 1
#: Share of the lesion (on the BOLD grid) allowed outside the brain mask before it is reported.
OUTSIDE_BRAIN_WARNING = 0.5


@dataclass
class LesionOnGrid:
    """A lesion mask put on a run's BOLD grid, what leaves the maps, and figures for the sidecar."""

    lesion: np.ndarray  # (X, Y, Z) bool: the lesion on the grid
    excluded: np.ndarray  # (X, Y, Z) bool: lesion dilated by LESION_DILATION voxels, inside the brain
    info: dict[str, Any]


def lesion_on_grid(
    lesion_img: nb.Nifti1Image,
    brain_img: nb.Nifti1Image,
    *,
    dilation: int = LESION_DILATION,
    where: str = "lesion mask",
    threshold: float = LesionParams.threshold,
) -> LesionOnGrid:
    """Put a template-space lesion mask on the BOLD grid of ``brain_img`` and check it.

    The lesion is the mask's voxels ``>= threshold`` (:class:`workflows.params.LesionParams`), recorded
    with whether the mask was binary or graded (probabilistic).

    The mask is resampled with :func:`workflows.utils.images.resample_binary` (voxels at least half
    covered). An empty mask, a mask with nothing on the BOLD grid (another space or field of view) or
    entirely outside the brain is an error; more than :data:`OUTSIDE_BRAIN_WARNING` of it outside the
    brain is a recorded warning.
    """
    if lesion_img.ndim != 3 and not (lesion_img.ndim == 4 and lesion_img.shape[3] == 1):
        raise InputError(
            f"the lesion mask is {lesion_img.ndim}D {lesion_img.shape}", where, "give a 3D binary mask"
        )
    values = np.asanyarray(lesion_img.dataobj).reshape(lesion_img.shape[:3])
    source = lesion_voxels(values, threshold)
    if not source.any():
        raise InputError(
            f"the lesion mask is empty (no voxel >= {threshold:g}, LesionParams.threshold)",
            where,
            "check the mask, lower the threshold (a probabilistic mask), or remove it",
        )
    lesion_img = nb.Nifti1Image(source.astype(np.uint8), lesion_img.affine)
    lesion = resample_binary(lesion_img, brain_img)
    if not lesion.any():
        raise InputError(
            "the lesion mask has no voxel on the BOLD grid: it lies outside the field of view of the run",
            where,
            "check that the mask is in the space of the BOLD (the space entity of --output-spaces) and "
            "not in T1w or native space",
        )
    brain = np.asanyarray(brain_img.dataobj).reshape(brain_img.shape[:3]) > 0  # (X, Y, Z, 1) too
    inside = lesion & brain
    if not inside.any():
        raise InputError(
            "the lesion mask lies entirely outside the brain mask of the run",
            where,
            "check the mask's space and orientation (a mask drawn in another space needs its transform)",
        )
    excluded = ndimage.binary_dilation(lesion, iterations=dilation) & brain if dilation else inside
    source_ml = float(source.sum() * abs(np.linalg.det(lesion_img.affine[:3, :3])) / 1000.0)
    outside = 1.0 - inside.sum() / lesion.sum()
    warnings = []
    if outside > OUTSIDE_BRAIN_WARNING:
        warnings.append(
            f"{100 * outside:.0f}% of the lesion mask lies outside the brain mask: check that it is in "
            "the space of the BOLD"
        )
    info = {
        "LesionVolume_ml": round(source_ml, 3),
        "LesionVoxelsOnGrid": int(lesion.sum()),
        "LesionFractionOutsideBrain": round(float(outside), 4),
        "LesionExcludedVoxels": int(excluded.sum()),
        "LesionDilation_vox": int(dilation),
        "LesionThreshold": float(threshold),
        # "graded": a probabilistic mask, cut at the threshold
        "LesionMaskValues": "binary" if np.unique(values[values != 0]).size <= 1 else "graded",
        "Warnings": warnings,
    }
    return LesionOnGrid(lesion, excluded, info)


def exclusion_with_mirror(excluded: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """``excluded`` or its left-right mirror (about world x = 0) on the same grid.

    Used after lesion alignment: the lesioned territory and its homologue leave every model input, so
    a model cannot tell lesion topography from connectivity.
    """
    img = nb.Nifti1Image(np.asarray(excluded, np.uint8), affine)
    return np.asarray(excluded, bool) | (np.asarray(mirror_lr(img).dataobj) > 0)
