"""The methods text of each participant-level step, written from the step's parameter object.

The builders in :mod:`workflows.participant` set these as their ``__desc__`` (niworkflows'
``LiterateWorkflow``), and the app's ``CITATION.md`` reads them back from the graph
(:func:`workflows.participant.describe_participant`): the text follows the parameters that ran.
Markdown, with ``[@key]`` citations of ``bids_app.reports.boilerplate.REFERENCES``.
"""

from __future__ import annotations

from pathlib import Path

from workflows.dfc_null import TOP_TARGET_FRACTION
from workflows.params import (
    STRATEGIES,
    STRATEGY_TEXT,
    DenoiseParams,
    QCParams,
    SeedParams,
    WindowParams,
    describe_duration,
)

#: Each window shape (``WINDOW_SHAPES``) in words.
WINDOW_SHAPE_TEXT = {
    "rectangular": "rectangular",
    "hamming": "Hamming-tapered (as in DPABI's Temporal Dynamic Analysis)",
    "tapered": "tapered (a rectangle convolved with a Gaussian of sigma 3 TRs, as in [@allen2014], "
    "cut to the window)",
    "tapered-circular": "tapered (a rectangle convolved with a Gaussian of sigma 3 TRs, as in [@allen2014]), "
    "spanning the whole run with its Gaussian tails and circularly shifted, as GIFT's dFNC computes it",
}
#: Each window estimator (``WINDOW_ESTIMATORS``) in words.
WINDOW_ESTIMATOR_TEXT = {
    "weighted": "the Pearson correlation with the window's taper as sample weights",
    "tapered-series": "the Pearson correlation of the series multiplied by the window's taper (as DPABI "
    "and GIFT compute it)",
}


def _hz(value: float | None) -> str:
    return "off" if value in (None, 0) else f"{float(value):g} Hz"


def describe_denoise(denoise: DenoiseParams) -> str:
    """Dummy scans, smoothing, censoring, confounds, filtering and scaling, in the order they run."""
    strategy = denoise.strategy
    confounds = STRATEGY_TEXT.get(strategy, strategy).replace("{k}", str(denoise.lesion_components))
    if "compcor" in STRATEGIES.get(strategy, {}).get("strategy", ()):
        n = denoise.n_compcor
        confounds += (
            "; CompCor components: those fMRIPrep retained (50% of the variance)"
            if n == "all"
            else f"; CompCor components: the first {n}"
        )
    dummy = (
        "The non-steady-state volumes flagged by fMRIPrep were discarded"
        if denoise.dummy_scans == "auto"
        else f"The first {denoise.dummy_scans} volumes were discarded"
    )
    smoothing = (
        f" The data were spatially smoothed inside the brain mask with a Gaussian kernel of "
        f"{float(denoise.smoothing_fwhm):g} mm FWHM."
        if denoise.smoothing_fwhm
        else " The data were not spatially smoothed."
    )
    censor = ""
    if "scrub" in STRATEGIES.get(strategy, {}).get("strategy", ()):
        censor = (
            f" Volumes with a framewise displacement above {float(denoise.fd_thresh):g} mm or a "
            f"standardised DVARS above {float(denoise.std_dvars_thresh):g}, and the segments of fewer "
            "than 5 volumes left between them, were censored: they were interpolated (cubic spline through "
            "the kept volumes) for filtering and regression, then discarded."
        )
    if denoise.high_pass or denoise.low_pass:
        filtering = (
            f"detrended and Butterworth-filtered (high-pass {_hz(denoise.high_pass)}, low-pass "
            f"{_hz(denoise.low_pass)})"
        )
    else:
        filtering = "detrended (no temporal filter)"
    return (
        f"Each run was denoised with nilearn [@nilearn]. {dummy}.{smoothing}{censor} The voxel series "
        f"and the regressors of the confound strategy `{strategy}` ({confounds}) were {filtering}, and the "
        "filtered regressors were then regressed out of the filtered series (`nilearn.signal.clean`); "
        "where fMRIStroke's lesion-aware confounds were present, its lesion-free white-matter and CSF "
        "signals replaced fMRIPrep's. Each voxel series was finally z-scored over the kept volumes."
    )


def describe_seed(seed: SeedParams) -> str:
    """The seed: a user mask, a sphere, or the atlas' M1, on the lesioned side."""
    if seed.seed_mask:
        return (
            f"The seed was the user-supplied left-hemisphere mask `{Path(seed.seed_mask).name}`, "
            "mirrored to the right hemisphere for right-hemisphere lesions."
        )
    if seed.seed_coords:
        xyz = ", ".join(f"{float(c):g}" for c in seed.seed_coords)
        return (
            f"The seed was a sphere of radius {float(seed.seed_radius):g} mm centred at "
            f"({xyz}) mm (left hemisphere; mirrored about x = 0 for right-hemisphere lesions)."
        )
    atlas = seed.seed_atlas
    region = "Primary_Motor_Cortex" if atlas == "HCPEx" else "Precentral"
    ref = "[@hcpex]" if atlas == "HCPEx" else "[@aal]"
    return (
        f"The seed was the primary motor cortex of the lesioned hemisphere (ipsilesional M1): the "
        f"{atlas} atlas {ref} region `{region}_L` or `{region}_R`, resampled to the BOLD grid."
    )


def describe_windows(window: WindowParams) -> str:
    """Window length, step, shape, estimator, the coverage rule and the maps."""
    shape = window.window_shape
    estimator = WINDOW_ESTIMATOR_TEXT.get(window.window_estimator, window.window_estimator)
    if shape == "rectangular":
        estimator = "the Pearson correlation over the window's kept volumes"
    return (
        f"Dynamic functional connectivity was computed in sliding windows of "
        f"{describe_duration(window.window_length)} (rounded to whole volumes; "
        f"{WINDOW_SHAPE_TEXT.get(shape, shape)}), moved by {int(window.window_step)} volume(s). In each "
        f"window, {estimator} between the mean seed series and every brain voxel was computed, censored "
        f"volumes having zero weight, and Fisher z-transformed. Windows with less than "
        f"{100 * float(window.min_window_coverage):.0f}% of their taper weight on kept volumes were dropped. "
        "The standard deviation of z over the remaining windows gives the dFC variability map, the mean "
        "over windows the mean dFC map, and the correlation over the whole run the static FC map (written "
        "alongside, since the variability of windowed correlations partly re-encodes static "
        "connectivity)"
        + ("; the map of every window was written too (4D)" if window.save_windows else "")
        + ". This follows the analysis of [@gao2025]."
        + (
            " The variability and mean dFC maps were also computed with windows of "
            + ", ".join(describe_duration(x) for x in window.extra_window_lengths)
            + " (`desc-win<length>` maps), each with its own stationary null when the null was on, so "
            "that dynamics could be read at several timescales."
            if window.extra_window_lengths
            else ""
        )
    )


def describe_null(window: WindowParams) -> str:
    """The stationary null behind ``stat-dfcexcess``, or that it was off."""
    n = int(window.null_surrogates)
    if n <= 0:
        return "No stationary null was computed (no `stat-dfcexcess` map)."
    return (
        f"A stationary null was built from {n} multivariate phase-randomised surrogates of each run (the "
        "seed and every voxel shifted by the same random phases, which keeps their spectra and static "
        "correlation and removes any dynamics), made from the continuous cleaned series (censored "
        "volumes as the denoising interpolated and filtered them) and windowed exactly as the data, "
        "censored volumes having zero weight; the excess variability map (`stat-dfcexcess`) is the "
        "observed SD minus the surrogates' mean SD (Fisher z units, comparable between subjects), and a "
        f"run-level p-value compares the mean SD of the {100 * TOP_TARGET_FRACTION:g}% of voxels with the "
        "largest static |z| with its surrogate distribution."
    )


def describe_qc(qc: QCParams) -> str:
    """Exclusion rules, lesion handling and the lag QC."""
    rules = []
    if qc.min_time is not None:
        rules.append(f"fewer than {qc.min_time:g} s left after censoring")
    if qc.max_mean_fd is not None:
        rules.append(f"a mean framewise displacement above {qc.max_mean_fd:g} mm [@parkes2018]")
    if qc.min_dof is not None:
        rules.append(
            f"fewer than {qc.min_dof:g} temporal degrees of freedom left after filtering and regression"
        )
    rules.append(f"fewer than {qc.min_windows} valid windows")
    return (
        "Runs were excluded with " + ", ".join(rules) + ". When a lesion mask was available (drawn in "
        "template space, or in T1w space and warped with fMRIPrep's transform using nitransforms), the "
        "lesion dilated by one voxel was removed from the analysis mask before smoothing, so that it "
        "entered no map, and the lesion was removed from the seed. A hemodynamic lag map was computed for "
        "every run by cross-correlating each voxel's band-passed series with the mean brain signal over "
        f"+/- {qc.lag_search:g} s (parabolic peak interpolation), unless fMRIStroke's rapidtide lag map "
        "was given, and runs whose lesioned side lagged the other by more than "
        f"{qc.max_lag:g} s were flagged [@siegel2016]."
    )


def describe_sessions(combine_sessions: bool) -> str:
    """How run maps become one map per session (or per subject)."""
    unit = "subject (all sessions together)" if combine_sessions else "session"
    return (
        f"The variability maps of several runs of one {unit} were averaged, each weighted by its number "
        "of valid windows."
    )
