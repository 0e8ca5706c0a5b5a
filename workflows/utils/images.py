"""Reading NIfTI images with errors that say what, where and how to fix.

The errors cover missing, empty and corrupt files, and a brain mask on another grid than its BOLD.
"""

from __future__ import annotations

import gzip
import os
import warnings
import zlib
from pathlib import Path
from typing import Any, cast

import nibabel as nb
import numpy as np
import numpy.typing as npt
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError
from scipy import ndimage

from workflows.utils.errors import InputError


def check_bold_and_mask(
    bold_img: nb.Nifti1Image, mask_img: nb.Nifti1Image, bold_file: Path | str, mask_file: Path | str
) -> None:
    """The BOLD must be 4D and its brain mask on the same grid (headers only)."""
    if bold_img.ndim != 4:
        raise InputError(
            f"the BOLD image is {bold_img.ndim}D {bold_img.shape}; a 4D series is expected",
            str(bold_file),
            "point strokefc to fMRIPrep's preprocessed 4D BOLD (desc-preproc_bold)",
        )
    if mask_img.ndim != 3 and not (mask_img.ndim == 4 and mask_img.shape[3] == 1):
        raise InputError(
            f"the brain mask is {mask_img.ndim}D {mask_img.shape}; a 3D mask is expected",
            str(mask_file),
            "use the 3D desc-brain_mask fMRIPrep wrote for this run",
        )
    if mask_img.shape[:3] != bold_img.shape[:3] or not np.allclose(
        mask_img.affine, bold_img.affine, atol=1e-3
    ):
        same_shape = mask_img.shape[:3] == bold_img.shape[:3]
        raise InputError(
            f"the BOLD (grid {bold_img.shape[:3]}) and its brain mask (grid {mask_img.shape[:3]}) are on "
            "different grids"
            + (" (same shape, different affines: shifted or rotated)" if same_shape else ""),
            f"{bold_file} and {mask_file}",
            "use the mask fMRIPrep wrote for the same space and resolution as the BOLD",
        )


def load_nifti(path: Path | str, **kwargs: Any) -> nb.Nifti1Image:
    """:func:`nibabel.load`, typed for the NIfTI files strokefc reads (no checks: see :func:`load_image`)."""
    # nibabel types load() as returning the FileBasedImage base class; for .nii/.nii.gz files it returns a
    # Nifti1Image (or its subclass Nifti2Image)
    return cast(nb.Nifti1Image, nb.load(path, **kwargs))


def as_image(img: nb.Nifti1Image | Path | str) -> nb.Nifti1Image:
    """An image as given, or loaded (:func:`load_nifti`) from its path."""
    return load_nifti(img) if isinstance(img, (str, os.PathLike)) else img


def load_image(path: Path | str, what: str) -> nb.Nifti1Image:
    """Load a NIfTI image, with a clear error for a missing, empty or unreadable file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"the {what} file does not exist", str(path), "check the path")
    if path.stat().st_size == 0:
        raise InputError(
            f"the {what} file is empty (0 bytes)",
            str(path),
            "restore the real file (placeholders from a dataset skeleton cannot be processed)",
        )
    try:
        return load_nifti(str(path))
    except (OSError, ValueError, EOFError, zlib.error, ImageFileError, HeaderDataError) as exc:
        raise InputError(
            f"the {what} file cannot be read as NIfTI ({type(exc).__name__}: {exc})",
            str(path),
            "re-copy or regenerate it",
        ) from None


def read_data(
    img: nb.Nifti1Image, path: Path | str | None, what: str, dtype: npt.DTypeLike = np.float32
) -> np.ndarray:
    """All voxels of an image, with a clear error for a truncated or corrupt file."""
    try:
        proxy = img.dataobj
        filename = img.get_filename()
        if len(img.shape) == 4 and filename and hasattr(proxy, "get_unscaled"):
            return _read_by_volumes(filename, img.shape, dtype)
        if hasattr(proxy, "get_unscaled") and hasattr(proxy, "slope") and hasattr(proxy, "inter"):
            # Scale in the output dtype: nibabel would scale an int16 run in float64 first (a 2 mm,
            # 240-volume run: 2 GB at once instead of 0.5 GB raw + 1 GB float32).
            raw = np.asanyarray(proxy.get_unscaled())
            out = raw.astype(dtype)
            del raw
            slope, inter = float(proxy.slope), float(proxy.inter)
            if slope != 1.0:
                out *= slope
            if inter != 0.0:
                out += inter
            return out
        return np.asarray(proxy, dtype=dtype)
    except Exception as exc:  # noqa: BLE001  # truncated gzip, corrupt header: EOFError, zlib.error, OSError...
        raise InputError(
            f"the {what} file is truncated or corrupt ({type(exc).__name__}: {exc})",
            str(path),
            "the file may be truncated: re-copy or regenerate it",
        ) from None


def check_complete(path: Path | str, what: str) -> nb.Nifti1Image:
    """Load an image's header and check that the whole file is there (a ``.gz`` is decompressed as a
    stream, checking its CRC, without holding the data); a clear error for a truncated file.
    """
    img = load_image(path, what)
    header = img.header
    needed = int(header.get_data_offset()) + int(
        np.prod(img.shape, dtype=np.int64) * header.get_data_dtype().itemsize
    )
    size = 0
    try:
        with gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb") as fh:
            while chunk := fh.read(1 << 22):
                size += len(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(
            f"the {what} file is truncated or corrupt ({type(exc).__name__}: {exc})",
            str(path),
            "the file may be truncated: re-copy or regenerate it",
        ) from None
    if size < needed:
        raise InputError(
            f"the {what} file is truncated ({size} of {needed} bytes)",
            str(path),
            "the file may be truncated: re-copy or regenerate it",
        )
    return img


#: Volumes of a 4D run read (and scaled) at a time by :func:`read_data`.
READ_VOLUMES = 8


def _read_by_volumes(path: str, shape: tuple[int, ...], dtype: npt.DTypeLike) -> np.ndarray:
    """A 4D image read a few volumes at a time into one array of ``dtype``.

    The volumes are contiguous on disk, so one open (gzip) stream reads them in order; only a few volumes
    are ever held in the file's type or in nibabel's float64 scaling (an int16 2 mm, 240-volume run:
    1.04 GB of float32 and about 70 MB besides, instead of 0.5 GB of int16 next to it).
    """
    proxy = load_nifti(path, keep_file_open=True).dataobj
    out = np.empty(shape, dtype)
    for start in range(0, shape[3], READ_VOLUMES):
        # cast in the file's order first, then copy into place: a casting copy between two orders is
        # slower than the two (a 4 mm run: 0.40 s of CPU instead of 0.47 s); the values are the same
        block = proxy[..., start : start + READ_VOLUMES].astype(dtype, order="F")
        out[..., start : start + READ_VOLUMES] = block
    return out


def resample_binary(img: nb.Nifti1Image, target_img: nb.Nifti1Image) -> np.ndarray:
    """A binary mask on ``target_img``'s grid: voxels at least half covered by the mask.

    Linear interpolation of the 0/1 image, box-averaged first over one target voxel when the target is
    coarser (:func:`box_average`), gives the covered fraction of each target voxel; thresholding it at
    0.5 keeps thin cortical ribbons when the target grid is coarser.
    """
    data, affine = _crop_to_mask(np.asarray(img.dataobj) > 0, img.affine, target_img.affine)
    src = nb.Nifti1Image(box_average(data, affine, target_img.affine), affine)
    target = nb.Nifti1Image(np.zeros(target_img.shape[:3], np.uint8), target_img.affine)
    from nilearn.image import resample_to_img

    with warnings.catch_warnings():  # linear interpolation of a 0/1 image is the point here
        warnings.filterwarnings("ignore", message="Resampling binary images")
        out = resample_to_img(src, target, interpolation="linear", force_resample=True, copy_header=True)
    return np.asarray(out.dataobj) >= 0.5


def _crop_to_mask(
    mask: npt.NDArray[np.bool_], affine: np.ndarray, dst_affine: np.ndarray
) -> tuple[npt.NDArray[np.bool_], np.ndarray]:
    """``mask`` cut to its bounding box plus a margin of zeros, with the affine of the cut.

    The margin (two target voxels, in source voxels) is wider than :func:`box_average`'s box and the
    interpolation's support, so :func:`resample_binary` gives the same mask as on the whole image,
    without box-averaging a 1 mm atlas-sized volume of zeros for a region of a few thousand voxels.
    """
    if not mask.any():
        return mask, affine
    target_voxel = float(np.max(nb.affines.voxel_sizes(dst_affine)[:3]))
    margin = int(np.ceil(2 * target_voxel / float(np.min(nb.affines.voxel_sizes(affine)[:3])))) + 2
    where = np.nonzero(mask)
    lo = [max(int(idx.min()) - margin, 0) for idx in where]
    hi = [min(int(idx.max()) + margin + 1, n) for idx, n in zip(where, mask.shape, strict=True)]
    cut = mask[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))]
    shifted = np.array(affine, dtype=float)
    shifted[:3, 3] = nb.affines.apply_affine(affine, lo)
    return cut, shifted


def box_average(mask: npt.NDArray[np.bool_], src_affine: np.ndarray, dst_affine: np.ndarray) -> np.ndarray:
    """``mask`` as float32, averaged over a centred box one target voxel wide along each axis it is coarser.

    The box has the target voxel's width ``w`` (in source voxels, per source axis, from the smallest
    target voxel size): odd ``w`` is a plain box; even ``w`` a box of ``w + 1`` taps with half-weight
    ends, so that neither shifts the mask by half a voxel (``ndimage.uniform_filter`` with an even size
    would).
    """
    data = mask.astype(np.float32)
    src_zooms = nb.affines.voxel_sizes(src_affine)[:3]
    dst_zoom = float(np.min(nb.affines.voxel_sizes(dst_affine)[:3]))
    for axis, zoom in enumerate(src_zooms):
        ratio = dst_zoom / float(zoom)
        if ratio <= 1.5:
            continue
        width = round(ratio)
        weights = np.ones(width + (1 - width % 2), dtype=np.float32)
        if width % 2 == 0:
            weights[[0, -1]] = 0.5
        data = ndimage.correlate1d(data, weights / width, axis=axis, mode="constant", cval=0.0)
    return data
