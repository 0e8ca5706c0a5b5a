"""The command line: help, version, argument validation and exit codes."""

import json
import subprocess
import sys

import pytest
from helpers import run_cli

from bids_app import __version__, cli, parser


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "bids_app.cli", *map(str, args)], capture_output=True, text=True
    )


def test_help_documents_every_option():
    built = parser.build_parser()
    text = built.format_help()
    for action in built._actions:
        for opt in action.option_strings:
            assert opt in text
    for group in (
        "Options for filtering BIDS queries",
        "Denoising",
        "Seed",
        "Dynamic functional connectivity",
        "Model, training and prediction",
        "Options to handle performance",
        "Other options",
    ):
        assert group in text


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        parser.parse_args(["--version"])
    assert exc.value.code == 0
    assert __version__ in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["participant", "--participant-label", "../etc"], "letters and digits"),
        (["participant", "--seed-coords", "1,2"], "X,Y,Z"),
        (["participant", "--high-pass", "0.1", "--low-pass", "0.05"], "must be below"),
        (["participant", "--window-step", "0"], "positive"),
        (["participant", "--min-window-coverage", "1.5"], "(0, 1]"),
        (["group", "--model", "."], "--model is for the participant level"),
        (["everything"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2(tmp_path, args, message, capsys):
    assert run_cli(tmp_path, tmp_path / "out", *args) == 2  # in-process: no torch import per case
    assert message in capsys.readouterr().err


def test_missing_bids_dir_is_an_input_error(tmp_path, capsys):
    assert cli.main([str(tmp_path / "nope"), str(tmp_path / "out"), "participant"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err
    assert str(tmp_path / "nope") in err


def test_not_bids_dir_says_how_to_fix(tmp_path, capsys):
    (tmp_path / "raw").mkdir()
    assert cli.main([str(tmp_path / "raw"), str(tmp_path / "out"), "participant"]) == 2
    err = capsys.readouterr().err
    assert "dataset_description.json is missing" in err
    assert "How to fix" in err
    assert "Traceback" not in err


def test_fmriprep_dir_detected_as_bids_dir(tmp_path):
    fp = tmp_path / "fmriprep"
    fp.mkdir()
    (fp / "dataset_description.json").write_text(
        json.dumps(
            {
                "Name": "x",
                "BIDSVersion": "1.9.0",
                "DatasetType": "derivative",
                "GeneratedBy": [{"Name": "fMRIPrep", "Version": "23.2.1"}],
            }
        )
    )
    config = parser.parse_args([str(fp), str(tmp_path / "out"), "participant"])
    assert config.fmriprep_dir == fp.resolve()


def test_presets_and_explicit_values(tmp_path):
    (tmp_path / "dataset_description.json").write_text("{}")
    (tmp_path / "derivatives" / "fmriprep").mkdir(parents=True)
    (tmp_path / "derivatives" / "fmriprep" / "dataset_description.json").write_text("{}")
    base = [str(tmp_path), str(tmp_path / "out"), "participant"]
    cfg = parser.parse_args([*base, "--dfc-preset", "dpabi"])
    assert (cfg.window.window_length, cfg.window.window_step, cfg.window.window_shape) == (
        "30vol",
        1,
        "hamming",
    )
    assert cfg.window.window_estimator == "tapered-series"  # DPABI correlates the tapered series
    cfg = parser.parse_args([*base, "--dfc-preset", "dynamicbc", "--window-step", "5"])
    assert (cfg.window.window_length, cfg.window.window_step) == ("50vol", 5)
    cfg = parser.parse_args([*base, "--participant-label", "sub-01", "02", "--smoothing", "0"])
    assert cfg.queries.participant_label == ("01", "02")
    assert cfg.denoise.smoothing_fwhm is None


@pytest.mark.parametrize(
    ("args", "section", "field", "value"),
    [
        (["--mem", "16000"], "execution", "mem_gb", 16.0),  # MB, as fMRIPrep's --mem
        (["--mem-mb", "8000"], "execution", "mem_gb", 8.0),
        (["--mem-gb", "4"], "execution", "mem_gb", 4.0),
        (["-t", "motor"], "queries", "task_id", "motor"),
        (["--nthreads", "3"], "execution", "nprocs", 3),
        (["--n_cpus", "3"], "execution", "nprocs", 3),
        (["--skip_bids_validation"], "queries", "skip_bids_validation", True),
        (["--participant_label", "01"], "queries", "participant_label", ("01",)),
    ],
)
def test_fmriprep_spellings_are_accepted(tmp_path, args, section, field, value):
    (tmp_path / "dataset_description.json").write_text("{}")
    (tmp_path / "derivatives" / "fmriprep").mkdir(parents=True)
    (tmp_path / "derivatives" / "fmriprep" / "dataset_description.json").write_text("{}")
    cfg = parser.parse_args([str(tmp_path), str(tmp_path / "out"), "participant", *args])
    assert getattr(getattr(cfg, section), field) == value


def test_work_dir_underscore_and_no_abbreviations(tmp_path):
    (tmp_path / "dataset_description.json").write_text("{}")
    (tmp_path / "derivatives" / "fmriprep").mkdir(parents=True)
    (tmp_path / "derivatives" / "fmriprep" / "dataset_description.json").write_text("{}")
    cfg = parser.parse_args(
        [str(tmp_path), str(tmp_path / "out"), "participant", "--work_dir", str(tmp_path / "w")]
    )
    assert cfg.work_dir == (tmp_path / "w").resolve()
    proc = _run(tmp_path, tmp_path / "out", "participant", "--mem-g", "4")  # a prefix is not an option
    assert proc.returncode == 2
    assert "unrecognized arguments: --mem-g" in proc.stderr


def test_saved_configuration_repeats_a_run_and_flags_win(tmp_path):
    from bids_app.config import to_toml

    (tmp_path / "dataset_description.json").write_text("{}")
    (tmp_path / "derivatives" / "fmriprep").mkdir(parents=True)
    (tmp_path / "derivatives" / "fmriprep" / "dataset_description.json").write_text("{}")
    base = [str(tmp_path), str(tmp_path / "out"), "participant"]
    first = parser.parse_args(
        [
            *base,
            "--dfc-preset",
            "dpabi",
            "--denoise",
            "scrubbing",
            "--fd-thresh",
            "0.3",
            "--smoothing",
            "0",
            "--seed-coords=-38,-22,56",
            "--participant-label",
            "01",
            "02",
            "--null-surrogates",
            "7",
        ]
    )
    saved = tmp_path / "config.toml"
    saved.write_text(to_toml(first))
    again = parser.parse_args([*base, "--config-file", str(saved)])
    assert again == first
    assert saved.read_text() == to_toml(again)  # byte for byte
    changed = parser.parse_args([*base, "--config-file", str(saved), "--fd-thresh", "0.4"])
    assert changed.denoise.fd_thresh == 0.4
    assert changed.denoise.strategy == "scrubbing"
    saved.write_text('[options]\nwindow_lenght = "30vol"\n')
    proc = _run(*base, "--config-file", saved)
    assert proc.returncode == 2
    assert "unknown options: window_lenght" in proc.stderr


def test_group_methods_text_describes_the_participant_options_that_ran(tmp_path):
    from bids_app.config import to_toml, with_participant_options
    from bids_app.reports.boilerplate import methods_text

    (tmp_path / "dataset_description.json").write_text("{}")
    (tmp_path / "derivatives" / "fmriprep").mkdir(parents=True)
    (tmp_path / "derivatives" / "fmriprep" / "dataset_description.json").write_text("{}")
    out = tmp_path / "out"
    participant = parser.parse_args(
        [
            str(tmp_path),
            str(out),
            "participant",
            "--denoise",
            "scrubbing",
            "--dfc-preset",
            "dpabi",
            "--smoothing",
            "0",
        ]
    )
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "strokefc_participant_config.toml").write_text(to_toml(participant))
    group = parser.parse_args([str(tmp_path), str(out), "group", "--cv-folds", "3"])
    assert group.denoise.strategy == "simple"  # the group command's own defaults...
    described = with_participant_options(group)
    assert described.denoise.strategy == "scrubbing"  # ...are replaced by what the participant level ran
    assert described.denoise.smoothing_fwhm is None
    assert described.window.window_length == "30vol"
    assert described.group.cv.cv_folds == 3
    md = methods_text(described, {})
    assert "`scrubbing`" in md
    assert "30 volumes" in md
    assert "3-fold cross-validation" in md


def _study(tmp_path):
    """A raw dataset with an fMRIPrep folder in derivatives/ (enough for the parser)."""
    (tmp_path / "dataset_description.json").write_text("{}")
    fmriprep = tmp_path / "derivatives" / "fmriprep"
    fmriprep.mkdir(parents=True)
    (fmriprep / "dataset_description.json").write_text(
        json.dumps({"Name": "x", "GeneratedBy": [{"Name": "fMRIPrep", "Version": "23.2.1"}]})
    )
    return [str(tmp_path), str(tmp_path / "out"), "participant"]


def test_fmriprep_no_ops_are_accepted(tmp_path, capsys):
    base = _study(tmp_path)
    plain = parser.parse_args(base)
    cfg = parser.parse_args([*base, "--fs-license-file", str(tmp_path / "license.txt"), "--notrack"])
    assert cfg == plain  # nothing changes
    err = capsys.readouterr().err
    assert err.count("\n") == 1  # one line
    assert "--fs-license-file is ignored" in err


@pytest.mark.parametrize(
    ("value", "space", "res"),
    [
        ("MNI152NLin2009cAsym", "MNI152NLin2009cAsym", None),
        ("MNI152NLin2009cAsym:res-2", "MNI152NLin2009cAsym", "2"),
    ],
)
def test_output_spaces_maps_onto_space_and_res(tmp_path, value, space, res):
    cfg = parser.parse_args([*_study(tmp_path), "--output-spaces", value])
    assert (cfg.queries.space, cfg.queries.res) == (space, res)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output-spaces", "MNI152NLin6Asym:res-2"], "defined in MNI152NLin2009cAsym only"),
        (["--output-spaces", "MNI152NLin2009cAsym", "T1w"], "one space at a time"),
        (["--output-spaces", "MNI152NLin2009cAsym:cohort-1"], "only a res-N modifier"),
        (["--output-spaces", "MNI152NLin2009cAsym:res-2", "--res", "1"], "disagree"),
    ],
)
def test_unsupported_output_spaces_exit_2(tmp_path, args, message, capsys):
    assert run_cli(*_study(tmp_path), *args) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert message in error
    assert "give" in error  # and how to fix it


def test_derivatives_map_onto_fmriprep_and_lesion_folders(tmp_path):
    base = _study(tmp_path)
    elsewhere = tmp_path / "prep"
    (tmp_path / "derivatives" / "fmriprep").rename(elsewhere)
    (tmp_path / "derivatives" / "fmriprep").mkdir()  # an empty default that must not be used
    lesions = tmp_path / "masks" / "sub-01" / "anat"
    lesions.mkdir(parents=True)
    (lesions / "sub-01_space-MNI152NLin2009cAsym_label-lesion_roi.nii.gz").write_bytes(b"")
    cfg = parser.parse_args([*base, "--derivatives", str(elsewhere), str(tmp_path / "masks")])
    assert cfg.fmriprep_dir == elsewhere.resolve()
    assert cfg.queries.lesion_dir == (tmp_path / "masks").resolve()
    named = parser.parse_args(
        [*base, "--derivatives", f"fmriprep={elsewhere}", f"lesions={tmp_path / 'masks'}"]
    )
    assert named == cfg
    stroke = tmp_path / "fmristroke"
    stroke.mkdir()
    (stroke / "dataset_description.json").write_text(json.dumps({"GeneratedBy": [{"Name": "fMRIStroke"}]}))
    cfg = parser.parse_args([*base, "--derivatives", str(elsewhere), str(stroke)])
    assert cfg.queries.fmristroke_dir == stroke.resolve()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--derivatives", "{other}"], "nor a folder of lesion masks"),
        (["--derivatives", "xcpd={other}"], "unknown name 'xcpd'"),
        (["--derivatives", "{missing}"], "is not a folder"),
        (["--derivatives", "{fmriprep}", "--fmriprep-dir", "{other}"], "give one"),
    ],
)
def test_bad_derivatives_exit_2(tmp_path, extra, message, capsys):
    base = _study(tmp_path)
    (tmp_path / "other").mkdir()
    names = {
        "other": tmp_path / "other",
        "missing": tmp_path / "missing",
        "fmriprep": tmp_path / "derivatives" / "fmriprep",
    }
    assert run_cli(*base, *[a.format(**names) for a in extra]) == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert message in error
    assert error.startswith("strokefc: error: --derivatives")


def test_threads_per_process_default_gives_a_lone_subject_the_machine():
    """Without --omp-nthreads, the participant level divides the processes among the subjects (1 to 8
    threads each); a given value is kept; the default process count is the CPUs this process may use."""
    import os
    from pathlib import Path

    from bids_app.config import ExecutionParams, available_cpus

    assert ExecutionParams(nprocs=2).threads_per_process(1) == 2
    assert ExecutionParams(nprocs=2).threads_per_process(24) == 1
    assert ExecutionParams(nprocs=16).threads_per_process(3) == 5
    assert ExecutionParams(nprocs=64).threads_per_process(1) == 8
    assert ExecutionParams(nprocs=2, omp_nthreads=1).threads_per_process(1) == 1
    assert ExecutionParams(nprocs=8, omp_nthreads=3).threads_per_process(24) == 3
    assert ExecutionParams(nprocs=2, use_plugin=Path("slurm.yml")).threads_per_process(1) == 1
    assert ExecutionParams().nprocs == available_cpus() == len(os.sched_getaffinity(0))
