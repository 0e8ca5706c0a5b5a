"""One participant-level run per subject and output folder at a time: a lock file per subject.

Two runs of the same subject on one output folder would write the same files and share Nipype's
working folder; the second is refused for that subject (its other subjects still run). A lock whose
process is no longer alive on this host (a run killed with SIGKILL) is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from workflows.utils.errors import InputError


def lock_path(output_dir: Path, label: str) -> Path:
    """``output_dir/logs/locks/sub-<label>.lock`` (under ``logs``, which the BIDS validator ignores)."""
    return Path(output_dir) / "logs" / "locks" / f"sub-{label}.lock"


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


#: A lock file younger than this (s) that cannot be read yet is being written, not left behind.
FRESH_S = 10.0


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return float("inf")


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}  # half-written by a run killed at that moment, or removed meanwhile


def acquire(output_dir: Path, label: str) -> Path:
    """Take ``label``'s lock, or raise an :class:`InputError` naming the run that holds it.

    The lock is created with ``O_EXCL`` (one winner among concurrent runs) and holds the pid, host and
    start time. A lock of a dead process on this host (or an unreadable one) is removed and taken.
    """
    path = lock_path(output_dir, label)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = _read(path)
            pid = held.get("pid")
            same_host = held.get("host") == record["host"]
            if not held and _age(path) < FRESH_S:  # being written by a run that just took it
                held, pid, same_host = {"host": record["host"]}, "unknown", True
            if pid == "unknown" or (
                isinstance(pid, int) and pid != os.getpid() and (not same_host or pid_alive(pid))
            ):
                where = "" if same_host else f" on {held.get('host')}"
                raise InputError(
                    f"sub-{label} is being processed by another strokefc run (pid {pid}{where}, started "
                    f"{held.get('started', 'at an unknown time')})",
                    str(path),
                    "wait for it, or remove the lock file if that run is dead",
                ) from None
            try:  # a dead run's (or unreadable) lock: take it over
                path.unlink()
            except FileNotFoundError:
                pass
            continue
        with os.fdopen(fd, "w") as fh:
            json.dump(record, fh)
        return path
    raise InputError(
        f"sub-{label}'s lock file keeps reappearing (another run is starting on it)",
        str(path),
        "run each subject once at a time",
    )


def release(path: Path) -> None:
    """Remove a lock this process holds (not one another run took over)."""
    if _read(path).get("pid") == os.getpid():
        path.unlink(missing_ok=True)
