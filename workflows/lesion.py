"""Lesion side: parsing user values, deciding it from a lesion mask, and left-right mirroring.

Mirroring happens about x = 0 in world (scanner/MNI) coordinates, so that a map of a right-lesion
patient is brought to the left, whatever the voxel grid, as long as the grid is symmetric about
x = 0 (true of the fMRIPrep MNI152NLin2009cAsym grids); otherwise the mirrored image is resampled.
"""

from __future__ import annotations

import nibabel as nb
import numpy as np

from workflows.utils.errors import InputError

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


def hemisphere_fractions(mask_img: nb.Nifti1Image) -> dict[str, float]:
    """Fraction of a mask's volume in the left (x < 0) and right (x > 0) hemisphere (world x)."""
    data = np.asarray(mask_img.dataobj) > 0
    ijk = np.argwhere(data)
    if ijk.size == 0:
        return {"L": 0.0, "R": 0.0}
    x = nb.affines.apply_affine(mask_img.affine, ijk)[:, 0]
    n = float(len(x))
    return {"L": float((x < 0).sum()) / n, "R": float((x > 0).sum()) / n}


def lesion_side_from_mask(mask_img: nb.Nifti1Image, where: str = "lesion mask") -> str:
    """Return the hemisphere (``'L'``/``'R'``) holding most of the lesion volume."""
    if mask_img.ndim != 3:
        raise InputError(f"the lesion mask has {mask_img.ndim} dimensions", where, "give a 3D mask")
    frac = hemisphere_fractions(mask_img)
    if frac["L"] == 0 and frac["R"] == 0:
        raise InputError(
            "the lesion mask is empty (no voxel > 0)",
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
