"""Which runs of a subject enter the analysis: exclusion rules (decided from the confounds alone) and
sessions that exist only in another space. Nothing here reads an image.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING

from bids_app.config import RunConfig
from workflows.denoise import MISSING_FD_NOTE
from workflows.qc import QC_COLUMNS, QC_SIDECAR, exclusion_reasons, predict_run_quality
from workflows.utils.bids import RunInputs, run_prefix
from workflows.utils.io import atomic_write_json, write_tsv

if TYPE_CHECKING:
    from bids import BIDSLayout

LOGGER = logging.getLogger("strokefc.participant")


class SubjectExcluded(Exception):
    """Every run of a subject failed an exclusion rule: not an error, a recorded decision."""

    def __init__(self, reason: str, rows: list[dict], scope: list[dict] | None = None):
        super().__init__(reason)
        self.rows = rows
        self.scope = scope or []  # entities of the subject's runs (their earlier outputs are stale)


def apply_exclusion_rules(config: RunConfig, runs: list[RunInputs]) -> tuple[list[RunInputs], list[dict]]:
    """Split runs into kept and excluded by :func:`workflows.qc.exclusion_reasons` (confounds only).

    Excluded runs get their QC row (``excluded`` 1, with the reason) and no maps.
    """
    kept, excluded = [], []
    for run in runs:
        quality = predict_run_quality(run.bold, run.confounds, run.tr, config.denoise, config.window)
        reasons = exclusion_reasons(quality, config.qc)
        if not math.isfinite(quality["mean_fd_mm"]):
            LOGGER.warning("sub-%s %s: %s", run.entities["subject"], run.name, MISSING_FD_NOTE)
        if reasons:
            row = {"run": run.name, **quality, "excluded": 1, "reason": "; ".join(reasons)}
            excluded.append(row)
            LOGGER.warning("sub-%s %s excluded: %s", run.entities["subject"], run.name, row["reason"])
            write_qc_table(config.output_dir, run, row)
        else:
            kept.append(run)
    return kept, excluded


def write_qc_table(output_dir: Path, run: RunInputs, row: dict) -> Path:
    """The QC table of an excluded run, named as the workflow names those of processed runs."""
    ses = run.entities.get("session")
    func = output_dir / f"sub-{run.entities['subject']}" / (f"ses-{ses}" if ses else "") / "func"
    path = func / f"{run_prefix(run.entities)}_qc.tsv"
    write_tsv(path, [row], list(QC_COLUMNS))
    atomic_write_json(path.with_suffix(".json"), QC_SIDECAR)
    return path


def sessions_without_space(
    config: RunConfig, label: str, runs: list[RunInputs], layout: BIDSLayout | None
) -> list[str]:
    """Sessions whose preprocessed BOLD exists only in other spaces: recorded, never silently dropped."""
    if layout is None:
        return []
    q = config.queries
    everywhere = {
        str(f.entities["session"])
        for f in layout.get(subject=label, task=q.task_id, desc="preproc", suffix="bold")
        if "session" in f.entities
    }
    used = {str(r.entities.get("session")) for r in runs}
    wanted = set(q.session_id) or everywhere
    space = q.space if q.res is None else f"{q.space} res-{q.res}"
    notes = [
        f"ses-{s} has no preprocessed BOLD in space {space}: not processed"
        for s in sorted((everywhere & wanted) - used)
    ]
    for note in notes:
        LOGGER.warning("sub-%s: %s", label, note)
    return notes
