"""The output dataset: ``dataset_description.json`` and ``.bidsignore``, written atomically.

Several participant-level processes may write into one output directory at once, so the files they share
are written through :func:`workflows.utils.io.atomic_write_text` (a reader never sees half a file).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bids_app import __version__
from workflows.utils.bids import dataset_link
from workflows.utils.errors import InputError
from workflows.utils.io import atomic_write_json, atomic_write_text

#: What the official validator cannot validate, one output kind per line, so that everything else (the
#: dataset description, the seed and lesion masks with their sidecars, any unexpected or misnamed file)
#: is validated. Checked with bids-validator-deno 3.0.2, where some globs with several ``*`` match
#: nothing (``*_stat-*_boldmap.*``) and folders written with a trailing ``/`` are still flagged.
BIDSIGNORE = """\
# custom entities seed- and stat- (not in BIDS; xcp_d uses stat- alike): the dFC maps and their tables
sub-*_stat-*
sub-*_seed-*
# derivative tables the validator's schema has no rule for (fMRIPrep's confounds alike)
sub-*_desc-design_timeseries.*
sub-*_qc.*
sub-*_desc-ulfma_prediction.json
# reports, figures, logs, group-level results and the model: not BIDS files
sub-*/figures
/sub-*.html
/group.html
/predictions.html
/predictions.tsv
/predictions_summary.json
/logs
/group
/model
"""


def check_output_dir(output_dir: Path, folders: Mapping[str, Path]) -> Path:
    """Create the output folder, refusing an input folder, one that contains an input, or one that cannot
    be written (``folders``: :func:`bids_app.execution.input_folders`).
    """
    output_dir = Path(output_dir).resolve()
    for name, folder in folders.items():
        if name == "output_dir":
            continue
        if output_dir == folder or output_dir in folder.parents:
            what = "is" if output_dir == folder else "contains"
            raise InputError(
                f"the output directory {what} the {name} folder ({folder}): strokefc would write over "
                "its inputs",
                str(output_dir),
                "write outputs elsewhere, e.g. <bids_dir>/derivatives/strokefc",
            )
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=output_dir, prefix=".strokefc-write-test-")
        probe.close()
    except OSError as exc:
        raise InputError(
            f"the output directory cannot be written ({exc.strerror})",
            str(output_dir),
            "choose a writable folder or fix its permissions",
        ) from None
    return output_dir


def dataset_description(
    output_dir: Path,
    bids_dir: Path,
    fmriprep_dir: Path,
    container: str | None = None,
    lesion_dir: Path | None = None,
    model_dir: Path | None = None,
) -> dict[str, Any]:
    """BIDS-derivatives ``dataset_description.json`` content for strokefc's outputs.

    ``DatasetLinks`` name every dataset a ``bids:<name>:`` URI of the outputs points into: ``raw``,
    ``fmriprep``, ``lesions`` (with ``--lesion-dir``) and ``model`` (the group-level dataset holding the
    model of ``participant --model``). Links are relative to the output folder when they share a folder
    (:func:`workflows.utils.bids.dataset_link`), so that moving the study keeps them valid.
    """
    generated: dict[str, Any] = {
        "Name": "strokefc",
        "Version": __version__,
        "CodeURL": "https://github.com/strokefc/strokefc",
    }
    if container:
        generated["Container"] = {"Type": container}
    datasets = {"raw": bids_dir, "fmriprep": fmriprep_dir}
    if lesion_dir:
        datasets["lesions"] = lesion_dir
    if model_dir:
        datasets["model"] = Path(model_dir).resolve().parent
    links = {name: dataset_link(folder, output_dir) for name, folder in datasets.items()}
    return {
        "Name": "strokefc: ipsilesional-M1 seed-based dynamic functional connectivity",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "HowToAcknowledge": "Cite strokefc (CITATION.cff) and the works in logs/CITATION.md, which "
        "describes the run",
        "GeneratedBy": [generated],
        "DatasetLinks": links,
        "SourceDatasets": [{"URL": links["raw"]}, {"URL": links["fmriprep"]}],
    }


def init_output_dataset(
    output_dir: Path,
    bids_dir: Path,
    fmriprep_dir: Path,
    lesion_dir: Path | None = None,
    model_dir: Path | None = None,
) -> None:
    """Write (atomically) ``dataset_description.json`` and ``.bidsignore``; safe to call concurrently."""
    container = os.environ.get("STROKEFC_CONTAINER")
    atomic_write_json(
        Path(output_dir) / "dataset_description.json",
        dataset_description(output_dir, bids_dir, fmriprep_dir, container, lesion_dir, model_dir),
    )
    atomic_write_text(Path(output_dir) / ".bidsignore", BIDSIGNORE)


#: Extensions of what strokefc writes under ``sub-<label>/`` (maps, sidecars, tables, figures).
_OUTPUT_EXTENSIONS = (".nii.gz", ".nii", ".json", ".tsv", ".svg")
#: Filename entity -> run entity (:class:`workflows.utils.bids.RunInputs` ``entities``).
_RUN_KEYS = {
    "ses": "session",
    "task": "task",
    "acq": "acquisition",
    "run": "run",
    "space": "space",
    "res": "res",
}


def name_entities(name: str) -> dict[str, str]:
    """The entities of a BIDS name: ``sub-01_task-rest_bold.nii.gz`` -> ``{"sub": "01", "task": "rest"}``."""
    parts = name.split(".", 1)[0].split("_")
    return dict(part.split("-", 1) for part in parts[:-1] if "-" in part)


def stale_outputs(
    output_dir: Path, label: str, runs: Sequence[Mapping[str, Any]], since: float
) -> list[Path]:
    """Files of an earlier run of ``label`` that this run did not rewrite, among those of the same runs.

    Only strokefc-named files (``sub-<label>_...`` with a derivative extension) inside
    ``output_dir/sub-<label>/`` count, and only those whose entities (session, task, acquisition, run,
    space, resolution; the ones the name has) match one of ``runs`` (the run entities this run read):
    another space, task or session keeps its outputs. "Rewritten" is the inode's change time
    (``st_ctime``, which copying metadata cannot set back) at or after ``since``.
    """
    root = Path(output_dir) / f"sub-{label}"
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.rglob(f"sub-{label}_*")):
        if path.is_symlink() or not path.is_file() or not path.name.endswith(_OUTPUT_EXTENSIONS):
            continue
        if path.stat().st_ctime >= since:
            continue
        entities = name_entities(path.name)
        if entities.get("sub") != label:
            continue
        if any(
            all(str(run.get(key)) == entities[short] for short, key in _RUN_KEYS.items() if short in entities)
            for run in runs
        ):
            out.append(path)
    return out


def file_clock(folder: Path) -> float:
    """The time now on the clock that stamps files in ``folder``: the change time of a file written
    there (and removed). It can lag :func:`time.time` by a clock tick, so the outputs of this run are
    compared with it (:func:`stale_outputs`), not with the process's clock: an earlier run's file written
    a moment before this run started is then older, however quick the rerun."""
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".strokefc-clock-") as marker:
        return os.fstat(marker.fileno()).st_ctime


def remove_stale_outputs(
    output_dir: Path, label: str, runs: Sequence[Mapping[str, Any]], since: float
) -> list[Path]:
    """Delete :func:`stale_outputs` (the group level must never read an earlier run's maps); return them."""
    removed = []
    for path in stale_outputs(output_dir, label, runs, since):
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    return removed
