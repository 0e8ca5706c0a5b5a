"""The run configuration: one frozen value composed of the steps' parameter objects (no global state).

Each default lives once, in the dataclass of the step that uses it (``workflows``) or, for options of
the application itself, in the sections below. :data:`OPTIONS` maps every command-line option to its
section and field; the parser takes its defaults from there, errors raised by the science layer are
rendered with the flags, and the methods text and sidecars read the same objects.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from workflows.params import (
    CVParams,
    DenoiseParams,
    GroupParams,
    LesionParams,
    QCParams,
    SeedParams,
    TrainSettings,
    WindowParams,
)


@dataclass(frozen=True)
class QueryParams:
    """Which inputs to use: BIDS query filters and participants.tsv columns."""

    participant_label: tuple[str, ...] = ()
    task_id: str = "rest"
    space: str = "MNI152NLin2009cAsym"
    res: str | None = None
    bids_filters: dict = field(default_factory=dict, hash=False)
    lesion_column: str = "lesion_hemisphere"
    lesion_dir: Path | None = None
    lesion_desc: str | None = None  # also take desc-<lesion_desc>_mask/_roi files in lesion_dir
    session_id: tuple[str, ...] = ()  # only these sessions (all when empty)
    fmristroke_dir: Path | None = None  # fMRIStroke's outputs: lesion-aware confounds and lag maps
    combine_sessions: bool = False  # one map per subject over all sessions, instead of one per session
    skip_bids_validation: bool = False
    allow_missing_labels: bool = False


def available_cpus() -> int:
    """The CPUs this process may run on (a SLURM or container CPU allocation), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity mask
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ExecutionParams:
    """How to run: Nipype plugin, processes, threads, memory and verbosity."""

    nprocs: int = field(default_factory=available_cpus)  # Nipype MultiProc processes
    omp_nthreads: int | None = None  # threads per process; None: chosen for the run (threads_per_process)
    mem_gb: float | None = None
    use_plugin: Path | None = None
    verbose: int = 0
    boilerplate_only: bool = False
    reports_only: bool = False  # rewrite the reports from existing outputs, run nothing
    stop_on_first_crash: bool = False
    write_graph: bool = False  # the workflow graph (SVG, needs Graphviz) in output_dir/logs
    clean_workdir: bool = False  # empty the working directory first
    bids_database_dir: Path | None = None  # pybids index of the fMRIPrep dataset, reused between runs

    def threads_per_process(self, n_jobs: int) -> int:
        """``omp_nthreads``, or where it was not given the CPUs left to each of ``n_jobs`` concurrent jobs
        (``nprocs // n_jobs``, from 1 to 8): a one-subject participant run uses the whole machine (the
        stationary null's voxel chunks run on these threads), a run of many subjects one thread each.
        With a batch plugin (``use_plugin``) the jobs run on other machines, whose CPUs this one does not
        know: one thread unless told."""
        if self.omp_nthreads is not None:
            return self.omp_nthreads
        if self.use_plugin is not None:
            return 1
        return max(1, min(8, self.nprocs // max(1, n_jobs)))


@dataclass(frozen=True)
class RunConfig:
    """Every option of a strokefc run, by section (see ``strokefc --help`` for their meaning)."""

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    fmriprep_dir: Path
    work_dir: Path
    model: Path | None = None  # participant level: predict with this trained model
    queries: QueryParams = field(default_factory=QueryParams)
    denoise: DenoiseParams = field(default_factory=DenoiseParams)
    seed: SeedParams = field(default_factory=SeedParams)
    window: WindowParams = field(default_factory=WindowParams)
    lesion: LesionParams = field(default_factory=LesionParams)
    qc: QCParams = field(default_factory=QCParams)
    group: GroupParams = field(default_factory=GroupParams)
    execution: ExecutionParams = field(default_factory=ExecutionParams)
    #: The command line that started the run (``strokefc`` and its arguments; empty when not parsed from
    #: one), for the reports' About section: provenance, not configuration (two runs with the same
    #: options compare equal, e.g. one repeated with --config-file).
    command: tuple[str, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view (nested sections, paths as strings), for logs and records."""
        return json.loads(json.dumps(asdict(self), default=str))


#: Section of :class:`RunConfig` -> its parameter class.
SECTIONS: dict[str, type] = {
    "queries": QueryParams,
    "denoise": DenoiseParams,
    "seed": SeedParams,
    "window": WindowParams,
    "lesion": LesionParams,
    "qc": QCParams,
    "group": GroupParams,
    "cv": CVParams,
    "execution": ExecutionParams,
}

#: Command-line ``dest`` -> (section, field). ``cv`` and ``train`` are nested in ``group``.
OPTIONS: dict[str, tuple[str, str]] = {
    **{
        name: ("queries", name)
        for name in (
            "participant_label",
            "task_id",
            "space",
            "res",
            "lesion_column",
            "lesion_dir",
            "lesion_desc",
            "session_id",
            "combine_sessions",
            "fmristroke_dir",
            "skip_bids_validation",
            "allow_missing_labels",
            "bids_filters",
        )
    },
    "denoise": ("denoise", "strategy"),
    "smoothing": ("denoise", "smoothing_fwhm"),
    **{
        name: ("denoise", name)
        for name in (
            "fd_thresh",
            "std_dvars_thresh",
            "n_compcor",
            "dummy_scans",
            "high_pass",
            "low_pass",
            "lesion_components",
        )
    },
    **{name: ("seed", name) for name in ("seed_mask", "seed_coords", "seed_radius", "seed_atlas")},
    **{
        name: ("window", name)
        for name in (
            "window_length",
            "extra_window_lengths",
            "window_step",
            "window_shape",
            "window_estimator",
            "min_window_coverage",
            "save_windows",
            "null_surrogates",
        )
    },
    "lesion_threshold": ("lesion", "threshold"),
    **{
        name: ("group", name)
        for name in (
            "severe_threshold",
            "target",
            "calibration",
            "export_model",
            "label_column",
            "align_lesion",
            "cnn_resolution",
            "samples",
            "random_seed",
            "timescale",
            "clinical_covariates",
            "conformal_coverage",
            "site_column",
            "sites_from_sidecars",
            "harmonize",
        )
    },
    "group_map": ("group", "map"),
    "cv_scheme": ("cv", "scheme"),
    **{
        name: ("qc", name)
        for name in ("min_time", "max_mean_fd", "min_windows", "min_dof", "lag_search", "max_lag")
    },
    **{name: ("cv", name) for name in ("cv_folds", "cv_repeats", "n_permutations", "permute_cnn")},
    "epochs": ("train", "epochs"),
    "device": ("train", "device"),
    "cnn_precision": ("train", "precision"),
    **{
        name: ("execution", name)
        for name in (
            "nprocs",
            "omp_nthreads",
            "mem_gb",
            "use_plugin",
            "verbose",
            "boilerplate_only",
            "reports_only",
            "stop_on_first_crash",
            "write_graph",
            "clean_workdir",
            "bids_database_dir",
        )
    },
}

#: Every parameter class by section, ``train`` (nested in ``group``) included.
_SECTION_CLASSES: dict[str, type] = {**SECTIONS, "train": TrainSettings}


def option_default(dest: str) -> Any:
    """The default of a command-line option, read from its parameter class."""
    section, name = OPTIONS[dest]
    return getattr(_SECTION_CLASSES[section](), name)


def parameter_name(dest: str) -> str:
    """The qualified parameter name the science layer uses in its errors (``WindowParams.window_step``)."""
    section, name = OPTIONS[dest]
    return f"{_SECTION_CLASSES[section].__name__}.{name}"


def build_config(
    *,
    bids_dir: Path,
    output_dir: Path,
    analysis_level: str,
    fmriprep_dir: Path,
    work_dir: Path,
    model: Path | None,
    values: dict[str, Any],
) -> RunConfig:
    """Compose a :class:`RunConfig` from option values keyed by ``dest`` (missing ones keep their default)."""
    by_section: dict[str, dict[str, Any]] = {}
    for dest, value in values.items():
        section, name = OPTIONS[dest]
        by_section.setdefault(section, {})[name] = value
    group = GroupParams(**by_section.get("group", {}))
    group = GroupParams(
        **{
            **{f.name: getattr(group, f.name) for f in fields(GroupParams)},
            "cv": CVParams(**by_section.get("cv", {})),
            "train": TrainSettings(**by_section.get("train", {})),
            "threads": int(by_section.get("execution", {}).get("omp_nthreads") or 1),
        }
    )
    return RunConfig(
        bids_dir=bids_dir,
        output_dir=output_dir,
        analysis_level=analysis_level,
        fmriprep_dir=fmriprep_dir,
        work_dir=work_dir,
        model=model,
        queries=QueryParams(**by_section.get("queries", {})),
        denoise=DenoiseParams(**by_section.get("denoise", {})),
        seed=SeedParams(**by_section.get("seed", {})),
        window=WindowParams(**by_section.get("window", {})),
        lesion=LesionParams(**by_section.get("lesion", {})),
        qc=QCParams(**by_section.get("qc", {})),
        group=group,
        execution=ExecutionParams(**by_section.get("execution", {})),
    )


def option_values(config: RunConfig) -> dict[str, Any]:
    """Every option's value by its command-line ``dest`` (the inverse of :func:`build_config`)."""
    sections: dict[str, Any] = {
        "queries": config.queries,
        "denoise": config.denoise,
        "seed": config.seed,
        "window": config.window,
        "lesion": config.lesion,
        "qc": config.qc,
        "group": config.group,
        "cv": config.group.cv,
        "train": config.group.train,
        "execution": config.execution,
    }
    return {dest: getattr(sections[section], name) for dest, (section, name) in OPTIONS.items()}


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(str(value))  # a TOML basic string is a JSON string


def to_toml(config: RunConfig) -> str:
    """The run configuration as TOML: ``[run]`` (datasets and level) and ``[options]`` by ``dest``.

    Unset options (None) are left out, or written "none" where None means "off"; ``--config-file``
    reads the file back.
    """
    run = {
        "bids_dir": config.bids_dir,
        "output_dir": config.output_dir,
        "analysis_level": config.analysis_level,
        "fmriprep_dir": config.fmriprep_dir,
        "work_dir": config.work_dir,
        "model": config.model,
    }
    lines = [
        "# strokefc run configuration (strokefc --config-file FILE repeats it; flags given win)",
        "[run]",
    ]
    lines += [f"{k} = {_toml_value(v)}" for k, v in run.items() if v is not None]
    lines += ["", "[options]"]
    values = option_values(config)
    for key in sorted(values):
        if values[key] is not None:
            lines.append(f"{key} = {_toml_value(values[key])}")
        elif option_default(key) is not None:  # switched off (e.g. smoothing); the parser reads "none"
            lines.append(f'{key} = "none"')
    return "\n".join(lines) + "\n"


def read_toml(path: Path) -> dict[str, Any]:
    """``{"run": {...}, "options": {...}}`` from a file written by :func:`to_toml`."""
    import tomllib

    from workflows.utils.errors import InputError

    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(
            f"the configuration file cannot be read ({exc})", str(path), "fix its syntax"
        ) from None
    unknown = sorted(set(data.get("options", {})) - set(OPTIONS))
    if unknown:
        raise InputError(
            f"the configuration file has unknown options: {', '.join(unknown)}",
            str(path),
            "remove them (names are the long options with '_' for '-')",
        )
    return data


#: Sections whose values the group level takes from the participant run (for the methods text).
PARTICIPANT_SECTIONS = ("queries", "denoise", "seed", "window", "lesion")


def with_participant_options(config: RunConfig) -> RunConfig:
    """``config`` with the participant-level options saved in ``output_dir/logs`` (when the file exists).

    The group level describes the participant processing as it was run, not with its own defaults.
    """
    saved_file = Path(config.output_dir) / "logs" / "strokefc_participant_config.toml"
    if not saved_file.is_file():
        return config
    saved = read_toml(saved_file).get("options", {})
    values = option_values(config)
    for dest, (section, _) in OPTIONS.items():
        if (
            section in PARTICIPANT_SECTIONS
            and dest in saved
            and dest not in ("participant_label", "session_id")
        ):
            value = saved[dest]
            values[dest] = None if value == "none" else tuple(value) if isinstance(value, list) else value
    return build_config(
        bids_dir=config.bids_dir,
        output_dir=config.output_dir,
        analysis_level=config.analysis_level,
        fmriprep_dir=config.fmriprep_dir,
        work_dir=config.work_dir,
        model=config.model,
        values=values,
    )
