"""The simulated lesion: a sphere in the corona radiata, written in template space or, as researchers
draw it, in T1w space with fMRIPrep's T1w -> template transform."""

from __future__ import annotations

from pathlib import Path

import nibabel as nb
import numpy as np

from strokefc_sim.bids_writer import write_json
from strokefc_sim.fmriprep import SPACE, space_entities
from strokefc_sim.itk import write_itk_affine_h5
from workflows.seeds import sphere_mask

#: Centre and default radius of the simulated lesion: corona radiata, in the lesioned hemisphere, away
#: from M1.
LESION_CENTRE_MM = (-26.0, -12.0, 22.0)
LESION_RADIUS_MM = 9.0
#: The simulated T1w space: template point -> T1w point (rotation of 5 degrees about z, then a shift),
#: which is what fMRIPrep's from-T1w_to-<template> transform maps.
_ANGLE = np.deg2rad(5.0)
TEMPLATE_TO_T1W = np.array(
    [
        [np.cos(_ANGLE), -np.sin(_ANGLE), 0.0, 3.0],
        [np.sin(_ANGLE), np.cos(_ANGLE), 0.0, -4.0],
        [0.0, 0.0, 1.0, 6.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def lesion_centre(side: str) -> tuple[float, float, float]:
    x, y, z = LESION_CENTRE_MM
    return (x if side == "L" else -x, y, z)


def lesion_sphere(side: str, radius: float, mask_img: nb.Nifti1Image) -> np.ndarray:
    """The lesion (bool volume on the grid): a sphere in the lesioned hemisphere, inside the brain."""
    return sphere_mask(lesion_centre(side), radius, mask_img) & (np.asarray(mask_img.dataobj) > 0)


def write_template_lesion(
    lesion_dir: Path, label: str, lesion: np.ndarray, mask_img: nb.Nifti1Image, resolution: int
) -> None:
    """The template-space mask, as a lesion-segmentation derivative names it."""
    anat = lesion_dir / f"sub-{label}" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    nb.Nifti1Image(lesion.astype(np.uint8), mask_img.affine).to_filename(
        anat / f"sub-{label}{space_entities(resolution)}_desc-lesion_mask.nii.gz"
    )


def write_t1w_lesion(out: Path, fmriprep: Path, label: str, side: str, radius: float) -> None:
    """A T1w image and its lesion mask (1.5 mm, T1w space) in the raw dataset, and fMRIPrep's transform."""
    shape = (128, 150, 128)
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = (-96.0, -130.0, -80.0)
    grid = nb.Nifti1Image(np.zeros(shape, np.uint8), affine)
    centre_t1w = (TEMPLATE_TO_T1W @ np.array([*lesion_centre(side), 1.0]))[:3]
    mask = sphere_mask(centre_t1w, radius, grid)
    head = sphere_mask((0.0, -10.0, 5.0), 85.0, grid)
    anat = out / f"sub-{label}" / "anat"
    anat.mkdir(parents=True, exist_ok=True)
    t1w = nb.Nifti1Image(np.where(head, np.where(mask, 300, 1000), 0).astype(np.int16), affine)
    t1w.header.set_xyzt_units("mm")
    t1w.to_filename(anat / f"sub-{label}_T1w.nii.gz")
    write_json(anat / f"sub-{label}_T1w.json", {"Description": "synthetic T1w (strokefc-simulate)"})
    nb.Nifti1Image(mask.astype(np.uint8), affine).to_filename(anat / f"sub-{label}_label-lesion_roi.nii.gz")
    xfm = fmriprep / f"sub-{label}" / "anat" / f"sub-{label}_from-T1w_to-{SPACE}_mode-image_xfm.h5"
    xfm.parent.mkdir(parents=True, exist_ok=True)
    write_itk_affine_h5(xfm, TEMPLATE_TO_T1W)
