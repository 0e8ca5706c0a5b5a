"""Sliding-window dFC: equality with the naive reference, censoring, tapers, window planning."""

import numpy as np
import pytest

from workflows import dfc, params
from workflows.utils.errors import InputError


def _data(rng, n_t=60, n_v=37):
    seed = rng.standard_normal(n_t)
    data = 0.5 * seed[:, None] * rng.uniform(-1, 1, n_v) + rng.standard_normal((n_t, n_v))
    return seed, data + 100.0  # an offset, as raw intensities have: tests the centring


def test_equals_naive_reference(rng):
    seed, data = _data(rng)
    res = dfc.sliding_window_dfc(seed, data, dfc.WindowSpec.volumes(15, step=2), keep_windows=True)
    ref = dfc.naive_sliding_window_dfc(seed, data, dfc.WindowSpec.volumes(15, step=2))
    assert res.windows.shape == ref.shape == (23, 37)
    np.testing.assert_allclose(res.windows, ref, atol=1e-5)
    np.testing.assert_allclose(res.sd, ref.std(axis=0, ddof=1), atol=1e-5)
    np.testing.assert_allclose(res.mean, ref.mean(axis=0), atol=1e-5)
    static = dfc.fisher_z(np.corrcoef(np.column_stack([seed, data]).T)[0, 1:])
    np.testing.assert_allclose(res.static, static, atol=1e-5)


def test_chunking_does_not_change_results(rng):
    seed, data = _data(rng, n_v=50)
    a = dfc.sliding_window_dfc(seed, data, dfc.WindowSpec.volumes(10), chunk_size=7)
    b = dfc.sliding_window_dfc(seed, data, dfc.WindowSpec.volumes(10), chunk_size=1000)
    np.testing.assert_array_equal(a.sd, b.sd)


def test_censored_volumes_are_excluded_not_interpolated(rng):
    seed, data = _data(rng, n_t=40, n_v=5)
    kept = np.ones(40, bool)
    kept[[12, 13]] = False
    spiked = data.copy()
    spiked[[12, 13]] = 1e6  # garbage in censored rows must not matter
    res = dfc.sliding_window_dfc(
        seed, spiked, dfc.WindowSpec.volumes(10, min_coverage=0.8), kept=kept, keep_windows=True
    )
    # window starting at 5 covers 5..14 -> 8 of 10 kept: valid; compare with corrcoef on kept rows
    k = int(np.flatnonzero(res.plan.starts[res.plan.valid] == 5)[0])
    rows = [t for t in range(5, 15) if kept[t]]
    ref = dfc.fisher_z(np.corrcoef(np.column_stack([seed[rows], data[rows]]).T)[0, 1:])
    np.testing.assert_allclose(res.windows[k], ref, atol=1e-5)
    assert np.isfinite(res.sd).all()


def test_low_coverage_windows_are_dropped():
    kept = np.ones(30, bool)
    kept[10:14] = False
    plan = dfc.plan_windows(kept, 10, 1, 0.8)
    assert plan.starts.size == 21
    # windows fully covering the 4 censored volumes have coverage 0.6 -> dropped
    assert not plan.valid[plan.starts == 7][0]
    assert plan.valid[plan.starts == 0][0]
    assert plan.n_valid == 21 - 9


def test_tapers():
    for shape in params.WINDOW_SHAPES:
        w = dfc.window_taper(22, shape)
        assert w.shape == (22,)
        assert 0.99 < w.max() <= 1.0
        np.testing.assert_allclose(w, w[::-1], atol=1e-12)
    tapered = dfc.window_taper(22, "tapered")
    assert 0.3 < tapered[0] < 0.7
    assert tapered[11] == pytest.approx(1.0, abs=1e-3)


def test_tapered_window_matches_weighted_corr(rng):
    seed, data = _data(rng, n_t=30, n_v=4)
    res = dfc.sliding_window_dfc(
        seed, data, dfc.WindowSpec.volumes(12, step=6, shape="hamming"), keep_windows=True
    )
    w = np.hamming(12)
    for k, s in enumerate(res.plan.starts):
        x, y = seed[s : s + 12], data[s : s + 12, 2]
        c = np.cov(x, y, aweights=w)
        r = c[0, 1] / np.sqrt(c[0, 0] * c[1, 1])
        assert res.windows[k, 2] == pytest.approx(np.arctanh(r), abs=1e-6)


def test_parse_duration():
    assert params.parse_duration("60s", 2.0) == 30
    assert params.parse_duration("61s", 2.0) == 30
    assert params.parse_duration("30vol", 0.8) == 30
    assert params.parse_duration(44, 2.0) == 22
    with pytest.raises(InputError, match="not a duration"):
        params.parse_duration("ten", 2.0)


def test_window_longer_than_run_is_an_input_error():
    with pytest.raises(InputError, match="longer than the run"):
        dfc.plan_windows(np.ones(20, bool), 30, 1, 0.8)


def test_too_few_valid_windows(rng):
    seed, data = _data(rng, n_t=20, n_v=3)
    kept = np.zeros(20, bool)
    kept[:5] = True
    with pytest.raises(InputError, match="window"):
        dfc.sliding_window_dfc(seed, data, dfc.WindowSpec.volumes(10), kept=kept)


def test_region_z_marks_dropped_windows(rng):
    seed, data = _data(rng, n_t=30, n_v=2)
    kept = np.ones(30, bool)
    kept[10:14] = False
    z, plan = dfc.window_region_z(seed, data, dfc.WindowSpec.volumes(10), kept=kept)
    assert np.isnan(z[~plan.valid]).all()
    assert np.isfinite(z[plan.valid]).all()


def test_coverage_counts_taper_weight_not_volumes():
    """Hamming 30 with its 6 central volumes censored: 80% of the volumes but ~63% of the weight."""
    kept = np.ones(30, bool)
    kept[12:18] = False
    taper = dfc.window_taper(30, "hamming")
    weighted = dfc.plan_windows(kept, 30, 1, 0.8, taper)
    assert weighted.kept_volumes[0] == 24
    assert weighted.coverage[0] == pytest.approx(taper[kept].sum() / taper.sum())
    assert 0.6 < weighted.coverage[0] < 0.66
    assert not weighted.valid[0]
    rectangular = dfc.plan_windows(kept, 30, 1, 0.8, dfc.window_taper(30, "rectangular"))
    assert rectangular.coverage[0] == pytest.approx(0.8)
    assert rectangular.valid[0]


# ------------------------------------------------------------------------- the stationary null
def _coupled(rng, n_t=240, n_v=60, dynamic=False, tr=2.0):
    """Band-limited seed and voxels with static coupling 0.5, or coupling that flips sign slowly."""
    from scipy.signal import butter, sosfiltfilt

    sos = butter(4, [0.01, 0.08], btype="band", fs=1 / tr, output="sos")
    seed = sosfiltfilt(sos, rng.normal(size=n_t))
    noise = sosfiltfilt(sos, rng.normal(size=(n_t, n_v)), axis=0)
    seed, noise = seed / seed.std(), noise / noise.std(axis=0)
    coupling = np.full(n_t, 0.5)
    if dynamic:  # correlation +0.8 / -0.8 in alternating 100 s blocks: no static FC, strong dynamics
        coupling = 0.8 * np.sign(np.sin(2 * np.pi * np.arange(n_t) * tr / 200.0) + 1e-9)
    data = coupling[:, None] * seed[:, None] + np.sqrt(1 - coupling[:, None] ** 2) * noise
    return seed, data


def test_phase_randomised_surrogates_keep_spectra_and_static_fc(rng):
    from workflows.dfc_null import phase_randomise, surrogate_phases

    seed, data = _coupled(rng)
    x = np.column_stack([seed, data])
    surrogate = phase_randomise(x, surrogate_phases(len(seed), 1, seed=3)[0])
    np.testing.assert_allclose(
        np.abs(np.fft.rfft(surrogate, axis=0)), np.abs(np.fft.rfft(x, axis=0)), atol=1e-8
    )
    np.testing.assert_allclose(np.corrcoef(surrogate.T), np.corrcoef(x.T), atol=1e-8)  # zero-lag FC
    assert not np.allclose(surrogate, x)


def test_excess_variability_is_null_when_stationary_and_positive_when_dynamic(rng):
    from workflows.dfc_null import stationary_null

    kwargs = {"n_surrogates": 40, "random_seed": 1}
    seed, data = _coupled(rng)
    static = dfc.fisher_z(np.array([np.corrcoef(seed, d)[0, 1] for d in data.T]))
    stationary = stationary_null(seed, data, dfc.WindowSpec.volumes(50), static=static, **kwargs)
    # per voxel the excess of a stationary run is observed minus null mean SD: on average about 0
    assert abs(stationary.excess.mean()) < 0.03
    assert stationary.top_p_value > 0.05
    seed, data = _coupled(rng, dynamic=True)
    dynamic = stationary_null(seed, data, dfc.WindowSpec.volumes(50), **kwargs)
    assert dynamic.excess.mean() > 0.2  # about 6 surrogate SDs (0.07) above the null
    assert dynamic.top_p_value < 0.05
    # the observed SD is the dFC kernel's own
    res = dfc.sliding_window_dfc(seed, data, dfc.WindowSpec.volumes(50))
    np.testing.assert_allclose(dynamic.observed_sd, res.sd, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("step", "censored"), [(1, [0, 3, 50, 51, 52, 239]), (3, list(range(100, 115)))])
def test_null_boxcar_sd_matches_the_kernel_estimator(rng, step, censored):
    """The null's float32 running-sum SD equals the float64 estimator of the kernel within 1e-5 in z.

    Large offsets (centred first), censored run ends, and (step 3) windows dropped for coverage.
    """
    from workflows.dfc_null import BoxcarSD

    seed, data = _coupled(rng, n_v=300)
    seed, data = seed + 1e4, data + 1e4
    kept = np.ones(seed.size, bool)
    kept[censored] = False
    design = dfc.window_design(
        kept, dfc.WindowSpec.volumes(50, step=step, shape="rectangular", min_coverage=0.8)
    )
    x = dfc.centre_kept(seed, kept)
    y = dfc.centre_kept(data, kept)
    reference = dfc.fisher_z(dfc.design_corr(design, x, y, "weighted")).std(axis=0, ddof=1)
    boxcar = BoxcarSD(kept, 50, step, design.plan.valid, 400)  # buffers larger than the block
    if step == 3:
        assert not design.plan.valid.all()
    for _ in range(2):  # buffers are reused between calls
        np.testing.assert_allclose(boxcar(x, y), reference, atol=1e-5)


def test_null_does_not_depend_on_chunks_or_threads(rng):
    from workflows.dfc_null import stationary_null

    seed, data = _coupled(rng, n_v=250)
    kept = np.ones(seed.size, bool)
    kept[[10, 11, 200]] = False
    runs = [
        stationary_null(
            seed, data, dfc.WindowSpec.volumes(50), kept=kept, n_surrogates=12, chunk_size=c, n_jobs=j
        )
        for c, j in ((1000, 1), (64, 2), (100, 3))
    ]
    for other in runs[1:]:
        for field in ("observed_sd", "null_mean", "null_sd", "excess"):
            np.testing.assert_array_equal(getattr(runs[0], field), getattr(other, field))
        assert other.top_p_value == runs[0].top_p_value


def _dpabi_style(seed, data, length, taper):
    """Independent reference of DPABI's y_SCA_Window: each window's series times the taper, then corrcoef."""
    out = []
    for s in range(len(seed) - length + 1):
        xs = seed[s : s + length] * taper
        ys = data[s : s + length] * taper[:, None]
        out.append([np.corrcoef(xs, ys[:, v])[0, 1] for v in range(data.shape[1])])
    return np.array(out)


def _gift_style(seed, data, wsize, sigma=3.0):
    """GIFT's dFNC windows written from its published code (icatb_compute_sliding_window + circshift).

    1-based MATLAB indices are kept visible: b((m-w+1):(m+w)) = 1, c = c(m+1:end-m+1), and window
    ii = 1..nT-wsize is circshift(c, round(-nT/2) + round(wsize/2) + ii); r = corr of the tapered series.
    """
    n_t = len(seed)
    matlab_round = lambda v: int(np.sign(v) * np.floor(abs(v) + 0.5))  # noqa: E731
    n_even = n_t + 1 if n_t % 2 else n_t
    m = n_even // 2
    w = matlab_round(wsize / 2)
    x = np.arange(n_even)
    gw = np.exp(-((x - m) ** 2) / (2 * sigma * sigma))
    b = np.zeros(n_even)
    b[(m - w + 1) - 1 : (m + w)] = 1
    c = np.convolve(gw, b)
    c = c / c.max()
    c = c[(m + 1) - 1 : len(c) - m + 1][:n_t]
    out = []
    for ii in range(1, n_t - wsize + 1):
        a = np.roll(c, matlab_round(-n_t / 2) + matlab_round(wsize / 2) + ii)
        out.append([np.corrcoef(seed * a, data[:, v] * a)[0, 1] for v in range(data.shape[1])])
    return np.array(out)


@pytest.mark.parametrize("n_t", [90, 91])
def test_allen_preset_reproduces_gift_full_length_window(rng, n_t):
    settings = params.DFC_PRESETS["allen"]
    assert settings["window_shape"] == "tapered-circular"
    assert settings["window_estimator"] == "tapered-series"
    seed = rng.normal(size=n_t)
    data = 0.5 * seed[:, None] + rng.normal(size=(n_t, 6))
    seed, data = seed - seed.mean(), data - data.mean(axis=0)  # GIFT z-scores its time courses
    res = dfc.sliding_window_dfc(
        seed,
        data,
        dfc.WindowSpec.volumes(22, shape="tapered-circular", estimator="tapered-series", min_coverage=0.0),
        keep_windows=True,
    )
    reference = _gift_style(seed, data, 22)
    assert res.windows.shape == reference.shape == (n_t - 22, 6)
    np.testing.assert_allclose(np.tanh(res.windows), reference, atol=1e-6)
    # the cut taper (Gaussian tails dropped) is a different estimate
    cut = dfc.sliding_window_dfc(
        seed, data, dfc.WindowSpec.volumes(22, shape="tapered", estimator="tapered-series")
    )
    assert np.abs(cut.sd - res.sd).max() > 0.01


def test_circular_window_coverage_is_kept_weight(rng):
    kept = np.ones(80, bool)
    kept[40:46] = False
    design = dfc.window_design(kept, dfc.WindowSpec.volumes(22, shape="tapered-circular", min_coverage=0.0))
    base = dfc.circular_taper(80, 22)
    k = 30  # window whose rectangle covers volumes 30..51, censored at its centre
    row = np.roll(base, -40 + 11 + k)
    assert design.plan.starts[k - 1] == k
    assert design.plan.coverage[k - 1] == pytest.approx(row[kept].sum() / row.sum())
    edge = np.ones(80, bool)
    edge[30:33] = edge[49:52] = False  # six volumes at the edges of the same window
    at_edges = dfc.window_design(edge, dfc.WindowSpec.volumes(22, shape="tapered-circular", min_coverage=0.0))
    assert at_edges.plan.coverage[k - 1] > design.plan.coverage[k - 1] + 0.05


@pytest.mark.parametrize(("preset", "shape", "length"), [("dpabi", "hamming", 30)])
def test_presets_reproduce_their_tools_estimator(rng, preset, shape, length):
    settings = params.DFC_PRESETS[preset]
    assert settings["window_estimator"] == "tapered-series"
    assert settings["window_shape"] == shape
    n_t = 90
    seed = rng.normal(size=n_t)
    data = 0.5 * seed[:, None] + rng.normal(size=(n_t, 7))
    seed, data = seed - seed.mean(), data - data.mean(axis=0)  # denoised series are centred (z-scored)
    res = dfc.sliding_window_dfc(
        seed,
        data,
        dfc.WindowSpec.volumes(length, shape=shape, estimator="tapered-series", min_coverage=0.0),
        keep_windows=True,
    )
    reference = _dpabi_style(seed, data, length, dfc.window_taper(length, shape))
    np.testing.assert_allclose(np.tanh(res.windows), reference, atol=1e-6)
    weighted = dfc.sliding_window_dfc(
        seed, data, dfc.WindowSpec.volumes(length, shape=shape), keep_windows=True
    )
    assert np.abs(np.tanh(weighted.windows) - reference).max() > 0.01  # the two conventions differ


def test_estimators_agree_for_rectangular_windows(rng):
    seed = rng.normal(size=80)
    data = rng.normal(size=(80, 5)) + 0.3 * seed[:, None]
    kept = np.ones(80, bool)
    kept[[10, 41]] = False
    a = dfc.sliding_window_dfc(seed, data, dfc.WindowSpec.volumes(25, estimator="weighted"), kept=kept)
    b = dfc.sliding_window_dfc(seed, data, dfc.WindowSpec.volumes(25, estimator="tapered-series"), kept=kept)
    np.testing.assert_allclose(a.sd, b.sd, atol=1e-6)
    with pytest.raises(InputError, match="window estimator"):
        dfc.sliding_window_dfc(seed, data, dfc.WindowSpec.volumes(25, estimator="median"))


def test_running_sums_match_per_window_corrcoef_on_large_offsets(rng):
    """Rectangular windows use running sums; centring first keeps them exact on offsets of 1e4."""
    n_t, length = 300, 40
    seed = rng.normal(size=n_t) + 1e4
    data = 0.4 * (seed - 1e4)[:, None] + rng.normal(size=(n_t, 5)) + 1e4
    kept = np.ones(n_t, bool)
    kept[[3, 100, 101, 250]] = False
    res = dfc.sliding_window_dfc(
        seed, data, dfc.WindowSpec.volumes(length, min_coverage=0.0), kept=kept, keep_windows=True
    )
    design = dfc.window_design(kept, dfc.WindowSpec.volumes(length, min_coverage=0.0))
    assert design.boxcar
    ref = []
    for s in range(n_t - length + 1):
        k = kept[s : s + length]
        ref.append([np.corrcoef(seed[s : s + length][k], data[s : s + length, v][k])[0, 1] for v in range(5)])
    np.testing.assert_allclose(np.tanh(res.windows), np.array(ref), atol=1e-6)  # windows are kept as float32
    seed_c, data_c = dfc.centre_kept(seed, kept), dfc.centre_kept(data, kept)
    running = dfc.design_corr(design, seed_c, data_c, "weighted")
    np.testing.assert_allclose(running, np.array(ref), atol=1e-10)
    # the weight-matrix path gives the same numbers
    matrix = dfc.window_corr(design.weights, design.counts, seed_c, data_c, "weighted")
    np.testing.assert_allclose(running, matrix, atol=1e-12)


@pytest.mark.parametrize("shape", ["hamming", "tapered", "tapered-circular"])
def test_banded_window_sums_equal_the_dense_product(rng, shape):
    """The kernel multiplies each block of windows only over its non-zero volumes; censoring included."""
    kept = np.ones(90, bool)
    kept[[5, 40, 41, 77]] = False
    design = dfc.window_design(kept, dfc.WindowSpec.volumes(20, step=3, shape=shape, min_coverage=0.0))
    a = rng.normal(size=(90, 2, 7))
    banded = dfc._band_matmul(design.weights, a, block=4)
    np.testing.assert_allclose(banded, np.einsum("wt,tcv->wcv", design.weights, a), atol=1e-12)


def test_running_sums_equal_cumsum(rng):
    a = rng.normal(size=(30, 4)) + 1e3
    run = dfc.running_sums(a)
    np.testing.assert_allclose(run[1:], np.cumsum(a, axis=0), rtol=1e-14)
    assert run.shape == (31, 4)
    assert (run[0] == 0).all()


@pytest.mark.parametrize(
    ("shape", "estimator"),
    [
        ("rectangular", "weighted"),
        ("hamming", "weighted"),
        ("tapered", "weighted"),
        ("hamming", "tapered-series"),
    ],
)
def test_kernel_equals_the_naive_reference_with_tapers_and_censoring(rng, shape, estimator):
    seed, data = _data(rng, n_t=70, n_v=9)
    kept = np.ones(70, bool)
    kept[[4, 30, 31, 55]] = False
    res = dfc.sliding_window_dfc(
        seed,
        data,
        dfc.WindowSpec.volumes(16, step=2, shape=shape, estimator=estimator),
        kept=kept,
        keep_windows=True,
    )
    ref = dfc.naive_sliding_window_dfc(
        seed, data, dfc.WindowSpec.volumes(16, step=2, shape=shape, estimator=estimator), kept=kept
    )
    assert ref.shape[0] == res.plan.starts.size
    np.testing.assert_allclose(res.windows, ref[res.plan.valid], atol=1e-5)
