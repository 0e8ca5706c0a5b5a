"""Group level: collect the participant maps and labels, run the group workflow, write the report.

Labels come from ``participants.tsv``; maps from the participant-level outputs in ``output_dir`` (found
by one pybids query over strokefc's derivatives, in ``--space``/``--res``), checked through their
sidecars to share one space, grid and set of dFC/denoising parameters.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bids_app import queries
from bids_app.config import QueryParams, RunConfig
from bids_app.console import make_plugin
from bids_app.execution import (
    WorkflowFailed,
    execution_config,
    input_folders,
    node_failure,
    plugin_settings,
    prepare_run,
    prepare_work_dir,
    write_run_config,
)
from bids_app.outputs import check_output_dir
from bids_app.reporting import write_boilerplate, write_group_report
from bids_app.scores import parse_score
from workflows.group import init_group_wf
from workflows.group_inputs import is_severe
from workflows.lesion import normalise_hemisphere
from workflows.metadata import shared_parameters
from workflows.models import model_label, ordered
from workflows.params import AUTO_TIMESCALE, CLINICAL_COLUMNS, TIMESCALE_PREFIX, split_duration
from workflows.utils.atomic import remove_stale_temps
from workflows.utils.bids import sidecar_path
from workflows.utils.errors import InputError
from workflows.utils.images import check_complete

LOGGER = logging.getLogger("strokefc.group")
#: The working directory's folder of finished permutation draws (read back by a rerun: resumable draws).
DRAWS_FOLDER = "permutation_draws"
#: Fewest subjects the group level accepts (with at least ``--cv-folds``).
MIN_SUBJECTS = 4


def unit_id(label: str, session: str | None) -> str:
    """A sample's id: the subject label, with ``_ses-<label>`` for a session's map."""
    return label if session is None else f"{label}_ses-{session}"


@dataclass(frozen=True)
class GroupSubject:
    """One subject's input to the group level."""

    subject: str  # participant label, without "sub-"
    map_file: Path
    windows_file: Path | None
    lesion_side: str
    ul_fma: float
    fc_file: Path | None = None  # static-FC map (control model)
    dfcmean_file: Path | None = None  # mean-dFC map (control model)
    qc: dict[str, float] = field(default_factory=dict)  # quality measures (confound-only model)
    lesion_files: tuple[Path, ...] = ()  # the participant level's desc-lesion_mask (one per session)
    session: str | None = None  # one sample per subject-session unless sessions were combined
    # the map at every window length the participant level wrote ("60s" -> file), when more than one
    timescale_files: dict[str, Path] = field(default_factory=dict)
    # the clinical baseline's participants.tsv covariates (NaN where unknown): clinical_values
    clinical: dict[str, float] = field(default_factory=dict)
    site: str = ""  # scanning site ('' when the cohort has no site information)

    @property
    def unit(self) -> str:
        """The sample's id (:func:`unit_id`)."""
        return unit_id(self.subject, self.session)

    def as_dict(self) -> dict:
        """The form the group workflow takes (absolute paths, '' for no window maps)."""
        return {
            "label": self.unit,
            "subject": self.subject,
            "session": self.session or "",
            "map_file": str(Path(self.map_file).absolute()),
            "windows_file": str(Path(self.windows_file).absolute()) if self.windows_file else "",
            "lesion_side": self.lesion_side,
            "score": float(self.ul_fma),
            "fc_file": str(Path(self.fc_file).absolute()) if self.fc_file else "",
            "dfcmean_file": str(Path(self.dfcmean_file).absolute()) if self.dfcmean_file else "",
            "qc": dict(self.qc),
            "lesion_files": [str(Path(p).absolute()) for p in self.lesion_files],
            "timescale_files": {k: str(Path(p).absolute()) for k, p in self.timescale_files.items()},
            "clinical": dict(self.clinical),
            "site": self.site,
        }


def quality_measures(meta: dict) -> dict[str, float]:
    """The confound-only model's features from a map's sidecar (NaN when a field is missing)."""
    denoising = meta.get("Denoising", {})
    total = denoising.get("VolumesTotal")
    censored = denoising.get("VolumesCensored")
    return {
        "mean_fd_mm": float(denoising.get("MeanFramewiseDisplacement_mm") or math.nan),
        "censored_fraction": float(censored) / float(total) if total and censored is not None else math.nan,
        "volumes_kept": float(denoising.get("VolumesKept", math.nan)),
        "windows_kept": float(meta.get("WindowsKept", math.nan)),
        "dof_remaining": float(denoising.get("DegreesOfFreedomRemaining", math.nan)),
        "lesion_volume_ml": float(meta.get("Lesion", {}).get("LesionVolume_ml", math.nan)),
    }


def parse_labels(
    rows: dict, column: str, path: str, allow_missing: bool
) -> tuple[dict[str, float], list[str]]:
    """UL-FMA scores by subject; non-numbers and values outside 0..66 stop with the row named.

    Returns ``(scores, missing)``.
    """
    if rows and column not in next(iter(rows.values())):
        raise InputError(
            f"participants.tsv has no {column!r} column",
            path,
            "add the UL-FMA scores or name the column with --label-column",
        )
    scores, missing = {}, []
    for lineno, (label, row) in enumerate(rows.items(), start=2):
        raw = row.get(column, "")
        if raw == "":
            missing.append(label)
            continue
        scores[label] = parse_score(raw, f"{path}, line {lineno}", subject=label, allow_missing_hint=True)
    if missing and not allow_missing:
        raise InputError(
            f"{len(missing)} participant(s) have no UL-FMA score: " + ", ".join("sub-" + m for m in missing),
            path,
            "add the scores, or pass --allow-missing-labels to leave them out",
        )
    return scores, missing


#: participants.tsv cells that mean "unknown" (imputed inside the training folds).
MISSING_VALUES = ("", "n/a", "na", "nan")


def clinical_values(rows: dict, named: tuple[str, ...] | list[str], path: str) -> dict[str, dict[str, float]]:
    """The clinical baseline's participants.tsv covariates by subject: the default columns
    (:data:`workflows.params.CLINICAL_COLUMNS`) the table has, and every column ``named``
    (``--clinical-covariates``), which must exist and hold numbers (``n/a`` where unknown: NaN)."""
    header = list(next(iter(rows.values()))) if rows else []
    missing = [c for c in named if c not in header]
    if missing:
        raise InputError(
            "participants.tsv has no column " + ", ".join(repr(c) for c in missing) + " (named by "
            "--clinical-covariates)",
            path,
            "add the column (numbers, n/a where unknown: imputed inside the training folds) or leave it "
            "out of --clinical-covariates; the table's columns are " + ", ".join(header),
        )
    columns = list(dict.fromkeys([c for c in CLINICAL_COLUMNS if c in header] + list(named)))
    out: dict[str, dict[str, float]] = {}
    for lineno, (label, row) in enumerate(rows.items(), start=2):
        values = {}
        for column in columns:
            raw = str(row.get(column, "")).strip()
            if raw.lower() in MISSING_VALUES:
                values[column] = math.nan
                continue
            try:
                values[column] = float(raw)
            except ValueError:
                raise InputError(
                    f"the clinical covariate {column!r} of sub-{label} is {raw!r}, not a number",
                    f"{path}, line {lineno}",
                    "write numbers (code a category such as sex as 0/1) or n/a where unknown, or leave the "
                    "column out of --clinical-covariates",
                ) from None
            if not math.isfinite(values[column]):
                values[column] = math.nan
        out[label] = values
    return out


def parse_sites(rows: dict, column: str, path: str, labels: list[str]) -> dict[str, str] | None:
    """Each of ``labels``' site from participants.tsv's ``column``; None when the table has no such
    column (a single-site cohort). A blank (or n/a) site among them stops with the rows named, since a
    subject without a site can be neither harmonised nor held out with its site."""
    if not rows or column not in next(iter(rows.values())):
        return None
    line = {label: n for n, label in enumerate(rows, start=2)}
    blank = [label for label in labels if label in rows and not rows[label].get(column, "").strip()]
    if blank:
        raise InputError(
            f"{len(blank)} participant(s) have no {column!r} value: "
            + ", ".join(f"sub-{b} (line {line[b]})" for b in blank),
            path,
            f"fill in the {column} column for every participant (the site's name), or remove the column "
            "for a single-site cohort",
        )
    return {label: rows[label][column].strip() for label in labels if label in rows}


def qc_exclusion(output_dir: Path, label: str) -> str | None:
    """Why the participant level's quality control excluded every run of a subject, if it did."""
    reasons = []
    for path in sorted((output_dir / f"sub-{label}").glob("**/func/*_qc.tsv")):
        with open(path) as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        reasons += [f"{r['run']}: {r['reason']}" for r in rows if r.get("excluded") == "1"]
    return "excluded by quality control (" + "; ".join(reasons) + ")" if reasons else None


def _unit_maps(
    layout: Any, q: QueryParams, label: str, stat: str, desc: str | None = None
) -> dict[str | None, Path]:
    """A subject's ``stat`` maps, one per unit (session, or the subject), as the group level reads them."""
    return queries.find_unit_maps(
        layout, label, space=q.space, res=q.res, stat=stat, combine_sessions=q.combine_sessions, desc=desc
    )


def _timescale_maps(layout: Any, q: QueryParams, label: str, stat: str) -> dict[str | None, dict]:
    """A subject's ``stat`` maps at every window length: ``desc-`` label (None: the default) -> unit maps."""
    descs = layout.get(
        subject=label, seed="ipsiM1", stat=stat, suffix="boldmap", return_type="id", target="desc"
    )
    out = {None: _unit_maps(layout, q, label, stat)}
    for desc in sorted(str(d) for d in descs):
        if desc.startswith(TIMESCALE_PREFIX):
            out[desc] = _unit_maps(layout, q, label, stat, desc)
    return out


def timescale_name(meta: dict) -> str:
    """A map's window length as tables name it (``'44s'``), from its sidecar."""
    return f"{float(meta['WindowLength_s']):g}s"


def matches_timescale(meta: dict, wanted: str) -> bool:
    """Whether a map (its sidecar) has the window length ``wanted`` (``'60s'``, rounded to whole volumes
    as the participant level rounds it, or ``'30vol'``)."""
    number, unit = split_duration(wanted)
    if unit == "vol":
        return int(meta.get("WindowLength_vol", -1)) == int(number)
    tolerance = float(meta.get("RepetitionTime") or 0.0) / 2 + 1e-6
    return abs(float(meta["WindowLength_s"]) - number) <= tolerance


def choose_timescale(metas: dict[str | None, dict], wanted: str | None, where: str) -> str | None:
    """The ``desc-`` label (None: the default maps) of the window length ``wanted`` (None or auto: the
    default's); a length the participant level did not write stops with the lengths it wrote."""
    if wanted is None or wanted == AUTO_TIMESCALE:
        return None
    for desc, meta in metas.items():
        if matches_timescale(meta, wanted):
            return desc
    raise InputError(
        f"no map at the window length {wanted} (the participant level wrote "
        + ", ".join(timescale_name(m) for m in metas.values())
        + ")",
        where,
        "choose one of those with --timescale, or run the participant level with --window-lengths "
        f"including {wanted}",
    )


def check_map(path: Path, label: str, unit: str, stat: str) -> None:
    """A participant map must load whole (a bad copy, a full disk, a run killed by an older strokefc):
    otherwise the group level stops before training, naming the file and the subject to re-run.

    Stopping (exit 2) rather than leaving the subject out: a silently smaller cohort would change the
    model and its cross-validation without the user deciding it.
    """
    try:
        check_complete(path, f"sub-{unit} stat-{stat} map")
    except InputError as exc:
        raise InputError(
            exc.what,
            exc.where,
            f"re-run the participant level for this subject (--participant-label {label}), or leave it "
            "out of the group level (--participant-label with the others)",
        ) from None


def side_disagreement(row: dict, column: str, meta: dict, where: str) -> str | None:
    """participants.tsv's lesion side for a subject when it differs from the one its maps were made
    for (sidecar ``LesionHemisphere``); None when they agree or the table gives no side."""
    value = row.get(column, "")
    if not value or "LesionHemisphere" not in meta:
        return None
    side = normalise_hemisphere(value, where)
    return side if side != meta["LesionHemisphere"] else None


def collect_group_inputs(config: RunConfig) -> tuple[list[GroupSubject], dict[str, str], dict | None]:
    """Subjects with a map and a label, the excluded ones with their reason, and shared parameters."""
    q, group = config.queries, config.group
    rows = queries.read_participants(config.bids_dir, config.fmriprep_dir)
    path = str(config.bids_dir / "participants.tsv")
    scores, missing = parse_labels(rows, group.label_column, path, q.allow_missing_labels)
    clinical = clinical_values(rows, group.clinical_covariates, path)
    wanted = [queries.check_participant_label(x) for x in q.participant_label] or sorted(rows)
    if group.sites_from_sidecars:
        if group.site_column in next(iter(rows.values()), {}):
            LOGGER.info(
                "--site-from-sidecars: the %r column of participants.tsv is not used", group.site_column
            )
        sites = queries.sidecar_sites(config.bids_dir, [w for w in wanted if w in rows])
    else:
        sites = parse_sites(rows, group.site_column, path, wanted) or {}
    layout = queries.derivatives_layout(config.output_dir)
    subjects, excluded, params, first = [], {}, None, None
    sides: dict[str, tuple[str, Path]] = {}  # unit -> (participants.tsv side, its map) when they disagree
    for label in wanted:
        session_scores = queries.read_session_scores(config.bids_dir, label, group.label_column)
        if label in missing and not session_scores:
            excluded[label] = "no UL-FMA score (--allow-missing-labels)"
            continue
        if label not in rows:
            excluded[label] = "not in participants.tsv"
            continue
        by_desc = _timescale_maps(layout, q, label, group.map)
        unit_maps = by_desc[None]
        if q.session_id:
            unit_maps = {k: v for k, v in unit_maps.items() if k is None or k in q.session_id}
        if not unit_maps:
            excluded[label] = qc_exclusion(config.output_dir, label) or (
                f"no participant-level stat-{group.map} map ("
                + (
                    "run the participant level with --null-surrogates > 0"
                    if group.map == "dfcexcess"
                    else "run the participant level first"
                )
                + ")"
            )
            continue
        dfcmean = _timescale_maps(layout, q, label, "dfcmean")
        other = {"fc": _unit_maps(layout, q, label, "fc")}
        if group.samples == "windows":
            other["windows"] = _unit_maps(layout, q, label, "windows")
        all_lesions = queries.find_lesion_derivatives(layout, label, space=q.space, res=q.res)
        for session, default_file in unit_maps.items():
            unit = unit_id(label, session)
            score = scores.get(label)
            if session is not None and session in session_scores:
                where = f"{config.bids_dir}/sub-{label}/sub-{label}_sessions.tsv, ses-{session}"
                score = parse_score(session_scores[session], where, subject=label)
            if score is None:
                excluded[unit] = "no UL-FMA score"
                continue
            files = {d: maps[session] for d, maps in by_desc.items() if session in maps}
            metas = {
                d: queries.read_json(sidecar_path(f), "the map's JSON sidecar") for d, f in files.items()
            }
            chosen = choose_timescale(metas, group.timescale, str(default_file))
            map_file, meta = files[chosen], metas[chosen]
            names = {d: timescale_name(m) for d, m in metas.items()}
            if group.timescale == AUTO_TIMESCALE and len(files) < 2:
                raise InputError(
                    f"--timescale {AUTO_TIMESCALE} needs maps at several window lengths; sub-{unit} has "
                    f"one ({names[None]})",
                    str(default_file),
                    "run the participant level with --window-lengths (e.g. 44s 60s 100s), or give one "
                    "--timescale",
                )
            used: dict[str, Path | None] = {
                group.map if d is None else f"{group.map} ({names[d]})": f for d, f in files.items()
            }
            used["fc"] = other["fc"].get(session)
            used["dfcmean"] = dfcmean.get(chosen, {}).get(session)
            if group.samples == "windows":
                used["windows"] = other["windows"].get(session)
            for stat, used_map in used.items():
                if used_map is not None:
                    check_map(used_map, label, unit, stat)
            stale = side_disagreement(rows.get(label, {}), q.lesion_column, meta, f"{path}, sub-{label}")
            if stale:
                sides[unit] = (stale, map_file)
            these = shared_parameters(meta)
            these["Timescales"] = sorted(names.values())
            if params is None:
                params, first = these, unit
            elif these != params:
                diff = {k: (params[k], these[k]) for k in params if params[k] != these[k]}
                raise InputError(
                    "participant maps were made with different parameters: "
                    + "; ".join(f"{k}: sub-{first}={a!r} vs sub-{unit}={b!r}" for k, (a, b) in diff.items()),
                    str(map_file),
                    "re-run the participant level with the same options for everyone",
                )

            windows = None
            if group.samples == "windows":
                windows = other["windows"].get(session)
                if windows is None:
                    raise InputError(
                        f"sub-{unit} has no 4D window maps",
                        str(map_file.parent),
                        "run the participant level with --save-windows for --samples windows",
                    )
            lesions = all_lesions
            if session is not None:
                lesions = [p for p in lesions if f"_ses-{session}_" in p.name or "_ses-" not in p.name]
            subjects.append(
                GroupSubject(
                    label,
                    map_file,
                    windows,
                    meta["LesionHemisphere"],
                    score,
                    fc_file=other["fc"].get(session),
                    dfcmean_file=dfcmean.get(chosen, {}).get(session),
                    qc=quality_measures(meta),
                    lesion_files=tuple(lesions),
                    session=session,
                    timescale_files=(
                        {names[d]: f for d, f in files.items()}
                        if len(files) > 1 and group.samples == "maps"
                        else {}
                    ),
                    clinical=clinical.get(label, {}),
                    site=sites.get(label, ""),
                )
            )
    if sides:
        raise InputError(
            "participants.tsv and the participant-level maps disagree on the lesion side: "
            + "; ".join(
                f"sub-{unit}: participants.tsv says {tsv} but its maps were made for {other}"
                for unit, (tsv, _) in sides.items()
                for other in ["R" if tsv == "L" else "L"]
            ),
            f"{path} ({q.lesion_column}) and the maps' sidecars (LesionHemisphere), e.g. "
            f"{sidecar_path(next(iter(sides.values()))[1])}",
            "rerun the participant level for "
            + " ".join(f"sub-{u}" for u in sides)
            + " (the seed and the lesion alignment follow the side), or correct participants.tsv",
        )
    if len(subjects) < max(MIN_SUBJECTS, group.cv.cv_folds):
        raise InputError(
            f"only {len(subjects)} subject(s) have a map and a label; "
            f"{group.cv.cv_folds}-fold cross-validation needs more",
            str(config.output_dir),
            "process more participants or lower --cv-folds",
        )
    return subjects, excluded, params


def training_dataset(config: RunConfig) -> dict:
    """The BIDS dataset's ``dataset_description.json`` (the card identifies training subjects within it)."""
    path = config.bids_dir / "dataset_description.json"
    return queries.read_json(path, "the dataset description") if path.is_file() else {}


def run_group_level(config: RunConfig) -> int:
    """Train and evaluate the CNN, export the model, write the group report; return the exit code."""
    check_output_dir(config.output_dir, input_folders(config))
    if config.execution.boilerplate_only:
        write_run_config(config)
        print(f"Methods boilerplate: {write_boilerplate(config)}")
        return 0
    subjects, excluded, params = collect_group_inputs(config)
    write_run_config(config)  # once the inputs are accepted: a refused run keeps the last run's
    threshold = config.group.severe_threshold
    severe = sum(is_severe(s.ul_fma, threshold) for s in subjects)
    print(
        f"strokefc group level: {len(subjects)} subjects ({severe} severe UL-FMA <= "
        f"{threshold:g}, {len(subjects) - severe} mild-to-moderate); {len(excluded)} excluded"
    )
    for label, why in excluded.items():
        print(f"  excluded sub-{label}: {why}")
    if all(s.site for s in subjects):
        by_site: dict[str, list[int]] = {}
        for s in subjects:
            by_site.setdefault(s.site, [0, 0])[0 if is_severe(s.ul_fma, threshold) else 1] += 1
        print(
            f"  {len(by_site)} site(s): "
            + "; ".join(f"{k} {n[0]} severe, {n[1]} mild-to-moderate" for k, n in sorted(by_site.items()))
        )

    if config.execution.reports_only:
        report = write_group_report(config, subjects, excluded)
        print(f"Group report: {report}")
        return 0
    prepare_work_dir(config.execution, config.work_dir, input_folders(config))
    wf = init_group_wf(
        subjects=[s.as_dict() for s in subjects],
        params=config.group,
        shared_params=params,
        output_dir=config.output_dir,
        excluded=excluded,
        dataset=training_dataset(config),
        draws_dir=config.work_dir / DRAWS_FOLDER,
    )
    prepare_run(wf, config.execution, config.work_dir, config.output_dir / "logs", "group")
    wf.base_dir = str(config.work_dir)
    wf.config["execution"] = execution_config(
        config.output_dir / "logs" / "crash",
        config.execution.stop_on_first_crash,
        local=not config.execution.use_plugin,
    )
    plugin, plugin_args = plugin_settings(config.execution)
    started = time.time() - 1  # failure records and crash files older than this belong to earlier runs
    # what a killed run left half-written (never under a final name)
    for folder in (config.output_dir / "group", config.output_dir / "model", config.work_dir / DRAWS_FOLDER):
        remove_stale_temps(folder)
    try:
        wf.run(plugin=make_plugin(plugin, plugin_args), plugin_args=plugin_args)
    except Exception as exc:
        crash_dir = config.output_dir / "logs" / "crash"
        failure = node_failure(config.work_dir / wf.name, crash_dir, wf.name, started)
        if failure is None:
            raise
        LOGGER.debug("Nipype: %s", exc)
        reason, crash = failure
        if isinstance(reason, InputError):
            raise reason from None
        raise WorkflowFailed(
            f"the group workflow stopped: {reason}"
            + (f". The crash file has the details: {crash}" if crash else f" (crash files: {crash_dir})")
        ) from None

    report = write_group_report(config, subjects, excluded)
    summary = json.loads((config.output_dir / "group" / "cv_summary.json").read_text())
    _print_metrics(summary)
    print(f"Model: {config.output_dir / 'model'}")
    if report:
        print(f"Group report: {report}")
    return 0


def _print_metrics(summary: dict) -> None:
    """One line per model, then the summary's warnings; a metric that cannot be computed (JSON null: the
    mean reference's r) is n/a."""

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    target = summary.get("target", "classification")
    for model in ordered(summary["models"]):
        metrics = summary["models"][model]
        text = ", ".join(f"{m} {number(v['mean'])} ± {number(v['sd'])}" for m, v in metrics.items())
        print(f"  {model_label(model, target)}: {text}")
    for warning in summary.get("warnings") or []:  # what to read before the numbers (cv_summary.json)
        print(f"  Warning: {warning['message']}")
