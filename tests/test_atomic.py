"""The atomic writer: a file appears under its final name only when complete; a failed write leaves
nothing behind."""

import errno
import os

import nibabel as nb
import numpy as np
import pytest

from workflows.utils.atomic import (
    TMP_PREFIX,
    atomic_copy,
    atomic_move,
    atomic_path,
    atomic_write,
    remove_stale_temps,
)


def test_write_replaces_the_final_file_only_when_complete(tmp_path):
    path = tmp_path / "sub" / "table.tsv"
    with atomic_write(path) as fh:
        fh.write("a\tb\n")
        assert not path.exists()  # still under the temporary name
        assert [p.name.startswith(TMP_PREFIX) for p in path.parent.iterdir()] == [True]
    assert path.read_text() == "a\tb\n"
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert os.listdir(path.parent) == ["table.tsv"]


def _write_then_fail(path, data, error, mode="w"):
    with atomic_write(path, mode) as fh:
        fh.write(data)
        raise error


@pytest.mark.parametrize("mode", ["w", "wb"])
def test_a_write_that_raises_leaves_no_final_and_no_temporary_file(tmp_path, mode):
    path = tmp_path / "out.json"
    with pytest.raises(RuntimeError, match="disk full"):
        _write_then_fail(path, "{" if mode == "w" else b"{", RuntimeError("disk full"), mode)
    assert list(tmp_path.iterdir()) == []


def test_a_failed_rewrite_keeps_the_previous_file(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("old")
    with pytest.raises(KeyboardInterrupt):
        _write_then_fail(path, "new, half", KeyboardInterrupt())
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["out.json"]


def test_path_writers_keep_their_format_and_bytes(tmp_path, rng):
    img = nb.Nifti1Image(rng.normal(size=(7, 8, 9)).astype(np.float32), np.eye(4))
    direct, atomic = tmp_path / "direct.nii.gz", tmp_path / "atomic.nii.gz"
    img.to_filename(direct)
    with atomic_path(atomic) as tmp:
        assert tmp.name.endswith("atomic.nii.gz")
        assert tmp.parent == tmp_path
        img.to_filename(tmp)
    assert atomic.read_bytes() == direct.read_bytes()  # gzip, same header, same data


def test_a_path_writer_that_raises_leaves_nothing(tmp_path):
    def write_half(tmp):
        tmp.write_bytes(b"half")
        raise ValueError("interrupted")

    with pytest.raises(ValueError, match="interrupted"), atomic_path(tmp_path / "x.nii.gz") as tmp:
        write_half(tmp)
    assert list(tmp_path.iterdir()) == []


def test_copy_and_move_keep_the_bytes(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3 << 20))
    copied = atomic_copy(src, tmp_path / "a" / "copy.bin")
    assert copied.read_bytes() == src.read_bytes()
    moved = atomic_move(copied, tmp_path / "b" / "moved.bin")
    assert moved.read_bytes() == src.read_bytes()
    assert not copied.exists()


def test_move_copies_when_the_rename_crosses_mounts(tmp_path, monkeypatch):
    """Two bind mounts of one file system share st_dev and still refuse a rename (EXDEV): the CI
    container's /scratch -> /out. The move then copies into place and removes the source."""
    src = tmp_path / "work" / "map.json"
    src.parent.mkdir()
    src.write_text('{"a": 1}')
    dst = tmp_path / "out" / "map.json"
    real_replace = os.replace

    def replace(a, b):
        if os.fspath(a) == os.fspath(src):
            raise OSError(errno.EXDEV, "Invalid cross-device link", os.fspath(a))
        return real_replace(a, b)

    monkeypatch.setattr(os, "replace", replace)
    assert atomic_move(src, dst) == dst
    assert dst.read_text() == '{"a": 1}'
    assert not src.exists()
    assert os.listdir(dst.parent) == ["map.json"]


def test_only_temporary_files_of_dead_processes_are_removed(tmp_path):
    dead = tmp_path / f"{TMP_PREFIX}999999999-abcd1234-map.nii.gz"  # above any pid_max
    live = tmp_path / "sub" / f"{TMP_PREFIX}{os.getpid()}-abcd1234-map.nii.gz"
    final = tmp_path / "map.nii.gz"
    for path in (dead, live, final):
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == [dead]
    assert live.exists()
    assert final.exists()


def test_stale_temps_at_the_top_alone_leave_the_subfolders(tmp_path):
    """The output root's own files (a killed run's ``.bidsignore``) without touching subjects' folders."""
    top = tmp_path / f"{TMP_PREFIX}999999999-abcd1234-.bidsignore"
    below = tmp_path / "sub-01" / f"{TMP_PREFIX}999999999-abcd1234-map.nii.gz"
    below.parent.mkdir()
    for path in (top, below):
        path.write_bytes(b"x")
    assert remove_stale_temps(tmp_path, recursive=False) == [top]
    assert below.exists()


def test_only_whole_file_modes(tmp_path):
    with pytest.raises(ValueError, match="mode must be"), atomic_write(tmp_path / "x", "a"):
        pass


def test_the_sink_writes_what_niworkflows_writes_and_nothing_else(tmp_path, rng, monkeypatch):
    """strokefc's sink stages niworkflows' output and moves it into place: same bytes, same names, no
    staging or temporary file in the output dataset."""
    from niworkflows.interfaces.bids import DerivativesDataSink as Niworkflows

    from workflows.interfaces.bids import DerivativesDataSink

    class Plain(DerivativesDataSink):  # strokefc's names, niworkflows' writing in place
        _run_interface = Niworkflows._run_interface

    source = tmp_path / "sub-01_task-rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"
    source.write_bytes(b"")
    in_file = tmp_path / "map.nii.gz"
    nb.Nifti1Image(rng.normal(size=(7, 8, 9)).astype(np.float32), np.eye(4)).to_filename(in_file)
    outputs = {}
    for name, sink_class in (("plain", Plain), ("atomic", DerivativesDataSink)):
        out = tmp_path / name
        work = tmp_path / f"work-{name}"
        work.mkdir()
        sink = sink_class(
            base_directory=str(out),
            source_file=str(source),
            in_file=str(in_file),
            compress=True,
            suffix="boldmap",
            dismiss_entities=["desc"],
            Units="Fisher z",
        )
        monkeypatch.chdir(work)
        result = sink.run(cwd=str(work))
        outputs[name] = {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}
    paths = list(outputs["atomic"])
    assert len(paths) == 2
    assert all(p.name.endswith(("_boldmap.nii.gz", "_boldmap.json")) for p in paths)
    assert [p.name for p in paths] == [p.name for p in outputs["plain"]]
    assert list(outputs["atomic"].values()) == list(outputs["plain"].values())
    assert result.outputs.out_file.startswith(str(tmp_path / "atomic"))
    assert result.outputs.out_meta.startswith(str(tmp_path / "atomic"))


@pytest.mark.parametrize("name", ["map.nii.gz", "map.nii"])
def test_check_complete_names_a_truncated_map(tmp_path, rng, name):
    from workflows.utils.errors import InputError
    from workflows.utils.images import check_complete

    path = tmp_path / name
    nb.Nifti1Image(rng.normal(size=(7, 8, 9)).astype(np.float32), np.eye(4)).to_filename(path)
    assert check_complete(path, "dfcsd map").shape == (7, 8, 9)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    with pytest.raises(InputError, match="the dfcsd map file is truncated") as err:
        check_complete(path, "dfcsd map")
    assert err.value.where == str(path)
