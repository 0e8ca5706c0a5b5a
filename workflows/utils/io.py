"""Atomic file writes and the TSV/NIfTI writers of the science layer.

Several processes may write into one output directory at once, and a run may be killed: every file is
written through :mod:`workflows.utils.atomic` (a temporary file in the same folder, fsynced, renamed into
place), so a reader never sees half a file.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from workflows.utils.atomic import atomic_write


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`workflows.utils.atomic.atomic_write`)."""
    with atomic_write(path) as fh:
        fh.write(text)
    return Path(path)


def atomic_write_json(path: str | Path, data: Any) -> Path:
    """JSON version of :func:`atomic_write_text` (sorted keys, indented)."""
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def _tsv_cell(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return "n/a" if not np.isfinite(value) else f"{value:.6g}"
    return str(value)


def write_tsv(path: str | Path, rows: Iterable[Mapping[str, Any]], columns: list[str]) -> Path:
    """Atomically write ``rows`` as a BIDS TSV (floats with 6 significant digits, NaN as ``n/a``)."""
    lines = ["\t".join(columns)]
    lines += ["\t".join(_tsv_cell(row.get(col, "")) for col in columns) for row in rows]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def read_tsv_header(path: str | Path) -> list[str]:
    """The column names of a tab-separated table (its first line)."""
    with open(path) as fh:
        return fh.readline().rstrip("\n").split("\t")


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file (model weights, atlases: the checksum that identifies them)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
