"""Lesions: masks on the BOLD grid, out of the maps, lesion-signal regressors, every mask form end to end."""

import csv
import json
import subprocess

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from helpers import run_cli, simulate

from bids_app.participant_level import validator_executable
from strokefc_sim.grid import brain_mask
from strokefc_sim.lesions import lesion_sphere
from workflows.denoise import denoise_run
from workflows.lesion import exclusion_with_mirror, hemisphere_fractions, lesion_on_grid
from workflows.params import DenoiseParams, LesionParams
from workflows.utils.errors import InputError

SPACE = "MNI152NLin2009cAsym"


@pytest.fixture(scope="module")
def brain4():
    return brain_mask(4)


def test_real_lesion_masks_go_on_the_bold_grid(shared_data, brain4):
    """SOOP masks (1 mm SPM MNI, another grid): volume, voxels on the 4 mm grid, dilated exclusion."""
    with open(shared_data / "lesions" / "soop" / "soop_selected.tsv") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    brain = np.asarray(brain4.dataobj) > 0
    for row in rows:
        img = nb.load(str(shared_data / "lesions" / "soop" / row["file"]))
        out = lesion_on_grid(img, brain4, where=row["file"])
        assert out.info["LesionVolume_ml"] == pytest.approx(int(row["vox"]) / 1000, rel=1e-6)
        # about one 4 mm voxel per 64 mm^3 of lesion (partial-volume threshold at one half)
        assert out.info["LesionVoxelsOnGrid"] == pytest.approx(int(row["vox"]) / 64, rel=0.35)
        assert not (out.lesion & brain & ~out.excluded).any()  # the lesion is excluded
        assert out.excluded.sum() > (out.lesion & brain).sum()  # and a one-voxel margin
        assert not (out.excluded & ~brain).any()


def test_lesion_mask_errors(brain4, tmp_path):
    affine = brain4.affine
    with pytest.raises(InputError, match="empty"):
        lesion_on_grid(nb.Nifti1Image(np.zeros((10, 10, 10), np.uint8), affine), brain4)
    far = affine.copy()
    far[:3, 3] += 1000.0  # another space: nothing on the run's field of view
    blob = np.zeros(brain4.shape, np.uint8)
    blob[20:24, 25:29, 25:29] = 1
    with pytest.raises(InputError, match="outside the field of view"):
        lesion_on_grid(nb.Nifti1Image(blob, far), brain4)
    corner = np.zeros(brain4.shape, np.uint8)
    corner[:3, :3, :3] = 1  # in the box but not in the brain
    with pytest.raises(InputError, match="outside the brain mask"):
        lesion_on_grid(nb.Nifti1Image(corner, affine), brain4)
    with pytest.raises(InputError, match="4D"):
        lesion_on_grid(nb.Nifti1Image(np.ones((4, 4, 4, 2), np.uint8), affine), brain4)


def test_probabilistic_masks_are_cut_at_the_threshold_and_binary_ones_unchanged(brain4):
    """A 0..1 mask keeps its voxels >= 0.5 (not every voxel > 0); a binary mask gives the same lesion at
    any threshold; both record the threshold and whether the mask was graded."""
    core = lesion_sphere("L", 8.0, brain4)
    near = lesion_sphere("L", 16.0, brain4) & ~core
    prob = np.where(core, 0.8, np.where(near, 0.2, 0.0)).astype(np.float32)
    graded = lesion_on_grid(nb.Nifti1Image(prob, brain4.affine), brain4)
    binary = lesion_on_grid(nb.Nifti1Image(core.astype(np.uint8), brain4.affine), brain4)
    assert (graded.lesion == binary.lesion).all()
    assert graded.info["LesionThreshold"] == 0.5
    assert graded.info["LesionMaskValues"] == "graded"
    assert binary.info["LesionMaskValues"] == "binary"
    assert graded.info["LesionVolume_ml"] == binary.info["LesionVolume_ml"]
    wide = lesion_on_grid(nb.Nifti1Image(prob, brain4.affine), brain4, threshold=0.1)
    assert wide.lesion.sum() > 2 * binary.lesion.sum()
    for threshold in (0.01, 1.0):
        at = lesion_on_grid(
            nb.Nifti1Image(core.astype(np.uint8) * 255, brain4.affine), brain4, threshold=threshold
        )
        assert (at.lesion == binary.lesion).all()
    assert hemisphere_fractions(nb.Nifti1Image(prob, brain4.affine))["L"] == 1.0
    with pytest.raises(InputError, match=r"no voxel >= 0\.9"):
        lesion_on_grid(nb.Nifti1Image(prob, brain4.affine), brain4, threshold=0.9)
    with pytest.raises(InputError, match=r"LesionParams\.threshold"):
        LesionParams(threshold=0.0)


def test_exclusion_and_its_mirror(brain4):
    lesion = lesion_sphere("L", 9.0, brain4)
    both = exclusion_with_mirror(lesion, brain4.affine)
    assert both.sum() == 2 * lesion.sum()  # the 4 mm grid is symmetric about x = 0
    assert np.array_equal(both, both[::-1])


def _bold_files(bids, label="01"):
    func = bids / "derivatives" / "fmriprep" / f"sub-{label}" / "func"
    bold = next(func.glob("*desc-preproc_bold.nii.gz"))
    return bold, next(func.glob("*desc-brain_mask.nii.gz"))


def test_lesion_regressors_remove_a_cavity_artefact_that_simple_leaves(tmp_path, brain4):
    bids = simulate(tmp_path, n_subjects=1, n_volumes=150, lesion_noise=3.0)
    bold, mask_file = _bold_files(bids)
    truth = json.loads((bids / "code" / "strokefc_ground_truth.json").read_text())["subjects"]["01"]
    lesion = lesion_sphere(truth["lesion_hemisphere"], truth["lesion_radius_mm"], brain4)
    grid = lesion_on_grid(nb.Nifti1Image(lesion.astype(np.uint8), brain4.affine), brain4)
    raw = nb.load(str(bold)).get_fdata()
    artefact = raw[grid.lesion].mean(axis=0)[2:]  # the lesion's mean signal (after dummy scans)
    brain = np.asarray(brain4.dataobj) > 0
    ring = (grid.excluded & ~grid.lesion)[brain]

    def ring_coupling(strategy, exclude):
        params = DenoiseParams(strategy=strategy, smoothing_fwhm=None)
        run = denoise_run(bold, mask_file, 2.0, params, lesion_mask=grid.lesion, exclude_mask=exclude)
        used = np.asarray(run.mask_img.dataobj)[brain] > 0
        if not (ring & used).any():
            return run, None
        data = run.data[:, ring[used]]
        r = [np.corrcoef(artefact, data[:, v])[0, 1] for v in range(data.shape[1])]
        return run, float(np.mean(np.abs(r)))

    _, simple = ring_coupling("simple", None)
    run, cleaned = ring_coupling("simple+lesion", None)
    assert simple > 0.3  # the cavity artefact leaks into the tissue around the lesion
    assert cleaned < 0.1  # and the lesion regressors take it out
    assert run.info["LesionRegressors"]["Columns"][0] == "lesion_mean"
    assert run.design is not None
    assert "lesion_mean" in run.design.columns
    excluded_run, _ = ring_coupling("simple+lesion", grid.excluded)
    assert excluded_run.info["LesionVoxelsExcluded"] == int(grid.excluded.sum())
    assert not (np.asarray(excluded_run.mask_img.dataobj)[grid.excluded]).any()
    with pytest.raises(InputError, match="needs a lesion mask"):
        denoise_run(bold, mask_file, 2.0, DenoiseParams(strategy="simple+lesion"))


@pytest.mark.integration
def test_t1w_masks_are_warped_written_and_kept_out_of_the_maps(tmp_path, brain4):
    """Raw-dataset T1w masks + fMRIPrep's transform; a subject without a mask is reported."""
    bids = simulate(tmp_path, n_subjects=2, n_volumes=150, lesion_form="t1w")
    (bids / "sub-02" / "anat" / "sub-02_label-lesion_roi.nii.gz").unlink()
    out = tmp_path / "out"
    code = run_cli(
        bids, out, "participant", "--work-dir", tmp_path / "work", "--null-surrogates", 0, "--nprocs", 1
    )
    assert code == 0
    truth = json.loads((bids / "code" / "strokefc_ground_truth.json").read_text())["subjects"]["01"]
    expected = lesion_sphere(truth["lesion_hemisphere"], truth["lesion_radius_mm"], brain4)
    written = out / "sub-01" / "anat" / f"sub-01_space-{SPACE}_desc-lesion_mask.nii.gz"
    got = np.asarray(nb.load(str(written)).dataobj) > 0
    dice = 2 * (got & expected).sum() / (got.sum() + expected.sum())
    centre = np.argwhere(got).mean(axis=0) - np.argwhere(expected).mean(axis=0)
    assert dice > 0.7
    assert np.linalg.norm(centre) < 1.0  # within one voxel of the truth
    sidecar = json.loads(written.with_name(written.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["Sources"][0] == "bids:raw:sub-01/anat/sub-01_label-lesion_roi.nii.gz"
    assert sidecar["Sources"][1].endswith(f"from-T1w_to-{SPACE}_mode-image_xfm.h5")
    links = json.loads((out / "dataset_description.json").read_text())["DatasetLinks"]
    assert {"raw", "fmriprep"} <= set(links)
    sd_file = (
        out / "sub-01" / "func" / f"sub-01_task-rest_space-{SPACE}_seed-ipsiM1_stat-dfcsd_boldmap.nii.gz"
    )
    sd = np.asarray(nb.load(str(sd_file)).dataobj)
    assert (sd[got] == 0).all()  # the lesion is out of the map
    brain = np.asarray(brain4.dataobj) > 0
    assert (sd[brain & ~got] != 0).mean() > 0.9
    meta = json.loads(sd_file.with_name(sd_file.name.replace(".nii.gz", ".json")).read_text())
    assert meta["Lesion"]["LesionExcludedVoxels"] > got.sum()
    assert "Lesion" not in json.loads(
        next((out / "sub-02" / "func").glob("*stat-dfcsd_boldmap.json")).read_text()
    )
    assert "no lesion mask" in (out / "sub-02.html").read_text()
    exe = validator_executable()
    proc = subprocess.run([exe, str(out), "--ignoreWarnings"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


@pytest.mark.parametrize("lag", [0.0, 2.0])
def test_lag_qc_recovers_a_planted_hemispheric_lag(tmp_path, lag):
    from workflows.params import QCParams
    from workflows.qc import run_lag_qc

    bids = simulate(tmp_path, n_subjects=1, n_volumes=200, lag=lag)
    bold, mask_file = _bold_files(bids)
    truth = json.loads((bids / "code" / "strokefc_ground_truth.json").read_text())["subjects"]["01"]
    assert truth["lag_s"] == lag
    run = denoise_run(bold, mask_file, 2.0, DenoiseParams(smoothing_fwhm=None), keep_bandpassed=True)
    img, info = run_lag_qc(
        run.bandpassed, run.kept, run.mask_img, truth["lesion_hemisphere"], 2.0, QCParams()
    )
    assert info["HemisphereIpsiMinusContra_s"] == pytest.approx(lag, abs=0.5)
    assert info["Flagged"] is (lag > 1.0)
    assert bool(info["Warnings"]) is (lag > 1.0)
    assert img.shape == run.mask_img.shape
    # float32 series (as denoising hands them over) give the float64 series' map: no copy is needed
    assert run.bandpassed.dtype == np.float32
    img64, _ = run_lag_qc(
        run.bandpassed.astype(np.float64), run.kept, run.mask_img, truth["lesion_hemisphere"], 2.0, QCParams()
    )
    np.testing.assert_allclose(img.get_fdata(), img64.get_fdata(), atol=1e-5)


def test_group_inputs_lose_the_lesion_and_its_mirror(tmp_path, brain4):
    """On the CNN grid the (dilated) lesion and its mirror become NaN, after lesion alignment."""
    from workflows.grid import apply_grid, lesion_exclusion, make_grid, template_mask

    lesion = lesion_sphere("R", 9.0, brain4)  # right lesion: mirrored to the left by alignment
    lesion_file = tmp_path / "lesion.nii.gz"
    nb.Nifti1Image(lesion.astype(np.uint8), brain4.affine).to_filename(lesion_file)
    ref = nb.Nifti1Image(np.ones(brain4.shape, np.float32), brain4.affine)
    grid = make_grid(ref, template_mask(ref), 3.0)
    excluded = lesion_exclusion(lesion_file, grid, "R", align=True)
    x = apply_grid(ref, grid, "R", True, excluded)[0]
    assert np.isnan(x[excluded]).all()
    assert np.isfinite(x[~excluded]).all()
    affine = np.asarray(grid["affine"])
    xyz = nb.affines.apply_affine(affine, np.argwhere(excluded))
    centre = lesion_sphere("L", 9.0, brain4)  # where alignment puts the lesion
    assert np.any(xyz[:, 0] < -15)
    assert np.any(xyz[:, 0] > 15)
    # dilation: the excluded zone reaches beyond the undilated lesion resampled to the grid
    plain = apply_grid(nb.Nifti1Image(centre.astype(np.float32), brain4.affine), grid, "L", False)[0] > 0.5
    assert excluded.sum() > 2 * plain.sum()


def _fake_fmristroke(bids, dest, label="01", lag=2.5):
    """fMRIStroke-like outputs of one run: desc-confounds2 (lesion-free WM/CSF, lesion, ICA) and a lag map."""
    func_in = bids / "derivatives" / "fmriprep" / f"sub-{label}" / "func"
    confounds = pd.read_csv(next(func_in.glob("*desc-confounds_timeseries.tsv")), sep="\t")
    rng = np.random.default_rng(0)
    n = len(confounds)
    table = pd.DataFrame(
        {
            "white_matter_nolesion": rng.normal(size=n),
            "csf_nolesion": rng.normal(size=n),
            "lesion": rng.normal(size=n),
            "ica_lesion_00": rng.normal(size=n),
        }
    )
    func = dest / f"sub-{label}" / "func"
    func.mkdir(parents=True)
    table.to_csv(func / f"sub-{label}_task-rest_desc-confounds2_timeseries.tsv", sep="\t", index=False)
    mask_img = nb.load(str(next(func_in.glob("*desc-brain_mask.nii.gz"))))
    x = nb.affines.apply_affine(mask_img.affine, np.indices(mask_img.shape).reshape(3, -1).T)[:, 0]
    lag_map = np.where(x.reshape(mask_img.shape) < 0, lag, 0.0).astype(np.float32)  # left hemisphere lags
    nb.Nifti1Image(lag_map, mask_img.affine).to_filename(
        func / f"sub-{label}_task-rest_space-{SPACE}_desc-maxtime_map.nii.gz"
    )
    return table


def test_fmristroke_confounds_replace_tissue_signals_and_add_lesion_ones(tmp_path):
    from workflows.denoise import fmristroke_columns

    bids = simulate(tmp_path, n_subjects=1, n_volumes=150, seed=8)
    table = _fake_fmristroke(bids, tmp_path / "fmristroke")
    confounds = pd.DataFrame({"white_matter": np.ones(150), "csf": np.ones(150), "trans_x": np.zeros(150)})
    tsv = tmp_path / "fmristroke" / "sub-01" / "func" / "sub-01_task-rest_desc-confounds2_timeseries.tsv"
    out, record = fmristroke_columns(confounds, tsv, 150)
    np.testing.assert_allclose(out["white_matter"], table["white_matter_nolesion"])
    np.testing.assert_allclose(out["csf"], table["csf_nolesion"])
    assert record["Added"] == ["fmristroke_lesion", "fmristroke_ica_lesion_00"]
    with pytest.raises(InputError, match="rows"):
        fmristroke_columns(confounds, tsv, 151)


@pytest.mark.integration
def test_participant_reads_fmristroke_outputs(tmp_path, capsys):
    bids = simulate(tmp_path, n_subjects=2, n_volumes=150, seed=8)
    _fake_fmristroke(bids, tmp_path / "fmristroke")
    out = tmp_path / "out"
    common = ["--work-dir", tmp_path / "work", "--skip-bids-validation", "--null-surrogates", 0]
    fs = ["--datasets", f"fmristroke={tmp_path / 'fmristroke'}"]
    # sub-02 has no fMRIStroke output: a clear error for it, sub-01 is processed
    assert run_cli(bids, out, "participant", *common, *fs) == 1
    meta = json.loads(next((out / "sub-01" / "func").glob("*stat-dfcsd_boldmap.json")).read_text())
    assert meta["Denoising"]["FMRIStrokeConfounds"]["Replaced"]["white_matter"] == "white_matter_nolesion"
    assert "fmristroke_lesion" in meta["Denoising"]["ConfoundColumns"]
    lag = meta["HemodynamicLag"]
    assert lag["Method"].startswith("fMRIStroke")
    truth = json.loads((bids / "code" / "strokefc_ground_truth.json").read_text())["subjects"]["01"]
    expected = 2.5 if truth["lesion_hemisphere"] == "L" else -2.5
    assert lag["HemisphereIpsiMinusContra_s"] == pytest.approx(expected, abs=0.01)
    assert not (out / "sub-02" / "func").exists()
    from bids_app.parser import parse_args

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        parse_args([str(bids), str(out), "participant", "--datasets", "xcpd=/tmp"])
    assert exc.value.code == 2
    assert "--datasets 'xcpd=/tmp': give fmristroke=DIR" in capsys.readouterr().err
