"""ITK composite HDF5 transforms written as ANTs and fMRIPrep write them (``*_mode-image_xfm.h5``).

The simulator and the tests use these writers so that generated datasets carry transforms like
fMRIPrep's, which :func:`workflows.lesion_warp.warp_mask_to_template` reads.
"""

from __future__ import annotations

import platform
from pathlib import Path

import h5py
import nibabel as nb
import numpy as np
import numpy.typing as npt

#: RAS+ (NIfTI, nitransforms) <-> LPS+ (ITK) flip of the x and y axes (its own inverse).
_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def write_itk_affine_h5(path: Path | str, matrix: npt.ArrayLike) -> Path:
    """Write an ITK composite HDF5 file holding one affine, as ANTs writes it (``<...>Composite.h5``).

    Parameters
    ----------
    path
        The ``.h5`` file to write (overwritten).
    matrix
        4x4 RAS+ *point* mapping in mm, nitransforms' convention: reference (fixed, e.g. template)
        point -> moving (e.g. T1w) point. It is what ``nitransforms.manip.load(path, fmt="ITK")``
        gives back (``.asaffine()``). For a file named ``from-T1w_to-<space>`` this maps template
        points to T1w points.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    with h5py.File(path, "w") as f:
        group = _composite_group(f)
        _write_affine(group.create_group("1"), matrix)
    return path


def write_itk_composite_h5(
    path: Path | str, affine_matrix: npt.ArrayLike, displacement_field_img: nb.Nifti1Image
) -> Path:
    """Write an ITK composite HDF5 file holding an affine and a displacement field, as ANTs/fMRIPrep do.

    The layout is that of ``antsRegistration --write-composite-transform`` (fMRIPrep's
    ``from-T1w_to-<space>_mode-image_xfm.h5``): ``TransformGroup/0`` ``CompositeTransform_double_3_3``,
    ``TransformGroup/1`` ``AffineTransform_double_3_3`` and ``TransformGroup/2``
    ``DisplacementFieldTransform_float_3_3``, each with ``TransformFixedParameters`` and
    ``TransformParameters`` (LPS+ coordinates, the field's vectors first in Fortran order).

    The point mapping is ITK's for a composite (the transform added last is applied first): a
    reference point ``x`` goes to ``A(x + d(x))``, with ``d`` the displacement field interpolated at
    ``x`` and ``A`` the affine.

    Parameters
    ----------
    path
        The ``.h5`` file to write (overwritten).
    affine_matrix
        4x4 RAS+ point mapping in mm (as in :func:`write_itk_affine_h5`), applied after the field.
    displacement_field_img
        Displacements in mm, RAS+ components, shape (X, Y, Z, 3) (or ITK's (X, Y, Z, 1, 3)), on a grid
        in the reference (template) space: the field's domain.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    field = np.asarray(displacement_field_img.dataobj, dtype=np.float64)
    if field.ndim == 5 and field.shape[3] == 1:
        field = field[:, :, :, 0, :]
    if field.ndim != 4 or field.shape[3] != 3:
        raise ValueError(f"a displacement field of shape (X, Y, Z, 3) is expected, not {field.shape}")
    lps_affine = _LPS @ np.asarray(displacement_field_img.affine, dtype=np.float64)
    spacing = np.linalg.norm(lps_affine[:3, :3], axis=0)
    direction = lps_affine[:3, :3] / spacing
    fixed = np.concatenate(
        [np.asarray(field.shape[:3], float), lps_affine[:3, 3], spacing, direction.ravel()]
    )
    vectors = field * np.array([-1.0, -1.0, 1.0])  # RAS+ -> LPS+ components
    with h5py.File(path, "w") as f:
        group = _composite_group(f)
        _write_affine(group.create_group("1"), affine_matrix)
        warp = group.create_group("2")
        _write_string(warp, "TransformType", "DisplacementFieldTransform_float_3_3")
        warp.create_dataset("TransformFixedParameters", data=fixed)
        # ITK's layout: the 3 components of a voxel together, then x fastest (Fortran order)
        warp.create_dataset("TransformParameters", data=np.moveaxis(vectors, -1, 0).ravel(order="F"))
    return path


def _composite_group(f: h5py.File) -> h5py.Group:
    """The file-level datasets and ``TransformGroup/0`` (the composite) of an ITK HDF5 transform file."""
    _write_string(f, "HDFVersion", f"HDF5 library version: {h5py.version.hdf5_version}")
    _write_string(f, "OSName", platform.system())
    _write_string(f, "OSVersion", platform.release())
    group = f.create_group("TransformGroup")
    _write_string(group.create_group("0"), "TransformType", "CompositeTransform_double_3_3")
    return group


def _write_affine(group: h5py.Group, matrix: npt.ArrayLike) -> None:
    """An ``AffineTransform_double_3_3`` from a RAS+ point mapping (ITK: LPS+, centre of rotation 0)."""
    ras = np.asarray(matrix, dtype=np.float64)
    if ras.shape != (4, 4) or not np.allclose(ras[3], [0, 0, 0, 1]):
        raise ValueError(f"a 4x4 affine matrix with last row (0, 0, 0, 1) is expected, not {ras.tolist()}")
    lps = _LPS @ ras @ _LPS
    _write_string(group, "TransformType", "AffineTransform_double_3_3")
    group.create_dataset("TransformFixedParameters", data=np.zeros(3))
    group.create_dataset("TransformParameters", data=np.concatenate([lps[:3, :3].ravel(), lps[:3, 3]]))


def _write_string(group: h5py.Group, name: str, value: str) -> None:
    """A one-element variable-length ASCII string dataset, as ITK writes its strings."""
    group.create_dataset(name, data=np.array([value.encode()], dtype=h5py.string_dtype("ascii")))
