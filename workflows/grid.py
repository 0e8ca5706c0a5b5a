"""The analysis grid of every model: lesion-aligned maps on one cropped, resampled grid (group, prediction).

The grid is defined once from the training cohort (group brain mask -> bounding box -> resolution) and
stored in the model card as plain JSON (:func:`grid_to_dict`), so that :func:`apply_grid` puts a new
subject's map on exactly the same voxels as the training maps.
"""

from __future__ import annotations

import base64
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path

import nibabel as nb
import numpy as np
import numpy.typing as npt

from workflows.lesion import LESION_DILATION, exclusion_with_mirror, mirror_lr
from workflows.utils.errors import InputError
from workflows.utils.images import as_image


def align_image(img: nb.Nifti1Image, lesion_side: str, align: bool) -> nb.Nifti1Image:
    """Mirror a right-lesion map left-right (about world x = 0) so the lesion is always on the left.

    With alignment on, the left hemisphere (world x < 0) of every aligned map is ipsilesional.
    """
    if lesion_side not in ("L", "R"):
        raise InputError(
            f"lesion side {lesion_side!r} is not L or R",
            "the map's LesionHemisphere",
            "re-run the participant level with a valid lesion side",
        )
    return mirror_lr(img) if align and lesion_side == "R" else img


def _finite(data: npt.ArrayLike) -> np.ndarray:
    return np.nan_to_num(np.asarray(data, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)


def group_mask(imgs: Sequence[nb.Nifti1Image], min_fraction: float = 0.9) -> np.ndarray:
    """Voxels that are finite and non-zero in at least ``min_fraction`` of the (aligned) 3D maps.

    All maps must share one grid (the participant level guarantees it; checked here anyway).
    """
    shape, count = None, None
    for img in imgs:
        data = np.asanyarray(img.dataobj)
        if shape is None:
            shape, count = data.shape[:3], np.zeros(data.shape[:3], dtype=np.int32)
        elif data.shape[:3] != shape:
            raise InputError(
                f"maps have different grids ({shape} vs {data.shape[:3]})",
                getattr(img, "get_filename", lambda: None)() or "group maps",
                "re-run the participant level with the same resolution for everyone",
            )
        data = data if data.ndim == 3 else data[..., 0]
        count += (np.isfinite(data) & (data != 0)).astype(np.int32)
    if count is None:
        raise InputError("no maps to build a group mask from", None, "process some participants first")
    n = len(imgs)
    mask = count >= max(1, int(np.ceil(min_fraction * n)))
    if not mask.any():
        raise InputError(
            "the group brain mask is empty (no voxel non-zero in the maps)",
            "group maps",
            "check the participant-level maps",
        )
    return mask


def template_mask(ref_img: nb.Nifti1Image) -> np.ndarray:
    """The MNI152 brain mask (nilearn's, offline) on ``ref_img``'s grid, made symmetric about x = 0.

    The group mask and the CNN grid come from it rather than from the subjects' maps, so that no test
    subject shapes them (and a map with missing coverage does not shrink everyone's grid).
    """
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.image import resample_to_img

    mask_img = resample_to_img(
        load_mni152_brain_mask(resolution=2),
        ref_img,
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    mask = np.asarray(mask_img.dataobj) > 0
    mask = mask if mask.ndim == 3 else mask[..., 0]
    mirrored = np.asarray(mirror_lr(nb.Nifti1Image(mask.astype(np.uint8), ref_img.affine)).dataobj) > 0
    mask |= mirrored
    if not mask.any():
        raise InputError(
            "the MNI152 brain mask does not overlap the maps' grid",
            "group maps",
            "check that the participant-level maps are in MNI space",
        )
    return mask


def check_same_grid(imgs: Sequence[nb.Nifti1Image]) -> None:
    """Every map must share the first one's grid (the participant level guarantees it)."""
    ref = imgs[0]
    for img in imgs[1:]:
        if img.shape[:3] != ref.shape[:3] or not np.allclose(img.affine, ref.affine, atol=1e-3):
            raise InputError(
                f"maps have different grids ({ref.shape[:3]} vs {img.shape[:3]})",
                img.get_filename() or "group maps",
                "re-run the participant level with the same resolution for everyone",
            )


def make_grid(ref_img: nb.Nifti1Image, mask: np.ndarray, resolution: float) -> dict:
    """The CNN grid: the mask's bounding box in world space at ``resolution`` mm, symmetric about x = 0.

    Symmetry in x keeps left-right mirroring on the CNN grid an exact voxel flip. Returns the dict
    stored in the model card (see :func:`grid_to_dict`).
    """
    if resolution <= 0:
        raise InputError(
            f"CNN resolution {resolution} mm is not positive",
            "GroupParams.cnn_resolution",
            "use 2, 3 or 4 (mm)",
            params=("GroupParams.cnn_resolution",),
        )
    ijk = np.argwhere(mask)
    corners = np.array(
        [
            [a, b, c]
            for a in (ijk[:, 0].min(), ijk[:, 0].max())
            for b in (ijk[:, 1].min(), ijk[:, 1].max())
            for c in (ijk[:, 2].min(), ijk[:, 2].max())
        ],
        dtype=float,
    )
    world = nb.affines.apply_affine(ref_img.affine, corners)
    lo, hi = world.min(0), world.max(0)
    res = float(resolution)
    half_x = res * np.ceil(max(abs(lo[0]), abs(hi[0])) / res)
    lo = np.array([-half_x, res * np.floor(lo[1] / res), res * np.floor(lo[2] / res)])
    hi = np.array([half_x, res * np.ceil(hi[1] / res), res * np.ceil(hi[2] / res)])
    shape = tuple(round((top - bottom) / res) + 1 for bottom, top in zip(lo, hi))
    affine = np.eye(4)
    affine[:3, :3] *= res
    affine[:3, 3] = lo
    mask_img = nb.Nifti1Image(mask.astype(np.float32), ref_img.affine)
    target_mask = _resample(mask_img, affine, shape, "nearest") > 0.5
    return grid_to_dict(
        affine,
        shape,
        target_mask,
        source_shape=ref_img.shape[:3],
        source_affine=ref_img.affine,
        resolution=res,
    )


def grid_to_dict(
    affine: npt.ArrayLike,
    shape: Sequence[int],
    mask: npt.ArrayLike,
    *,
    source_shape: Sequence[int],
    source_affine: npt.ArrayLike,
    resolution: float,
) -> dict:
    """JSON-able description of a grid; the mask is bit-packed, zlib-compressed and base64-encoded."""
    packed = np.packbits(np.asarray(mask, dtype=bool).ravel(order="C"))
    return {
        "affine": np.asarray(affine, dtype=float).round(6).tolist(),
        "shape": [int(s) for s in shape],
        "resolution_mm": float(resolution),
        "n_mask_voxels": int(np.asarray(mask).sum()),
        "mask_b64zlib": base64.b64encode(zlib.compress(packed.tobytes(), 9)).decode("ascii"),
        "source_shape": [int(s) for s in source_shape],
        "source_affine": np.asarray(source_affine, dtype=float).round(6).tolist(),
    }


def grid_mask(grid: dict) -> np.ndarray:
    """Decode the boolean mask of a grid dict."""
    shape = tuple(grid["shape"])
    bits = np.frombuffer(zlib.decompress(base64.b64decode(grid["mask_b64zlib"])), dtype=np.uint8)
    return np.unpackbits(bits)[: int(np.prod(shape))].astype(bool).reshape(shape)


def _resample(
    img: nb.Nifti1Image, affine: npt.ArrayLike, shape: Sequence[int], interpolation: str
) -> np.ndarray:
    from nilearn.image import resample_img

    with warnings.catch_warnings():  # a map that happens to hold 0/1 values is still continuous data
        warnings.filterwarnings("ignore", message="Resampling binary images")
        out = resample_img(
            img,
            target_affine=np.asarray(affine),
            target_shape=tuple(shape),
            interpolation=interpolation,
            force_resample=True,
            copy_header=True,
        )
    return np.asarray(out.dataobj, dtype=np.float32)


def apply_grid(
    img: nb.Nifti1Image | Path | str,
    grid: dict,
    lesion_side: str,
    align: bool,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Put one map (3D) or a series of window maps (4D) on the CNN grid, ready for the model.

    Steps: lesion alignment (mirror right-lesion maps), NaN -> 0, linear resampling to the grid
    (which crops to the brain's bounding box), masking with the group mask; voxels of ``exclude``
    (bool on the grid, see :func:`lesion_exclusion`) become NaN, which every model treats as missing.

    Returns
    -------
    ndarray, float32, shape (n_samples, X, Y, Z)
        ``n_samples`` is 1 for a 3D map and the number of volumes for a 4D file.
    """
    img = as_image(img)
    img = align_image(img, lesion_side, align)
    clean = nb.Nifti1Image(_finite(img.dataobj), img.affine)
    data = _resample(clean, grid["affine"], grid["shape"], "linear")
    data = data[..., None] if data.ndim == 3 else data
    data = np.moveaxis(data, -1, 0) * grid_mask(grid)[None]
    if exclude is not None:
        data[:, exclude] = np.nan
    return np.ascontiguousarray(data, dtype=np.float32)


def lesion_exclusion(
    lesion: nb.Nifti1Image | Path | str, grid: dict, lesion_side: str, align: bool
) -> np.ndarray:
    """The lesion and its left-right mirror on the CNN grid (bool): voxels no model may read.

    After alignment the lesioned territory and its homologue are excluded in every subject that has a
    mask, so a model cannot learn lesion topography (which tracks impairment) and call it dFC. The
    lesion is dilated as the participant level dilated it before leaving the maps, and any overlap with
    a grid voxel excludes it: a grid voxel that blends the zeros of the excluded zone with tissue would
    otherwise carry the lesion's size into the model.
    """
    from scipy.ndimage import binary_dilation

    img = as_image(lesion)
    dilated = binary_dilation(np.asanyarray(img.dataobj) > 0, iterations=LESION_DILATION)
    on_grid = (
        apply_grid(nb.Nifti1Image(dilated.astype(np.float32), img.affine), grid, lesion_side, align)[0] > 0
    )
    return exclusion_with_mirror(on_grid, np.asarray(grid["affine"]))


def grid_image(data: np.ndarray, grid: dict) -> nb.Nifti1Image:
    """A NIfTI image of a 3D array on the CNN grid (e.g. a class mean or a saliency map)."""
    img = nb.Nifti1Image(np.asarray(data, dtype=np.float32), np.asarray(grid["affine"]))
    img.header.set_xyzt_units("mm")
    return img


def subsample_windows(n_windows: int, max_windows: int) -> np.ndarray:
    """Indices of at most ``max_windows`` evenly spaced windows (neighbouring windows are near copies)."""
    if n_windows <= max_windows:
        return np.arange(n_windows)
    return np.unique(np.linspace(0, n_windows - 1, max_windows).round().astype(int))
