"""State that follows the inputs: stale outputs of a rerun, per-subject locks, the group's lesion-side
check, TR conflicts, and input images that cannot be analysed (constant BOLD, 4D brain masks)."""

import json
import os
import socket
import time

import nibabel as nb
import numpy as np
import pytest

from bids_app import locks, queries
from bids_app.group_level import side_disagreement
from bids_app.outputs import name_entities, stale_outputs
from workflows.denoise import check_not_constant
from workflows.utils.errors import InputError
from workflows.utils.images import check_bold_and_mask

RUN = {"subject": "01", "task": "rest", "space": "MNI152NLin2009cAsym"}


def _touch(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_an_output_written_just_before_a_rerun_is_stale(tmp_path):
    """The cut between an earlier run's outputs and this run's is the file system's clock at the start
    (bids_app.outputs.file_clock): a file of a run that ended a moment before is stale, one written after
    the start is not (a second of slack once kept a quick rerun's stale maps)."""
    from bids_app.outputs import file_clock

    name = "sub-01_task-rest_space-MNI152NLin2009cAsym_seed-ipsiM1_stat-windows_boldmap.nii.gz"
    earlier = _touch(tmp_path / "sub-01" / "func" / name)
    time.sleep(0.05)  # a clock tick or more: within the second before the rerun's start
    since = file_clock(tmp_path)
    assert earlier.stat().st_ctime < since <= time.time()
    assert not list(tmp_path.glob(".strokefc-clock-*"))  # the marker is gone
    mine = _touch(tmp_path / "sub-01" / "func" / name.replace("windows", "dfcsd"))
    assert stale_outputs(tmp_path, "01", [RUN], since) == [earlier]
    assert mine.stat().st_ctime >= since


def test_name_entities():
    assert name_entities("sub-01_ses-1_task-rest_stat-dfcsd_boldmap.nii.gz") == {
        "sub": "01",
        "ses": "1",
        "task": "rest",
        "stat": "dfcsd",
    }


def test_stale_outputs_are_the_same_runs_files_not_rewritten(tmp_path):
    func = tmp_path / "sub-01" / "func"
    old = [
        _touch(func / "sub-01_task-rest_space-MNI152NLin2009cAsym_seed-ipsiM1_stat-windows_boldmap.nii.gz"),
        _touch(func / "sub-01_task-rest_space-MNI152NLin2009cAsym_seed-ipsiM1_stat-windows_boldmap.json"),
        _touch(tmp_path / "sub-01" / "anat" / "sub-01_space-MNI152NLin2009cAsym_desc-lesion_mask.nii.gz"),
        _touch(tmp_path / "sub-01" / "figures" / "sub-01_task-rest_desc-carpet_bold.svg"),
    ]
    kept = [
        _touch(func / "sub-01_task-rest_space-MNI152NLin6Asym_seed-ipsiM1_stat-dfcsd_boldmap.nii.gz"),
        _touch(func / "sub-01_task-motor_space-MNI152NLin2009cAsym_seed-ipsiM1_stat-dfcsd_boldmap.nii.gz"),
        _touch(func / "sub-01_ses-2_task-rest_qc.tsv"),  # a session this run did not read
        _touch(func / "notes.txt"),  # not strokefc's
        _touch(func / "sub-01_task-rest_notes.txt"),  # not a derivative extension
        _touch(tmp_path / "sub-02" / "func" / "sub-02_task-rest_qc.tsv"),  # another subject
    ]
    time.sleep(0.05)  # file times have a coarse clock
    new = _touch(func / "sub-01_task-rest_space-MNI152NLin2009cAsym_seed-ipsiM1_stat-dfcsd_boldmap.nii.gz")
    os.utime(new, (0, 0))  # an old mtime, as a copy keeping its source's times: the ctime stays new
    since = new.stat().st_ctime
    assert sorted(stale_outputs(tmp_path, "01", [RUN], since)) == sorted(old)
    later = since + 10  # every file predates it, `kept` ones are still never stale
    assert sorted(stale_outputs(tmp_path, "01", [RUN], later)) == sorted([*old, new])
    assert not set(kept) & set(stale_outputs(tmp_path, "01", [RUN], later))
    assert stale_outputs(tmp_path, "01", [{**RUN, "task": "other"}], later) == [old[2]]  # anat: no task
    assert stale_outputs(tmp_path, "03", [RUN], later) == []


def test_a_subject_lock_refuses_a_live_run_and_takes_over_a_dead_ones(tmp_path):
    path = locks.acquire(tmp_path, "01")
    assert json.loads(path.read_text())["pid"] == os.getpid()
    locks.release(path)
    assert not path.exists()
    host = socket.gethostname()
    path.write_text(json.dumps({"pid": 1, "host": host, "started": "2026-12-03 07:00:00"}))
    with pytest.raises(InputError, match=r"sub-01 is being processed by another strokefc run \(pid 1") as exc:
        locks.acquire(tmp_path, "01")
    assert exc.value.where == str(path)
    locks.release(path)  # not ours: stays
    assert path.exists()
    dead = 2**22 + 12345  # above the kernel's default pid_max: never alive
    assert not locks.pid_alive(dead)
    path.write_text(json.dumps({"pid": dead, "host": host, "started": "2026-12-03 07:00:00"}))
    assert json.loads(locks.acquire(tmp_path, "01").read_text())["pid"] == os.getpid()
    path.write_text(json.dumps({"pid": dead, "host": "elsewhere", "started": "x"}))
    with pytest.raises(InputError, match="on elsewhere"):  # another host: cannot tell, refuse
        locks.acquire(tmp_path, "01")


def test_group_side_check():
    meta = {"LesionHemisphere": "R"}
    assert side_disagreement({"lesion_hemisphere": "left"}, "lesion_hemisphere", meta, "p") == "L"
    assert side_disagreement({"lesion_hemisphere": "r"}, "lesion_hemisphere", meta, "p") is None
    assert side_disagreement({"lesion_hemisphere": ""}, "lesion_hemisphere", meta, "p") is None
    assert side_disagreement({}, "lesion_hemisphere", meta, "p") is None


def test_tr_conflict_between_sidecar_and_header(tmp_path, caplog):
    img = nb.Nifti1Image(np.zeros((2, 2, 2, 3), np.float32), np.eye(4))
    img.header.set_zooms((2, 2, 2, 800))
    img.header.set_xyzt_units("mm", "msec")
    path = tmp_path / "sub-01_task-rest_desc-preproc_bold.nii.gz"
    img.to_filename(path)
    assert queries.header_repetition_time(img.header) == pytest.approx(0.8)
    assert queries._conflicting_header_tr(path, 2.0) == pytest.approx(0.8)
    assert "disagree" in caplog.text
    assert queries._conflicting_header_tr(path, 0.8) is None
    plain = nb.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4))
    assert queries.header_repetition_time(plain.header) is None


def test_constant_bold_is_named(tmp_path):
    mask = np.ones((3, 3, 3), bool)
    with pytest.raises(InputError, match=r"constant over time .*\(all zeros\)"):
        check_not_constant(np.zeros((3, 3, 3, 5), np.float32), mask, "bold.nii.gz")
    with pytest.raises(InputError, match="the same value in every volume"):
        check_not_constant(np.full((3, 3, 3, 5), 7, np.float32), mask, "bold.nii.gz")
    data = np.zeros((3, 3, 3, 5), np.float32)
    data[1, 1, 1, 4] = 1
    check_not_constant(data, mask, "bold.nii.gz")


def test_brain_mask_dimensions_and_shifts():
    bold = nb.Nifti1Image(np.zeros((4, 4, 4, 6), np.float32), np.eye(4))
    one = nb.Nifti1Image(np.ones((4, 4, 4, 1), np.uint8), np.eye(4))
    check_bold_and_mask(bold, one, "b", "m")  # one volume: read as 3D
    with pytest.raises(InputError, match=r"the brain mask is 4D \(4, 4, 4, 2\)"):
        check_bold_and_mask(bold, nb.Nifti1Image(np.ones((4, 4, 4, 2), np.uint8), np.eye(4)), "b", "m")
    shifted = np.eye(4)
    shifted[0, 3] = 8
    with pytest.raises(InputError, match="same shape, different affines"):
        check_bold_and_mask(bold, nb.Nifti1Image(np.ones((4, 4, 4), np.uint8), shifted), "b", "m")
