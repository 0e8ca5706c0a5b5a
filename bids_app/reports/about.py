"""The reports' "About" section: what ran, how, with which software, where (as fMRIPrep's reports have).

And their "Errors and warnings" section: what went wrong or needs attention, gathered from the run's
records (sidecar ``Warnings``, the QC table's exclusion reason, failures), or "No errors to report".
"""

from __future__ import annotations

import os
import platform
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from bids_app import __version__
from bids_app.config import RunConfig
from workflows.metadata import software_versions

#: Packages listed in the About section (besides strokefc itself), in order, when installed.
KEY_PACKAGES = (
    "nipype",
    "nilearn",
    "nibabel",
    "numpy",
    "scipy",
    "scikit-learn",
    "torch",
    "pybids",
    "niworkflows",
)
#: Environment variable naming the container image a run is in (also GeneratedBy.Container).
CONTAINER_VARIABLE = "STROKEFC_CONTAINER"


def command_text(config: RunConfig) -> str:
    """The command line of the run, shell-quoted, or a note when the run was not started from one."""
    if not config.command:
        return "not recorded (the run was not started from the strokefc command)"
    return shlex.join(config.command)


def about_rows(config: RunConfig, versions: Mapping[str, str] | None = None) -> dict[str, str]:
    """Rows of the About table: command line, versions, container, folders, Python and platform."""
    versions = software_versions() if versions is None else versions
    container = os.environ.get(CONTAINER_VARIABLE)
    return {
        "Command line": command_text(config),
        "strokefc version": __version__,
        "Analysis level": config.analysis_level,
        "Container": container or f"none ({CONTAINER_VARIABLE} not set)",
        "Output folder": str(config.output_dir),
        "Working folder": str(config.work_dir),
        "fMRIPrep folder": str(config.fmriprep_dir),
        "Key packages": ", ".join(f"{p} {versions[p]}" for p in KEY_PACKAGES if p in versions) or "unknown",
        "Python": f"{platform.python_version()} ({platform.system()} {platform.machine()})",
    }


def qc_problems(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Errors from QC table rows (``..._qc.tsv``): each excluded run with its reason."""
    out = []
    for row in rows:
        excluded = str(row.get("excluded", "0")).strip().lower() in ("1", "true", "yes", "1.0")
        if excluded:
            reason = str(row.get("reason") or "").strip()
            reason = reason if reason and reason.lower() not in ("nan", "n/a") else "no reason recorded"
            out.append(f"{row.get('run', 'run')}: excluded by QC ({reason})")
    return out
