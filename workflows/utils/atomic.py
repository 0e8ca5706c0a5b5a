"""Atomic file writes: a file appears under its final name only when it is complete.

Every writer goes to a hidden temporary file in the destination folder (same file system, so the final
``os.replace`` is atomic on POSIX), flushed and fsynced, then renamed. A process killed at any point
(SIGKILL, power loss after the fsync) leaves either the previous file or the new one under the final
name, never half a file; at worst a hidden ``.tmp-<pid>-<token>-<name>`` file remains, which
:func:`remove_stale_temps` deletes once its process is gone.

The temporary name ends with the final name, so writers that choose the format from the extension
(nibabel's ``.nii.gz``, matplotlib) write the same bytes as they would under the final name.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

#: Prefix of the temporary files (hidden: BIDS tools and globs of final names skip them).
TMP_PREFIX = ".tmp-"
#: Mode of the written files (the mode a plain ``open`` gives with the usual umask 022).
FILE_MODE = 0o644


def _temp_path(path: Path) -> Path:
    return path.with_name(f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (best effort: some file systems refuse a directory fsync)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path`` for a writer that takes a file name (nibabel, savefig,
    safetensors); on success it is fsynced and renamed to ``path``, on any error it is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(path)
    try:
        yield tmp
        _fsync_file(tmp)
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", **open_args: Any) -> Iterator[IO[Any]]:
    """``open(path, mode)`` that writes a temporary file renamed to ``path`` once complete.

    ``mode`` is ``"w"`` (text, UTF-8 unless ``encoding`` is given) or ``"wb"``. A write that raises
    leaves neither the final file nor the temporary one.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write writes whole files: mode must be 'w' or 'wb', not {mode!r}")
    if mode == "w":
        open_args.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp, open(tmp, mode, **open_args) as fh:
        yield fh
        fh.flush()


def atomic_copy(src: str | Path, dst: str | Path) -> Path:
    """Copy ``src`` to ``dst`` atomically (the bytes unchanged)."""
    with open(src, "rb") as fin, atomic_write(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    return Path(dst)


def atomic_move(src: str | Path, dst: str | Path) -> Path:
    """Move ``src`` to ``dst`` atomically: a rename when the kernel allows it, else a copy (fsynced,
    renamed into place) and the source removed.

    The rename is tried rather than predicted: two bind mounts of one file system (a container's
    ``/scratch`` and ``/out``) share a device number and still refuse a rename with ``EXDEV``.
    """
    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    _fsync_file(src)
    os.chmod(src, FILE_MODE)
    try:
        os.replace(src, dst)
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
        atomic_copy(src, dst)
        src.unlink()
        return dst
    _fsync_dir(dst.parent)
    return dst


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_stale_temps(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Delete the temporary files under ``folder`` (in it alone with ``recursive=False``) whose writing
    process no longer runs on this machine (left by a killed run); return them. Files of live processes
    are kept.
    """
    removed = []
    found = Path(folder).rglob if recursive else Path(folder).glob
    for tmp in found(f"{TMP_PREFIX}*"):
        pid = tmp.name[len(TMP_PREFIX) :].split("-", 1)[0]
        if tmp.is_file() and pid.isdigit() and not _pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
