"""Checks of one run's files before any work starts (headers only: cheap), so that a bad subject is
reported up front with what, where and how to fix, and never half-processed."""

from __future__ import annotations

import numpy as np

from bids_app.errors import InputError


def check_run(run, window_length: str) -> None:
    """Refuse a run whose BOLD is not 4D, whose mask is on another grid, whose confounds do not have
    one row per volume, or that is shorter than one window."""
    from workflows.denoise import _load_image, read_confounds_table
    from workflows.dfc import parse_duration

    bold = _load_image(run.bold, "BOLD")
    mask = _load_image(run.mask, "brain mask")
    if bold.ndim != 4:
        raise InputError(f"the BOLD image is {bold.ndim}D {bold.shape}; a 4D series is expected",
                         str(run.bold), "point strokefc to fMRIPrep's preprocessed 4D BOLD (desc-preproc_bold)")
    if mask.shape[:3] != bold.shape[:3] or not np.allclose(mask.affine, bold.affine, atol=1e-3):
        raise InputError(
            f"the BOLD (grid {bold.shape[:3]}) and its brain mask (grid {mask.shape[:3]}) are on different "
            "grids", f"{run.bold} and {run.mask}",
            "use the mask fMRIPrep wrote for the same space and resolution as the BOLD")
    n_vol = bold.shape[3]
    n_rows = len(read_confounds_table(run.confounds))
    if n_rows != n_vol:
        raise InputError(f"the confounds table has {n_rows} rows but the BOLD has {n_vol} volumes",
                         str(run.confounds), "use the confounds file fMRIPrep wrote with this BOLD run")
    length = parse_duration(window_length, run.tr)
    if n_vol < length:
        raise InputError(f"the run has {n_vol} volumes, fewer than one window ({length} volumes)",
                         str(run.bold), "use a shorter --window-length or exclude this run")
