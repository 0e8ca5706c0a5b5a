"""One subject's bad input never stops the others; tables in any usual encoding; TR units honoured."""

import json
import shutil

import nibabel as nb
import numpy as np
import pytest
from helpers import NO_QC, run_cli, simulate

from bids_app import queries
from bids_app.parser import parse_args
from workflows.utils.errors import InputError


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Four short generated patients (read-only: copy before altering)."""
    return simulate(tmp_path_factory.mktemp("isolation"), n_subjects=4, n_volumes=80)


def _bold(bids, label):
    return next(
        (bids / "derivatives" / "fmriprep" / f"sub-{label}" / "func").glob("*desc-preproc_bold.nii.gz")
    )


def _set_tr(bids, label, value):
    sidecar = _bold(bids, label).with_name(_bold(bids, label).name.replace(".nii.gz", ".json"))
    meta = json.loads(sidecar.read_text())
    meta["RepetitionTime"] = value
    sidecar.write_text(json.dumps(meta))
    return sidecar


def test_table_encodings(tmp_path):
    text = "participant_id\tsite\nsub-01\tHôpital Zürich\n"
    for encoding in ("utf-8", "utf-8-sig", "cp1252", "latin-1"):
        path = tmp_path / f"{encoding}.tsv"
        path.write_bytes(text.encode(encoding))
        assert queries.read_table_text(path) == text


@pytest.mark.parametrize("value", [None, 0, -2, "2 s", "nan"])
def test_bad_repetition_time_names_the_sidecar(small, tmp_path, value):
    bids = shutil.copytree(small, tmp_path / "bids")
    sidecar = _set_tr(bids, "01", value)
    with pytest.raises(InputError, match="RepetitionTime") as exc:
        queries._repetition_time(_bold(bids, "01"))
    assert str(sidecar) in str(exc.value.where)


def test_header_tr_in_milliseconds(tmp_path):
    img = nb.Nifti1Image(np.zeros((2, 2, 2, 3), np.float32), np.eye(4))
    img.header.set_zooms((2, 2, 2, 2000))
    img.header.set_xyzt_units("mm", "msec")
    path = tmp_path / "sub-01_task-rest_desc-preproc_bold.nii.gz"
    img.to_filename(path)
    assert queries._repetition_time(path) == pytest.approx(2.0)


def test_duplicate_labels_are_one_subject(small, tmp_path):
    config = parse_args(
        [str(small), str(tmp_path / "out"), "participant", "--participant-label", "01", "sub-01", "01"]
    )
    assert config.queries.participant_label == ("01",)


def test_model_file_is_an_input_error(small, tmp_path, capsys):
    model = tmp_path / "model_pt"
    model.mkdir()
    (model / "model.pt").write_bytes(b"not a model")
    code = run_cli(
        small, tmp_path / "out", "participant", "--model", model / "model.pt", "--skip-bids-validation"
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "pickle" in err
    assert "model.pt" in err
    assert not list((tmp_path / "out").glob("sub-*"))  # stopped before any subject


@pytest.mark.integration
def test_bad_subjects_fail_alone(small, tmp_path, capsys):
    bids = shutil.copytree(small, tmp_path / "bids")
    # a Latin-1 participants.tsv with a site column
    table = bids / "participants.tsv"
    rows = table.read_text().splitlines()
    rows = [rows[0] + "\tsite"] + [row + "\tHôpital Zürich" for row in rows[1:]]
    table.write_bytes(("\n".join(rows) + "\n").encode("latin-1"))
    _set_tr(bids, "01", None)
    _set_tr(bids, "02", "2 s")
    bold = _bold(bids, "03")
    bold.unlink()
    bold.symlink_to(tmp_path / "gone.nii.gz")  # dangling
    out = tmp_path / "out"
    code = run_cli(
        bids,
        out,
        "participant",
        "--work-dir",
        tmp_path / "work",
        "--skip-bids-validation",
        "--null-surrogates",
        "0",
        *NO_QC,
    )
    captured = capsys.readouterr()
    assert code == 1
    assert list((out / "sub-04").rglob("*stat-dfcsd*.nii.gz"))  # the good subject finished
    for label in ("01", "02", "03"):
        assert f"sub-{label}" in captured.out + captured.err
        assert not list((out / f"sub-{label}").rglob("*stat-dfcsd*.nii.gz"))
    assert "Traceback" not in captured.out + captured.err
