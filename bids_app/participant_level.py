"""Participant level: select subjects, build one Nipype workflow per subject, run, report.

A subject whose inputs are wrong (no run, bad lesion side, ...) or whose workflow crashes is listed
in the final summary with the reason and the crash file; the others complete; the exit code is 1
if any subject failed.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from bids_app import queries
from bids_app.config import RunConfig
from bids_app.errors import InputError
from bids_app.outputs import check_output_dir, init_output_dataset
from bids_app.preflight import check_run

LOGGER = logging.getLogger("strokefc.participant")


@dataclass
class SubjectPlan:
    """Everything known about a subject before its workflow runs."""

    label: str
    runs: list
    lesion_side: str
    lesion_source: str
    lesion_mask: Path | None = None
    ul_fma: float | None = None
    info: dict = field(default_factory=dict)


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
    proc = subprocess.run([exe, str(bids_dir), "--ignoreWarnings"], capture_output=True, text=True,
                          timeout=600)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise InputError(f"the BIDS validator found errors in the input dataset:\n{tail}\n",
                         str(bids_dir), "fix them, or pass --skip-bids-validation")


def select_subjects(config: RunConfig) -> list[str]:
    """Requested labels (checked to exist) or every subject in the fMRIPrep folder."""
    available = queries.list_subjects(config.fmriprep_dir)
    if not config.participant_label:
        if not available:
            raise InputError("the fMRIPrep folder holds no sub-* folder", str(config.fmriprep_dir),
                             "check --fmriprep-dir")
        return available
    labels = [queries.check_participant_label(lb) for lb in config.participant_label]
    missing = [lb for lb in labels if lb not in available]
    if missing:
        raise InputError(f"participant(s) {', '.join('sub-' + m for m in missing)} not found",
                         str(config.fmriprep_dir),
                         f"choose among: {', '.join(available) or 'none'}")
    return labels


def plan_subject(config: RunConfig, label: str, participants: dict | None, layout=None) -> SubjectPlan:
    """Runs, lesion side (participants.tsv and/or lesion mask) and label of one subject."""
    from workflows.lesion import normalise_hemisphere
    from workflows.seeds import find_lesion_mask, lesion_mask_side, resolve_lesion_side

    runs = queries.collect_runs(config.fmriprep_dir, label, task=config.task_id, space=config.space,
                                res=config.res, filters=config.bids_filters, layout=layout)
    for run in runs:
        check_run(run, config.window_length)
    tsv_side = None
    where = f"{config.bids_dir / 'participants.tsv'}, participant sub-{label}"
    if participants is not None:
        value = queries.participant_value(participants, label, config.lesion_column,
                                          str(config.bids_dir / "participants.tsv"))
        tsv_side = normalise_hemisphere(value, where) if value else None
    mask_path, mask_side = None, None
    if config.lesion_dir:
        sessions = {r.entities.get("session") for r in runs}
        mask_path = find_lesion_mask(config.lesion_dir, label, sorted(s for s in sessions if s)[0]
                                     if any(sessions) else None, config.space)
        if mask_path is not None:
            import nibabel as nb

            mask_side = lesion_mask_side(nb.load(str(mask_path)), str(mask_path))
    side, source = resolve_lesion_side(tsv_side, mask_side, label)
    ul_fma = None
    if participants is not None and label in participants:
        raw = participants[label].get(config.label_column)
        ul_fma = _parse_score(raw, where) if raw else None
    return SubjectPlan(label, runs, side, source, mask_path, ul_fma)


def _parse_score(raw, where):
    try:
        value = float(raw)
    except ValueError:
        raise InputError(f"UL-FMA {raw!r} is not a number", where, "write a score in 0..66 or n/a") \
            from None
    if not 0 <= value <= 66:
        raise InputError(f"UL-FMA {value:g} is outside 0..66", where, "correct the score")
    return value


def _plugin(config: RunConfig) -> tuple[str, dict]:
    if config.use_plugin:
        import yaml

        try:
            spec = yaml.safe_load(Path(config.use_plugin).read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(f"the plugin file is not valid YAML ({exc})", str(config.use_plugin),
                             "fix its syntax") from None
        if not isinstance(spec, dict) or "plugin" not in spec:
            raise InputError("the plugin file has no 'plugin' key", str(config.use_plugin),
                             "write e.g. 'plugin: SLURM' and optional 'plugin_args: {...}'")
        if str(spec["plugin"]).endswith("Graph"):
            # SLURMGraph/SGEGraph submit every node and return at once: the run would report and
            # summarise before any job ran
            raise InputError(f"plugin {spec['plugin']!r} returns before its jobs finish",
                             str(config.use_plugin), "use 'plugin: SLURM' (waits for every job)")
        return spec["plugin"], dict(spec.get("plugin_args") or {})
    if config.nprocs == 1:
        return "Linear", {}
    args = {"n_procs": config.nprocs, "raise_insufficient": False}
    if config.mem_gb:
        args["memory_gb"] = config.mem_gb
    return "MultiProc", args


def build_workflow(config: RunConfig, plans: list[SubjectPlan]):
    """The top-level Nipype workflow: one ``sub_<label>_wf`` per planned subject."""
    from nipype.pipeline import engine as pe

    from workflows.participant import init_participant_wf

    wf = pe.Workflow(name="strokefc_participant_wf", base_dir=str(config.work_dir))
    for plan in plans:
        wf.add_nodes([init_participant_wf(
            subject=plan.label, runs=plan.runs, config=config, lesion_side=plan.lesion_side,
            lesion_source=plan.lesion_source, label=plan.ul_fma, lesion_mask=plan.lesion_mask)])
    crash_dir = config.output_dir / "logs" / "crash"
    wf.config["execution"] = {"crashdump_dir": str(crash_dir), "crashfile_format": "txt",
                              "stop_on_first_crash": False, "remove_unnecessary_outputs": False,
                              "parameterize_dirs": False, "hash_method": "content"}
    return wf


def run_participant_level(config: RunConfig) -> int:
    """Plan, run and report every selected subject; return the exit code (0 or 1)."""
    import os
    import time

    started = time.time() - 1  # crash files older than this belong to earlier runs
    os.environ.setdefault("OMP_NUM_THREADS", str(config.omp_nthreads))
    check_output_dir(config.output_dir, config.bids_dir)
    if config.boilerplate_only:
        from bids_app.reporting import write_boilerplate

        path = write_boilerplate(config)
        print(f"Methods boilerplate: {path}")
        return 0
    if not config.skip_bids_validation and config.bids_dir != config.fmriprep_dir:
        validate_bids(config.bids_dir)
    labels = select_subjects(config)
    try:
        participants = queries.read_participants(config.bids_dir, config.fmriprep_dir)
    except InputError:
        if not config.lesion_dir:
            raise
        participants = None  # lesion masks can give the side on their own
    if participants is not None and not config.lesion_dir and participants and \
            not any(config.lesion_column in row for row in participants.values()):
        raise InputError(f"participants.tsv has no {config.lesion_column!r} column",
                         str(config.bids_dir / "participants.tsv"),
                         "add the lesion side (L/R) per patient, name the column with --lesion-column, "
                         "or give lesion masks with --lesion-dir")
    init_output_dataset(config.output_dir, config.bids_dir, config.fmriprep_dir)
    layout = queries._layout(config.fmriprep_dir)

    plans, failures = [], {}
    for label in labels:
        try:
            plans.append(plan_subject(config, label, participants, layout))
        except InputError as exc:
            failures[label] = (str(exc), None)
            LOGGER.error("sub-%s skipped: %s", label, exc)
    if plans:
        config.work_dir.mkdir(parents=True, exist_ok=True)
        wf = build_workflow(config, plans)
        plugin, plugin_args = _plugin(config)
        LOGGER.info("Running %d subject(s) with %s", len(plans), plugin)
        try:
            wf.run(plugin=plugin, plugin_args=plugin_args)
        except RuntimeError as exc:
            LOGGER.error("Some nodes failed: %s", str(exc).splitlines()[0])
        for plan in plans:
            crash = _crash_files(config, plan.label, started)
            if crash:
                failures[plan.label] = (_crash_reason(crash[0]), crash[0])

    from bids_app.reporting import write_participant_reports

    done = [p for p in plans if p.label not in failures]
    reports = write_participant_reports(config, done, {k: v[0] for k, v in failures.items()})
    _print_summary(config, labels, failures, reports)
    return 1 if failures else 0


def _crash_files(config: RunConfig, label: str, since: float) -> list[Path]:
    crash_dir = config.output_dir / "logs" / "crash"
    marker = f"sub_{label}_wf"
    out = []
    for path in sorted(crash_dir.glob("crash-*.txt")) if crash_dir.exists() else []:
        try:
            if marker in path.read_text(errors="replace") and path.stat().st_mtime >= since:
                out.append(path)
        except OSError:
            continue
    return out


def _crash_reason(path: Path) -> str:
    """Last line of the traceback in a Nipype text crash file (the InputError message if any)."""
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "InputError:" in ln:
            return ln.split("InputError:", 1)[1].strip()
    for ln in reversed(lines):
        if "Error" in ln or "Exception" in ln:
            return ln
    return lines[-1] if lines else "unknown error"


def _print_summary(config, labels, failures, reports) -> None:
    ok = [lb for lb in labels if lb not in failures]
    print(f"strokefc participant level: {len(ok)} of {len(labels)} participant(s) done; "
          f"outputs in {config.output_dir}")
    for path in reports:
        print(f"  report: {path}")
    if failures:
        print("Failed participants:")
        for label, (reason, crash) in failures.items():
            print(f"  sub-{label}: {reason}" + (f"\n    crash file: {crash}" if crash else ""))

