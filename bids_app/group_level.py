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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bids_app import queries
from bids_app.config import QueryParams, RunConfig
from bids_app.execution import (
    execution_config,
    input_folders,
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
from workflows.models import LABELS, ordered
from workflows.utils.bids import sidecar_path
from workflows.utils.errors import InputError

LOGGER = logging.getLogger("strokefc.group")
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


def qc_exclusion(output_dir: Path, label: str) -> str | None:
    """Why the participant level's quality control excluded every run of a subject, if it did."""
    reasons = []
    for path in sorted((output_dir / f"sub-{label}").glob("**/func/*_qc.tsv")):
        with open(path) as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        reasons += [f"{r['run']}: {r['reason']}" for r in rows if r.get("excluded") == "1"]
    return "excluded by quality control (" + "; ".join(reasons) + ")" if reasons else None


def _unit_maps(layout: Any, q: QueryParams, label: str, stat: str) -> dict[str | None, Path]:
    """A subject's ``stat`` maps, one per unit (session, or the subject), as the group level reads them."""
    return queries.find_unit_maps(
        layout, label, space=q.space, res=q.res, stat=stat, combine_sessions=q.combine_sessions
    )


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
    wanted = [queries.check_participant_label(x) for x in q.participant_label] or sorted(rows)
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
        unit_maps = _unit_maps(layout, q, label, "dfcsd")
        if q.session_id:
            unit_maps = {k: v for k, v in unit_maps.items() if k is None or k in q.session_id}
        if not unit_maps:
            excluded[label] = qc_exclusion(config.output_dir, label) or (
                "no participant-level dFC map (run the participant level first)"
            )
            continue
        other = {stat: _unit_maps(layout, q, label, stat) for stat in ("fc", "dfcmean")}
        if group.samples == "windows":
            other["windows"] = _unit_maps(layout, q, label, "windows")
        all_lesions = queries.find_lesion_derivatives(layout, label, space=q.space, res=q.res)
        for session, map_file in unit_maps.items():
            unit = unit_id(label, session)
            score = scores.get(label)
            if session is not None and session in session_scores:
                where = f"{config.bids_dir}/sub-{label}/sub-{label}_sessions.tsv, ses-{session}"
                score = parse_score(session_scores[session], where, subject=label)
            if score is None:
                excluded[unit] = "no UL-FMA score"
                continue
            meta = queries.read_json(sidecar_path(map_file), "the map's JSON sidecar")
            stale = side_disagreement(rows.get(label, {}), q.lesion_column, meta, f"{path}, sub-{label}")
            if stale:
                sides[unit] = (stale, map_file)
            these = shared_parameters(meta)
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
                    dfcmean_file=other["dfcmean"].get(session),
                    qc=quality_measures(meta),
                    lesion_files=tuple(lesions),
                    session=session,
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
    )
    prepare_run(wf, config.execution, config.work_dir, config.output_dir / "logs", "group")
    wf.base_dir = str(config.work_dir)
    wf.config["execution"] = execution_config(
        config.output_dir / "logs" / "crash", config.execution.stop_on_first_crash
    )
    plugin, plugin_args = plugin_settings(config.execution)
    wf.run(plugin=plugin, plugin_args=plugin_args)

    report = write_group_report(config, subjects, excluded)
    summary = json.loads((config.output_dir / "group" / "cv_summary.json").read_text())
    _print_metrics(summary)
    print(f"Model: {config.output_dir / 'model'}")
    if report:
        print(f"Group report: {report}")
    return 0


def _print_metrics(summary: dict) -> None:
    """One line per model; a metric that cannot be computed (JSON null: the mean reference's r) is n/a."""

    def number(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    labels = LABELS[summary.get("target", "classification")]
    for model in ordered(summary["models"]):
        metrics = summary["models"][model]
        text = ", ".join(f"{m} {number(v['mean'])} ± {number(v['sd'])}" for m, v in metrics.items())
        print(f"  {labels.get(model, model)}: {text}")
