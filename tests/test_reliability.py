"""Bad inputs get a clear error (what, where, how to fix) and lose nothing; reruns, interrupted and
concurrent runs are safe. Faults are injected into copies of a small generated cohort."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import tomllib
from pathlib import Path
from xml.etree import ElementTree

import nibabel as nb
import numpy as np
import pandas as pd
import pytest
from helpers import NO_QC, run_cli, run_strokefc, simulate

pytestmark = pytest.mark.integration
SPACE = "MNI152NLin2009cAsym"
FAST = ("--window-length", "20vol", "--skip-bids-validation", *NO_QC)
STROKEFC = str(Path(sys.executable).parent / "strokefc")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Eight short runs (60 volumes, 4 mm): enough for a 20-volume window."""
    return simulate(tmp_path_factory.mktemp("faults"), n_subjects=8, n_volumes=60, seed=2)


@pytest.fixture
def bids(base, tmp_path):
    dst = tmp_path / "bids"
    shutil.copytree(base, dst)
    return dst


def _func(bids, label):
    return bids / "derivatives" / "fmriprep" / f"sub-{label}" / "func"


def _bold(bids, label):
    return _func(bids, label) / f"sub-{label}_task-rest_space-{SPACE}_desc-preproc_bold.nii.gz"


def _participants(bids):
    return pd.read_csv(bids / "participants.tsv", sep="\t", dtype=str)


def _write_participants(bids, table, sep="\t"):
    table.to_csv(bids / "participants.tsv", sep=sep, index=False)


def _set(bids, label, column, value):
    table = _participants(bids)
    table.loc[table.participant_id == f"sub-{label}", column] = value
    _write_participants(bids, table)


def _append(path, text):
    with open(path, "a") as fh:
        fh.write(text)


def _write_bytes(path, data):
    path.write_bytes(data)


def _filter_file(bids, spec):
    path = bids.parent / "filter.json"
    path.write_text(json.dumps(spec))
    return ["--bids-filter-file", path]


def _truncate(path, keep=0.5):
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * keep)])


def _flip_side(bids, label):
    side = _participants(bids).set_index("participant_id").loc[f"sub-{label}", "lesion_hemisphere"]
    _set(bids, label, "lesion_hemisphere", "R" if side == "L" else "L")
    return ["--participant-label", label, "--lesion-dir", bids / "derivatives" / "lesions"]


def _confounds(bids, label):
    return _func(bids, label) / f"sub-{label}_task-rest_desc-confounds_timeseries.tsv"


def _set_confound(bids, label, column, rows, value):
    """Write ``value`` (e.g. "n/a", "inf") into ``rows`` (0-based) of a confounds column."""
    path = _confounds(bids, label)
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    table.loc[list(rows), column] = value
    table.to_csv(path, sep="\t", index=False)
    return ["--participant-label", label]


def _zero_bold(bids, label):
    img = nb.load(_bold(bids, label))
    nb.Nifti1Image(np.zeros(img.shape, np.int16), img.affine, img.header).to_filename(_bold(bids, label))
    return ["--participant-label", label]


def _mask(bids, label):
    return _func(bids, label) / f"sub-{label}_task-rest_space-{SPACE}_desc-brain_mask.nii.gz"


def _mask_volumes(bids, label, n):
    """The brain mask saved as 4D with ``n`` volumes."""
    img = nb.load(_mask(bids, label))
    data = np.repeat(np.asarray(img.dataobj)[..., None], n, axis=3)
    nb.Nifti1Image(data, img.affine).to_filename(_mask(bids, label))
    return ["--participant-label", label]


def _lesion(bids, label):
    return (
        bids
        / "derivatives"
        / "lesions"
        / f"sub-{label}"
        / "anat"
        / (f"sub-{label}_space-{SPACE}_desc-lesion_mask.nii.gz")
    )


def _shift_lesion(bids, label, dx):
    """Move the lesion mask's affine ``dx`` mm in x (a mask saved with a wrong origin)."""
    img = nb.load(_lesion(bids, label))
    affine = img.affine.copy()
    affine[0, 3] += dx
    nb.Nifti1Image(np.asarray(img.dataobj), affine).to_filename(_lesion(bids, label))
    return ["--participant-label", label, "--lesion-dir", bids / "derivatives" / "lesions"]


def _lock(bids, label, pid):
    """A lock of another run of ``label`` (pid 1 is always alive) in the output folder ``bids/../out``."""
    import socket

    path = bids.parent / "out" / "logs" / "locks" / f"sub-{label}.lock"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": "2026-12-03 07:00:00"}))
    return ["--participant-label", label]


# (id, fault injected into the copy -> extra CLI args or None, analysis level, exit code, message)
CASES = [
    ("bids_dir missing", lambda b: shutil.rmtree(b), "participant", 2, "BIDS directory does not exist"),
    (
        "no dataset_description",
        lambda b: (b / "dataset_description.json").unlink(),
        "participant",
        2,
        "dataset_description.json is missing",
    ),
    (
        "fmriprep dir missing",
        lambda b: ["--fmriprep-dir", b / "nothing"],
        "participant",
        2,
        "fMRIPrep derivatives folder does not exist",
    ),
    (
        "unknown participant",
        lambda b: ["--participant-label", "99"],
        "participant",
        2,
        r"sub-99 not found.*choose among: 01",
    ),
    (
        "label with ..",
        lambda b: ["--participant-label", "../01"],
        "participant",
        2,
        "must be letters and digits",
    ),
    (
        "label with /",
        lambda b: ["--participant-label", "01/x"],
        "participant",
        2,
        "must be letters and digits",
    ),
    (  # a filter that matches nothing is said once, naming it and what the data have (not per subject)
        "no run in the space",
        lambda b: ["--participant-label", "01", "--space", "MNI152NLin6Asym"],
        "participant",
        2,
        r"has task 'rest' in space 'MNI152NLin6Asym'.*task\(s\) rest in space\(s\) MNI152NLin2009cAsym.*"
        r"check --task-id and --space",
    ),
    (  # issue 25: said once, naming the filter (a filter file used to exit 1 blaming --space)
        "a filter file matching no run",
        lambda b: _filter_file(b, {"bold": {"acquisition": "nope"}}),
        "participant",
        2,
        r"filter file's bold query \{\"acquisition\": \"nope\"\}.*and the filter file \(--bids-filter-file\)",
    ),
    (
        "a task that no run has",
        lambda b: ["--task-id", "nope"],
        "participant",
        2,
        r"no preprocessed BOLD of the \d+ selected participant\(s\) has task 'nope'",
    ),
    (
        "participants.tsv missing",
        lambda b: (b / "participants.tsv").unlink(),
        "participant",
        2,
        "participants.tsv is missing",
    ),
    (
        "ragged participants rows",
        lambda b: _append(b / "participants.tsv", "sub-09\t50\n"),
        "participant",
        2,
        "fields but the header has",
    ),
    (
        "comma-delimited participants",
        lambda b: _write_participants(b, _participants(b), sep=","),
        "participant",
        2,
        "tab-separated",
    ),
    (
        "no lesion column",
        lambda b: _write_participants(b, _participants(b).drop(columns="lesion_hemisphere")),
        "participant",
        2,
        "lesion_hemisphere",
    ),
    (
        "lesion side not L/R",
        lambda b: _set(b, "01", "lesion_hemisphere", "middle") or ["--participant-label", "01"],
        "participant",
        1,
        "not one of L, R",
    ),
    (
        "duplicated participant",
        lambda b: _write_participants(b, pd.concat([_participants(b)] * 2)),
        "participant",
        2,
        "listed twice",
    ),
    (
        "lesion side disagrees with the mask",
        lambda b: _flip_side(b, "01"),
        "participant",
        1,
        r"sub-01: participants.tsv says the lesion is on the . side but the lesion mask lies mostly on the",
    ),
    (
        "n/a inside a confound column",
        lambda b: _set_confound(b, "01", "trans_x", [40, 41], "n/a"),
        "participant",
        1,
        r"sub-01: the confounds table has missing or infinite values: column 'trans_x', row\(s\) 41, 42 "
        r"\(n/a\)\. Where: .*sub-01_task-rest_desc-confounds_timeseries\.tsv\. How to fix",
    ),
    (
        "inf in a confound column",
        lambda b: _set_confound(b, "01", "csf", [10], "inf"),
        "participant",
        1,
        r"column 'csf', row\(s\) 11 \(infinite\)",
    ),
    (
        "BOLD all zeros",
        lambda b: _zero_bold(b, "01"),
        "participant",
        1,
        r"sub-01: the BOLD is constant over time in every brain voxel \(all zeros\)",
    ),
    (
        "brain mask with two volumes",
        lambda b: _mask_volumes(b, "01", 2),
        "participant",
        1,
        r"sub-01: the brain mask is 4D .*a 3D mask is expected",
    ),
    (
        "lesion mask shifted in x",
        lambda b: _shift_lesion(b, "01", 500.0),
        "participant",
        1,
        r"sub-01: the lesion mask has no voxel on the BOLD grid",
    ),
    (
        "same subject running elsewhere",
        lambda b: _lock(b, "01", 1),
        "participant",
        1,
        r"sub-01 is being processed by another strokefc run \(pid 1, started 2026-12-03 07:00:00\).*"
        r"remove the lock file if that run is dead",
    ),
    (
        "UL-FMA out of range",
        lambda b: _set(b, "03", "ul_fma", "80"),
        "group",
        2,
        r"80 of sub-03 is outside 0\.\.66",
    ),
    (
        "UL-FMA not a number",
        lambda b: _set(b, "03", "ul_fma", "mild"),
        "group",
        2,
        "'mild' of sub-03 is not a number",
    ),
    (
        "no label column",
        lambda b: _write_participants(b, _participants(b).drop(columns="ul_fma")),
        "group",
        2,
        "no 'ul_fma' column",
    ),
    (  # reliability-2 case 55: read like participants.tsv (the run goes on, to the missing maps)
        "sessions.tsv with a BOM and CRLF",
        lambda b: _write_bytes(
            b / "sub-01" / "sub-01_sessions.tsv", b"\xef\xbb\xbfsession_id\tul_fma\r\nses-1\t30\r\n"
        ),
        "group",
        2,
        r"only 0 subject\(s\) have a map and a label",
    ),
    (  # Nipype's failure records (tracebacks) and [Node] lines stay out of the console
        "truncated BOLD",
        lambda b: _truncate(_bold(b, "01")) or ["--participant-label", "01"],
        "participant",
        1,
        r"sub-01: the BOLD file is truncated or corrupt.*\n    crash file: .*crash-.*\.txt",
    ),
]


#: The case run by the console script in a subprocess, with Nipype's MultiProc workers: what a user sees
#: when a node fails in a worker (the other failures' workers: test_faulty_subjects_fail_alone_with_a_summary,
#: test_verbose_shows_nipype_and_the_traceback).
IN_A_SUBPROCESS = {"truncated BOLD"}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(case, bids, tmp_path, capfd, caplog):
    """The whole console output has the message, and no traceback nor Nipype node record without -v.

    One case (``IN_A_SUBPROCESS``) runs the console script in a subprocess, Nipype's workers included.
    The others run the command line in this process, everything written to its file descriptors and
    every log record (a logged traceback too) checked: exit 2 (the inputs refused before any workflow is
    built), and exit 1 (a subject failed) with Nipype's Linear plugin (``--nprocs 1``: the failure reason
    comes from the same node records and crash files); a new process per case only repeated the imports
    (about 5 s each).
    """
    name, fault, level, code, message = case
    extra = fault(bids) or []
    args = (bids, tmp_path / "out", level, *extra, "--work-dir", tmp_path / "work", *FAST)
    in_process = name not in IN_A_SUBPROCESS
    if in_process:
        result = run_cli(*args, *(("--nprocs", 1) if code == 1 else ()))
        captured = capfd.readouterr()
        text = captured.out + captured.err
        assert "Traceback" not in caplog.text, caplog.text
    else:
        result, text = run_strokefc(*args)
    assert result == code, text
    assert re.search(message, text), text
    assert "Traceback" not in text, text
    assert "[Node]" not in text, text
    if code == 2:
        assert "How to fix" in text or "error:" in text


def _extract(tarball, dst):
    with tarfile.open(tarball) as tar:
        tar.extractall(dst, filter="data")
    return dst


def test_old_fmriprep_naming_is_refused_clearly(shared_data, tmp_path, capsys):
    root = _extract(
        shared_data / "fmriprep-layouts" / "bids-examples_synthetic_derivatives_fmriprep.tar.gz", tmp_path
    )
    fmriprep = root / "synthetic" / "derivatives" / "fmriprep"
    (fmriprep / "participants.tsv").write_text("participant_id\tlesion_hemisphere\nsub-01\tL\n")
    assert (
        run_cli(
            fmriprep,
            tmp_path / "out",
            "participant",
            "--participant-label",
            "01",
            "--skip-bids-validation",
            "--work-dir",
            tmp_path / "w",
        )
        == 1  # the subject is skipped before any work, and named in the summary
    )
    text = capsys.readouterr()
    assert "sub-01: these fMRIPrep outputs are too old for strokefc" in text.out
    assert "How to fix: re-run a current fMRIPrep (>= 20.2)" in text.out
    assert "Traceback" not in text.err


def test_placeholder_images_name_the_empty_file(shared_data, tmp_path, capsys):
    root = _extract(shared_data / "fmriprep-layouts" / "bids-examples_ds000001-fmriprep.tar.gz", tmp_path)
    fmriprep = root / "ds000001-fmriprep"
    (fmriprep / "participants.tsv").write_text("participant_id\tlesion_hemisphere\nsub-16\tL\n")
    code = run_cli(
        fmriprep,
        tmp_path / "out",
        "participant",
        "--participant-label",
        "16",
        "--task-id",
        "balloonanalogrisktask",
        "--skip-bids-validation",
        "--work-dir",
        tmp_path / "w",
    )
    text = capsys.readouterr()
    assert code == 1  # the subject is skipped before any work, and named in the summary
    assert "sub-16: the preprocessed BOLD is an empty file (0 bytes)" in text.out
    assert "Traceback" not in text.err


def test_faulty_subjects_fail_alone_with_a_summary(bids, tmp_path, capsys):
    """One run, eight subjects, six of them broken in different ways: the two sound subjects finish,
    the summary names each failure and its reason, the exit code is 1, failed subjects leave no maps."""
    bold = _bold(bids, "01")
    bold.write_bytes(bold.read_bytes()[: bold.stat().st_size // 2])  # truncated gzip
    conf = _func(bids, "02") / "sub-02_task-rest_desc-confounds_timeseries.tsv"
    pd.read_csv(conf, sep="\t").drop(columns=["csf"]).to_csv(conf, sep="\t", index=False, na_rep="n/a")
    img = nb.load(_bold(bids, "03"))  # NaN voxels
    data = img.get_fdata(dtype=np.float32)
    data[20:23, 30:33, 20:23, :] = np.nan
    nan_img = nb.Nifti1Image(data, img.affine, img.header)
    nan_img.set_data_dtype(np.float32)  # int16 would store NaN as 0
    nan_img.to_filename(_bold(bids, "03"))
    img = nb.load(_bold(bids, "04"))  # a 3D image
    nb.Nifti1Image(np.asarray(img.dataobj)[..., 0], img.affine).to_filename(_bold(bids, "04"))
    mask = _func(bids, "05") / f"sub-05_task-rest_space-{SPACE}_desc-brain_mask.nii.gz"
    nb.Nifti1Image(np.ones((40, 40, 40), np.uint8), np.eye(4)).to_filename(mask)  # another grid
    conf = _func(bids, "06") / "sub-06_task-rest_desc-confounds_timeseries.tsv"
    table = pd.read_csv(conf, sep="\t")
    table.iloc[:-5].to_csv(conf, sep="\t", index=False, na_rep="n/a")  # rows != volumes
    _bold(bids, "07").write_bytes(b"")  # empty file

    out = tmp_path / "out"
    code = run_cli(bids, out, "participant", "--work-dir", tmp_path / "work", "--nprocs", 2, *FAST)
    text = capsys.readouterr().out
    assert code == 1
    summary = text.split("Failed participants:")[1]
    expected = {
        "01": "truncated or corrupt",
        "02": "could not load the fMRIPrep confounds",
        "04": "3D",
        "05": "different grids",
        "06": "55 rows but the BOLD has 60",
        "07": "empty",
    }
    for label, reason in expected.items():
        line = next(ln for ln in summary.splitlines() if ln.strip().startswith(f"sub-{label}:"))
        assert reason in line, line
    for label in ("03", "08"):
        maps = sorted(out.glob(f"sub-{label}/func/*_stat-dfcsd_boldmap.nii.gz"))
        assert maps
        assert np.isfinite(nb.load(maps[0]).get_fdata()).all()
        assert (out / f"sub-{label}.html").exists()
    meta = json.loads(next(out.glob("sub-03/func/*_stat-dfcsd_boldmap.json")).read_text())
    assert meta["Denoising"]["NonFiniteVoxelsExcluded"] == 27
    for label in expected:
        assert not list(out.glob(f"sub-{label}/**/*.nii.gz")), label
    assert "Traceback" not in text


def test_fewer_volumes_than_one_window(bids, tmp_path, capsys):
    code = run_cli(
        bids,
        tmp_path / "out",
        "participant",
        "--participant-label",
        "01",
        "--work-dir",
        tmp_path / "w",
        "--window-length",
        "61vol",
        "--skip-bids-validation",
    )
    assert code == 1
    assert "fewer than one window (61 volumes)" in capsys.readouterr().out


def _maps(out):
    return {p.relative_to(out): p.read_bytes() for p in sorted(out.glob("sub-*/**/*.nii.gz"))}


def _run(bids, out, work, label):
    return subprocess.Popen(
        [
            STROKEFC,
            str(bids),
            str(out),
            "participant",
            "--participant-label",
            label,
            "--work-dir",
            str(work),
            *FAST,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


@pytest.fixture(scope="module")
def reference(base, tmp_path_factory):
    """An uninterrupted run of sub-01."""
    root = tmp_path_factory.mktemp("reference")
    proc = _run(base, root / "out", root / "work", "01")
    assert proc.wait(timeout=600) == 0, proc.stdout.read()
    return root / "out"


@pytest.fixture(scope="module")
def concurrent(base, tmp_path_factory):
    """Two runs started at once, sub-01 and sub-02, into one output folder (each its own work folder)."""
    root = tmp_path_factory.mktemp("concurrent")
    procs = [_run(base, root / "out", root / f"work{lb}", lb) for lb in ("01", "02")]
    assert [p.wait(timeout=600) for p in procs] == [0, 0], [p.stdout.read() for p in procs]
    return root / "out"


def test_rerun_gives_byte_identical_maps(reference, concurrent):
    """sub-01 run again from nothing (the concurrent runs' sub-01: a work folder of its own) gives the
    reference's bytes."""
    ref = _maps(reference)
    new = {k: v for k, v in _maps(concurrent).items() if k.parts[0] == "sub-01"}
    assert ref
    assert ref.keys() == new.keys()
    assert all(ref[k] == new[k] for k in ref), [str(k) for k in ref if ref[k] != new[k]]


def test_killed_run_resumes_to_the_same_outputs(base, reference, tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    proc = _run(base, out, work, "01")
    deadline = time.time() + 300
    while not list(work.glob("**/denoise/result_denoise.pklz")) and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(out.glob("sub-01/func/*_stat-dfcsd_boldmap.nii.gz"))  # killed before the maps
    proc = _run(base, out, work, "01")
    assert proc.wait(timeout=600) == 0, proc.stdout.read()
    assert _maps(out) == _maps(reference)
    assert not list(out.rglob("*.tmp*"))


def test_concurrent_runs_share_one_output_folder(concurrent):
    out = concurrent
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative"
    for label in ("01", "02"):
        assert list(out.glob(f"sub-{label}/func/*_stat-dfcsd_boldmap.nii.gz"))
        assert (out / f"sub-{label}.html").exists()


def test_read_only_output_dir_is_refused(bids, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root ignores permission bits: mount a read-only file system instead
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], capture_output=True
        )
        if done.returncode != 0:
            pytest.skip("running as root without permission to mount a read-only file system")
    else:
        ro.chmod(0o555)
    try:
        code = run_cli(bids, ro / "out", "participant", "--work-dir", tmp_path / "w", *FAST)
        text = capsys.readouterr().err
        assert code == 2
        assert "cannot be written" in text
        assert "Traceback" not in text
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], check=False)


def _final_files(out):
    """Every file under a final name (hidden temporary files and folders excluded)."""
    return sorted(
        p
        for p in out.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts)
    )


def _load_fully(path):
    """Read a file whole as its type says (raises when it is truncated or corrupt)."""
    name = path.name
    if name.endswith((".nii.gz", ".nii")):
        nb.load(path).get_fdata()
    elif name.endswith(".json"):
        json.loads(path.read_text())
    elif name.endswith(".tsv"):
        pd.read_csv(path, sep="\t")
    elif name.endswith(".toml"):
        tomllib.loads(path.read_text())
    elif name.endswith(".html"):
        assert path.read_text().rstrip().endswith("</html>"), path
    elif name.endswith(".svg"):
        ElementTree.parse(path)
    else:
        path.read_bytes()


def test_sigkill_at_any_point_leaves_only_complete_files(base, reference, tmp_path):
    """A participant run killed (process group, SIGKILL) as outputs appear, at several points: every
    file under a final name loads whole each time, and a rerun completes to the reference outputs."""
    out, work = tmp_path / "out", tmp_path / "work"
    kills = 0
    for delay in (0.0, 0.5, 2.0):  # after the next new output file appears, wait this long
        before = len(_final_files(out)) if out.exists() else 0
        proc = _run(base, out, work, "01")
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline:
            if out.exists() and len(_final_files(out)) > before:
                time.sleep(delay)
                break
            time.sleep(0.05)
        if proc.poll() is not None:  # finished before this kill point
            break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        for path in _final_files(out):
            _load_fully(path)
    assert kills == 3
    proc = _run(base, out, work, "01")
    assert proc.wait(timeout=600) == 0, proc.stdout.read()
    assert _maps(out) == _maps(reference)
    for path in _final_files(out):
        _load_fully(path)
    assert not list(out.rglob(".tmp-*"))  # the rerun removed what the killed runs left


def test_group_names_an_unreadable_map(base, reference, tmp_path, capfd, caplog):
    """reliability-2 case 53: a truncated participant map stops the group level before training, with
    the file and the subject to re-run named, and no traceback. The maps are checked before any workflow
    is built (exit 2): in this process, its file-descriptor output and log records checked."""
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    dfcsd = next(out.glob("sub-01/func/*_stat-dfcsd_boldmap.nii.gz"))
    dfcsd.write_bytes(dfcsd.read_bytes()[:2000])
    code = run_cli(base, out, "group", "--work-dir", tmp_path / "work", "--skip-bids-validation")
    captured = capfd.readouterr()
    text = captured.out + captured.err
    assert code == 2, text
    assert "Traceback" not in caplog.text, caplog.text
    assert "sub-01 stat-dfcsd map file is truncated" in text
    assert f"Where: {dfcsd}." in text
    assert "--participant-label 01" in text
    assert "Traceback" not in text


def test_verbose_shows_nipype_and_the_traceback(bids, tmp_path):
    """The positive control of the quiet console: with -v, Nipype's node records (from its workers)
    and the failure's traceback are shown."""
    _truncate(_bold(bids, "01"))
    code, text = run_strokefc(
        bids,
        tmp_path / "out",
        "participant",
        "--participant-label",
        "01",
        "--work-dir",
        tmp_path / "w",
        "--nprocs",
        2,
        "-v",
        *FAST,
    )
    assert code == 1, text
    assert "[Node] Setting-up" in text
    assert "Traceback" in text


def test_input_faults_that_used_to_change_maps_silently_are_said_and_recorded(bids, tmp_path, capsys):
    """One run, four subjects: sub-01 without FD column and with a TR conflict, sub-02 with an uncompressed
    BOLD and a 4D brain mask of one volume, sub-03 with a probabilistic lesion mask, sub-04 a control.
    Every one completes; each fault is said in the summary and recorded in the sidecars and QC table,
    and the probabilistic mask is cut at 0.5."""
    from scipy.ndimage import gaussian_filter

    from workflows.utils.images import resample_binary

    conf = _confounds(bids, "01")
    pd.read_csv(conf, sep="\t").drop(columns=["framewise_displacement"]).to_csv(
        conf, sep="\t", index=False, na_rep="n/a"
    )
    img = nb.load(_bold(bids, "01"))
    img.header.set_zooms((*img.header.get_zooms()[:3], 0.8))
    img.header.set_xyzt_units("mm", "sec")
    nb.Nifti1Image(np.asarray(img.dataobj), img.affine, img.header).to_filename(_bold(bids, "01"))
    bold = _bold(bids, "02")
    nb.load(bold).to_filename(str(bold)[: -len(".gz")])  # uncompressed .nii, as some pipelines export
    bold.unlink()
    _mask_volumes(bids, "02", 1)
    binary = nb.load(_lesion(bids, "03"))
    inside = np.asarray(binary.dataobj) > 0
    blurred = gaussian_filter(inside.astype(np.float32), 1.5)
    prob = np.where(inside, 0.9, np.clip(blurred, 0, 0.45)).astype(np.float32)  # tails < 0.5 outside
    prob[prob < 0.02] = 0
    nb.Nifti1Image(prob, binary.affine).to_filename(_lesion(bids, "03"))
    assert (prob > 0).sum() > 3 * inside.sum()

    out = tmp_path / "out"
    lesions = bids / "derivatives" / "lesions"
    code = run_cli(
        bids, out, "participant", "--participant-label", "01", "02", "03", "04", "--lesion-dir", lesions,
        "--work-dir", tmp_path / "work", "--nprocs", 2, "--null-surrogates", 0, *FAST,
    )  # fmt: skip
    text = capsys.readouterr()
    assert code == 0, text.out + text.err
    assert "4 of 4 participant(s) done" in text.out
    assert "sub-01: task-rest: no framewise_displacement column in the confounds: motion rules" in text.out
    assert "not applied" in text.out
    assert (
        "sub-01: task-rest: RepetitionTime 2 s from the JSON sidecar used; the NIfTI header says 0.8 s"
        in (text.out)
    )
    assert "Traceback" not in text.out + text.err

    def sidecar(label, pattern="*_stat-dfcsd_boldmap.json"):
        return json.loads(next(out.glob(f"sub-{label}/func/{pattern}")).read_text())

    def qc(label):
        return pd.read_csv(next(out.glob(f"sub-{label}/func/*_qc.tsv")), sep="\t", keep_default_na=False)

    assert any("framewise_displacement" in w for w in sidecar("01")["Warnings"])
    assert "mean-FD exclusion" in qc("01")["reason"][0]
    assert sidecar("01")["RepetitionTime"] == 2.0
    assert sidecar("01")["RepetitionTimeNIfTIHeader"] == pytest.approx(0.8)
    assert "NIfTI header says 0.8 s" in qc("01")["reason"][0]
    for label in ("02", "03", "04"):
        assert qc(label)["reason"][0] == ""
        assert "RepetitionTimeNIfTIHeader" not in sidecar(label)
    lesion_meta = json.loads(next(out.glob("sub-03/anat/*_desc-lesion_mask.json")).read_text())
    assert lesion_meta["Threshold"] == 0.5
    assert sidecar("03")["Lesion"]["LesionMaskValues"] == "graded"
    assert sidecar("04")["Lesion"]["LesionMaskValues"] == "binary"
    written = np.asarray(nb.load(next(out.glob("sub-03/anat/*_desc-lesion_mask.nii.gz"))).dataobj) > 0
    expected = resample_binary(
        nb.Nifti1Image(inside.astype(np.uint8), binary.affine), nb.load(_mask(bids, "03"))
    )
    assert (written == expected).all()  # the mask it was blurred from, not every voxel > 0


def test_rerun_removes_stale_outputs_and_the_group_follows_participants_tsv(bids, tmp_path, capsys):
    """Run A (lesion masks, window maps) then run B (30-volume windows, no lesion, no window maps) of
    sub-01 on one output folder: A's window maps and lesion mask are gone, every map left is B's; other
    files (another space, the user's) stay. Then the
    lesion side corrected in participants.tsv after the participant level stops the group level."""
    out, work = tmp_path / "out", tmp_path / "work"
    lesions = bids / "derivatives" / "lesions"
    common = ("--participant-label", "01", "--work-dir", work, "--null-surrogates", 0, *FAST)
    assert run_cli(bids, out, "participant", *common, "--lesion-dir", lesions, "--save-windows") == 0
    stale = list(out.glob("sub-01/func/*_stat-windows_boldmap.*")) + list(out.glob("sub-01/anat/*lesion*"))
    assert len(stale) == 4
    mine = out / "sub-01" / "func" / "my_notes.txt"
    mine.write_text("not strokefc's")
    other_space = (
        out
        / "sub-01"
        / "func"
        / ("sub-01_task-rest_space-MNI152NLin6Asym_seed-ipsiM1_stat-dfcsd_boldmap.nii.gz")
    )
    other_space.write_bytes(b"another space's map")
    capsys.readouterr()
    assert run_cli(bids, out, "participant", *common, "--window-length", "30vol") == 0
    assert not [p for p in stale if p.exists()]
    assert mine.exists()
    assert other_space.exists()
    other_space.unlink()
    lengths = {
        json.loads(p.read_text()).get("WindowLength_vol") for p in out.glob("sub-01/func/*_boldmap.json")
    }
    assert lengths <= {30, None}  # the lag map has no window

    side = _participants(bids).set_index("participant_id").loc["sub-01", "lesion_hemisphere"]
    _set(bids, "01", "lesion_hemisphere", "R" if side == "L" else "L")
    capsys.readouterr()
    code = run_cli(bids, out, "group", "--work-dir", work, "--skip-bids-validation")
    text = capsys.readouterr()
    assert code == 2, text.out + text.err
    assert re.search(
        r"sub-01: participants.tsv says . but its maps were made for .*How to fix: rerun the participant "
        r"level for sub-01",
        text.err,
    ), text.err
    assert "Traceback" not in text.out + text.err
