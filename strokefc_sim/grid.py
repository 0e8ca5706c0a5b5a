"""The template grid of the simulated fMRIPrep outputs, and its brain mask."""

from __future__ import annotations

from functools import lru_cache

import nibabel as nb
import numpy as np

from strokefc_sim.params import GRIDS

#: World coordinates (mm) of voxel (0, 0, 0) on both grids.
ORIGIN = (-96.0, -132.0, -78.0)


def grid_affine(resolution: int) -> np.ndarray:
    aff = np.diag([float(resolution)] * 3 + [1.0])
    aff[:3, 3] = ORIGIN
    return aff


def brain_mask(resolution: int) -> nb.Nifti1Image:
    """nilearn's MNI152 brain mask on the fMRIPrep-like grid (a fresh image; the array is cached)."""
    return nb.Nifti1Image(_brain_mask_data(resolution).copy(), grid_affine(resolution))


@lru_cache(maxsize=4)
def _brain_mask_data(resolution: int) -> np.ndarray:
    """The mask's uint8 array, resampled once per process (seconds) for every cohort on the grid."""
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.image import resample_to_img

    ref = nb.Nifti1Image(np.zeros(GRIDS[resolution], np.uint8), grid_affine(resolution))
    img = resample_to_img(
        load_mni152_brain_mask(resolution=2),
        ref,
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    data = (np.asarray(img.dataobj) > 0).astype(np.uint8)
    data.setflags(write=False)
    return data
