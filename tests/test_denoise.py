"""Denoising helpers: masked smoothing, dummy scans, confounds through nilearn's loader."""

import numpy as np
import pandas as pd
import pytest

from workflows.denoise import (
    carpet_sample,
    check_confound_values,
    clean_series,
    count_dummy_scans,
    denoise_run,
    smooth_in_mask,
)
from workflows.params import DenoiseParams
from workflows.utils.errors import InputError


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


def test_confound_values_missing_inside_a_column_or_infinite_are_refused():
    table = pd.DataFrame(
        {
            "csf": [1.0, 2.0, np.nan, 4.0, 5.0],
            "csf_derivative1": [np.nan, 1.0, 1.0, 1.0, 1.0],  # fMRIPrep's leading n/a: allowed
            "trans_x": [0.1, np.inf, 0.0, 0.0, 0.0],
            "unused": [np.nan] * 5,  # a column of n/a only: nothing to regress, allowed as before
        }
    )
    check_confound_values(table[["csf_derivative1", "unused"]], "c.tsv")
    with pytest.raises(InputError) as info:
        check_confound_values(table, "c.tsv")
    text = str(info.value)
    assert "column 'csf', row(s) 3 (n/a)" in text
    assert "column 'trans_x', row(s) 2 (infinite)" in text
    assert "csf_derivative1" not in text
    assert info.value.where == "c.tsv"


def test_dummy_scans_from_fmriprep_outliers():
    table = pd.DataFrame(
        {"non_steady_state_outlier00": [1, 0, 0, 0], "non_steady_state_outlier01": [0, 1, 0, 0]}
    )
    assert count_dummy_scans(table) == 2
    assert count_dummy_scans(table, 3) == 3
    assert count_dummy_scans(pd.DataFrame({"csf": [0.0] * 4})) == 0


def test_denoise_run_regresses_confounds_and_keeps_the_signal(tmp_path):
    """On a generated run: dummy scans cut, motion-driven variance removed, output z-scored."""
    from helpers import simulate

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
    # a confounds table other than the BOLD's sibling is refused: the regressors come from the sibling
    other = tmp_path / "elsewhere_desc-confounds_timeseries.tsv"
    other.write_text((func / "sub-01_task-rest_desc-confounds_timeseries.tsv").read_text())
    with pytest.raises(InputError, match="not the one next to the preprocessed BOLD") as info:
        denoise_run(bold, mask, 2.0, DenoiseParams(), confounds_file=other)
    assert info.value.where == str(other)
    # the carpet plot's raw voxels, kept so that the report does not read the BOLD again
    import nibabel as nb

    raw = np.asarray(nb.load(bold).dataobj, np.float32)[run.mask_img.get_fdata() > 0].T
    np.testing.assert_allclose(run.carpet, raw[:, carpet_sample(raw.shape[1])], rtol=1e-6)
    assert run.carpet.shape == (120, 1500)


# ----------------------------------------------------------------------- scrubbing (censored volumes)
def _spiky_series(censored, n_t=60, n_v=3, seed=0):
    """A slow sinusoid per voxel plus noise; +50 spikes on the censored volumes."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_t)
    clean = np.sin(2 * np.pi * t / 20.0)[:, None] * (1 + np.arange(n_v)) + 0.1 * rng.normal(size=(n_t, n_v))
    spiky = clean.copy()
    spiky[list(censored)] += 50.0
    kept = np.ones(n_t, bool)
    kept[list(censored)] = False
    return clean, spiky, kept


def _reference(series, kept, confounds=None, tr=1.0, low_pass=0.2, high_pass=None):
    """Independent interpolate -> filter/regress -> censor -> z-score, written from the formulas."""
    from nilearn import signal
    from scipy.interpolate import CubicSpline

    t = np.arange(len(kept))
    t_kept = t[kept]
    filled = series.astype(float).copy()
    where = np.clip(t[~kept], t_kept[0], t_kept[-1])
    filled[~kept] = CubicSpline(t_kept, series[kept], axis=0)(where)
    conf = None
    if confounds is not None:
        conf = confounds.astype(float).copy()
        conf[~kept] = CubicSpline(t_kept, confounds[kept], axis=0)(where)
    out = signal.clean(
        filled,
        confounds=conf,
        detrend=True,
        standardize=None,
        filter="butterworth",
        low_pass=low_pass,
        high_pass=high_pass,
        t_r=tr,
    )[kept]
    return (out - out.mean(0)) / out.std(0, ddof=1)


@pytest.mark.parametrize("censored", [(20, 31), (20, 39), (0, 59), (0, 1, 58, 59), (10, 11, 12, 47, 48)])
def test_censored_volumes_never_leak_into_kept_ones(censored):
    """Mirror pairs (c, T-1-c) and both ends of the run: kept volumes equal the reference, spikes gone."""
    clean, spiky, kept = _spiky_series(censored)
    params = DenoiseParams(low_pass=0.2, high_pass=None)
    out = clean_series(spiky, None, kept, 1.0, params)
    assert np.all(out[~kept] == 0)
    np.testing.assert_allclose(out[kept], _reference(spiky, kept), atol=1e-5)
    # the spikes (50 SD of the signal) leave no trace: same as censoring a spike-free series
    np.testing.assert_allclose(out[kept], clean_series(clean, None, kept, 1.0, params)[kept], atol=1e-5)


def test_censoring_interpolates_the_confounds_too(rng):
    _, spiky, kept = _spiky_series((5, 30, 54), n_t=80)
    confounds = rng.normal(size=(80, 2))
    confounds[~kept] += 30.0  # a high-motion volume is extreme in the motion regressors too
    params = DenoiseParams(low_pass=0.2, high_pass=0.01)
    out = clean_series(spiky, confounds, kept, 1.0, params)
    np.testing.assert_allclose(out[kept], _reference(spiky, kept, confounds, high_pass=0.01), atol=1e-5)


def test_nilearn_sample_mask_still_misplaces_interpolation():
    """nilearn 0.14 negates integer sample masks bitwise (volumes[~sample_mask]) and so interpolates the
    mirror volume T-1-c instead of c. strokefc works around it (clean_series never passes a sample
    mask). If this test fails, nilearn changed: re-check the workaround before simplifying it."""
    from nilearn import signal

    clean, spiky, kept = _spiky_series((20, 39), n_v=1)
    kwargs = {"detrend": False, "standardize": None, "filter": "butterworth", "low_pass": 0.2, "t_r": 1.0}
    through_nilearn = signal.clean(spiky, sample_mask=np.flatnonzero(kept), **kwargs)
    spike_free = signal.clean(clean, **kwargs)[kept]
    assert np.abs(through_nilearn - spike_free).max() > 1.0


def test_smoothing_equals_filtering_each_whole_volume(rng):
    """Filtering only the mask's widened bounding box, all volumes at once, changes nothing."""
    from scipy.ndimage import gaussian_filter

    mask = np.zeros((14, 11, 9), bool)  # unequal axes; the mask touches one border
    mask[0:6, 3:9, 2:7] = True
    mask[4, 8, 6] = False
    data = rng.normal(100, 10, (14, 11, 9, 5)).astype(np.float32)
    data[13, 0, 0] = np.nan  # outside the mask, as load_bold_masked leaves it
    sigma = [6.0 / np.sqrt(8 * np.log(2)) / 2.0] * 3
    norm = gaussian_filter(mask.astype(np.float32), sigma)
    norm[norm == 0] = 1.0
    ref = np.stack(
        [gaussian_filter(np.where(mask, data[..., t], 0.0), sigma) / norm * mask for t in range(5)], axis=-1
    )
    out = smooth_in_mask(data.copy(), mask, 6.0, (2.0, 2.0, 2.0))
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-4)


def test_smoothing_never_spreads_non_finite_values():
    mask = np.zeros((20, 20, 20), bool)
    mask[4:16, 4:16, 4:16] = True
    data = np.ones((20, 20, 20, 2), np.float32)
    data[10, 10, 3, :] = np.nan  # just outside the mask, as load_bold_masked leaves it
    data[0, 0, 0, :] = np.inf
    out = smooth_in_mask(data, mask, 6.0, (2.0, 2.0, 2.0))
    assert np.isfinite(out[mask]).all()
    np.testing.assert_allclose(out[mask], 1.0, atol=1e-5)


def test_short_windows_are_warned_about_only_without_the_null():
    from workflows.dfc import window_warnings
    from workflows.params import WindowParams, parse_duration

    params = WindowParams()
    for tr in (0.8, 1.0, 2.0, 2.5):
        length = parse_duration(params.window_length, tr)
        assert window_warnings(length, tr, DenoiseParams().high_pass, params.null_surrogates) == []
        assert window_warnings(length, tr, DenoiseParams().high_pass, 0)  # 44 s < 1/0.01 Hz, no null
    assert window_warnings(parse_duration("100s", 2.0), 2.0, 0.01, 0) == []


def test_degrees_of_freedom_and_their_warning():
    from workflows.denoise import degrees_of_freedom

    dof = degrees_of_freedom(200, 2.0, 0.01, 0.08, 26)  # 24 motion + WM + CSF
    assert dof["DegreesOfFreedomInBand"] == pytest.approx(200 * 2 * 0.07 * 2.0)
    assert dof["DegreesOfFreedomRemaining"] == pytest.approx(56.0 - 26)
    assert degrees_of_freedom(100, 2.0, None, None, 0)["DegreesOfFreedomInBand"] == pytest.approx(100)


@pytest.mark.parametrize("censored", [(), (7, 30, 31)])
def test_filtering_once_gives_nilearn_clean_in_one_call(rng, censored):
    """The cleaned and band-passed series come from one filtering; each equals its own nilearn.clean."""
    from nilearn import signal

    from workflows.denoise import clean_and_bandpass

    n_t = 80
    confounds = rng.normal(size=(n_t, 3)).cumsum(axis=0)
    series = (rng.normal(size=(n_t, 6)) + confounds @ rng.normal(size=(3, 6))).astype(np.float32) + 50
    kept = np.ones(n_t, bool)
    kept[list(censored)] = False
    params = DenoiseParams(low_pass=0.2, high_pass=0.02)
    cleaned, band = clean_and_bandpass(series, confounds, kept, 1.0, params)
    if not censored:
        common = {"detrend": True, "standardize": "zscore_sample", "filter": "butterworth", "t_r": 1.0}
        common.update(low_pass=0.2, high_pass=0.02, butterworth__copy=True)
        np.testing.assert_allclose(cleaned, signal.clean(series, confounds=confounds, **common), atol=1e-5)
        np.testing.assert_allclose(band, signal.clean(series, **common), atol=1e-5)
    np.testing.assert_allclose(cleaned, clean_series(series, confounds, kept, 1.0, params), atol=1e-6)
    np.testing.assert_allclose(band, clean_series(series, None, kept, 1.0, params), atol=1e-6)
    assert (cleaned[~kept] == 0).all()
    assert np.abs(cleaned - band).max() > 0.1  # the regression did something
    blocks = clean_and_bandpass(series, confounds, kept, 1.0, params, chunk=4)  # voxel blocks of 4 and 2
    np.testing.assert_allclose(blocks[0], cleaned, atol=1e-6)
    np.testing.assert_allclose(blocks[1], band, atol=1e-6)


def test_4d_runs_are_read_a_few_volumes_at_a_time_with_their_scaling(tmp_path, rng):
    """An int16 run with scaling, 19 volumes (not a multiple of the chunk), read as float32."""
    import nibabel as nb

    from workflows.utils.images import READ_VOLUMES, read_data

    values = rng.normal(800, 200, (5, 6, 4, 19))
    img = nb.Nifti1Image(values, np.eye(4))
    img.set_data_dtype(np.int16)  # nibabel picks a slope and an intercept
    img.to_filename(tmp_path / "bold.nii.gz")
    loaded = nb.load(tmp_path / "bold.nii.gz")
    assert loaded.dataobj.slope != 1.0
    assert 19 % READ_VOLUMES != 0
    data = read_data(loaded, tmp_path / "bold.nii.gz", "BOLD")
    assert data.dtype == np.float32
    assert data.shape == (5, 6, 4, 19)
    np.testing.assert_allclose(data, np.asarray(loaded.dataobj, np.float64), rtol=1e-6)
    np.testing.assert_allclose(data, values, atol=loaded.dataobj.slope)  # int16 quantisation only
