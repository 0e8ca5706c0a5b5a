"""Sessions (one map and label per session, CV grouped by subject) and run exclusion rules."""

import json

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from helpers import NO_QC, fewer_group_bootstrap_draws, run_cli, simulate

from workflows.cross_validation import fold_indices, plan_folds
from workflows.denoise import count_dummy_scans
from workflows.dfc import weighted_mean_maps
from workflows.params import DenoiseParams, GroupParams, QCParams, WindowParams
from workflows.qc import exclusion_reasons, predict_run_quality

SPACE = "MNI152NLin2009cAsym"
#: Group options of the tests that check how sessions and QC reach the group outputs, not what the models
#: learn: 3 folds once, one CNN epoch, the CNN on the generated maps' own 4 mm grid (not upsampled to 3 mm)
WIRING_ONLY = ("--cv-folds", 3, "--cv-repeats", 1, "--epochs", 1, "--cnn-resolution", 4)
#: Their participant and group runs in this process (Nipype's Linear plugin): the two xdist workers already
#: use both cores, and a MultiProc run's forkserver and job hand-offs cost CPU and nothing that these tests
#: check (MultiProc is tested by test_participant_level, test_reliability and test_console); in this
#: process, the group summary's bootstraps can take fewer draws (helpers.fewer_group_bootstrap_draws).
IN_PROCESS = ("--nprocs", 1)


def _run_files(bids, label="01"):
    func = bids / "derivatives" / "fmriprep" / f"sub-{label}" / "func"
    bold = next(func.glob("*desc-preproc_bold.nii.gz"))
    return bold, next(func.glob("*desc-confounds_timeseries.tsv"))


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("qc"), n_subjects=1, n_volumes=200, seed=3)


def test_qc_numbers_match_a_direct_computation(short_run):
    bold, confounds = _run_files(short_run)
    quality = predict_run_quality(bold, confounds, 2.0, DenoiseParams(), WindowParams())
    table = pd.read_csv(confounds, sep="\t")
    dummy = count_dummy_scans(table)
    fd = table["framewise_displacement"].to_numpy(float)[dummy:]
    assert quality["mean_fd_mm"] == pytest.approx(np.nanmean(fd), abs=1e-4)
    assert quality["max_fd_mm"] == pytest.approx(np.nanmax(fd), abs=1e-4)
    assert quality["retained_time_s"] == (200 - dummy) * 2.0
    in_band = (200 - dummy) * 2 * (0.08 - 0.01) * 2.0
    assert quality["dof_in_band"] == pytest.approx(in_band, abs=0.01)
    assert quality["regressors"] == 26  # 24 motion + WM + CSF
    assert quality["dof_remaining"] == pytest.approx(in_band - 26, abs=0.01)
    assert (
        quality["windows_valid"] == quality["windows_total"] == (200 - dummy) - 22 + 1
    )  # 44 s windows at TR 2 s
    assert exclusion_reasons(quality, QCParams()) == []


@pytest.mark.parametrize(
    ("rule", "change", "expected"),
    [
        ("min_time", {"min_time": 400.0}, "QCParams.min_time"),
        ("max_mean_fd", {"max_mean_fd": 0.01}, "QCParams.max_mean_fd"),
        ("min_windows", {"min_windows": 500}, "QCParams.min_windows"),
        ("min_dof", {"min_dof": 100.0}, "QCParams.min_dof"),
    ],
)
def test_each_exclusion_rule_on_its_own(short_run, rule, change, expected):
    bold, confounds = _run_files(short_run)
    quality = predict_run_quality(bold, confounds, 2.0, DenoiseParams(), WindowParams())
    reasons = exclusion_reasons(quality, QCParams(**change))
    assert len(reasons) == 1, reasons
    assert expected in reasons[0]
    off = {k: None for k in ("min_time", "max_mean_fd", "min_dof")}
    assert exclusion_reasons(quality, QCParams(**{**off, "min_windows": 0, **change})) == reasons


@pytest.mark.integration
def test_runs_built_to_fail_are_excluded_with_their_reason(tmp_path):
    """Short runs (no rule off) get no maps; the reason is in the QC table and the summary."""
    bids = simulate(tmp_path, n_subjects=2, n_volumes=100, seed=3)
    out = tmp_path / "out"
    code = run_cli(
        bids, out, "participant", "--work-dir", tmp_path / "work", "--skip-bids-validation", *IN_PROCESS
    )
    assert code == 0  # exclusion is a decision, not a failure
    for label in ("01", "02"):
        qc = pd.read_csv(out / f"sub-{label}" / "func" / f"sub-{label}_task-rest_qc.tsv", sep="\t")
        assert qc.loc[0, "excluded"] == 1
        assert "QCParams.min_time" in qc.loc[0, "reason"]
        assert not list((out / f"sub-{label}").glob("**/*_boldmap.nii.gz"))
    sidecar = json.loads((out / "sub-01" / "func" / "sub-01_task-rest_qc.json").read_text())
    assert "Description" in sidecar["retained_time_s"]


def test_folds_keep_every_session_of_a_subject_together():
    subjects = [
        {"label": f"{s}_ses-{k}", "subject": s, "score": score, "session": str(k)}
        for s, base in (("01", 10), ("02", 15), ("03", 30), ("04", 40), ("05", 12), ("06", 50))
        for k, score in enumerate((base, base + 8, base + 16), start=1)
    ]
    folds = plan_folds(subjects, GroupParams())
    units = np.array([s["label"] for s in subjects])
    of_subject = np.array([s["subject"] for s in subjects])
    for fold in folds:
        idx = fold_indices(units, fold)
        assert not set(of_subject[idx["train"]]) & set(of_subject[idx["test"]])
        assert len(idx["test"]) % 3 == 0  # whole subjects


@pytest.mark.integration
def test_three_sessions_give_three_maps_labels_and_predictions(tmp_path, monkeypatch):
    bids = simulate(tmp_path, n_subjects=4, n_sessions=3, n_volumes=60, seed=2)  # 37 windows a session
    out = tmp_path / "out"
    common = ["--work-dir", tmp_path / "work", "--skip-bids-validation", *IN_PROCESS, *NO_QC]
    fewer_group_bootstrap_draws(monkeypatch)  # the records are checked, not their intervals
    assert run_cli(bids, out, "participant", *common, "--null-surrogates", 0) == 0
    maps = sorted((out / "sub-01").glob("ses-*/func/*_stat-dfcsd_boldmap.nii.gz"))
    assert [m.name.split("_")[1] for m in maps] == ["ses-1", "ses-2", "ses-3"]
    # one CNN epoch on the maps' own 4 mm grid: this checks the wiring of sessions, not what the models learn
    assert run_cli(bids, out, "group", *common, *WIRING_ONLY) == 0
    cohort = pd.read_csv(out / "group" / "cohort.tsv", sep="\t")
    assert len(cohort) == 12
    sessions = pd.read_csv(bids / "sub-01" / "sub-01_sessions.tsv", sep="\t")
    got = cohort[cohort.participant_id == "sub-01"].set_index("session")["ul_fma"]
    assert got.to_dict() == dict(zip(sessions.session_id, sessions.ul_fma.astype(float)))
    predictions = pd.read_csv(out / "group" / "cv_predictions.tsv", sep="\t")
    for _, fold in predictions.groupby(["model", "repeat", "fold"]):
        assert fold.participant_id.str[:6].nunique() * 3 == len(fold)  # all three sessions together
    code = run_cli(
        bids, out, "participant", *common, "--null-surrogates", 0, "--participant-label", "01",
        "--model", out / "model",
    )  # fmt: skip
    assert code == 0
    table = pd.read_csv(out / "predictions.tsv", sep="\t")
    assert table.session.tolist() == ["ses-1", "ses-2", "ses-3"]
    assert table.ul_fma_true.tolist() == sessions.ul_fma.astype(float).tolist()
    # the exported primary model predicts its own training subject: flagged, and no external validation
    summary = json.loads((out / "group" / "cv_summary.json").read_text())
    assert (summary["n_subjects"], summary["n_sessions"]) == (4, 12)
    assert table.model_type.tolist() == ["parcel"] * 3
    assert table.in_training.tolist() == ["yes"] * 3
    assert table.validation_note.str.contains("not a validation").all()
    validation = json.loads((out / "predictions_summary.json").read_text())
    assert (validation["n_excluded_in_training"], validation["n_labelled"]) == (3, 0)
    assert "balanced_accuracy" not in validation
    assert "External validation" not in (out / "predictions.html").read_text()
    assert "in the model&#39;s training set" in (out / "sub-01.html").read_text().replace("'", "&#39;")
    # --combine-sessions: one subject map, the window-weighted mean of the three session maps
    combined = tmp_path / "combined"
    code = run_cli(  # the same work folder: the sessions' nodes are cached, the combination is new
        bids, combined, "participant", "--work-dir", tmp_path / "work", "--skip-bids-validation",
        "--null-surrogates", 0, "--participant-label", "01", "--combine-sessions", *IN_PROCESS, *NO_QC,
    )  # fmt: skip
    assert code == 0
    subject_map = (
        combined / "sub-01" / "func" / f"sub-01_task-rest_space-{SPACE}_seed-ipsiM1_stat-dfcsd_boldmap.nii.gz"
    )
    weights = [
        json.loads(m.with_name(m.name.replace(".nii.gz", ".json")).read_text())["WindowsKept"] for m in maps
    ]
    expected = weighted_mean_maps(maps, weights)
    np.testing.assert_allclose(nb.load(str(subject_map)).get_fdata(), expected.get_fdata(), atol=1e-6)


@pytest.mark.integration
def test_motion_by_class_is_reported_next_to_the_accuracy(tmp_path, monkeypatch):
    """Severe patients move twice as much and there is no dFC effect: the report says so, with QC-FC."""
    # 8 patients, 4 a class, every severe one moving more (exact Mann-Whitney p = 2/70, the least 4 + 4
    # can give): enough for the wiring from the QC tables to the summary and the report
    bids = simulate(tmp_path, n_subjects=8, n_volumes=60, seed=4, effect=0.0, motion_by_class=2.0)
    out = tmp_path / "out"
    common = ["--work-dir", tmp_path / "work", "--skip-bids-validation", *IN_PROCESS, *NO_QC]  # short runs
    fewer_group_bootstrap_draws(monkeypatch)  # the motion and QC-FC records are checked, not intervals
    assert run_cli(bids, out, "participant", *common, "--null-surrogates", 0) == 0
    assert run_cli(bids, out, "group", *common, *WIRING_ONLY) == 0
    summary = json.loads((out / "group" / "cv_summary.json").read_text())
    fd = summary["quality_by_class"]["mean_fd_mm"]
    assert fd["median_severe"] > 1.5 * fd["median_mild"]
    assert fd["p_mann_whitney"] < 0.05
    assert summary["qc_fc"]["computed"]
    assert 0 <= summary["qc_fc"]["fraction_p_below_alpha"] <= 1
    report = (out / "group.html").read_text()
    assert "motion differs by class" in report
    assert "QC-FC" in report


@pytest.mark.integration
def test_a_session_in_another_space_is_recorded_not_dropped_silently(tmp_path, capsys):
    bids = simulate(tmp_path, n_subjects=1, n_sessions=2, n_volumes=60, seed=6)
    func = bids / "derivatives" / "fmriprep" / "sub-01" / "ses-2" / "func"
    for path in func.iterdir():
        path.rename(path.with_name(path.name.replace(SPACE, "MNI152NLin6Asym")))
    out = tmp_path / "out"
    code = run_cli(
        bids, out, "participant", "--work-dir", tmp_path / "work", "--skip-bids-validation",
        "--null-surrogates", 0, "--participant-label", "01", *IN_PROCESS, *NO_QC,
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert f"ses-2 has no preprocessed BOLD in space {SPACE}: not processed" in printed
    assert (out / "sub-01" / "ses-1").is_dir()
    assert not (out / "sub-01" / "ses-2").exists()
    assert "ses-2 has no preprocessed BOLD" in (out / "sub-01.html").read_text()
