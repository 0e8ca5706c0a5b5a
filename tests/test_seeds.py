"""Seed construction and lesion side: atlas M1 per hemisphere, user masks, spheres, real lesion masks."""

import csv

import nibabel as nb
import numpy as np
import pytest

from bids_app.lesions import LesionFile, find_lesion_masks, masks_expected, resolve_lesion_side
from workflows.lesion import lesion_side_from_mask
from workflows.seeds import atlas_labels, atlas_region_mask, make_seed_mask, sphere_mask
from workflows.utils.errors import InputError

AFF4 = np.array([[4.0, 0, 0, -96], [0, 4, 0, -132], [0, 0, 4, -78], [0, 0, 0, 1]])


@pytest.fixture(scope="module")
def grid4():
    """The fMRIPrep-like 4 mm MNI152NLin2009cAsym grid and a whole-box brain mask."""
    ref = nb.Nifti1Image(np.ones((49, 58, 49), np.uint8), AFF4)
    return ref


def _centroid(img):
    ijk = np.argwhere(np.asarray(img.dataobj) > 0)
    return nb.affines.apply_affine(img.affine, ijk).mean(axis=0)


def test_atlas_labels_have_m1():
    labels = atlas_labels("HCPEx")
    assert labels["Primary_Motor_Cortex_L"] == 31
    assert labels["Primary_Motor_Cortex_R"] == 211
    assert atlas_labels("AAL")["Precentral_L"] == 1


@pytest.mark.parametrize(("side", "sign"), [("L", -1), ("R", 1)])
def test_atlas_seed_is_in_the_lesioned_hemisphere_precentral(grid4, side, sign):
    img, info = make_seed_mask(lesion_side=side, reference_img=grid4, brain_mask_img=grid4)
    x, y, z = _centroid(img)
    assert np.sign(x) == sign
    assert 15 < abs(x) < 45
    assert -35 < y < 0
    assert 40 < z < 70
    assert info["source"] == "atlas"
    assert info["labels"] == [f"Primary_Motor_Cortex_{side}"]
    assert info["n_voxels"] == int(np.asarray(img.dataobj).sum()) > 50


def test_seed_is_cut_by_the_brain_mask(grid4):
    half = np.ones(grid4.shape, np.uint8)
    half[:, :, 36:] = 0  # z >= 66 mm outside the "brain"
    full, _ = make_seed_mask(lesion_side="L", reference_img=grid4, brain_mask_img=grid4)
    cut, _ = make_seed_mask(lesion_side="L", reference_img=grid4, brain_mask_img=nb.Nifti1Image(half, AFF4))
    assert 0 < np.asarray(cut.dataobj).sum() < np.asarray(full.dataobj).sum()
    assert not np.asarray(cut.dataobj)[:, :, 36:].any()


def test_sphere_is_mirrored_for_right_lesions(grid4):
    img, info = make_seed_mask(
        lesion_side="R",
        reference_img=grid4,
        brain_mask_img=grid4,
        seed_coords=(-38, -22, 56),
        seed_radius_mm=10,
    )
    assert info["coords_mm"] == [38.0, -22.0, 56.0]
    assert np.allclose(_centroid(img), (38, -22, 56), atol=2.5)
    with pytest.raises(InputError, match="right hemisphere"):
        make_seed_mask(lesion_side="L", reference_img=grid4, brain_mask_img=grid4, seed_coords=(38, -22, 56))


def test_too_small_seed_is_an_error(grid4):
    with pytest.raises(InputError, match="at least 10"):
        make_seed_mask(
            lesion_side="L",
            reference_img=grid4,
            brain_mask_img=grid4,
            seed_coords=(-38, -22, 56),
            seed_radius_mm=4,
        )


def test_user_mask_mirrored_and_hemi_pair(tmp_path, grid4):
    left = sphere_mask((-30, -20, 50), 10, grid4).astype(np.uint8)
    path = tmp_path / "seed.nii.gz"
    nb.Nifti1Image(left, AFF4).to_filename(path)
    img, info = make_seed_mask(lesion_side="R", reference_img=grid4, brain_mask_img=grid4, seed_mask=path)
    assert info["mirrored"]
    assert _centroid(img)[0] > 20
    right = sphere_mask((40, 0, 40), 10, grid4).astype(np.uint8)
    nb.Nifti1Image(left, AFF4).to_filename(tmp_path / "seed_hemi-L_mask.nii.gz")
    nb.Nifti1Image(right, AFF4).to_filename(tmp_path / "seed_hemi-R_mask.nii.gz")
    img, info = make_seed_mask(
        lesion_side="R",
        reference_img=grid4,
        brain_mask_img=grid4,
        seed_mask=tmp_path / "seed_hemi-L_mask.nii.gz",
    )
    assert info["file"].endswith("hemi-R_mask.nii.gz")
    assert np.allclose(_centroid(img), (40, 0, 40), atol=2.5)
    nb.Nifti1Image(right, AFF4).to_filename(tmp_path / "right.nii.gz")
    with pytest.raises(InputError, match="left hemisphere"):
        make_seed_mask(
            lesion_side="L", reference_img=grid4, brain_mask_img=grid4, seed_mask=tmp_path / "right.nii.gz"
        )


def _soop(shared_data):
    with open(shared_data / "lesions" / "soop" / "soop_selected.tsv") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


def test_real_lesion_masks_give_their_side_and_strip_the_seed(shared_data, grid4):
    """SOOP masks (SPM MNI, 1 mm, another grid): side from volume, lesioned seed voxels removed."""
    for row in _soop(shared_data):
        img = nb.load(str(shared_data / "lesions" / "soop" / row["file"]))
        if row["group"] in ("M1_left", "M1_right"):
            side = "L" if row["group"] == "M1_left" else "R"
            assert lesion_side_from_mask(img, row["file"]) == side
            _, info = make_seed_mask(
                lesion_side=side, reference_img=grid4, brain_mask_img=grid4, lesion_mask_img=img
            )
            assert 0 < info["fraction_lesioned"] < 1
            assert info["n_voxels"] < info["n_voxels_before_lesion"]
        else:
            side = lesion_side_from_mask(img, row["file"])
            _, info = make_seed_mask(
                lesion_side=side, reference_img=grid4, brain_mask_img=grid4, lesion_mask_img=img
            )
            assert info["fraction_lesioned"] < 0.05


def test_resolve_lesion_side():
    assert resolve_lesion_side("L", None, "01") == ("L", "participants.tsv")
    assert resolve_lesion_side(None, "R", "01") == ("R", "lesion mask")
    assert resolve_lesion_side("R", "R", "01")[0] == "R"
    with pytest.raises(InputError, match=r"sub-01.*L side.*R side"):
        resolve_lesion_side("L", "R", "01")
    with pytest.raises(InputError, match="no lesion hemisphere"):
        resolve_lesion_side(None, None, "01")


def test_find_lesion_masks_in_every_form(tmp_path):
    space = "MNI152NLin2009cAsym"
    lesions, raw, fmriprep = tmp_path / "lesions", tmp_path / "raw", tmp_path / "fmriprep"

    def touch(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        return path

    def find(label, sessions=(None,), **kw):
        kw.setdefault("lesion_dir", lesions)
        return find_lesion_masks(label, sessions, space, bids_dir=raw, fmriprep_dir=fmriprep, **kw)

    target = touch(lesions / "sub-01" / "anat" / f"sub-01_space-{space}_label-lesion_roi.nii.gz")
    touch(lesions / f"sub-02_ses-1_space-{space}_desc-lesion_mask.nii.gz")
    touch(lesions / f"sub-02_ses-2_space-{space}_desc-lesion_mask.nii.gz")
    # fMRIStroke's output: desc-lesion_roi in a derivative tree
    stroke = touch(lesions / "sub-04" / "anat" / f"sub-04_space-{space}_res-2_desc-lesion_roi.nii.gz")
    custom = touch(lesions / f"sub-05_space-{space}_desc-manual_mask.nii.gz")
    touch(lesions / "sub-06_space-T1w_desc-lesion_mask.nii.gz")  # another space: not used
    assert find("01") == {None: LesionFile(target, None, space, "lesion-dir")}
    per_session = find("02", ["1", "2"])
    assert {k: v.path.name[:12] for k, v in per_session.items()} == {"1": "sub-02_ses-1", "2": "sub-02_ses-2"}
    assert find("03") == {}
    assert find("04")[None].path == stroke
    assert find("05") == {}
    assert find("05", lesion_desc="manual")[None].path == custom
    assert find("06") == {}
    touch(lesions / f"sub-01_space-{space}_desc-lesion_mask.nii.gz")
    with pytest.raises(InputError, match="2 lesion masks"):
        find("01")
    # raw-dataset masks are in T1w space and need fMRIPrep's transform
    raw_mask = touch(raw / "sub-07" / "ses-a" / "anat" / "sub-07_ses-a_label-lesion_roi.nii.gz")
    with pytest.raises(InputError, match="no T1w -> MNI152NLin2009cAsym transform"):
        find("07", ["a"], lesion_dir=None)
    xfm = touch(fmriprep / "sub-07" / "anat" / f"sub-07_from-T1w_to-{space}_mode-image_xfm.h5")
    found = find("07", ["a", "b"], lesion_dir=None)
    assert list(found) == ["a"]  # session b has no mask
    assert found["a"] == LesionFile(raw_mask, "a", "T1w", "raw", xfm)
    assert masks_expected(None, raw)
    assert not masks_expected(None, tmp_path / "empty")


def test_region_mask_for_reports(grid4):
    sma = atlas_region_mask("AAL", ["Supp_Motor_Area_L"], grid4)
    assert _centroid(sma)[0] < 0
    assert np.asarray(sma.dataobj).sum() > 10
    with pytest.raises(InputError, match="no region"):
        atlas_region_mask("AAL", ["Nowhere_L"], grid4)
