"""BIDS look-ups: the datasets, participants.tsv, and each subject's fMRIPrep runs (pybids)."""

from __future__ import annotations

import csv
import functools
import json
import logging
import math
import re
from collections.abc import Sequence
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nb

from workflows.utils.bids import RunInputs, sidecar_path
from workflows.utils.errors import InputError

if TYPE_CHECKING:
    from bids import BIDSLayout

LOGGER = logging.getLogger("strokefc.queries")
_LABEL_RE = re.compile(r"^[a-zA-Z0-9]+$")


def read_json(path: Path, what: str) -> dict:
    """Read a JSON file with an error that names it."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError(f"{what} is missing", str(path), "create it (see the BIDS specification)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} is not valid JSON ({exc})", str(path), "fix its syntax") from None


def is_fmriprep_dataset(path: Path) -> bool:
    """True when ``path/dataset_description.json`` says fMRIPrep generated it."""
    desc = Path(path) / "dataset_description.json"
    if not desc.exists():
        return False
    try:
        data = json.loads(desc.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    names = [g.get("Name", "") for g in data.get("GeneratedBy", []) if isinstance(g, dict)]
    names.append(data.get("PipelineDescription", {}).get("Name", ""))
    return any("fmriprep" in str(n).lower() for n in names)


def fmriprep_version(path: Path) -> str | None:
    """fMRIPrep version recorded in the derivatives' ``dataset_description.json``."""
    data = read_json(Path(path) / "dataset_description.json", "the fMRIPrep dataset_description.json")
    for g in data.get("GeneratedBy", []):
        if isinstance(g, dict) and "fmriprep" in g.get("Name", "").lower():
            return g.get("Version")
    return data.get("PipelineDescription", {}).get("Version")


def resolve_datasets(bids_dir: Path, fmriprep_dir: Path | None) -> tuple[Path, Path]:
    """Return ``(raw_dir, fmriprep_dir)``; ``bids_dir`` may itself be the fMRIPrep derivatives."""
    bids_dir = Path(bids_dir).resolve()
    if not bids_dir.is_dir():
        raise InputError(
            "the BIDS directory does not exist",
            str(bids_dir),
            "give the path of the raw BIDS dataset (or of the fMRIPrep derivatives)",
        )
    if not (bids_dir / "dataset_description.json").exists():
        raise InputError(
            "this is not a BIDS dataset: dataset_description.json is missing",
            str(bids_dir),
            "point bids_dir to the dataset root (the folder holding "
            "dataset_description.json and participants.tsv)",
        )
    if fmriprep_dir is None:
        if is_fmriprep_dataset(bids_dir):
            fmriprep_dir = bids_dir
        else:
            fmriprep_dir = bids_dir / "derivatives" / "fmriprep"
    fmriprep_dir = Path(fmriprep_dir).resolve()
    if not fmriprep_dir.is_dir():
        raise InputError(
            "the fMRIPrep derivatives folder does not exist",
            str(fmriprep_dir),
            "run fMRIPrep first, or give its output with --fmriprep-dir",
        )
    if not (fmriprep_dir / "dataset_description.json").exists():
        raise InputError(
            "the fMRIPrep folder has no dataset_description.json",
            str(fmriprep_dir),
            "point --fmriprep-dir to the root of fMRIPrep's output",
        )
    return bids_dir, fmriprep_dir


def check_participant_label(label: str) -> str:
    """Strip ``sub-`` and refuse anything but letters and digits (no ``/`` or ``..``)."""
    label = str(label).strip()
    label = label[4:] if label.startswith("sub-") else label
    if not _LABEL_RE.match(label):
        raise InputError(
            f"participant label {label!r} is not a BIDS label (letters and digits only)",
            "--participant-label",
            "give labels such as 01 or sub-01",
        )
    return label


def read_table_text(path: Path) -> str:
    """A text table's content: UTF-8 (a byte-order mark dropped), else Windows-1252/Latin-1 with a warning.

    Every table strokefc reads (participants.tsv, sessions.tsv) goes through here, so a spreadsheet's
    export in another encoding reads the same everywhere.
    """
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        encoding = "cp1252"
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            encoding, text = "latin-1", data.decode("latin-1")
        LOGGER.warning("%s is not UTF-8; read as %s (save it as UTF-8 to silence this)", path, encoding)
        return text


def read_participants(bids_dir: Path, fmriprep_dir: Path | None = None) -> dict[str, dict[str, str]]:
    """Rows of ``participants.tsv`` by label (without ``sub-``), values as strings ('' for n/a).

    Looked up in the raw dataset, then in the fMRIPrep folder. Ragged rows, a missing
    ``participant_id`` column, a wrong delimiter and duplicated participants are errors.
    """
    candidates = [Path(bids_dir) / "participants.tsv"]
    if fmriprep_dir is not None:
        candidates.append(Path(fmriprep_dir) / "participants.tsv")
    path = next((p for p in candidates if p.exists()), None)
    if path is None:
        raise InputError(
            "participants.tsv is missing",
            str(candidates[0]),
            "add a tab-separated participants.tsv with participant_id, lesion_hemisphere and ul_fma columns",
        )
    lines = [ln for ln in read_table_text(path).splitlines() if ln.strip()]
    if not lines:
        raise InputError("participants.tsv is empty", str(path), "add a header and one row per patient")
    header = lines[0].split("\t")
    if "participant_id" not in header:
        delim = "," if "," in lines[0] else ";" if ";" in lines[0] else None
        hint = f" (it looks {'comma' if delim == ',' else 'semicolon'}-separated)" if delim else ""
        raise InputError(
            f"participants.tsv has no participant_id column in a tab-separated header{hint}",
            f"{path}, line 1",
            "separate columns with tabs and name the first column participant_id",
        )
    rows: dict[str, dict[str, str]] = {}
    for lineno, row in enumerate(csv.reader(lines[1:], delimiter="\t"), start=2):
        if len(row) != len(header):
            raise InputError(
                f"row has {len(row)} fields but the header has {len(header)}",
                f"{path}, line {lineno}",
                "make every row have one value per column (use n/a for missing values)",
            )
        rec = {k: ("" if v.strip() in {"n/a", "N/A", "NA", ""} else v.strip()) for k, v in zip(header, row)}
        label = rec["participant_id"].removeprefix("sub-")
        if label in rows:
            raise InputError(
                f"participant sub-{label} is listed twice",
                f"{path}, line {lineno}",
                "keep one row per participant",
            )
        rows[label] = rec
    return rows


def participant_value(
    rows: dict[str, dict[str, str]], label: str, column: str, path_hint: str = "participants.tsv"
) -> str | None:
    """One participant's value of ``column`` (``None`` when absent or n/a)."""
    if label not in rows:
        return None
    if rows and column not in next(iter(rows.values())):
        raise InputError(
            f"participants.tsv has no {column!r} column",
            path_hint,
            f"add the column or choose another with the matching --*-column option "
            f"(columns: {', '.join(next(iter(rows.values())))})",
        )
    return rows[label].get(column) or None


#: BOLD sidecar fields that name a scanner (``--site-from-sidecars``), in the order the site names them.
SCANNER_FIELDS = ("Manufacturer", "ManufacturersModelName", "InstitutionName", "MagneticFieldStrength")


def scanner_name(meta: dict) -> str:
    """A site name from a BOLD sidecar's scanner fields (``'Siemens / Prisma / Hospital A / 3T'``);
    '' when it has none of :data:`SCANNER_FIELDS`."""
    parts = []
    for name in SCANNER_FIELDS:
        value = meta.get(name)
        if value in (None, ""):
            continue
        if name == "MagneticFieldStrength":
            try:
                value = f"{float(value):g}T"
            except (TypeError, ValueError):
                value = f"{value}T"
        parts.append(" ".join(str(value).split()))  # one line, single spaces (a TSV cell)
    return " / ".join(parts)


def sidecar_sites(bids_dir: Path, labels: Sequence[str]) -> dict[str, str]:
    """Each subject's site from the scanner fields of its raw BOLD runs' sidecars (BIDS inheritance:
    a top-level ``task-<label>_bold.json`` counts, as pybids reads it).

    A subject whose runs name different scanners, or none, stops with the files named.
    """
    from bids import BIDSLayout, BIDSLayoutIndexer

    layout = BIDSLayout(
        str(bids_dir), validate=False, indexer=BIDSLayoutIndexer(validate=False, index_metadata=True)
    )
    fields = ", ".join(SCANNER_FIELDS)
    sites: dict[str, str] = {}
    for label in labels:
        runs = layout.get(subject=label, suffix="bold", extension=[".nii", ".nii.gz"], return_type="object")
        if not runs:
            raise InputError(
                f"sub-{label} has no raw BOLD run to read its scanner from",
                f"{bids_dir}/sub-{label}",
                "give the site in a participants.tsv site column instead of --site-from-sidecars",
            )
        names = {run.path: scanner_name(run.get_metadata()) for run in runs}
        blank = [p for p, n in names.items() if not n]
        if blank:
            raise InputError(
                f"the BOLD sidecar of sub-{label} has none of {fields}",
                str(sidecar_path(blank[0])),
                "add the scanner fields to the sidecars (dcm2niix writes them), or give the site in a "
                "participants.tsv site column instead of --site-from-sidecars",
            )
        if len(set(names.values())) > 1:
            raise InputError(
                f"the BOLD runs of sub-{label} name different scanners: "
                + "; ".join(f"{Path(p).name}: {n}" for p, n in sorted(names.items())),
                f"{bids_dir}/sub-{label}",
                "give each subject one site in a participants.tsv site column instead of "
                "--site-from-sidecars",
            )
        sites[label] = next(iter(names.values()))
    return sites


def fmriprep_layout(fmriprep_dir: Path, database_dir: Path | None = None) -> BIDSLayout:
    """pybids over the fMRIPrep dataset; with ``database_dir`` the index is saved there and reused."""
    from bids import BIDSLayout, BIDSLayoutIndexer
    from bids.exceptions import PyBIDSError

    try:
        return BIDSLayout(
            str(fmriprep_dir),
            validate=False,
            config=["bids", "derivatives"],
            indexer=BIDSLayoutIndexer(validate=False, index_metadata=False),
            database_path=str(database_dir) if database_dir else None,
        )
    # pybids raises its own types for malformed datasets (PyBIDSError; BIDSValidationError and
    # BIDSConflictingValuesError are also ValueErrors, like a missing root), OSError for unreadable
    # files or folders, and AttributeError/TypeError for a dataset_description.json that is JSON but
    # not an object of the expected shape (e.g. a list)
    except (ValueError, OSError, AttributeError, TypeError, PyBIDSError) as exc:
        raise InputError(
            f"pybids cannot index the fMRIPrep folder ({exc})",
            str(fmriprep_dir),
            "check its dataset_description.json",
        ) from None


def list_subjects(fmriprep_dir: Path) -> list[str]:
    """Subjects with a ``sub-*`` folder in the fMRIPrep derivatives."""
    return sorted(p.name[4:] for p in Path(fmriprep_dir).glob("sub-*") if p.is_dir())


def _check_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if path.stat().st_size == 0:
        raise InputError(
            f"the {what} is an empty file (0 bytes)",
            str(path),
            "these look like placeholders (e.g. a dataset skeleton or an unfinished "
            "download): restore the real fMRIPrep outputs",
        )
    return path


@functools.lru_cache(maxsize=4)
def layout_subjects(layout: BIDSLayout) -> tuple[str, ...]:
    """The dataset's subject labels, asked of pybids once per layout (its ``get_subjects`` reads every
    file's entities: about 0.1 s per call on 24 subjects, once per subject while planning)."""
    return tuple(layout.get_subjects())


def check_filters_match(
    layout: BIDSLayout,
    fmriprep_dir: Path,
    subjects: Sequence[str],
    *,
    task: str,
    space: str,
    filters: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Stop when the task, the space and the ``--bids-filter-file`` query match no preprocessed BOLD of
    any selected subject: a mistyped filter, said once with what the dataset has (exit 2), instead of
    one failed subject per participant (exit 1). Subjects not in the derivatives are left to
    :func:`collect_runs`, which names them."""
    known = set(layout_subjects(layout))
    present = [s for s in subjects if s in known]
    bold = {"desc": "preproc", "suffix": "bold", "extension": [".nii.gz", ".nii"]}
    extra = (filters or {}).get("bold", {})
    if not present or layout.get(subject=present, task=task, space=space, **{**bold, **extra}):
        return
    found = layout.get(subject=present, **bold)
    tasks = sorted({str(b.entities.get("task", "(none)")) for b in found})
    spaces = sorted({str(b.entities.get("space", "(none)")) for b in found})
    what = (
        f"no preprocessed BOLD of the {len(present)} selected participant(s) has task {task!r} "
        f"in space {space!r}"
    )
    if extra:
        what += f" with the filter file's bold query {json.dumps(extra, sort_keys=True)}"
    raise InputError(
        what,
        str(fmriprep_dir),
        f"the derivatives have task(s) {', '.join(tasks) or 'none'} "
        f"in space(s) {', '.join(spaces) or 'none'}: check QueryParams.task_id and QueryParams.space"
        + (" and the filter file (--bids-filter-file)" if extra else ""),
        params=("QueryParams.task_id", "QueryParams.space"),
    )


def collect_runs(
    fmriprep_dir: Path,
    subject: str,
    *,
    task: str = "rest",
    space: str = "MNI152NLin2009cAsym",
    res: str | None = None,
    filters: dict[str, dict[str, Any]] | None = None,
    layout: BIDSLayout | None = None,
    sessions: Sequence[str] = (),
) -> list[RunInputs]:
    """Every preprocessed BOLD run of ``subject`` for ``task`` in ``space``, with mask and confounds.

    Handles ``res-2`` and no ``res`` entity; with several resolutions and no ``res`` it says which
    exist. ``filters`` (from ``--bids-filter-file``, key ``bold``) narrow the query further, and
    ``sessions`` (``--session-id``) to those sessions (a label the subject does not have is an error).
    """
    layout = layout or fmriprep_layout(fmriprep_dir)
    where = f"{fmriprep_dir}/sub-{subject}"
    if subject not in layout_subjects(layout):
        raise InputError(
            f"participant sub-{subject} is not in the fMRIPrep derivatives",
            str(fmriprep_dir),
            f"choose among: {', '.join(layout_subjects(layout)) or 'none'}",
        )
    query = {
        "subject": subject,
        "task": task,
        "space": space,
        "desc": "preproc",
        "suffix": "bold",
        "extension": [".nii.gz", ".nii"],
    }
    query.update((filters or {}).get("bold", {}))
    if sessions:
        available = layout.get_sessions(subject=subject)
        missing = [s for s in sessions if s not in available]
        if missing:
            raise InputError(
                f"sub-{subject} has no session {', '.join('ses-' + m for m in missing)}",
                where,
                f"choose among: {', '.join(available) or 'none (the dataset has no session level)'}",
                params=("QueryParams.session_id",),
            )
        query["session"] = list(sessions)
    check_fmriprep_naming(fmriprep_dir, subject)
    bolds = layout.get(**query)
    if not bolds:
        old = layout.get(subject=subject, task=task, suffix="bold", extension=[".nii.gz", ".nii"])
        spaces = sorted({b.entities.get("space", "(none)") for b in old})
        raise InputError(
            f"no preprocessed BOLD for task {task!r} in space {space!r}"
            + (f" (spaces found for that task: {', '.join(spaces)})" if spaces else ""),
            where,
            "check --task-id and --space, or run fMRIPrep with --output-spaces " + space,
        )
    resolutions = sorted({str(b.entities.get("res", "")) for b in bolds})
    if res is not None:
        bolds = [b for b in bolds if str(b.entities.get("res", "")) == str(res)]
        if not bolds:
            raise InputError(
                f"no BOLD at res-{res}",
                where,
                f"use --res with one of: {', '.join(r or '(none)' for r in resolutions)}",
            )
    elif len(resolutions) > 1:
        raise InputError(
            f"several resolutions exist ({', '.join('res-' + r if r else 'none' for r in resolutions)})",
            where,
            "choose one with --res",
        )
    runs = []
    for bold in sorted(bolds, key=lambda b: b.path):
        ent = {
            k: bold.entities.get(k)
            for k in ("subject", "session", "task", "run", "space", "res", "acquisition")
        }
        ent = {k: v for k, v in ent.items() if v is not None}
        base = {k: v for k, v in ent.items() if k not in ("space", "res")}
        mask = _one(
            layout, where, "brain mask", **ent, desc="brain", suffix="mask", extension=[".nii.gz", ".nii"]
        )
        confounds = _one(
            layout,
            where,
            "confounds table",
            **base,
            desc="confounds",
            suffix="timeseries",
            extension=".tsv",
            space=None,
            res=None,
        )
        refs = layout.get(**ent, suffix="boldref", extension=[".nii.gz", ".nii"])
        bold_path = _check_file(bold.path, "preprocessed BOLD")
        _check_file(mask, "brain mask")
        _check_file(confounds, "confounds table")
        tr = _repetition_time(bold_path)
        runs.append(
            RunInputs(
                bold=bold_path,
                mask=mask,
                confounds=confounds,
                boldref=Path(refs[0].path) if refs else None,
                tr=tr,
                entities=ent,
                tr_header=_conflicting_header_tr(bold_path, tr),
            )
        )
    return runs


def with_fmristroke(run: RunInputs, fmristroke_dir: Path) -> RunInputs:
    """``run`` with fMRIStroke's lesion-aware confounds (required) and lag map (when written).

    fMRIStroke names them like fMRIPrep: ``<run>_desc-confounds2_timeseries.tsv`` (no space) and
    ``<run>_space-<space>[_res-<r>]_desc-maxtime_map.nii.gz``.
    """
    from dataclasses import replace

    stem = run.bold.name.split("_space-")[0]
    ses = run.entities.get("session")
    func = Path(fmristroke_dir) / f"sub-{run.entities['subject']}" / (f"ses-{ses}" if ses else "") / "func"
    confounds = func / f"{stem}_desc-confounds2_timeseries.tsv"
    if not confounds.is_file():
        raise InputError(
            f"fMRIStroke wrote no lesion-aware confounds for {run.bold.name}",
            str(confounds),
            "run fMRIStroke on this subject (with its lesion mask), or leave out --datasets fmristroke=...",
        )
    space = f"_space-{run.entities.get('space')}" + (
        f"_res-{run.entities['res']}" if run.entities.get("res") else ""
    )
    lag = next(iter(sorted(func.glob(f"{stem}{space}_desc-maxtime_map.nii*"))), None)
    return replace(run, lesion_confounds=confounds, lag_map=lag)


def check_fmriprep_naming(fmriprep_dir: Path, subject: str) -> None:
    """Refuse fMRIPrep outputs older than the confounds naming nilearn's loader reads (< 1.2)."""
    old_masks = list(Path(fmriprep_dir).glob(f"sub-{subject}/**/*label-brain_mask.nii*"))
    old_confounds = [
        p
        for p in Path(fmriprep_dir).glob(f"sub-{subject}/**/*_timeseries.tsv")
        if "desc-confounds" not in p.name
    ]
    if old_masks or old_confounds:
        version = fmriprep_version(fmriprep_dir) or "unknown"
        example = (old_masks or old_confounds)[0]
        raise InputError(
            f"these fMRIPrep outputs are too old for strokefc (fMRIPrep {version}: pre-1.2 names "
            "such as label-brain_mask and CamelCase confounds without desc-confounds)",
            str(example),
            "re-run a current fMRIPrep (>= 20.2); nilearn's confound loader reads only the modern "
            "confounds naming",
        )


def _one(layout: BIDSLayout, where: str, what: str, **query: Any) -> Path:
    query = {k: v for k, v in query.items() if v is not None or k in ("space", "res")}
    found = layout.get(**query, invalid_filters="allow")
    if not found:
        raise InputError(
            f"no {what} matches the BOLD run ({_describe(query)})",
            where,
            f"make sure fMRIPrep wrote the {what} for every run",
        )
    if len(found) > 1:
        raise InputError(
            f"several {what}s match one BOLD run: " + ", ".join(Path(f.path).name for f in found),
            where,
            "narrow the query with --bids-filter-file",
        )
    return Path(found[0].path)


def _describe(query: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in query.items() if k not in ("extension",) and v)


def _positive_seconds(value: Any, sidecar: Path) -> float:
    """``RepetitionTime`` as a positive number of seconds, or an error naming the sidecar."""
    try:
        tr = float(value)
    except (TypeError, ValueError):
        tr = math.nan
    if not math.isfinite(tr) or tr <= 0:
        raise InputError(
            f"RepetitionTime {value!r} is not a positive number of seconds",
            str(sidecar),
            'write the repetition time in seconds as a number, e.g. "RepetitionTime": 2.0',
        )
    return tr


def header_repetition_time(header: Any) -> float | None:
    """TR in seconds from a NIfTI header, in its own time unit (ms and us converted; no unit = seconds);
    None when the header holds no positive TR."""
    zooms = header.get_zooms()
    if len(zooms) < 4 or not zooms[3] > 0:
        return None
    unit = header.get_xyzt_units()[1] if hasattr(header, "get_xyzt_units") else "sec"
    return float(zooms[3]) / {"msec": 1e3, "usec": 1e6}.get(unit, 1.0)


#: Relative difference between the sidecar's and the header's TR reported as a conflict.
TR_CONFLICT = 0.01


def _conflicting_header_tr(bold_path: Path, tr: float) -> float | None:
    """The NIfTI header's TR when it disagrees with ``tr`` (the sidecar's, which BIDS says wins), else None.

    The disagreement is logged; the caller records it in the run's sidecars and QC row.
    """
    try:
        header_tr = header_repetition_time(nb.load(str(bold_path)).header)
    except (OSError, ValueError, EOFError, nb.filebasedimages.ImageFileError):
        return None  # an unreadable BOLD is reported by the run's preflight
    if header_tr is None or math.isclose(header_tr, tr, rel_tol=TR_CONFLICT):
        return None
    LOGGER.warning(
        "%s: the JSON sidecar's RepetitionTime (%g s) and the NIfTI header's TR (%g s) disagree; "
        "the sidecar's is used, as BIDS says (recorded in the maps' sidecars and the QC table)",
        bold_path,
        tr,
        header_tr,
    )
    return header_tr


def _repetition_time(bold_path: Path) -> float:
    """TR in seconds from the BOLD's JSON sidecar (``RepetitionTime``), else from the NIfTI header in
    its own time unit (a header in ms or us is converted; one without a unit is taken as seconds).
    """
    sidecar = sidecar_path(bold_path)
    if sidecar.exists():
        meta = read_json(sidecar, "the BOLD sidecar")
        if "RepetitionTime" in meta:
            return _positive_seconds(meta["RepetitionTime"], sidecar)
    try:
        header = nb.load(str(bold_path)).header
    except (OSError, ValueError, nb.filebasedimages.ImageFileError):
        raise InputError(
            "the BOLD file cannot be read as NIfTI and its sidecar has no RepetitionTime",
            str(bold_path),
            "re-copy or regenerate the BOLD file",
        ) from None
    tr = header_repetition_time(header)
    if tr is not None:
        LOGGER.warning("RepetitionTime missing from %s; using the NIfTI header (%.3f s)", sidecar, tr)
        return tr
    raise InputError(
        "the repetition time is unknown",
        str(sidecar),
        "add RepetitionTime (seconds) to the BOLD's JSON sidecar",
    )


# ------------------------------------------------------------------ strokefc's own derivatives
#: Entities that identify one run's outputs (besides subject, space and res).
_RUN_KEYS = ("session", "task", "acquisition", "run")


def derivatives_layout(output_dir: Path) -> BIDSLayout:
    """pybids over strokefc's output dataset, with strokefc's entities (``seed-``, ``stat-``)."""
    from bids import BIDSLayout, BIDSLayoutIndexer

    config = str(files("workflows").joinpath("data/strokefc_bids_config.json"))
    return BIDSLayout(
        str(output_dir),
        validate=False,
        config=[config],
        indexer=BIDSLayoutIndexer(validate=False, index_metadata=False),
    )


def _matches(entities: dict, wanted: dict) -> bool:
    return all(
        str(entities.get(k)) == str(v) if v is not None else k not in entities for k, v in wanted.items()
    )


def find_run_outputs(layout: BIDSLayout, run_entities: dict[str, Any], **query: Any) -> list[Path]:
    """Outputs of one run: same subject, session, task, acquisition and run (absent ones absent)."""
    wanted = {k: run_entities.get(k) for k in _RUN_KEYS}
    found = layout.get(subject=run_entities["subject"], **query)
    return sorted(Path(f.path) for f in found if _matches(f.entities, wanted))


def find_lesion_derivatives(layout: BIDSLayout, subject: str, *, space: str, res: str | None) -> list[Path]:
    """The participant level's ``desc-lesion_mask`` files of a subject (one per session), in ``space``."""
    found = layout.get(
        subject=subject,
        desc="lesion",
        suffix="mask",
        space=space,
        datatype="anat",
        extension=[".nii.gz", ".nii"],
    )
    if res is not None:
        found = [f for f in found if str(f.entities.get("res")) == str(res)]
    return sorted(Path(f.path) for f in found)


def find_unit_maps(
    layout: BIDSLayout,
    subject: str,
    *,
    space: str,
    res: str | None,
    stat: str = "dfcsd",
    combine_sessions: bool = False,
    desc: str | None = None,
) -> dict[str | None, Path]:
    """The maps the group level learns from, one per session (key: session label; None: no session).

    ``desc``: the timescale label of maps at another window length than the participant level's
    default (``desc-win60s``, :func:`workflows.dfc_run.timescale_label`); None: the default's maps
    (no ``desc-`` entity).

    A session's map is its multi-run mean (``ses-`` but no ``run-`` entity) or its single run's map; a
    session whose runs have no mean is left out. With ``combine_sessions`` (or a dataset without
    sessions) the subject-level map (neither ``ses-`` nor ``run-``) is the one unit, else the only map.
    """
    from bids.layout import Query

    found = layout.get(
        subject=subject,
        seed="ipsiM1",
        stat=stat,
        suffix="boldmap",
        space=space,
        desc=Query.NONE if desc is None else desc,
        extension=[".nii.gz", ".nii"],
    )
    if res is not None:
        found = [f for f in found if str(f.entities.get("res")) == str(res)]
    maps = sorted(found, key=lambda f: f.path)
    subject_level = [f for f in maps if "session" not in f.entities and "run" not in f.entities]
    sessions = sorted({str(f.entities["session"]) for f in maps if "session" in f.entities})
    if combine_sessions or not sessions:
        if subject_level:
            return {None: Path(subject_level[0].path)}
        return {None: Path(maps[0].path)} if len(maps) == 1 else {}
    out: dict[str | None, Path] = {}
    for ses in sessions:
        in_session = [f for f in maps if str(f.entities.get("session")) == ses]
        mean = [f for f in in_session if "run" not in f.entities]
        if mean:
            out[ses] = Path(mean[0].path)
        elif len(in_session) == 1:
            out[ses] = Path(in_session[0].path)
    return out


def read_session_scores(bids_dir: Path, subject: str, column: str) -> dict[str, str]:
    """``sub-<l>/sub-<l>_sessions.tsv`` values of ``column`` by session label (empty when absent)."""
    path = bids_dir / f"sub-{subject}" / f"sub-{subject}_sessions.tsv"
    if not path.is_file():
        return {}
    rows = list(csv.DictReader(read_table_text(path).splitlines(), delimiter="\t"))
    if rows and "session_id" not in rows[0]:
        raise InputError(
            "the sessions table has no session_id column",
            str(path),
            "write a BIDS sessions.tsv: session_id (ses-<label>) and the score columns",
        )
    out = {}
    for row in rows:
        ses = row["session_id"]
        if row.get(column, "") not in ("", "n/a"):
            out[ses[4:] if ses.startswith("ses-") else ses] = row[column]
    return out


def find_subject_map(
    layout: BIDSLayout, subject: str, *, space: str, res: str | None, stat: str = "dfcsd"
) -> Path | None:
    """The subject-level map (no ``ses``/``run`` entity), else the only run map, in ``space``/``res``."""
    return find_unit_maps(layout, subject, space=space, res=res, stat=stat, combine_sessions=True).get(None)
