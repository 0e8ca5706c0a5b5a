"""Participant level: select subjects, build one Nipype workflow per subject, run, report.

A subject whose inputs are wrong (no run, bad lesion side, ...) or whose workflow crashes is listed
in the final summary with the reason and the crash file; the others complete; the exit code is 1
if any subject failed.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from nipype.pipeline import engine as pe

from bids_app import locks, queries
from bids_app.config import RunConfig
from bids_app.console import interface_modules, make_plugin, start_forkserver
from bids_app.exclusions import SubjectExcluded, apply_exclusion_rules, sessions_without_space
from bids_app.execution import (
    execution_config,
    input_folders,
    node_failure,
    plugin_settings,
    prepare_run,
    prepare_work_dir,
    write_run_config,
)
from bids_app.lesions import (
    check_lesion_placement,
    find_lesion_masks,
    masks_expected,
    resolve_lesion_side,
    template_space_mask,
)
from bids_app.outputs import check_output_dir, file_clock, init_output_dataset, remove_stale_outputs
from bids_app.parser import flag_names
from bids_app.preflight import check_run
from bids_app.progress import SubjectProgress, subject_priority, workers_of
from bids_app.reporting import write_boilerplate, write_participant_reports
from bids_app.scores import parse_score
from workflows import outputs as output_workflows
from workflows import participant as participant_workflows
from workflows.denoise import MISSING_FD_NOTE, read_confounds_table
from workflows.interfaces.predict import PredictSubject
from workflows.lesion import lesion_side_from_mask, normalise_hemisphere
from workflows.model_io import read_card
from workflows.participant import init_participant_wf
from workflows.utils.atomic import remove_stale_temps
from workflows.utils.bids import RunInputs
from workflows.utils.errors import InputError
from workflows.utils.images import load_image

if TYPE_CHECKING:
    from bids import BIDSLayout

LOGGER = logging.getLogger("strokefc.participant")


@dataclass
class SubjectPlan:
    """Everything known about a subject before its workflow runs."""

    subject: str  # participant label, without "sub-"
    runs: list[RunInputs]
    lesion_side: str
    lesion_source: str
    lesion_masks: dict[str | None, Path] = field(default_factory=dict)  # template space, per session
    lesion_sources: dict[str | None, list[str]] = field(default_factory=dict)  # sidecar Sources
    ul_fma: float | None = None
    notes: list[str] = field(default_factory=list)  # said in the log, the summary and the report
    excluded_runs: list[dict] = field(default_factory=list)  # QC rows of runs excluded by the rules
    scope: list[dict] = field(default_factory=list)  # entities of every run read (excluded ones too)


def validator_executable() -> str | None:
    """``bids-validator-deno`` next to this Python (a venv not on PATH), else on PATH."""
    local = Path(sys.executable).parent / "bids-validator-deno"
    return str(local) if local.exists() else shutil.which("bids-validator-deno")


def validate_bids(bids_dir: Path) -> None:
    """Run the official BIDS validator (bids-validator-deno) when installed; errors stop the run."""
    exe = validator_executable()
    if exe is None:
        LOGGER.warning("bids-validator-deno is not installed: input validation skipped")
        return
    proc = subprocess.run(
        [exe, str(bids_dir), "--ignoreWarnings"], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise InputError(
            f"the BIDS validator found errors in the input dataset:\n{tail}\n",
            str(bids_dir),
            "fix them, or pass --skip-bids-validation",
        )


def select_subjects(config: RunConfig) -> list[str]:
    """Requested labels (checked to exist) or every subject in the fMRIPrep folder."""
    available = queries.list_subjects(config.fmriprep_dir)
    if not config.queries.participant_label:
        if not available:
            raise InputError(
                "the fMRIPrep folder holds no sub-* folder", str(config.fmriprep_dir), "check --fmriprep-dir"
            )
        return available
    labels = [queries.check_participant_label(lb) for lb in config.queries.participant_label]
    missing = [lb for lb in labels if lb not in available]
    if missing:
        raise InputError(
            f"participant(s) {', '.join('sub-' + m for m in missing)} not found",
            str(config.fmriprep_dir),
            f"choose among: {', '.join(available) or 'none'}",
        )
    return labels


def plan_subject(
    config: RunConfig,
    label: str,
    participants: dict[str, dict[str, str]] | None,
    layout: BIDSLayout | None = None,
) -> SubjectPlan:
    """Runs, lesion side (participants.tsv and/or lesion mask) and UL-FMA score of one subject."""
    q = config.queries
    runs = queries.collect_runs(
        config.fmriprep_dir,
        label,
        task=q.task_id,
        space=q.space,
        res=q.res,
        filters=q.bids_filters,
        layout=layout,
        sessions=q.session_id,
    )
    for run in runs:
        check_run(run, config.window.window_length)
    if q.fmristroke_dir:
        runs = [queries.with_fmristroke(run, q.fmristroke_dir) for run in runs]
    notes = sessions_without_space(config, label, runs, layout)
    scope = [dict(r.entities) for r in runs]
    runs, excluded_runs = apply_exclusion_rules(config, runs)
    if not runs:
        raise SubjectExcluded(
            "every run was excluded by quality control: "
            + "; ".join(f"{r['run']}: {r['reason']}" for r in excluded_runs),
            excluded_runs,
            scope,
        )
    tsv_side = None
    where = f"{config.bids_dir / 'participants.tsv'}, participant sub-{label}"
    if participants is not None:
        value = queries.participant_value(
            participants, label, q.lesion_column, str(config.bids_dir / "participants.tsv")
        )
        tsv_side = normalise_hemisphere(value, where) if value else None
    sessions = sorted({r.entities.get("session") for r in runs}, key=lambda v: v or "")
    found = find_lesion_masks(
        label,
        sessions,
        q.space,
        bids_dir=config.bids_dir,
        fmriprep_dir=config.fmriprep_dir,
        lesion_dir=q.lesion_dir,
        lesion_desc=q.lesion_desc,
        res=q.res,
    )
    masks, sources, mask_sides = {}, {}, {}
    for session, lesion in found.items():
        reference = next(r for r in runs if r.entities.get("session") == session).mask
        masks[session], sources[session] = template_space_mask(config, label, lesion, reference)
        mask_sides[session] = lesion_side_from_mask(
            load_image(masks[session], "lesion mask"), str(lesion.path), config.lesion.threshold
        )
    if len(set(mask_sides.values())) > 1:
        raise InputError(
            f"sub-{label}: the lesion masks of different sessions lie on different sides ({mask_sides})",
            ", ".join(str(f.path) for f in found.values()),
            "check the masks' orientation",
        )
    missing = [s for s in sessions if s not in found]
    if missing and (found or masks_expected(q.lesion_dir, config.bids_dir)):
        where = ", ".join(f"ses-{s}" for s in missing if s) or "the subject"
        notes.append(
            f"no lesion mask for {where}: the lesion stays in the maps and only the seed side is known"
        )
        LOGGER.warning("sub-%s: %s", label, notes[-1])
    mask_side = next(iter(mask_sides.values()), None)
    if tsv_side and mask_side and tsv_side != mask_side:
        for session, lesion in found.items():  # a mask off its place is not a side disagreement
            reference = next(r for r in runs if r.entities.get("session") == session).mask
            check_lesion_placement(masks[session], reference, str(lesion.path), config.lesion.threshold)
    side, source = resolve_lesion_side(tsv_side, mask_side, label)
    ul_fma = None
    if participants is not None and label in participants:
        raw = participants[label].get(config.group.label_column)
        ul_fma = parse_score(raw, where) if raw else None
    notes += [f"{r['run']} excluded by quality control: {r['reason']}" for r in excluded_runs]
    notes += [f"{r.name}: {r.tr_note}" for r in runs if r.tr_note]
    notes += [
        f"{r.name}: {MISSING_FD_NOTE}"
        for r in runs
        if "framewise_displacement" not in read_confounds_table(r.confounds)
    ]
    return SubjectPlan(label, runs, side, source, masks, sources, ul_fma, notes, excluded_runs, scope)


def build_workflow(config: RunConfig, plans: list[SubjectPlan]) -> pe.Workflow:
    """The top-level Nipype workflow: one ``sub_<label>_wf`` per planned subject."""
    wf = pe.Workflow(name="strokefc_participant_wf", base_dir=str(config.work_dir))
    for plan in plans:
        wf.add_nodes(
            [
                init_participant_wf(
                    subject=plan.subject,
                    runs=plan.runs,
                    denoise=config.denoise,
                    seed=config.seed,
                    window=config.window,
                    lesion_side=plan.lesion_side,
                    lesion_source=plan.lesion_source,
                    output_dir=config.output_dir,
                    fmriprep_dir=config.fmriprep_dir,
                    lesion_masks=plan.lesion_masks,
                    lesion_sources=plan.lesion_sources,
                    qc=config.qc,
                    model_dir=config.model,
                    combine_sessions=config.queries.combine_sessions,
                    omp_nthreads=config.execution.omp_nthreads,
                    lesion=config.lesion,
                )
            ]
        )
    wf.config["execution"] = execution_config(
        config.output_dir / "logs" / "crash",
        config.execution.stop_on_first_crash,
        local=not config.execution.use_plugin,
    )
    return wf


def run_participant_level(config: RunConfig) -> int:
    """Plan, run and report every selected subject; return the exit code (0 or 1)."""
    started = time.time() - 1  # failure records and crash files older than this belong to earlier runs
    check_output_dir(config.output_dir, input_folders(config))
    if config.model:  # a wrong model stops the run before any subject is processed
        read_card(config.model)
        if Path(config.model).is_file():  # its model card or weights: the folder holding them
            config = replace(config, model=Path(config.model).parent)
    if config.execution.boilerplate_only:
        write_run_config(config)
        path = write_boilerplate(config)
        print(f"Methods boilerplate: {path}")
        return 0
    if not config.queries.skip_bids_validation and config.bids_dir != config.fmriprep_dir:
        validate_bids(config.bids_dir)
    labels = select_subjects(config)
    threads = config.execution.threads_per_process(len(labels))
    config = replace(config, execution=replace(config.execution, omp_nthreads=threads))
    _start_workers(config)
    try:
        participants = queries.read_participants(config.bids_dir, config.fmriprep_dir)
    except InputError:
        if not config.queries.lesion_dir:
            raise
        participants = None  # lesion masks can give the side on their own
    column = config.queries.lesion_column
    if (
        participants
        and not config.queries.lesion_dir
        and not any(column in row for row in participants.values())
    ):
        raise InputError(
            f"participants.tsv has no {column!r} column",
            str(config.bids_dir / "participants.tsv"),
            "add the lesion side (L/R) per patient, name the column with --lesion-column, "
            "or give lesion masks with --lesion-dir",
        )
    init_output_dataset(
        config.output_dir, config.bids_dir, config.fmriprep_dir, config.queries.lesion_dir, config.model
    )
    outputs_since = file_clock(config.output_dir)  # what this run writes from now on is not stale
    if not config.execution.reports_only:
        prepare_work_dir(config.execution, config.work_dir, input_folders(config))
    layout = queries.fmriprep_layout(config.fmriprep_dir, config.execution.bids_database_dir)
    queries.check_filters_match(
        layout,
        config.fmriprep_dir,
        labels,
        task=config.queries.task_id,
        space=config.queries.space,
        filters=config.queries.bids_filters,
    )
    write_run_config(config)  # once the inputs are accepted: a refused run keeps the last run's
    held: list[Path] = []
    try:
        return _run_subjects(config, labels, participants, layout, started, held, outputs_since)
    finally:
        for path in held:
            locks.release(path)


def _set_worker_threads(config: RunConfig) -> None:
    """BLAS threads of every node (inherited by MultiProc workers and batch jobs)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(config.execution.omp_nthreads))


def _start_workers(config: RunConfig) -> None:
    """Start MultiProc's forkserver with the participant workflow's modules while the subjects are
    planned (:func:`bids_app.console.start_forkserver`); the prediction's only with ``--model``."""
    plugin, plugin_args = plugin_settings(config.execution)
    if (
        config.execution.reports_only
        or plugin != "MultiProc"
        or plugin_args.get("mp_context") != "forkserver"
    ):
        return
    _set_worker_threads(config)
    without = () if config.model else (PredictSubject,)
    start_forkserver(interface_modules(participant_workflows, output_workflows, without=without))


def _run_subjects(
    config: RunConfig,
    labels: list[str],
    participants: dict[str, dict[str, str]] | None,
    layout: BIDSLayout | None,
    started: float,
    held: list[Path],
    outputs_since: float,
) -> int:
    """Lock, plan, run, clean and report the subjects (``held``: the locks taken, released by the caller;
    outputs changed before ``outputs_since``, on the file system's clock, are an earlier run's)."""
    plans: list[SubjectPlan] = []
    failures: dict[str, tuple[str, Path | None]] = {}
    excluded: dict[str, str] = {}
    scopes: dict[str, list[dict]] = {}  # subject -> its runs' entities, for stale outputs
    for label in labels:
        try:
            held.append(locks.acquire(config.output_dir, label))
        except InputError as exc:
            failures[label] = (exc.render(flag_names()), None)
            LOGGER.error("sub-%s skipped: %s", label, failures[label][0])
            continue
        try:
            plans.append(plan_subject(config, label, participants, layout))
        except SubjectExcluded as exc:
            excluded[label] = str(exc)
            scopes[label] = exc.scope
            LOGGER.warning("sub-%s excluded: %s", label, exc)
        except InputError as exc:
            failures[label] = (exc.render(flag_names()), None)
            LOGGER.error("sub-%s skipped: %s", label, failures[label][0])
        except Exception as exc:
            failures[label] = (_planning_failure(label, exc), None)
            LOGGER.error("sub-%s skipped: %s", label, failures[label][0])
            LOGGER.debug("sub-%s planning traceback", label, exc_info=True)
    if plans and not config.execution.reports_only:
        wf = build_workflow(config, plans)
        prepare_run(wf, config.execution, config.work_dir, config.output_dir / "logs", "participant")
        plugin, plugin_args = plugin_settings(config.execution)
        progress = SubjectProgress(wf, workers=workers_of(plugin, plugin_args))
        plugin_args = {**plugin_args, "status_callback": progress}
        LOGGER.info("Running %d subject(s) with %s", len(plans), plugin)
        # what a killed run left half-written (never under a final name): the dataset's own files
        # (dataset_description.json, .bidsignore) at the top, and each subject's folder
        remove_stale_temps(config.output_dir, recursive=False)
        for plan in plans:
            remove_stale_temps(config.output_dir / f"sub-{plan.subject}")
        _set_worker_threads(config)
        runner = make_plugin(plugin, plugin_args, subject_priority([p.subject for p in plans]))
        progress.cpu_seconds = getattr(runner, "worker_cpu_seconds", None)
        try:
            wf.run(plugin=runner, plugin_args=plugin_args)
        except RuntimeError as exc:  # Nipype's message is a traceback: the summary below names each failure
            LOGGER.error("some subjects' workflows failed; the summary below says which and why")
            LOGGER.debug("Nipype: %s", exc)
        for plan in plans:
            reason = _failure_reason(config, plan.subject, started)
            if reason:
                failures[plan.subject] = reason

    done = [p for p in plans if p.subject not in failures]
    if not config.execution.reports_only:
        scopes.update({p.subject: p.scope for p in done})
        for label, scope in scopes.items():
            for path in remove_stale_outputs(config.output_dir, label, scope, outputs_since):
                LOGGER.info(
                    "sub-%s: removed %s (an earlier run's output this run did not write)", label, path
                )
    reports = write_participant_reports(config, done, {k: v[0] for k, v in failures.items()})
    notes = {p.subject: p.notes for p in plans if p.notes}
    _print_summary(config, labels, failures, reports, notes, excluded)
    return 1 if failures else 0


def _planning_failure(label: str, exc: Exception) -> str:
    """What went wrong while a subject's inputs were read (an error strokefc does not yet name itself)."""
    return (
        f"sub-{label}'s inputs could not be read ({type(exc).__name__}: {exc}); check this subject's "
        "BOLD, sidecars, confounds and lesion mask (run with -v for the traceback); the other subjects "
        "are processed"
    )


def _failure_reason(config: RunConfig, subject: str, since: float) -> tuple[str, Path | None] | None:
    """Why a subject's workflow failed in this run (:func:`bids_app.execution.node_failure`)."""
    failure = node_failure(
        config.work_dir / "strokefc_participant_wf" / f"sub_{subject}_wf",
        config.output_dir / "logs" / "crash",
        f"sub_{subject}_wf",
        since,
    )
    if failure is None:
        return None
    reason, crash = failure
    return reason.render(flag_names()) if isinstance(reason, InputError) else reason, crash


def _print_summary(
    config: RunConfig,
    labels: list[str],
    failures: dict[str, tuple[str, Path | None]],
    reports: list[Path],
    notes: dict[str, list[str]] | None = None,
    excluded: dict[str, str] | None = None,
) -> None:
    excluded = excluded or {}
    ok = [lb for lb in labels if lb not in failures and lb not in excluded]
    print(
        f"strokefc participant level: {len(ok)} of {len(labels)} participant(s) done; "
        f"outputs in {config.output_dir}"
    )
    for path in reports:
        print(f"  report: {path}")
    if excluded:
        print("Excluded by quality control (no maps; QC tables in the subjects' func folders):")
        for label, reason in excluded.items():
            print(f"  sub-{label}: {reason}")
    if notes:
        print("Notes:")
        for label, lines in notes.items():
            for line in lines:
                print(f"  sub-{label}: {line}")
    if failures:
        print("Failed participants:")
        for label, (reason, crash) in failures.items():
            print(f"  sub-{label}: {reason}" + (f"\n    crash file: {crash}" if crash else ""))
