"""A T1w-space lesion mask brought onto a template grid through an fMRIPrep-like ITK composite transform.

The truth is computed without nitransforms: the transform's point mapping (template point -> T1w
point, ``x -> A(x + d(x))``) is evaluated analytically at the reference voxel centres.
"""

import h5py
import nibabel as nb
import numpy as np
import pytest
from nitransforms.io.itk import ITKCompositeH5
from nitransforms.manip import load

from strokefc_sim.itk import write_itk_affine_h5, write_itk_composite_h5
from workflows.lesion_warp import warp_mask_to_template
from workflows.utils.errors import InputError
from workflows.utils.images import box_average, resample_binary

#: T1w grid: 40^3 voxels of 1 mm, LAS (x decreasing with i, as many T1w images), centred near 0.
T1W_AFFINE = np.array([[-1.0, 0, 0, 20], [0, 1.0, 0, -20], [0, 0, 1.0, -19], [0, 0, 0, 1]])
T1W_SHAPE = (40, 40, 40)
#: Template (BOLD) grid: 18^3 voxels of 3 mm, RAS.
REF_AFFINE = np.array([[3.0, 0, 0, -27], [0, 3.0, 0, -27], [0, 0, 3.0, -27], [0, 0, 0, 1]])
REF_SHAPE = (18, 18, 18)
REF_VOXEL = 3.0
#: The lesion: a sphere in T1w world coordinates (mm).
CENTRE_T1W = np.array([4.0, -3.0, 5.0])
RADIUS = 8.0


def _rotation(axis: int, degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    i, j = [(1, 2), (0, 2), (0, 1)][axis]
    m = np.eye(4)
    m[i, i] = m[j, j] = np.cos(t)
    m[i, j], m[j, i] = -np.sin(t), np.sin(t)
    return m


#: Template point -> T1w point (the point mapping of a from-T1w_to-<space> file): rotation of 6 degrees
#: about z and 4 about x, and a translation of 7.1 mm.
A = _rotation(2, 6.0) @ _rotation(0, 4.0)
A[:3, 3] = [5.0, -4.0, 3.0]

#: A smooth displacement field on a template-space grid (2 mm, non-cubic so that an axis-order mistake
#: shows), a Gaussian bump of (4, -3, 2) mm near the lesion.
FIELD_AFFINE = np.array([[2.0, 0, 0, -35], [0, 2.0, 0, -37], [0, 0, 2.0, -33], [0, 0, 0, 1]])
FIELD_SHAPE = (36, 38, 34)
BUMP_CENTRE = np.array([-1.0, 1.0, 1.0])
BUMP = np.array([4.0, -3.0, 2.0])
BUMP_SIGMA = 12.0


def _world(affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """World coordinates (mm) of every voxel centre, shape (*shape, 3)."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def _apply(matrix: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    return xyz @ matrix[:3, :3].T + matrix[:3, 3]


def _bump(xyz: np.ndarray) -> np.ndarray:
    """The analytic displacement field d(x) (RAS+ mm)."""
    g = np.exp(-np.sum((xyz - BUMP_CENTRE) ** 2, axis=-1) / (2 * BUMP_SIGMA**2))
    return g[..., None] * BUMP


def _field_img() -> nb.Nifti1Image:
    return nb.Nifti1Image(_bump(_world(FIELD_AFFINE, FIELD_SHAPE)).astype(np.float32), FIELD_AFFINE)


def _lesion_img(centre=CENTRE_T1W, radius=RADIUS) -> nb.Nifti1Image:
    inside = np.linalg.norm(_world(T1W_AFFINE, T1W_SHAPE) - centre, axis=-1) <= radius
    return nb.Nifti1Image(inside.astype(np.uint8), T1W_AFFINE)


def _reference_img(nvols: int = 0) -> nb.Nifti1Image:
    shape = (*REF_SHAPE, nvols) if nvols else REF_SHAPE
    return nb.Nifti1Image(np.zeros(shape, np.float32), REF_AFFINE)


def _centre_of_mass(mask: np.ndarray, affine: np.ndarray) -> np.ndarray:
    return _apply(affine, np.argwhere(mask).astype(float)).mean(axis=0)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_affine_warp_matches_the_analytic_truth(tmp_path):
    xfm = write_itk_affine_h5(tmp_path / "sub-01_from-T1w_to-MNI152NLin2009cAsym_mode-image_xfm.h5", A)
    out = warp_mask_to_template(_lesion_img(), xfm, _reference_img())

    assert out.shape == REF_SHAPE
    assert np.allclose(out.affine, REF_AFFINE)
    assert out.get_data_dtype() == np.uint8
    data = np.asanyarray(out.dataobj)
    assert set(np.unique(data)) == {0, 1}
    # truth: the T1w centre mapped into the template (A maps template -> T1w points), a sphere drawn there
    centre = _apply(np.linalg.inv(A), CENTRE_T1W)
    truth = np.linalg.norm(_world(REF_AFFINE, REF_SHAPE) - centre, axis=-1) <= RADIUS
    assert np.linalg.norm(_centre_of_mass(data > 0, REF_AFFINE) - centre) < REF_VOXEL
    assert _dice(data > 0, truth) > 0.7
    # the volume is kept (threshold 0.5 of a partial-volume fraction)
    sphere_ml = 4 / 3 * np.pi * RADIUS**3 / 1000
    assert data.sum() * REF_VOXEL**3 / 1000 == pytest.approx(sphere_ml, rel=0.25)


def test_the_inverse_transform_puts_the_lesion_elsewhere(tmp_path):
    """The direction is checked: the inverse of the file's mapping gives a clearly different place."""
    centre = _apply(np.linalg.inv(A), CENTRE_T1W)
    wrong_centre = _apply(A, CENTRE_T1W)  # where the inverse mapping would put it
    assert np.linalg.norm(wrong_centre - centre) > 3 * REF_VOXEL

    inverse = write_itk_affine_h5(tmp_path / "inverse_xfm.h5", np.linalg.inv(A))
    data = np.asanyarray(warp_mask_to_template(_lesion_img(), inverse, _reference_img()).dataobj) > 0
    com = _centre_of_mass(data, REF_AFFINE)
    assert np.linalg.norm(com - centre) > 2 * REF_VOXEL
    assert np.linalg.norm(com - wrong_centre) < REF_VOXEL


def test_composite_warp_with_a_displacement_field_matches_the_analytic_truth(tmp_path):
    xfm = write_itk_composite_h5(tmp_path / "composite_xfm.h5", A, _field_img())
    out = warp_mask_to_template(_lesion_img(), xfm, _reference_img())
    data = np.asanyarray(out.dataobj) > 0

    # truth: template point x is in the lesion when A(x + d(x)) is in the T1w sphere
    xyz = _world(REF_AFFINE, REF_SHAPE)
    truth = np.linalg.norm(_apply(A, xyz + _bump(xyz)) - CENTRE_T1W, axis=-1) <= RADIUS
    # the centre: solve x + d(x) = A^-1(c) by fixed-point iteration (|grad d| < 1)
    target = _apply(np.linalg.inv(A), CENTRE_T1W)
    centre = target.copy()
    for _ in range(100):
        centre = target - _bump(centre)
    assert np.allclose(centre + _bump(centre), target, atol=1e-6)
    # the field matters here: ignoring it would move the lesion by more than a voxel
    assert np.linalg.norm(centre - target) > REF_VOXEL

    assert np.linalg.norm(_centre_of_mass(data, REF_AFFINE) - centre) < REF_VOXEL
    assert _dice(data, truth) > 0.7
    # and the field was applied with its sign and axes: closer to the truth than the affine-only result
    affine_only = np.linalg.norm(xyz - target, axis=-1) <= RADIUS
    assert _dice(data, truth) > _dice(data, affine_only) + 0.1


def test_written_composite_reads_back_in_fmriprep_layout(tmp_path):
    path = write_itk_composite_h5(tmp_path / "xfm.h5", A, _field_img())
    with h5py.File(path, "r") as f:
        group = f["TransformGroup"]
        assert sorted(group) == ["0", "1", "2"]
        kinds = [group[k]["TransformType"][0] for k in ("0", "1", "2")]
        assert kinds == [
            b"CompositeTransform_double_3_3",
            b"AffineTransform_double_3_3",
            b"DisplacementFieldTransform_float_3_3",
        ]
        for k in ("1", "2"):
            assert {"TransformFixedParameters", "TransformParameters"} <= set(group[k])
        assert group["2"]["TransformParameters"].shape == (3 * int(np.prod(FIELD_SHAPE)),)

    affine, field = ITKCompositeH5.from_filename(path)
    assert np.allclose(affine.to_ras(), A)
    assert np.allclose(field.affine, FIELD_AFFINE)
    assert np.allclose(field.get_fdata(), _field_img().get_fdata(), atol=1e-6)

    # nitransforms' chain maps a template point x to A(x + d(x)) (on a field node: no interpolation)
    chain = load(str(path), fmt="ITK")
    points = _apply(FIELD_AFFINE, np.array([[10.0, 12, 9], [20, 5, 17], [3, 30, 25]]))
    assert np.allclose(chain.map(points), _apply(A, points + _bump(points)), atol=1e-4)


@pytest.mark.filterwarnings("ignore:Reference space not set")  # nitransforms, for an Affine without grid
def test_affine_only_file_reads_back(tmp_path):
    path = write_itk_affine_h5(tmp_path / "xfm.h5", A)
    (affine,) = ITKCompositeH5.from_filename(path)
    assert np.allclose(affine.to_ras(), A)
    points = np.array([[0.0, 0, 0], [10, -20, 30]])
    assert np.allclose(load(str(path), fmt="ITK").map(points), _apply(A, points))


def test_itk_reads_the_written_files_with_the_same_point_mapping(tmp_path):
    """ITK itself (SimpleITK, when installed) agrees with nitransforms and the analytic mapping."""
    sitk = pytest.importorskip("SimpleITK")
    path = write_itk_composite_h5(tmp_path / "xfm.h5", A, _field_img())
    transform = sitk.ReadTransform(str(path))
    lps = np.array([-1.0, -1.0, 1.0])
    points = np.array([[0.0, 0, 0], [5, -7, 9], [-12, 3, -4]])
    mapped = np.array([np.array(transform.TransformPoint(tuple(p * lps))) * lps for p in points])
    # ITK interpolates the field linearly, nitransforms with cubic splines: agree to ~0.05 mm
    assert np.allclose(mapped, _apply(A, points + _bump(points)), atol=0.05)


def test_a_4d_reference_and_a_single_volume_4d_mask_give_a_3d_mask(tmp_path):
    xfm = write_itk_affine_h5(tmp_path / "xfm.h5", A)
    lesion = _lesion_img()
    mask4d = nb.Nifti1Image(np.asanyarray(lesion.dataobj)[..., None], lesion.affine)
    out = warp_mask_to_template(mask4d, xfm, _reference_img(nvols=5))
    assert out.shape == REF_SHAPE
    expected = warp_mask_to_template(lesion, xfm, _reference_img())
    assert np.array_equal(np.asanyarray(out.dataobj), np.asanyarray(expected.dataobj))


def test_paths_are_accepted_and_named_in_errors(tmp_path):
    xfm = write_itk_affine_h5(tmp_path / "xfm.h5", A)
    mask_file = tmp_path / "sub-01_label-lesion_roi.nii.gz"
    ref_file = tmp_path / "ref.nii.gz"
    _lesion_img().to_filename(mask_file)
    _reference_img().to_filename(ref_file)
    out = warp_mask_to_template(mask_file, str(xfm), ref_file)
    assert int(np.asanyarray(out.dataobj).sum()) > 0

    nb.Nifti1Image(np.zeros(T1W_SHAPE, np.uint8), T1W_AFFINE).to_filename(mask_file)
    with pytest.raises(InputError) as err:
        warp_mask_to_template(mask_file, xfm, ref_file)
    assert err.value.where == str(mask_file)


def test_box_average_keeps_the_centre_and_the_volume():
    """The partial-volume box of an even width (4 mm over 1 mm) does not shift the mask by half a voxel."""
    mask = np.zeros((21, 21, 21), bool)
    mask[8:11, 9:12, 10] = True
    out = box_average(mask, np.eye(4), np.diag([4.0, 4.0, 4.0, 1.0]))
    assert out.sum() == pytest.approx(mask.sum(), rel=1e-5)
    grid = np.indices(mask.shape).reshape(3, -1)
    com_in = (grid * mask.ravel()).sum(axis=1) / mask.sum()
    com_out = (grid * out.ravel()).sum(axis=1) / out.sum()
    assert np.allclose(com_in, com_out, atol=1e-5)
    assert out.max() < 1.0  # it was smoothed: a 3x3x1 lesion covers under a quarter of a 4 mm voxel
    # a target grid as fine as the source is not smoothed
    assert np.array_equal(box_average(mask, np.eye(4), np.eye(4)), mask.astype(np.float32))


# --- errors --------------------------------------------------------------------------------------------


def test_empty_mask_is_an_input_error(tmp_path):
    xfm = write_itk_affine_h5(tmp_path / "xfm.h5", A)
    empty = nb.Nifti1Image(np.zeros(T1W_SHAPE, np.uint8), T1W_AFFINE)
    with pytest.raises(InputError, match="empty") as err:
        warp_mask_to_template(empty, xfm, _reference_img(), where="sub-01 lesion mask")
    assert err.value.where == "sub-01 lesion mask"
    assert err.value.fix


def test_a_mask_that_is_not_3d_is_an_input_error(tmp_path):
    xfm = write_itk_affine_h5(tmp_path / "xfm.h5", A)
    data = np.stack([np.asanyarray(_lesion_img().dataobj)] * 2, axis=-1)
    with pytest.raises(InputError, match=r"4D .*3D mask is expected") as err:
        warp_mask_to_template(nb.Nifti1Image(data, T1W_AFFINE), xfm, _reference_img())
    assert "3D binary mask" in err.value.fix


def test_a_transform_of_another_subject_leaves_nothing_on_the_grid(tmp_path):
    far = A.copy()
    far[:3, 3] += [150.0, 0.0, 0.0]  # the lesion lands 150 mm away, outside the 54 mm reference grid
    xfm = write_itk_affine_h5(tmp_path / "sub-02_from-T1w_to-MNI152NLin2009cAsym_mode-image_xfm.h5", far)
    with pytest.raises(InputError, match="no part of the lesion mask lands on the reference grid") as err:
        warp_mask_to_template(_lesion_img(), xfm, _reference_img())
    assert "sub-02_from-T1w_to-MNI152NLin2009cAsym_mode-image_xfm.h5" in err.value.where
    assert "of the mask's own subject" in err.value.fix


def test_a_lesion_smaller_than_the_threshold_is_reported_as_such(tmp_path):
    xfm = write_itk_affine_h5(tmp_path / "xfm.h5", A)
    tiny = _lesion_img(radius=1.0)  # 7 mm^3 against 27 mm^3 voxels
    with pytest.raises(InputError, match="too small to keep at this resolution") as err:
        warp_mask_to_template(tiny, xfm, _reference_img())
    assert "lower threshold" in err.value.fix
    assert int(
        np.asanyarray(warp_mask_to_template(tiny, xfm, _reference_img(), threshold=0.05).dataobj).sum()
    )


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("xfm.h5", b"this is not HDF5", "cannot be read as an ITK composite transform"),
        ("xfm.h5", None, "cannot be read as an ITK composite transform"),  # HDF5 without TransformGroup
        ("missing_xfm.h5", "absent", "does not exist"),
        ("xfm.txt", b"#Insight Transform File V1.0", "not an ITK composite HDF5 file"),
        ("sub-01_from-MNI152NLin2009cAsym_to-T1w_mode-image_xfm.h5", "valid", "the inverse"),
    ],
)
def test_an_unusable_transform_file_is_an_input_error(tmp_path, name, content, message):
    path = tmp_path / name
    if content == "valid":
        write_itk_affine_h5(path, A)
    elif content is None:
        with h5py.File(path, "w") as f:
            f.create_dataset("Something", data=np.zeros(3))
    elif content != "absent":
        path.write_bytes(content)
    with pytest.raises(InputError, match=message) as err:
        warp_mask_to_template(_lesion_img(), path, _reference_img())
    assert err.value.where == str(path)
    assert "from-T1w_to-<space>" in err.value.fix


@pytest.mark.parametrize("threshold", [0.0, 1.5, -0.1])
def test_a_threshold_outside_0_1_is_an_input_error(tmp_path, threshold):
    xfm = write_itk_affine_h5(tmp_path / "xfm.h5", A)
    with pytest.raises(InputError, match=r"not a fraction in \(0, 1\]") as err:
        warp_mask_to_template(_lesion_img(), xfm, _reference_img(), threshold=threshold)
    assert err.value.where == "threshold"


@pytest.mark.parametrize(
    "target_affine",
    [
        np.diag([3.0, 3.0, 3.0, 1.0]),
        np.array([[3.1, 0.2, 0, -2.3], [0, 2.9, 0.1, 1.2], [0, 0, 4.3, 0.7], [0, 0, 0, 1]]),
    ],
)
def test_resample_binary_on_the_cropped_mask_equals_the_whole_image(monkeypatch, target_affine):
    """resample_binary cuts the mask to its bounding box first: the same mask as without the cut,
    for blobs inside the image and touching its edges, on an aligned and an oblique target grid."""
    import workflows.utils.images as images

    rng = np.random.default_rng(0)
    grid = np.indices((60, 70, 50)).transpose(1, 2, 3, 0)
    target = nb.Nifti1Image(np.zeros((22, 26, 17), np.uint8), target_affine)
    src_affine = np.array([[1.0, 0, 0, -1.5], [0, 1, 0, 0.5], [0, 0, 1, 0], [0, 0, 0, 1]])
    for centre in ([30, 35, 25], [2, 3, 48], [58, 1, 2]):
        radius = rng.uniform(3, 9)
        mask = nb.Nifti1Image((np.linalg.norm(grid - centre, axis=-1) <= radius).astype(np.uint8), src_affine)
        cut = resample_binary(mask, target)
        monkeypatch.setattr(images, "_crop_to_mask", lambda m, a, d: (m, a))  # the cut undone
        whole = resample_binary(mask, target)
        monkeypatch.undo()
        assert whole.any()
        assert np.array_equal(cut, whole)
