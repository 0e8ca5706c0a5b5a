"""BIDS naming shared by the workflows and the application: run names, sidecars, BIDS URIs."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

#: Entities that tell two runs of one subject apart, in BIDS filename order.
RUN_ENTITIES = (("session", "ses"), ("task", "task"), ("acquisition", "acq"), ("run", "run"))


def run_name(entities: Mapping[str, object]) -> str:
    """``ses-1_task-rest_acq-mb_run-1``: the entities that tell a subject's runs apart."""
    return "_".join(
        f"{short}-{entities[key]}" for key, short in RUN_ENTITIES if entities.get(key) is not None
    )


def run_prefix(entities: Mapping[str, object]) -> str:
    """``sub-01_ses-1_task-rest_run-1``: the leading entities every output of a run shares."""
    name = run_name(entities)
    return f"sub-{entities['subject']}" + (f"_{name}" if name else "")


def sidecar_path(path: str | Path) -> Path:
    """The JSON sidecar of a NIfTI (``x.nii.gz`` or ``x.nii`` -> ``x.json``)."""
    text = str(path)
    for ext in (".nii.gz", ".nii"):
        if text.endswith(ext):
            return Path(text[: -len(ext)] + ".json")
    return Path(text).with_suffix(".json")


def bids_uri(path: str | Path, dataset_root: str | Path, dataset_name: str = "fmriprep") -> str:
    """``bids:<dataset_name>:<relative path>``; a ``file://`` URI when ``path`` lies outside the dataset.

    The output dataset must declare ``<dataset_name>`` in ``DatasetLinks`` for such a URI to resolve.
    """
    try:
        return f"bids:{dataset_name}:{Path(path).resolve().relative_to(Path(dataset_root).resolve())}"
    except ValueError:
        return Path(path).resolve().as_uri()


def dataset_link(folder: str | Path, dataset_root: str | Path) -> str:
    """A ``DatasetLinks`` value that survives moving the study: ``folder`` relative to ``dataset_root``
    (BIDS allows relative links, resolved from the dataset's root) when the two share a folder below
    the filesystem root, else an absolute ``file://`` URI.
    """
    folder, root = Path(folder).resolve(), Path(dataset_root).resolve()
    common = Path(os.path.commonpath([folder, root]))
    if common == Path(common.anchor):
        return folder.as_uri()
    return Path(os.path.relpath(folder, root)).as_posix()


def resolve_bids_uri(uri: str, dataset_root: str | Path, links: Mapping[str, str]) -> Path:
    """The file a ``bids:<name>:<path>`` URI names, through ``links`` (a ``DatasetLinks`` mapping; the
    empty name is ``dataset_root`` itself); a relative link is resolved from ``dataset_root``.
    """
    scheme, name, relative = uri.split(":", 2)
    if scheme != "bids":
        raise ValueError(f"not a BIDS URI: {uri}")
    if not name:
        return Path(dataset_root) / relative
    link = links[name]
    target = Path(unquote(urlsplit(link).path)) if link.startswith("file:") else Path(dataset_root) / link
    return target / relative


def safe_name(text: str) -> str:
    """A Nipype-safe node name (letters, digits and underscores)."""
    return "".join(c if c.isalnum() else "_" for c in text)


@dataclass(frozen=True)
class RunInputs:
    """The fMRIPrep files of one BOLD run and the entities that name its outputs."""

    bold: Path
    mask: Path
    confounds: Path
    boldref: Path | None
    tr: float  # repetition time (s)
    entities: dict = field(hash=False)  # subject, session, task, acquisition, run, space, res
    lesion_confounds: Path | None = None  # fMRIStroke's desc-confounds2_timeseries.tsv, when given
    lag_map: Path | None = None  # fMRIStroke's desc-maxtime_map (rapidtide), when given
    tr_header: float | None = None  # the NIfTI header's TR (s) when it disagrees with ``tr`` (the sidecar's)

    @property
    def tr_note(self) -> str | None:
        """The TR conflict in words (sidecars, QC table), or None."""
        if self.tr_header is None:
            return None
        return (
            f"RepetitionTime {self.tr:g} s from the JSON sidecar used; the NIfTI header says "
            f"{self.tr_header:g} s"
        )

    @property
    def name(self) -> str:
        """The run's name within its subject (:func:`run_name`), e.g. ``ses-1_task-rest_run-2``."""
        return run_name(self.entities)
