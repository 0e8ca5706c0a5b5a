"""strokefc deletes only what it created: ``--clean-workdir`` and the output folder never reach an input."""

import hashlib
import shutil

import pytest
from helpers import run_cli, simulate

from bids_app.config import ExecutionParams
from bids_app.execution import WORKDIR_MARK, check_work_dir, prepare_work_dir
from workflows.utils.errors import InputError


def tree_digest(root):
    """One hash of every file's path and content under ``root``: proof that nothing was deleted."""
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A one-subject study: raw BIDS with fMRIPrep derivatives inside, and a user's own file."""
    root = tmp_path_factory.mktemp("study")
    bids = simulate(root, n_subjects=1, n_volumes=60)
    (bids / "code" / "my_notes.txt").write_text("the user's own file\n")
    return bids


def test_new_work_dir_is_marked_and_cleaned(tmp_path):
    work = tmp_path / "work"
    prepare_work_dir(ExecutionParams(), work, {})
    assert (work / WORKDIR_MARK).is_file()
    (work / "old").mkdir()
    prepare_work_dir(ExecutionParams(), work, {})
    assert (work / "old").exists()  # reused, not emptied, without --clean-workdir
    prepare_work_dir(ExecutionParams(clean_workdir=True), work, {})
    assert (work / WORKDIR_MARK).is_file()
    assert not (work / "old").exists()


def test_unmarked_folder_is_refused(tmp_path):
    work = tmp_path / "mine"
    (work / "thesis").mkdir(parents=True)
    prepare_work_dir(ExecutionParams(), work, {})  # usable as a working directory...
    assert not (work / WORKDIR_MARK).exists()  # ...but never marked as strokefc's
    with pytest.raises(InputError, match="did not create"):
        prepare_work_dir(ExecutionParams(clean_workdir=True), work, {})
    assert (work / "thesis").is_dir()


@pytest.mark.parametrize("relation", ["is", "contains"])
def test_work_dir_holding_an_input_is_refused(tmp_path, relation):
    bids = tmp_path / "study" / "bids"
    bids.mkdir(parents=True)
    (bids / WORKDIR_MARK).write_text("a mark cannot make an input deletable\n")
    work = bids if relation == "is" else tmp_path / "study"
    with pytest.raises(InputError, match=f"{relation} the bids_dir folder"):
        check_work_dir(work, {"bids_dir": bids.resolve()})
    with pytest.raises(InputError):
        prepare_work_dir(ExecutionParams(clean_workdir=True), work, {"bids_dir": bids.resolve()})
    assert bids.is_dir()


@pytest.mark.parametrize("work_is", ["bids", "study", "output", "fmriprep", "unmarked"])
def test_cli_clean_workdir_deletes_nothing_it_did_not_create(dataset, tmp_path, capsys, work_is):
    study = tmp_path / "study"
    shutil.copytree(dataset, study / "bids")
    bids, out = study / "bids", study / "bids" / "derivatives" / "strokefc"
    work = {
        "bids": bids,
        "study": study,
        "output": out,
        "fmriprep": bids / "derivatives" / "fmriprep",
        "unmarked": tmp_path / "old-work",
    }[work_is]
    (tmp_path / "old-work" / "keep").mkdir(parents=True)
    before = tree_digest(tmp_path)
    code = run_cli(bids, out, "participant", "--work-dir", work, "--clean-workdir", "--skip-bids-validation")
    assert code == 2
    err = capsys.readouterr().err
    assert "--clean-workdir" in err or "did not create" in err
    assert str(work.resolve()) in err  # where
    # nothing the user had was deleted: apart from the new (empty) output dataset, the tree is as before
    shutil.rmtree(out)
    assert tree_digest(tmp_path) == before


@pytest.mark.parametrize("output_is", ["bids", "fmriprep", "parent"])
def test_output_dir_may_not_be_an_input(dataset, tmp_path, capsys, output_is):
    study = tmp_path / "study"
    shutil.copytree(dataset, study / "bids")
    bids = study / "bids"
    out = {"bids": bids, "fmriprep": bids / "derivatives" / "fmriprep", "parent": study}[output_is]
    before = tree_digest(study)
    code = run_cli(bids, out, "participant", "--work-dir", tmp_path / "work", "--skip-bids-validation")
    assert code == 2
    assert "output directory" in capsys.readouterr().err
    assert tree_digest(study) == before


def test_refused_run_keeps_the_last_config(dataset, tmp_path):
    out = tmp_path / "out"
    config = out / "logs" / "strokefc_participant_config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("# the last real run\n")
    code = run_cli(dataset, out, "participant", "--participant-label", "99", "--skip-bids-validation")
    assert code == 2
    assert config.read_text() == "# the last real run\n"
