"""The simulator: its command line (one flag per ``CohortParams`` field, with its default from there),
its coupling models and effect types, and the default cohort's bytes."""

import dataclasses
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from strokefc_sim.cli import build_parser, flag
from strokefc_sim.cohort import class_coupling, mild_amplitude
from strokefc_sim.params import CohortParams
from strokefc_sim.signal import STATES_MEAN_COUPLING, coupling_course


def test_every_field_is_a_flag_whose_default_is_the_fields():
    parser = build_parser()
    args = parser.parse_args(["out"])
    options = {a.dest: a for a in parser._actions}
    for field in dataclasses.fields(CohortParams):
        assert flag(field.name) in options[field.name].option_strings
        assert getattr(args, field.name) == field.default
    assert CohortParams(**{f.name: getattr(args, f.name) for f in dataclasses.fields(CohortParams)}) == (
        CohortParams()
    )


def test_flags_parse_to_the_fields_types():
    args = build_parser().parse_args(["out", "--voxel-size", "2", "--tr", "1", "--lesion-size-by-class"])
    assert (args.resolution, args.tr, args.lesion_size_by_class) == (2, 1.0, True)
    assert isinstance(args.tr, float)


@pytest.mark.parametrize(("field", "value"), [("lesion_form", "mni"), ("resolution", 3)])
def test_unwritable_settings_stop_with_the_flag_named(field, value):
    with pytest.raises(SystemExit, match=flag(field)):
        dataclasses.replace(CohortParams(), **{field: value}).check()


# --- the coupling models (issue 24) -------------------------------------------------------------------

#: sha256 of the signal-bearing files (TSVs, decompressed NIfTIs, confounds JSONs) of
#: ``simulate_cohort(out, n_subjects=2, n_volumes=30)`` as written before the states model existed
#: (commit 42da45c). Decompressed, so that the zlib version does not matter; descriptions (which carry
#: version strings) and the ground truth (which gained keys) are left out.
# the BOLD header holds the TR (2 s, unit sec) since the TR-conflict check; every voxel value is as before.
# The confounds changed on purpose when the WM/CSF signals and aCompCor stopped sampling planted voxels
# (test_tissue_signals_hold_no_planted_signal); the BOLD, masks and every random draw are unchanged.
DEFAULT_GOLDEN = "a45ac90e5a3a1367815dc6247f50b0c600d5873b845d1f2a8f3c71119666a199"


def _signal_digest(root: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(root.rglob("*")):
        if f.name.endswith((".tsv", ".nii.gz", "_timeseries.json")):
            data = f.read_bytes()
            h.update(str(f.relative_to(root)).encode())
            h.update(gzip.decompress(data) if f.suffix == ".gz" else data)
    return h.hexdigest()


def _courses(effect_type: str, n: int = 200, n_t: int = 240, seed: int = 0):
    """Coupling courses of ``n`` severe and ``n`` mild patients, drawn as the cohort draws them."""
    p = CohortParams(dynamics="states", effect_type=effect_type)
    rng = np.random.default_rng(seed)
    out: dict[bool, list] = {True: [], False: []}
    for severe in [True] * n + [False] * n:
        amp = p.effect * rng.uniform(0.8, 1.2) if severe else mild_amplitude(rng, p.effect)
        amp, shift = class_coupling(p, severe, amp, rng)
        out[severe].append(coupling_course(rng, n_t, 2.0, amp, dynamics="states", shift=shift)[0])
    return {k: np.array(v) for k, v in out.items()}


def test_states_dwell_times_lie_in_the_configured_range():
    rng = np.random.default_rng(3)
    low, high = 30.0, 50.0
    for _ in range(50):
        coupling, info = coupling_course(rng, 300, 2.0, 0.7, dynamics="states", dwell_range_s=(low, high))
        assert all(low <= d <= high for d in info["dwell_s"])
        # the states seen in the series: every complete stay lasts a drawn dwell, to a TR
        change = np.flatnonzero(np.diff(coupling) != 0) + 1
        stays = np.diff(change) * 2.0
        assert stays.size >= 8
        assert stays.min() >= low - 2.0
        assert stays.max() <= high + 2.0
        assert np.unique(np.round(coupling, 9)).size == 2


def test_dynamic_effect_keeps_the_mean_coupling_and_changes_its_sd():
    c = _courses("dynamic")
    means = {k: v.mean(axis=1) for k, v in c.items()}
    # the time average is the model's mean coupling for every patient, not only on average
    for m in means.values():
        np.testing.assert_allclose(m, STATES_MEAN_COUPLING, atol=1e-9)
    sd = {k: v.std(axis=1).mean() for k, v in c.items()}
    assert sd[True] > 5 * sd[False]
    assert sd[True] > 0.25


def test_static_effect_moves_the_mean_and_not_the_dynamics():
    p = CohortParams(dynamics="states", effect_type="static")
    c = _courses("static")
    np.testing.assert_allclose(c[True].mean(axis=1), STATES_MEAN_COUPLING - p.static_effect, atol=1e-9)
    np.testing.assert_allclose(c[False].mean(axis=1), STATES_MEAN_COUPLING, atol=1e-9)
    sd_severe, sd_mild = c[True].std(axis=1), c[False].std(axis=1)
    assert abs(np.median(sd_severe) - np.median(sd_mild)) < 0.02


def test_none_draws_both_classes_from_one_distribution():
    from scipy.stats import ks_2samp

    p = CohortParams(dynamics="states", effect_type="none")
    rng = np.random.default_rng(5)
    draws: dict[bool, list] = {True: [], False: []}
    for severe in [True, False] * 2000:
        amp = p.effect * rng.uniform(0.8, 1.2) if severe else mild_amplitude(rng, p.effect)
        draws[severe].append(class_coupling(p, severe, amp, rng))
    sev, mild = np.array(draws[True]), np.array(draws[False])
    assert (sev[:, 1] == 0).all()
    assert (mild[:, 1] == 0).all()
    assert ks_2samp(sev[:, 0], mild[:, 0]).pvalue > 0.01
    assert sev[:, 0].max() <= 0.15 * p.effect


def test_default_cohort_writes_the_bytes_it_always_wrote(tmp_path):
    from strokefc_sim import simulate_cohort

    truth = simulate_cohort(tmp_path / "a", n_subjects=2, n_volumes=30)
    assert _signal_digest(tmp_path / "a") == DEFAULT_GOLDEN
    assert (truth["dynamics"], truth["effect_type"]) == ("oscillation", "dynamic")
    # two draws with the same seed agree on every byte, the ground truth included
    simulate_cohort(tmp_path / "b", n_subjects=2, n_volumes=30)
    for f in sorted((tmp_path / "a").rglob("*")):
        if f.is_file():
            assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes(), f


def test_states_cohort_records_its_truth(tmp_path):
    from strokefc_sim import simulate_cohort

    simulate_cohort(
        tmp_path, n_subjects=2, n_volumes=40, dynamics="states", effect_type="both", severe_fraction=0.5
    )
    truth = json.loads((tmp_path / "code" / "strokefc_ground_truth.json").read_text())
    assert (truth["dynamics"], truth["effect_type"], truth["dwell_range_s"]) == ("states", "both", [40, 80])
    for subject in truth["subjects"].values():
        (run,) = subject["runs"].values()
        assert all(40 <= d <= 80 for d in run["dwell_s"])
        lower = CohortParams().static_effect if subject["group"] == "severe" else 0.0
        expected = STATES_MEAN_COUPLING - lower
        assert run["mean_coupling"] == pytest.approx(expected, abs=1e-6)
        assert subject["coupling_shift"] == pytest.approx(expected - STATES_MEAN_COUPLING)


# --- sites and clinical covariates (issue 27) ---------------------------------------------------------


def test_site_mix_follows_site_severity():
    from strokefc_sim.cohort import assign_sites

    rng = np.random.default_rng(0)
    severe = np.array([True, False] * 2000)
    even = assign_sites(rng, severe, 3, 0.0)
    tilted = assign_sites(rng, severe, 3, 0.8)
    share = lambda sites, k: severe[sites == k].mean()  # noqa: E731
    assert all(abs(share(even, k) - 0.5) < 0.05 for k in range(3))
    assert share(tilted, 0) < 0.2 < 0.8 < share(tilted, 2)
    assert abs(share(tilted, 1) - 0.5) < 0.05
    assert (assign_sites(rng, severe, 1, 1.0) == 0).all()


def test_sites_write_a_column_and_scale_the_noise(tmp_path):
    import pandas as pd

    from strokefc_sim import simulate_cohort
    from strokefc_sim.params import SITE_NOISE_RANGE

    truth = simulate_cohort(tmp_path / "s", n_subjects=4, n_volumes=30, n_sites=2, clinical_covariates=True)
    table = pd.read_csv(tmp_path / "s" / "participants.tsv", sep="\t")
    assert set(table["site"]) <= {"site1", "site2"}
    assert table["time_since_stroke_months"].between(3, 72).all()
    doc = json.loads((tmp_path / "s" / "participants.json").read_text())
    assert {"site", "time_since_stroke_months"} <= set(doc)
    scales = truth["site_noise_scale"]
    assert set(scales) == {"site1", "site2"}
    assert all(SITE_NOISE_RANGE[0] <= v <= SITE_NOISE_RANGE[1] for v in scales.values())
    for label, subject in truth["subjects"].items():
        assert subject["noise_scale"] == scales[table.set_index("participant_id").loc[f"sub-{label}", "site"]]
    # the site draws come from their own stream: the one-site cohort's labels and sides are unchanged
    simulate_cohort(tmp_path / "one", n_subjects=4, n_volumes=30)
    one = pd.read_csv(tmp_path / "one" / "participants.tsv", sep="\t")
    assert one.columns.tolist() == ["participant_id", "age", "sex", "lesion_hemisphere", "ul_fma"]
    pd.testing.assert_frame_equal(one, table[one.columns])


def test_noise_scale_scales_the_voxel_noise():
    from strokefc_sim.grid import brain_mask
    from strokefc_sim.signal import simulate_run

    mask = brain_mask(4)
    quiet, _, _ = simulate_run(np.random.default_rng(1), mask, "L", n_t=40, tr=2.0, amplitude=0.0)
    noisy, _, _ = simulate_run(
        np.random.default_rng(1), mask, "L", n_t=40, tr=2.0, amplitude=0.0, noise_scale=1.3
    )
    # same draws, more noise: the temporal SD of a voxel outside every planted region grows
    assert noisy[2:, :500].std(axis=0).mean() > 1.1 * quiet[2:, :500].std(axis=0).mean()


@pytest.mark.parametrize("side", ["L", "R"])
def test_tissue_signals_hold_no_planted_signal(side, monkeypatch):
    """fMRIPrep's WM/CSF signals and aCompCor come from WM/CSF masks, which hold no planted region: with
    the seed, motor and target signals switched off they are unchanged (the global signal is not)."""
    import strokefc_sim.signal as signal
    from strokefc_sim.grid import brain_mask

    mask = brain_mask(4)

    def confounds():
        kw = {"n_t": 40, "tr": 2.0, "amplitude": 0.9, "dynamics": "states"}
        return signal.simulate_run(np.random.default_rng(3), mask, side, **kw)[1]

    planted = confounds()
    for weight in ("W_SEED", "W_MOTOR", "W_TARGET"):
        monkeypatch.setattr(signal, weight, 0.0)
    silent = confounds()
    tissue = ["white_matter", "csf"] + [c for c in planted if c.startswith("a_comp_cor")]
    np.testing.assert_array_equal(planted[tissue].to_numpy(), silent[tissue].to_numpy())
    assert not np.allclose(planted["global_signal"], silent["global_signal"])
