"""Checks of one run's files before any work starts (headers only: cheap), so that a bad subject is
reported up front with what, where and how to fix, and never half-processed."""

from __future__ import annotations

from workflows.denoise import read_confounds_table
from workflows.params import parse_duration
from workflows.utils.bids import RunInputs
from workflows.utils.errors import InputError
from workflows.utils.images import check_bold_and_mask, load_image


def check_run(run: RunInputs, window_length: str) -> None:
    """Refuse a run whose BOLD is not 4D, whose mask is on another grid, whose confounds do not have
    one row per volume, or that is shorter than one window."""
    bold = load_image(run.bold, "BOLD")
    mask = load_image(run.mask, "brain mask")
    check_bold_and_mask(bold, mask, run.bold, run.mask)
    n_vol = bold.shape[3]
    n_rows = len(read_confounds_table(run.confounds))
    if n_rows != n_vol:
        raise InputError(
            f"the confounds table has {n_rows} rows but the BOLD has {n_vol} volumes",
            str(run.confounds),
            "use the confounds file fMRIPrep wrote with this BOLD run",
        )
    length = parse_duration(window_length, run.tr, "WindowParams.window_length")
    if n_vol < length:
        raise InputError(
            f"the run has {n_vol} volumes, fewer than one window ({length} volumes)",
            str(run.bold),
            "use a shorter --window-length or exclude this run",
            params=("WindowParams.window_length",),
        )
