"""Denoising helpers: masked smoothing, dummy scans, confounds through nilearn's loader."""

import numpy as np
import pandas as pd

from workflows.denoise import DenoiseParams, count_dummy_scans, denoise_run, smooth_in_mask


def test_smoothing_stays_inside_the_mask_and_keeps_constants(rng):
    mask = np.zeros((12, 12, 12), bool)
    mask[3:9, 3:9, 3:9] = True
    data = np.where(mask[..., None], 5.0, 100.0).astype(np.float32).repeat(4, axis=3)
    data[6, 6, 6, 1] = 50.0  # a spike spreads, but only inside the mask
    out = smooth_in_mask(data.copy(), mask, 6.0, (2.0, 2.0, 2.0))
    assert np.all(out[~mask] == 0)
    assert np.allclose(out[mask][:, 0], 5.0, atol=1e-4)  # normalised convolution: no edge darkening
    assert out[6, 6, 7, 1] > 5.0
    assert out[6, 6, 6, 1] < 50.0


def test_dummy_scans_from_fmriprep_outliers():
    table = pd.DataFrame(
        {"non_steady_state_outlier00": [1, 0, 0, 0], "non_steady_state_outlier01": [0, 1, 0, 0]}
    )
    assert count_dummy_scans(table) == 2
    assert count_dummy_scans(table, 3) == 3
    assert count_dummy_scans(pd.DataFrame({"csf": [0.0] * 4})) == 0


def test_denoise_run_regresses_confounds_and_keeps_the_signal(tmp_path):
    """On a generated run: dummy scans cut, motion-driven variance removed, output z-scored."""
    from conftest import simulate

    bids = simulate(tmp_path, n_subjects=1, n_volumes=120, seed=4)
    func = bids / "derivatives" / "fmriprep" / "sub-01" / "func"
    bold = func / "sub-01_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
    mask = func / "sub-01_task-rest_space-MNI152NLin2009cAsym_desc-brain_mask.nii.gz"
    run = denoise_run(bold, mask, 2.0, DenoiseParams(strategy="scrubbing", smoothing_fwhm=None))
    assert run.info["DummyScans"] == 2
    assert run.data.shape[0] == 118
    kept = run.data[run.kept]
    assert np.allclose(kept.mean(axis=0), 0, atol=1e-3)
    assert np.allclose(kept.std(axis=0, ddof=1), 1, atol=1e-2)
    assert np.all(run.data[~run.kept] == 0)  # censored volumes are zero, never interpolated
    assert run.info["VolumesCensored"] == int((~run.kept).sum())
    conf = pd.read_csv(func / "sub-01_task-rest_desc-confounds_timeseries.tsv", sep="\t").iloc[2:]
    motion = conf[["trans_x", "trans_y", "trans_z"]].to_numpy()[run.kept]
    fit = np.linalg.lstsq(np.column_stack([motion, np.ones(len(motion))]), kept[:, :500], rcond=None)
    resid = kept[:, :500] - np.column_stack([motion, np.ones(len(motion))]) @ fit[0]
    assert 1 - resid.var() / kept[:, :500].var() < 0.05  # motion explains almost nothing after cleaning
