"""Group level: collect the participant maps and labels, run the group workflow, write the report.

Labels come from ``participants.tsv``; maps from the participant-level outputs in ``output_dir``
(the subject-level dFC SD map of each subject), checked through their sidecars to share one space,
grid and set of dFC/denoising parameters.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from bids_app import queries
from bids_app.config import RunConfig
from bids_app.errors import InputError
from bids_app.outputs import check_output_dir
from workflows.metadata import shared_parameters

LOGGER = logging.getLogger("strokefc.group")



@dataclass(frozen=True)
class GroupSubject:
    """One subject's input to the group level."""

    label: str
    map_file: Path
    windows_file: Path | None
    lesion_side: str
    score: float | None


def parse_labels(rows: dict, column: str, path: str, allow_missing: bool):
    """UL-FMA scores by subject; non-numbers and values outside 0..66 stop with the row named.

    Returns ``(scores: dict[label, float], missing: list[label])``.
    """
    if rows and column not in next(iter(rows.values())):
        raise InputError(f"participants.tsv has no {column!r} column", path,
                         "add the UL-FMA scores or name the column with --label-column")
    scores, missing = {}, []
    for lineno, (label, row) in enumerate(rows.items(), start=2):
        raw = row.get(column, "")
        if raw == "":
            missing.append(label)
            continue
        try:
            value = float(raw)
        except ValueError:
            raise InputError(f"UL-FMA {raw!r} of sub-{label} is not a number", f"{path}, line {lineno}",
                             "write a score in 0..66, or n/a with --allow-missing-labels") from None
        if not 0 <= value <= 66:
            raise InputError(f"UL-FMA {value:g} of sub-{label} is outside 0..66",
                             f"{path}, line {lineno}", "correct the score")
        scores[label] = value
    if missing and not allow_missing:
        raise InputError(f"{len(missing)} participant(s) have no UL-FMA score: "
                         + ", ".join("sub-" + m for m in missing), path,
                         "add the scores, or pass --allow-missing-labels to leave them out")
    return scores, missing


def find_subject_map(output_dir: Path, label: str, stat: str = "dfcsd") -> Path | None:
    """The subject-level map: the one without ``ses``/``run`` entities, else the only run map."""
    maps = sorted((output_dir / f"sub-{label}").glob(f"**/func/*_seed-ipsiM1_stat-{stat}_boldmap.nii*"))
    if not maps:
        return None
    subject_level = [m for m in maps if "_ses-" not in m.name and "_run-" not in m.name]
    if subject_level:
        return subject_level[0]
    if len(maps) == 1:
        return maps[0]
    return None


def sidecar(path: Path) -> dict:
    return queries.read_json(Path(str(path).replace(".nii.gz", ".json").replace(".nii", ".json")),
                             "the map's JSON sidecar")


def collect_group_inputs(config: RunConfig):
    """Subjects with a map and a label, the excluded ones with their reason, and shared parameters."""
    rows = queries.read_participants(config.bids_dir, config.fmriprep_dir)
    path = str(config.bids_dir / "participants.tsv")
    scores, missing = parse_labels(rows, config.label_column, path, config.allow_missing_labels)
    wanted = [queries.check_participant_label(x) for x in config.participant_label] or sorted(rows)
    subjects, excluded, params, first = [], {}, None, None
    for label in wanted:
        if label in missing:
            excluded[label] = "no UL-FMA score (--allow-missing-labels)"
            continue
        if label not in rows:
            excluded[label] = "not in participants.tsv"
            continue
        map_file = find_subject_map(config.output_dir, label)
        if map_file is None:
            excluded[label] = "no participant-level dFC map (run the participant level first)"
            continue
        meta = sidecar(map_file)
        these = shared_parameters(meta)
        if params is None:
            params, first = these, label
        elif these != params:
            diff = {k: (params[k], these[k]) for k in params if params[k] != these[k]}
            raise InputError(
                "participant maps were made with different parameters: "
                + "; ".join(f"{k}: sub-{first}={a!r} vs sub-{label}={b!r}" for k, (a, b) in diff.items()),
                str(map_file), "re-run the participant level with the same options for everyone")
        windows = None
        if config.samples == "windows":
            windows = find_subject_map(config.output_dir, label, stat="windows")
            if windows is None:
                raise InputError(f"sub-{label} has no 4D window maps", str(map_file.parent),
                                 "run the participant level with --save-windows for --samples windows")
        subjects.append(GroupSubject(label, map_file, windows, meta["LesionHemisphere"],
                                     scores[label]))
    if len(subjects) < max(4, config.cv_folds):
        raise InputError(f"only {len(subjects)} subject(s) have a map and a label; "
                         f"{config.cv_folds}-fold cross-validation needs more",
                         str(config.output_dir), "process more participants or lower --cv-folds")
    return subjects, excluded, params


def run_group_level(config: RunConfig) -> int:
    """Train and evaluate the CNN, export the model, write the group report; return the exit code."""
    check_output_dir(config.output_dir, config.bids_dir)
    if config.boilerplate_only:
        from bids_app.reporting import write_boilerplate

        print(f"Methods boilerplate: {write_boilerplate(config)}")
        return 0
    subjects, excluded, params = collect_group_inputs(config)
    severe = sum(s.score <= config.severe_threshold for s in subjects)
    print(f"strokefc group level: {len(subjects)} subjects ({severe} severe UL-FMA <= "
          f"{config.severe_threshold:g}, {len(subjects) - severe} mild-to-moderate); "
          f"{len(excluded)} excluded")
    for label, why in excluded.items():
        print(f"  excluded sub-{label}: {why}")
    from workflows.group import init_group_wf

    config.work_dir.mkdir(parents=True, exist_ok=True)
    wf = init_group_wf(config=config, subjects=subjects, shared_params=params)
    wf.base_dir = str(config.work_dir)
    wf.config["execution"] = {"crashdump_dir": str(config.output_dir / "logs" / "crash"),
                              "crashfile_format": "txt", "remove_unnecessary_outputs": False}
    plugin = "MultiProc" if config.nprocs > 1 else "Linear"
    args = {"n_procs": config.nprocs, "raise_insufficient": False} if config.nprocs > 1 else {}
    wf.run(plugin=plugin, plugin_args=args)
    from bids_app.reporting import write_group_report

    report = write_group_report(config, subjects, excluded)
    summary = json.loads((config.output_dir / "group" / "cv_summary.json").read_text())
    _print_metrics(summary)
    print(f"Model: {config.output_dir / 'model'}")
    if report:
        print(f"Group report: {report}")
    return 0


def _print_metrics(summary: dict) -> None:
    for model, metrics in summary.get("models", summary).items():
        if not isinstance(metrics, dict):
            continue
        text = ", ".join(f"{m} {v['mean']:.3f} ± {v['sd']:.3f}" for m, v in metrics.items()
                         if isinstance(v, dict) and "mean" in v)
        print(f"  {model}: {text}")
