"""A lesion mask drawn on the T1w image, brought onto the template-space BOLD grid by fMRIPrep's transform.

Stroke lesions are usually drawn on the participant's T1w image (raw BIDS
``sub-<label>/anat/sub-<label>_label-lesion_roi.nii.gz``), while strokefc works on fMRIPrep's BOLD in a
template space. fMRIPrep leaves the T1w -> template transform next to its anatomical derivatives as
``sub-<label>_from-T1w_to-<space>_mode-image_xfm.h5``: an ITK/ANTs composite HDF5 file (an affine and a
displacement field). :func:`warp_mask_to_template` resamples the mask through it with nitransforms.

Direction: the file is named after the way it moves *images* (a T1w image into the template), so, as
in every ITK/ANTs transform, its *points* go the other way: template point -> T1w point. Resampling a
T1w image onto a template grid is therefore this file applied as is, with the template grid as
reference (what fMRIPrep's own ``antsApplyTransforms -i <T1w image> -r <template> -t <this file>``
does); nitransforms' ``manip.load`` builds the chain in ITK's order (displacement field first, then the
affine) and ``resampling.apply`` maps each reference voxel to the moving image, which is that call.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import nibabel as nb
import numpy as np
from nitransforms.base import TransformBase
from nitransforms.manip import load as load_transform
from nitransforms.resampling import apply as apply_transform

from workflows.utils.errors import InputError
from workflows.utils.images import as_image, box_average

#: What nitransforms and h5py raise for a file that is not a readable ITK composite transform:
#: OSError (not HDF5, truncated; nitransforms' TransformIOError), KeyError (no TransformGroup or
#: parameters), ValueError/IndexError (wrong sizes, empty group), TypeError (nitransforms'
#: TransformError), AttributeError/NotImplementedError (unexpected types).
_READ_ERRORS = (OSError, KeyError, ValueError, IndexError, TypeError, AttributeError, NotImplementedError)

#: A file named ``..._from-<space>_to-T1w_...`` moves template images into T1w: the inverse of what is needed.
_INVERSE_NAME = re.compile(r"(^|_)from-(?!T1w_)[^_]+_to-T1w(_|$)")


def warp_mask_to_template(
    mask_img: nb.Nifti1Image | Path | str,
    xfm_file: Path | str,
    reference_img: nb.Nifti1Image | Path | str,
    *,
    threshold: float = 0.5,
    where: str | None = None,
) -> nb.Nifti1Image:
    """Resample a binary T1w-space mask onto a template-space grid through fMRIPrep's T1w -> template xfm.

    Parameters
    ----------
    mask_img
        The mask in T1w space (image or path); voxels > 0 are the lesion. 3D, or 4D with one volume.
    xfm_file
        fMRIPrep's ``sub-<label>_from-T1w_to-<space>_mode-image_xfm.h5`` (ITK composite HDF5: affine
        and displacement field; an affine-only composite is read too).
    reference_img
        An image on the target grid (typically the template-space BOLD or its brain mask; only its
        header is used, a 4D image gives its 3D grid).
    threshold
        Fraction of a reference voxel that the lesion must cover, in (0, 1].
    where
        Where the mask comes from, for error messages (default: its path, or "lesion mask").

    Returns
    -------
    nibabel.Nifti1Image
        A 3D uint8 0/1 image on the reference grid.

    Notes
    -----
    The 0/1 mask is interpolated *linearly* and thresholded (``>= threshold``) rather than resampled
    by nearest neighbour. A 2-4 mm BOLD voxel spans 8-64 voxels of a 1 mm T1w: nearest neighbour lets
    the single T1w voxel under the target voxel's centre decide, so the warped lesion's boundary
    jitters by up to half a target voxel, and thin parts vanish or grow depending on where the grid
    falls. Linear interpolation gives a covered fraction; so that it is the fraction of the whole
    target voxel (and not only of the 8 T1w voxels around its centre), the mask is first averaged
    over a centred box of one target voxel's width when the target grid is coarser than 1.5 T1w
    voxels (the rule of :func:`workflows.utils.images.resample_binary`). ``threshold=0.5`` keeps the
    voxels at least half covered, so the lesion volume is kept on average.

    Raises
    ------
    InputError
        The mask is not 3D or is empty; the transform file is missing, unreadable, or named as the
        inverse (``from-<space>_to-T1w``); nothing of the lesion lands on the reference grid (the
        transform is not the mask's subject's, or the reference is in another space); the lesion is
        smaller than ``threshold`` of a reference voxel everywhere.
    """
    where = where or (str(mask_img) if isinstance(mask_img, (str, os.PathLike)) else "lesion mask")
    if not 0.0 < threshold <= 1.0:
        raise InputError(f"threshold {threshold!r} is not a fraction in (0, 1]", "threshold", "give e.g. 0.5")
    mask = as_image(mask_img)
    reference = as_image(reference_img)
    if not (mask.ndim == 3 or (mask.ndim == 4 and mask.shape[3] == 1)):
        raise InputError(
            f"the lesion mask is {mask.ndim}D {mask.shape}; a 3D mask is expected",
            where,
            "give one 3D binary mask (voxels > 0 are the lesion) drawn on the T1w image",
        )
    source = np.asanyarray(mask.dataobj).reshape(mask.shape[:3]) > 0
    if not source.any():
        raise InputError(
            "the lesion mask is empty (no voxel > 0)",
            where,
            "check the mask, or leave it out for this subject",
        )
    transform = _load_composite(xfm_file)

    ref_shape = tuple(int(n) for n in reference.shape[:3])
    fraction = box_average(source, mask.affine, reference.affine)
    moved = apply_transform(
        transform,
        nb.Nifti1Image(fraction, mask.affine),
        reference=nb.Nifti1Image(np.zeros(ref_shape, np.uint8), reference.affine),
        order=1,
        mode="constant",
        cval=0.0,
        prefilter=False,
        output_dtype=np.float32,
    )
    covered = np.asarray(moved.dataobj, dtype=np.float32).reshape(ref_shape)
    out = covered >= threshold - 1e-6  # linear interpolation of 1.0 may give 0.99999994
    if not out.any():
        if covered.max() <= 0.0:
            raise InputError(
                "no part of the lesion mask lands on the reference grid after the T1w -> template transform: "
                "the transform does not belong to the mask (another subject or session), or the reference "
                "grid is not in the transform's template space",
                f"{where} through {xfm_file}",
                "use sub-<label>_from-T1w_to-<space>_mode-image_xfm.h5 of the mask's own subject (and "
                "session) and a reference (BOLD or brain mask) in that same <space>",
            )
        raise InputError(
            f"the lesion mask covers at most {100 * float(covered.max()):.0f}% of any voxel of the reference "
            f"grid (threshold {100 * threshold:.0f}%): it is too small to keep at this resolution",
            where,
            "check that the mask is the whole lesion; a lower threshold keeps smaller lesions",
        )
    return _on_grid(out.astype(np.uint8), reference)


def _load_composite(xfm_file: Path | str) -> TransformBase:
    """nitransforms' chain for an ITK composite HDF5 file, with errors that say how to fix them."""
    path = Path(xfm_file)
    expected = "fMRIPrep's sub-<label>_from-T1w_to-<space>_mode-image_xfm.h5 (from its anat/ folder)"
    if not path.is_file():
        raise InputError("the T1w -> template transform file does not exist", str(path), f"give {expected}")
    if path.suffix != ".h5":
        raise InputError(
            f"the T1w -> template transform is not an ITK composite HDF5 file (.h5): {path.name}",
            str(path),
            f"give {expected}",
        )
    if _INVERSE_NAME.search(path.name):
        raise InputError(
            "the transform file is named as the template -> T1w transform (from-<space>_to-T1w), the inverse "
            "of the one that brings a T1w mask into the template",
            str(path),
            "give the from-T1w_to-<space> file that fMRIPrep wrote next to it",
        )
    try:
        with warnings.catch_warnings():
            # nitransforms asks an Affine for its reference space, unset (not needed) in ITK files
            warnings.filterwarnings("ignore", message="Reference space not set", category=UserWarning)
            chain = load_transform(str(path), fmt="ITK")
    except _READ_ERRORS as exc:
        raise InputError(
            f"the T1w -> template transform cannot be read as an ITK composite transform "
            f"({type(exc).__name__}: {exc})",
            str(path),
            f"re-copy {expected}; the file may be truncated or not an ANTs/ITK transform",
        ) from None
    return chain


def _on_grid(data: np.ndarray, reference: nb.Nifti1Image) -> nb.Nifti1Image:
    """``data`` as a NIfTI image on the reference's grid, keeping its sform/qform codes (e.g. MNI)."""
    out = nb.Nifti1Image(data, reference.affine)
    header = reference.header
    if isinstance(header, nb.Nifti1Header):
        sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
        if sform_code > 0:
            out.set_sform(reference.affine, code=sform_code)
        if qform_code > 0:
            out.set_qform(reference.affine, code=qform_code)
    out.set_data_dtype(np.uint8)
    return out
