"""Participant level end to end on generated cohorts: outputs, sidecars, validator, planted effect."""

import json
import subprocess

import nibabel as nb
import numpy as np
import pytest
from helpers import NO_QC, run_cli, simulate

from bids_app.participant_level import validator_executable
from workflows.seeds import atlas_record, atlas_region_mask

pytestmark = pytest.mark.integration
SPACE = "MNI152NLin2009cAsym"
STATS = ("dfcsd", "dfcmean", "fc")


@pytest.fixture(scope="module")
def finished(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("participant") / "out"
    code = run_cli(cohort, out, "participant", "--work-dir", out.parent / "work", "--nprocs", 2)
    return cohort, out, code


def _map(out, label, stat):
    return (
        out
        / f"sub-{label}"
        / "func"
        / f"sub-{label}_task-rest_space-{SPACE}_seed-ipsiM1_stat-{stat}_boldmap.nii.gz"
    )


def test_every_subject_gets_maps_masks_tables_and_a_report(finished):
    _, out, code = finished
    assert code == 0
    for label in ("01", "02", "03", "04"):
        for stat in STATS:
            img = nb.load(_map(out, label, stat))
            data = img.get_fdata()
            assert img.shape == (49, 58, 49)
            assert np.isfinite(data).all()
            assert data.any()
        func = out / f"sub-{label}" / "func"
        assert (func / f"sub-{label}_task-rest_space-{SPACE}_desc-ipsiM1_mask.nii.gz").exists()
        assert (func / f"sub-{label}_task-rest_seed-ipsiM1_desc-windows_timeseries.tsv").exists()
        assert (out / f"sub-{label}.html").stat().st_size > 10_000
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    assert desc["GeneratedBy"][0]["Name"] == "strokefc"
    assert (
        "sliding windows of 44 s (rounded to whole volumes; rectangular)"
        in (out / "logs" / "CITATION.md").read_text()
    )


def test_sidecars_hold_every_parameter(finished):
    _, out, _ = finished
    meta = json.loads(_map(out, "01", "dfcsd").with_suffix("").with_suffix(".json").read_text())
    for key in (
        "Sources",
        "Denoising",
        "Seed",
        "LesionHemisphere",
        "LesionHemisphereSource",
        "WindowLength_vol",
        "WindowLength_s",
        "WindowStep_vol",
        "WindowShape",
        "WindowsKept",
        "WindowsDropped",
        "MinWindowCoverage",
        "SoftwareVersions",
    ):
        assert key in meta, key
    den = meta["Denoising"]
    for key in (
        "Strategy",
        "HighPass_Hz",
        "LowPass_Hz",
        "SmoothingFWHM_mm",
        "VolumesCensored",
        "DummyScans",
        "ConfoundColumns",
    ):
        assert key in den, key
    assert den["DummyScans"] == 2
    assert len(den["ConfoundColumns"]) == 26
    assert meta["Seed"]["source"] == "atlas"
    assert meta["Seed"]["atlas"] == "HCPEx"
    assert meta["Seed"]["Atlas"]["SHA256"] == atlas_record("HCPEx")["SHA256"]  # cited by checksum
    assert meta["WindowLength_vol"] == 22  # the 44 s default at TR 2 s
    assert meta["WindowsKept"] == 200 - 2 - 22 + 1  # 44 s windows at TR 2 s
    assert all(s.startswith("bids:fmriprep:") for s in meta["Sources"])


def test_every_table_has_a_sidecar_describing_each_column(finished):
    _, out, _ = finished
    func = out / "sub-01" / "func"
    tables = sorted(func.glob("*.tsv"))
    assert {t.name for t in tables} >= {
        "sub-01_task-rest_qc.tsv",  # no entity taken from the column descriptions (was run-{...})
        "sub-01_task-rest_desc-design_timeseries.tsv",
        "sub-01_task-rest_seed-ipsiM1_desc-seed_timeseries.tsv",
        "sub-01_task-rest_seed-ipsiM1_desc-windows_timeseries.tsv",
    }
    for table in tables:
        sidecar = json.loads(table.with_suffix(".json").read_text())
        header = table.read_text().splitlines()[0].split("\t")
        assert sidecar["Description"]
        for column in header:
            assert sidecar[column]["Description"] != "undocumented column", (table.name, column)
    assert json.loads((func / "sub-01_task-rest_qc.json").read_text())["retained_time_s"]["Units"] == "s"
    windows = json.loads((func / "sub-01_task-rest_seed-ipsiM1_desc-windows_timeseries.json").read_text())
    assert windows["RegionAtlases"]["contraM1"]["SHA256"] == atlas_record("HCPEx")["SHA256"]


def test_official_bids_validator_accepts_the_outputs(finished):
    _, out, _ = finished
    exe = validator_executable()
    assert exe, "bids-validator-deno is a test dependency (setup.cfg [test])"
    proc = subprocess.run([exe, str(out), "--ignoreWarnings"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    # the .bidsignore hides output kinds, not folders: a misnamed file next to the maps is flagged
    stray = out / "sub-01" / "func" / "sub-01_task-rest_space-MNI152NLin2009cAsym_desc-stray_bold.txt"
    stray.write_text("not BIDS")
    try:
        proc = subprocess.run([exe, str(out), "--ignoreWarnings"], capture_output=True, text=True)
    finally:
        stray.unlink()
    assert proc.returncode != 0
    assert stray.name in proc.stdout, proc.stdout[-3000:]


def _region_sd(img, atlas, name):
    mask = np.asarray(atlas_region_mask(atlas, [name], img).dataobj) > 0
    return float(img.get_fdata()[mask].mean())


def test_planted_effect_is_found_and_follows_the_lesion_side(finished):
    """Severe patients carry a time-varying coupling between ipsilesional M1 and ipsilesional
    thalamus/SMA: their dFC SD there exceeds the contralesional homologue and the mild patients'."""
    bids, out, _ = finished
    truth = json.loads((bids / "code" / "strokefc_ground_truth.json").read_text())["subjects"]
    contrast = {}
    for label, t in truth.items():
        img = nb.load(_map(out, label, "dfcsd"))
        ipsi, contra = t["lesion_hemisphere"], "R" if t["lesion_hemisphere"] == "L" else "L"
        contrast[label] = sum(
            _region_sd(img, "AAL", f"{r}_{ipsi}") - _region_sd(img, "AAL", f"{r}_{contra}")
            for r in ("Thalamus", "Supp_Motor_Area")
        )
    severe = [lb for lb, t in truth.items() if t["group"] == "severe"]
    mild = [lb for lb in truth if lb not in severe]
    assert {truth[lb]["lesion_hemisphere"] for lb in severe} == {"L", "R"}  # both sides represented
    assert all(contrast[lb] > 0.03 for lb in severe), contrast  # both sides: the effect follows the lesion
    assert min(contrast[lb] for lb in severe) > max(contrast[lb] for lb in mild), contrast


def test_several_runs_give_a_weighted_subject_map(tmp_path):
    bids = simulate(tmp_path, n_subjects=1, n_runs=2, n_sessions=1, n_volumes=60, seed=5)
    out = tmp_path / "out"
    assert (
        run_cli(
            bids,
            out,
            "participant",
            "--work-dir",
            tmp_path / "work",
            "--window-lengths",
            "20vol",
            "30vol",
            "--null-surrogates",
            "3",
            "--skip-bids-validation",
            *NO_QC,
        )
        == 0
    )
    func = out / "sub-01" / "ses-1" / "func"
    runs = [
        nb.load(func / f"sub-01_ses-1_task-rest_run-{r}_space-{SPACE}_seed-ipsiM1_stat-dfcsd_boldmap.nii.gz")
        for r in (1, 2)
    ]
    # the session's map (runs are averaged within a session, never across sessions)
    subject = sorted(func.glob("sub-01_ses-1_task-rest_space-*_seed-ipsiM1_stat-dfcsd_boldmap.nii.gz"))
    assert len(subject) == 1
    assert not list(out.glob("sub-01/func/*_stat-dfcsd_boldmap.nii.gz"))
    meta = json.loads(subject[0].with_suffix("").with_suffix(".json").read_text())
    weights = np.asarray(meta["RunWeights_windows"], float)
    expected = sum(w * r.get_fdata() for w, r in zip(weights, runs)) / weights.sum()
    assert np.allclose(nb.load(subject[0]).get_fdata(), expected, atol=1e-5)
    # every map gets its session mean, and so does every map of the other window length (--window-lengths)
    stem = f"sub-01_ses-1_task-rest_space-{SPACE}_seed-ipsiM1"
    for name in (
        "stat-dfcmean",
        "stat-fc",
        "stat-dfcexcess",
        *(f"desc-win30vol_stat-{s}" for s in STATS[:2]),
    ):
        assert (func / f"{stem}_{name}_boldmap.nii.gz").exists(), name
    other = json.loads((func / f"{stem}_desc-win30vol_stat-dfcsd_boldmap.json").read_text())
    assert other["WindowLength_vol"] == 30
    assert "Subject-level" in other["Description"]
    assert not list(func.glob(f"{stem}_desc-win30vol_stat-fc_*"))  # static FC has no window


def test_every_bids_uri_resolves_through_dataset_links(finished):
    """Sources use bids:<name>:<path>; DatasetLinks must map <name> to a dataset holding <path>."""
    from workflows.utils.bids import resolve_bids_uri

    _, out, _ = finished
    links = json.loads((out / "dataset_description.json").read_text())["DatasetLinks"]
    uris = [
        source
        for sidecar in out.rglob("sub-*/func/*.json")
        for source in json.loads(sidecar.read_text()).get("Sources", [])
        if source.startswith("bids:")
    ]
    assert uris
    for uri in uris:
        assert uri.split(":")[1] in links, uri
        assert resolve_bids_uri(uri, out, links).is_file(), uri


def test_stationary_null_is_written_and_tested(finished):
    _, out, _ = finished
    meta = json.loads(_map(out, "01", "dfcsd").with_suffix("").with_suffix(".json").read_text())
    null = meta["StationaryNull"]
    assert null["Surrogates"] == 50
    assert 0 < null["TopTargetsPValue"] <= 1
    excess = nb.load(_map(out, "01", "dfcexcess"))
    assert np.isfinite(np.asarray(excess.dataobj)).all()


def test_report_shows_every_figure_and_counts_volumes_as_the_sidecar(finished):
    """The subject report embeds the six figures (the dFC-excess and lag maps included), holds the
    About and Errors-and-warnings sections, and its FD panel counts the volumes the sidecar kept."""
    _, out, _ = finished
    html = (out / "sub-01.html").read_text()
    assert html.count('src="data:image/svg+xml;base64,') == 6
    about = html[html.index('<section id="about">') : html.index('<section id="methods">')]
    assert "participant" in about
    assert "<code>strokefc " in about
    assert '<section id="errors">' in html
    figures = out / "sub-01" / "figures"
    assert (figures / "sub-01_task-rest_desc-dynamics_bold.svg").is_file()
    denoising = json.loads(_map(out, "01", "dfcsd").with_suffix("").with_suffix(".json").read_text())[
        "Denoising"
    ]
    after_dummies = denoising["VolumesTotal"] - denoising["DummyScans"]
    assert after_dummies == denoising["VolumesKept"] + denoising["VolumesCensored"]
    svg = (figures / "sub-01_task-rest_desc-confounds_bold.svg").read_text()
    assert f"{denoising['VolumesCensored']} of {after_dummies} volumes censored" in svg


def test_reports_only_rewrites_reports_without_running(finished, tmp_path):
    cohort, out, _ = finished
    report = out / "sub-01.html"
    report.unlink()
    work = tmp_path / "untouched"
    code = run_cli(cohort, out, "participant", "--reports-only", "--work-dir", work, "--skip-bids-validation")
    assert code == 0
    assert report.is_file()
    assert not work.exists()  # nothing ran


def test_clean_workdir_empties_it_first(tmp_path):
    from bids_app.config import ExecutionParams
    from bids_app.execution import execution_config, prepare_work_dir

    work = tmp_path / "work"
    prepare_work_dir(ExecutionParams(), work, {})
    (work / "old").mkdir()
    assert (work / "old").exists()
    prepare_work_dir(ExecutionParams(clean_workdir=True), work, {})
    assert work.is_dir()
    assert not (work / "old").exists()
    assert execution_config(tmp_path, stop_on_first_crash=True)["stop_on_first_crash"] is True
    # a short scheduler poll for MultiProc/Linear; cluster plugins keep Nipype's (each poll asks the queue)
    assert execution_config(tmp_path)["poll_sleep_duration"] < 1
    assert "poll_sleep_duration" not in execution_config(tmp_path, local=False)
