"""How Nipype runs a workflow, at both levels: plugin choice, its arguments, and the execution config."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from bids_app.config import ExecutionParams, RunConfig, to_toml
from workflows.utils.errors import FAILURE_RECORD, InputError
from workflows.utils.io import atomic_write_text

LOGGER = logging.getLogger("strokefc")


#: Written into a working directory that strokefc created: ``--clean-workdir`` deletes only such a folder.
WORKDIR_MARK = ".strokefc-workdir"


def _within(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies inside it (both resolved)."""
    return path == folder or folder in path.parents


def input_folders(config: RunConfig) -> dict[str, Path]:
    """The folders a run reads or writes results to, by option name: never a working directory."""
    folders = {
        "bids_dir": config.bids_dir,
        "--fmriprep-dir": config.fmriprep_dir,
        "output_dir": config.output_dir,
        "--lesion-dir": config.queries.lesion_dir,
        "--fmristroke-dir": config.queries.fmristroke_dir,
    }
    return {name: Path(path).resolve() for name, path in folders.items() if path is not None}


def check_work_dir(work_dir: Path, protected: Mapping[str, Path]) -> None:
    """Refuse a working directory that is or contains an input or output folder."""
    work_dir = Path(work_dir).resolve()
    for name, folder in protected.items():
        if _within(folder, work_dir):
            where = "is" if work_dir == folder else "contains"
            raise InputError(
                f"the working directory {where} the {name} folder ({folder}); --clean-workdir would "
                "delete it",
                str(work_dir),
                "give --work-dir a folder of its own, outside the input and output folders "
                "(e.g. /tmp/strokefc-work)",
                params=("ExecutionParams.clean_workdir",),
            )


def prepare_work_dir(execution: ExecutionParams, work_dir: Path, protected: Mapping[str, Path]) -> None:
    """Create the working directory, emptied first with ``--clean-workdir`` (before anything is planned).

    strokefc deletes only what it created: a folder it creates (or finds empty) gets
    :data:`WORKDIR_MARK`, and ``--clean-workdir`` refuses a folder that is or contains an input or output
    folder (``protected``), and any folder without the mark, before deleting anything. A folder inside
    an input (the default ``<output_dir>/../work`` is inside ``bids_dir/derivatives``) is emptied only
    when strokefc made it.
    """
    work_dir = Path(work_dir).resolve()
    if execution.clean_workdir:
        check_work_dir(work_dir, protected)
        if work_dir.exists():
            if not (work_dir / WORKDIR_MARK).is_file():
                raise InputError(
                    f"--clean-workdir refuses to empty a folder that strokefc did not create (no "
                    f"{WORKDIR_MARK} file in it)",
                    str(work_dir),
                    "delete the folder yourself if it holds only an old strokefc working directory, "
                    "or give --work-dir a new folder",
                    params=("ExecutionParams.clean_workdir",),
                )
            LOGGER.info("emptying the working directory %s (--clean-workdir)", work_dir)
            shutil.rmtree(work_dir)
    if not work_dir.exists() or not any(work_dir.iterdir()):
        work_dir.mkdir(parents=True, exist_ok=True)
        (work_dir / WORKDIR_MARK).write_text(
            "This working directory was created by strokefc; --clean-workdir may delete it.\n"
        )


def write_run_config(config: RunConfig) -> Path:
    """``logs/strokefc_<level>_config.toml``: the configuration of an accepted run."""
    path = config.output_dir / "logs" / f"strokefc_{config.analysis_level}_config.toml"
    atomic_write_text(path, to_toml(config))
    return path


def prepare_run(wf: Any, execution: ExecutionParams, work_dir: Path, logs: Path, level: str) -> None:
    """The working directory exists, and ``--write-graph`` draws the workflow, before it runs."""
    work_dir.mkdir(parents=True, exist_ok=True)
    if execution.write_graph:
        logs.mkdir(parents=True, exist_ok=True)
        try:
            wf.write_graph(
                str(logs / f"{level}_graph.dot"), graph2use="colored", format="svg", simple_form=True
            )
        except (OSError, RuntimeError, FileNotFoundError) as exc:  # Graphviz's dot missing or failing
            LOGGER.warning(
                "the workflow graph could not be drawn (%s); install Graphviz for --write-graph", exc
            )


def plugin_settings(execution: ExecutionParams) -> tuple[str, dict[str, Any]]:
    """``(plugin, plugin_args)`` from ``--use-plugin`` YAML, else MultiProc/Linear from
    ``--nprocs``/``--mem-gb``.
    """
    if execution.use_plugin:
        path = Path(execution.use_plugin)
        try:
            spec = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InputError(
                f"the plugin file is not valid YAML ({exc})", str(path), "fix its syntax"
            ) from None
        if not isinstance(spec, dict) or "plugin" not in spec:
            raise InputError(
                "the plugin file has no 'plugin' key",
                str(path),
                "write e.g. 'plugin: SLURM' and optional 'plugin_args: {...}'",
            )
        if str(spec["plugin"]).endswith("Graph"):
            # SLURMGraph/SGEGraph submit every node and return at once: the run would report and
            # summarise before any job ran
            raise InputError(
                f"plugin {spec['plugin']!r} returns before its jobs finish",
                str(path),
                "use 'plugin: SLURM' (waits for every job)",
            )
        return spec["plugin"], dict(spec.get("plugin_args") or {})
    if execution.nprocs == 1:
        return "Linear", {}
    # forkserver, as fMRIPrep: a forked worker inherits the parent's OpenMP/PyTorch thread pool, and
    # libgomp deadlocks in the child (seen: the explain node hung after torch had run in the parent)
    args: dict[str, Any] = {
        "n_procs": execution.nprocs,
        "raise_insufficient": False,
        "mp_context": "forkserver",
    }
    if execution.mem_gb:
        args["memory_gb"] = execution.mem_gb
    return "MultiProc", args


#: Seconds between two passes of Nipype's scheduler on this machine (MultiProc). Nipype's default, 2 s,
#: is paid once per node along every chain of dependent nodes: on a 4 mm subject (tens of short nodes in
#: a chain) most of the wall time was that wait. Cluster plugins keep the default (each pass asks the
#: queue about every job).
LOCAL_POLL_S = 0.05


def execution_config(
    crash_dir: Path, stop_on_first_crash: bool = False, local: bool = True
) -> dict[str, Any]:
    """Nipype's ``execution`` section: text crash files in ``crash_dir``, keep outputs; a short scheduler
    poll when the nodes run ``local``-ly (MultiProc/Linear, not ``--use-plugin``).

    Input files are hashed by size and modification time (Nipype's default, as fMRIPrep runs), not by
    content: content hashes read every input of every node in the parent and again in the worker, the
    BOLD run through five nodes, 150 MB per 4 mm subject and about 1 GB per 2 mm subject. A file
    rewritten with the same content reruns the nodes that read it; a changed file always does.
    """
    section: dict[str, Any] = {
        "crashdump_dir": str(crash_dir),
        "crashfile_format": "txt",
        "stop_on_first_crash": stop_on_first_crash,
        "remove_unnecessary_outputs": False,
        "parameterize_dirs": False,
        "hash_method": "timestamp",
    }
    if local:
        section["poll_sleep_duration"] = LOCAL_POLL_S
    return section


class WorkflowFailed(RuntimeError):
    """A level's workflow stopped on a node's error; the message names the node's error and its crash
    file (Nipype's own message is a traceback, kept for ``-v``).
    """


def crash_files(crash_dir: Path, marker: str, since: float) -> list[Path]:
    """Nipype's text crash files in ``crash_dir`` written since ``since`` that mention ``marker``."""
    out: list[Path] = []
    for path in sorted(crash_dir.glob("crash-*.txt")) if crash_dir.exists() else []:
        try:
            if marker in path.read_text(errors="replace") and path.stat().st_mtime >= since:
                out.append(path)
        except OSError:
            continue
    return out


def crash_reason(path: Path) -> str:
    """The last error line of a Nipype text crash file (for failures that are not input errors)."""
    lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "Exception" in ln:
            return ln
    return lines[-1] if lines else "unknown error"


def node_failure(
    node_dir: Path, crash_dir: Path, marker: str, since: float
) -> tuple[InputError | str, Path | None] | None:
    """Why a (sub-)workflow failed since ``since``: the input error a node recorded under ``node_dir``
    (what, where, how to fix), else the last error line of its crash file; with the crash file.
    ``None`` when nothing failed.
    """
    crash = crash_files(crash_dir, marker, since)
    records = (
        [p for p in sorted(node_dir.rglob(FAILURE_RECORD)) if p.stat().st_mtime >= since]
        if node_dir.exists()
        else []
    )
    if records:
        return InputError.from_dict(json.loads(records[0].read_text())), crash[0] if crash else None
    if crash:
        return crash_reason(crash[0]), crash[0]
    return None
