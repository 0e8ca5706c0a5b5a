"""The command-line parser: ``strokefc bids_dir output_dir {participant,group} [options]``.

Built apart from parsing (:func:`build_parser`) so that tests and docs can inspect it. Every default comes
from the steps' parameter classes through :func:`bids_app.config.option_default`.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from bids_app import __version__
from bids_app.config import OPTIONS, RunConfig, build_config, option_default, parameter_name, read_toml
from bids_app.fmriprep_options import add_fmriprep_options, translate
from bids_app.queries import resolve_datasets
from workflows.params import (
    AUTO_TIMESCALE,
    CALIBRATION_METHODS,
    CV_SCHEMES,
    DFC_PRESETS,
    EXPORT_CHOICES,
    GROUP_MAPS,
    HARMONIZE_METHODS,
    MIN_SITES_AUTO,
    STRATEGIES,
    STRATEGY_TEXT,
    TARGETS,
    WINDOW_ESTIMATORS,
    WINDOW_SHAPES,
    split_duration,
    timescale_label,
)

D = option_default  # every default below comes from the steps' parameter classes


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be a positive integer")
    return value


def _nonneg_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be zero or a positive integer")
    return value


def _optional_float(text: str) -> float | None:
    """A float, or 'none'/'0' to switch the step off."""
    if str(text).lower() in {"none", "off", "0", "0.0"}:
        return None
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} must be positive (or 'none')")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} must be in (0, 1]")
    return value


def _existing_path(text: str) -> Path:
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"path does not exist: {path}")
    return path.resolve()


def _is_duration(text: str) -> bool:
    try:
        split_duration(text)
    except ValueError:
        return False
    return True


def _coords(text: str) -> tuple[float, ...]:
    try:
        xyz = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        xyz = ()
    if len(xyz) != 3:
        raise argparse.ArgumentTypeError(f"{text!r} is not X,Y,Z in mm (e.g. -38,-22,56)")
    return xyz


def _dummy(text: str) -> str | int:
    if text == "auto":
        return text
    return _nonneg_int(text)


def _ncompcor(text: str) -> str | int:
    return "all" if text == "all" else _positive_int(text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, built apart from parsing so tests and docs can inspect it."""
    parser = argparse.ArgumentParser(
        prog="strokefc",
        allow_abbrev=False,  # "--mem 16000" must not silently become --mem-gb 16000
        description="Ipsilesional-M1 seed-based dynamic functional connectivity from fMRIPrep "
        "derivatives of stroke patients, and models that classify upper-limb motor impairment (UL "
        "Fugl-Meyer <= 20 severe vs > 20 mild-to-moderate): a pre-specified parcel model (exported by "
        "default), a 3D CNN, baselines and controls.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "bids_dir",
        type=Path,
        help="raw BIDS dataset (with participants.tsv), or the fMRIPrep derivatives folder itself",
    )
    parser.add_argument("output_dir", type=Path, help="where strokefc writes its derivatives")
    parser.add_argument(
        "analysis_level",
        choices=["participant", "group"],
        help="participant: dFC maps (and predictions with --model) per subject; "
        "group: cross-validate every model and export one (--export-model, the primary parcel model)",
    )
    parser.add_argument("--version", action="version", version=f"strokefc {__version__}")

    g = parser.add_argument_group("Options for filtering BIDS queries")
    g.add_argument(
        "--participant-label",
        "--participant_label",
        nargs="+",
        default=[],
        metavar="LABEL",
        help="subjects to process (with or without 'sub-'); default all",
    )
    g.add_argument(
        "--session-id",
        "--session-label",
        "--session_id",
        nargs="+",
        default=[],
        metavar="LABEL",
        help="sessions to process (with or without 'ses-'; fMRIPrep's --session-label is an alias); default "
        "all. Each session gets its own map unless --combine-sessions",
    )
    g.add_argument(
        "--datasets",
        nargs="+",
        default=[],
        metavar="NAME=DIR",
        help="other derivatives to read, as xcp_d's --datasets: fmristroke=DIR takes fMRIStroke's "
        "lesion-aware confounds (desc-confounds2: lesion-free WM/CSF signals, lesion and ICA-lesion "
        "regressors) and its rapidtide lag maps (desc-maxtime_map)",
    )
    g.add_argument(
        "--combine-sessions",
        action="store_true",
        help="average the runs of every session into one map per subject (cross-sectional designs with "
        "repeated baseline scans); by default sessions are never averaged together",
    )
    g.add_argument(
        "--fmriprep-dir",
        type=Path,
        default=None,
        help="fMRIPrep derivatives (default: bids_dir/derivatives/fmriprep, or bids_dir "
        "when it is itself fMRIPrep's output)",
    )
    g.add_argument("-t", "--task-id", default=D("task_id"), help="task entity of the resting-state runs")
    g.add_argument("--space", default=D("space"), help="fMRIPrep output space")
    g.add_argument("--res", default=D("res"), help="res entity to use when several resolutions exist")
    g.add_argument(
        "--bids-filter-file",
        type=_existing_path,
        default=None,
        metavar="FILE",
        help="JSON of extra pybids filters, as in fMRIPrep (key 'bold')",
    )
    g.add_argument(
        "--lesion-column",
        default=D("lesion_column"),
        help="participants.tsv column with the lesion side (L/R/left/right)",
    )
    g.add_argument(
        "--label-column",
        default=D("label_column"),
        help="participants.tsv column with the UL-FMA score (0..66)",
    )
    g.add_argument(
        "--site-column",
        default=D("site_column"),
        help="group level: participants.tsv column with each patient's scanning site (absent: one site); "
        "recorded in cohort.tsv, used by the confound-only model, by --cv site and by --harmonize",
    )
    g.add_argument(
        "--site-from-sidecars",
        dest="sites_from_sidecars",
        action="store_true",
        default=D("sites_from_sidecars"),
        help="group level: name each patient's site from the raw BOLD sidecars' scanner fields "
        "(Manufacturer, ManufacturersModelName, InstitutionName, MagneticFieldStrength) instead of "
        "the --site-column",
    )
    g.add_argument(
        "--lesion-dir",
        type=_existing_path,
        default=None,
        metavar="DIR",
        help="lesion masks in template space (a folder, a BIDS-like tree or an fMRIStroke output): "
        "sub-<label>[_ses-<label>]_space-<space>[_res-<r>]_label-lesion_roi.nii.gz, ..._desc-lesion_mask or "
        "..._desc-lesion_roi (fMRIStroke). Without it, T1w-space masks in the raw dataset "
        "(sub-<label>/[ses-<label>/]anat/<name>_label-lesion_roi.nii.gz) are warped with fMRIPrep's "
        "transform",
    )
    g.add_argument(
        "--lesion-desc",
        default=D("lesion_desc"),
        metavar="DESC",
        help="also take ..._desc-<DESC>_mask/_roi files in --lesion-dir as lesion masks",
    )
    g.add_argument(
        "--lesion-threshold",
        type=_fraction,
        default=D("lesion_threshold"),
        metavar="T",
        help="voxels of a lesion mask with a value >= T are the lesion (default %(default)s: a "
        "probabilistic 0..1 mask is cut at 0.5; a binary mask is the same at any T; recorded in the "
        "lesion sidecar)",
    )
    g.add_argument(
        "--skip-bids-validation",
        "--skip_bids_validation",
        action="store_true",
        help="do not run the BIDS validator on the input dataset",
    )

    g = parser.add_argument_group("Denoising")
    g.add_argument(
        "--denoise",
        default=D("denoise"),
        choices=list(STRATEGIES),
        help="confound strategy (nilearn's fMRIPrep loader): "
        + "; ".join(f"{name} = {text}" for name, text in STRATEGY_TEXT.items()).replace("{k}", "N")
        + " (N = --lesion-components); the +lesion strategies also keep the lesion out of the smoothing "
        "and need lesion masks",
    )
    g.add_argument("--fd-thresh", type=float, default=D("fd_thresh"), help="FD censoring threshold (mm)")
    g.add_argument(
        "--std-dvars-thresh",
        type=float,
        default=D("std_dvars_thresh"),
        help="standardised DVARS censoring threshold",
    )
    g.add_argument(
        "--n-compcor",
        type=_ncompcor,
        default=D("n_compcor"),
        help="aCompCor components: 'all' = those fMRIPrep kept (50%% variance) or N",
    )
    g.add_argument(
        "--dummy-scans",
        type=_dummy,
        default=D("dummy_scans"),
        help="non-steady-state volumes to drop; 'auto' uses fMRIPrep's outliers",
    )
    g.add_argument(
        "--lesion-components",
        type=int,
        default=D("lesion_components"),
        help="principal components of the lesion signal regressed with the +lesion strategies, besides "
        "its mean (default %(default)s)",
    )
    g.add_argument("--high-pass", type=_optional_float, default=D("high_pass"), help="Hz ('none' = off)")
    g.add_argument("--low-pass", type=_optional_float, default=D("low_pass"), help="Hz ('none' = off)")
    g.add_argument(
        "--smoothing",
        type=_optional_float,
        default=D("smoothing"),
        metavar="FWHM",
        help="Gaussian smoothing inside the brain mask, mm ('0' = off)",
    )

    g = parser.add_argument_group("Seed")
    g.add_argument(
        "--seed-mask",
        type=_existing_path,
        default=None,
        metavar="FILE",
        help="left-hemisphere seed mask (mirrored for right lesions), or a hemi-L file with a hemi-R twin",
    )
    g.add_argument(
        "--seed-coords",
        type=_coords,
        default=None,
        metavar="X,Y,Z",
        help="left-hemisphere sphere centre in mm (mirrored for right lesions)",
    )
    g.add_argument("--seed-radius", type=float, default=D("seed_radius"), metavar="MM", help="sphere radius")
    g.add_argument(
        "--seed-atlas",
        default=D("seed_atlas"),
        choices=["HCPEx", "AAL", "AAL3"],
        help="atlas of the default M1 seed (HCPEx Primary_Motor_Cortex; AAL Precentral)",
    )

    g = parser.add_argument_group("Dynamic functional connectivity")
    g.add_argument(
        "--dfc-preset",
        choices=sorted(DFC_PRESETS),
        default=None,
        help="set window length/step/shape/estimator at once: dpabi (30 TR Hamming, step 1, tapered-series), "
        "dynamicbc (50 TR rectangular, step 20), "
        "allen (22 TR tapered-circular as GIFT, step 1, tapered-series)",
    )
    g.add_argument(
        "--window-length",
        default=None,
        help=f"window length, '60s' or '30vol' (default {D('window_length')})",
    )
    g.add_argument(
        "--window-lengths",
        nargs="+",
        default=None,
        metavar="LENGTH",
        help="several window lengths, e.g. 44s 60s 100s (Allen et al. 2014's 44 s; Shirer et al. 2012's "
        "30-60 s; 100 s = 1/high-pass, Leonardi & Van De Ville 2015): the first is --window-length (its "
        "maps keep their names), each other one gets its own maps (desc-win<length>) and stationary "
        "null; the group level's --timescale chooses among them (default: one length)",
    )
    g.add_argument(
        "--window-step",
        type=_positive_int,
        default=None,
        help=f"window step in volumes (default {D('window_step')})",
    )
    g.add_argument(
        "--window-shape",
        choices=list(WINDOW_SHAPES),
        default=None,
        help=f"window taper (default {D('window_shape')}; tapered = Allen et al. 2014 cut to the window; "
        "tapered-circular = GIFT's full-run window)",
    )
    g.add_argument(
        "--window-estimator",
        choices=list(WINDOW_ESTIMATORS),
        default=None,
        help=f"windowed correlation: taper-weighted Pearson r, or r of the tapered series as DPABI and GIFT "
        f"compute it (default {D('window_estimator')}; the dpabi and allen presets use tapered-series)",
    )
    g.add_argument(
        "--min-window-coverage",
        type=_fraction,
        default=D("min_window_coverage"),
        help="drop windows with less than this fraction of their taper weight on kept volumes",
    )
    g.add_argument("--save-windows", action="store_true", help="also write the 4D window maps")
    g.add_argument(
        "--null-surrogates",
        type=_nonneg_int,
        default=D("null_surrogates"),
        metavar="N",
        help="phase-randomised surrogates of the stationary null (stat-dfcexcess map and the top-target "
        "test of dynamics); 0 = no null",
    )

    g = parser.add_argument_group("Quality control")
    g.add_argument(
        "--min-time",
        type=_optional_float,
        default=D("min_time"),
        metavar="S",
        help="exclude a run with fewer than S seconds left after censoring and dummy scans "
        "(default %(default)s, as xcp_d; 'none' = off)",
    )
    g.add_argument(
        "--max-mean-fd",
        type=_optional_float,
        default=D("max_mean_fd"),
        metavar="MM",
        help="exclude a run whose mean framewise displacement exceeds MM "
        "(default %(default)s, Parkes et al. 2018's lenient criterion; 'none' = off)",
    )
    g.add_argument(
        "--min-windows",
        type=_nonneg_int,
        default=D("min_windows"),
        metavar="N",
        help="exclude a run with fewer than N valid windows (default %(default)s)",
    )
    g.add_argument(
        "--min-dof",
        type=_optional_float,
        default=D("min_dof"),
        metavar="N",
        help="exclude a run with fewer than N temporal degrees of freedom left after band-pass and "
        "confound regression (default %(default)s; 'none' = off)",
    )
    g.add_argument(
        "--max-lag",
        type=float,
        default=D("max_lag"),
        metavar="S",
        help="flag a run whose lesioned side lags the other (M1 or hemisphere medians) by more than S "
        "seconds (default %(default)s, Siegel et al. 2016)",
    )
    g.add_argument(
        "--lag-search",
        type=float,
        default=D("lag_search"),
        metavar="S",
        help="hemodynamic lags searched, +/- S seconds (default %(default)s)",
    )

    g = parser.add_argument_group("Model, training and prediction")
    g.add_argument(
        "--model",
        type=_existing_path,
        default=None,
        metavar="MODEL_DIR",
        help="participant level: predict with this trained model (output_dir/model: the primary parcel "
        "model or the CNN, as its card says); subjects it was trained on are flagged in_training",
    )
    g.add_argument(
        "--severe-threshold",
        type=float,
        default=D("severe_threshold"),
        help="UL-FMA <= threshold is 'severe'",
    )
    g.add_argument(
        "--target",
        choices=list(TARGETS),
        default=D("target"),
        help="group level: classify severe vs mild-to-moderate (default), or predict the UL-FMA score "
        "itself (ridge on parcels, PCA-ridge, CNN regression head, confound and mean references; "
        "--severe-threshold still defines the classes of the folds and of the thresholded predictions)",
    )
    g.add_argument(
        "--calibration",
        choices=list(CALIBRATION_METHODS),
        default=D("calibration"),
        help="group level, classification: recalibrate the probabilities of every model but the CNN "
        "inside each training fold (sigmoid = Platt scaling, isotonic), fit on out-of-fold predictions "
        "of the training subjects; none (default) leaves the class-weighted probabilities as they are",
    )
    g.add_argument(
        "--export-model",
        choices=list(EXPORT_CHOICES),
        default=D("export_model"),
        help="group level: the model trained on every subject and exported to OUTPUT_DIR/model (what "
        "participant --model applies): primary (default), the pre-specified parcel model that the "
        "cross-validation and permutation test validate, as plain arrays; cnn, the 3D CNN; parcel_l1 / "
        "parcel_enet, the sparse parcel models (classification; plain arrays, for focal effects); or "
        "motor_prior, the model of 12 a-priori motor-network regions (plain arrays with its regions)",
    )
    g.add_argument(
        "--allow-missing-labels",
        action="store_true",
        help="group level: drop subjects without a label (listed) instead of stopping",
    )
    g.add_argument(
        "--no-align-lesion",
        dest="align_lesion",
        action="store_false",
        help="do not mirror right-lesion maps before training",
    )
    g.add_argument(
        "--cnn-resolution",
        type=float,
        default=D("cnn_resolution"),
        choices=[2.0, 3.0, 4.0],
        help="voxel size (mm) of the CNN input",
    )
    g.add_argument(
        "--samples",
        choices=["maps", "windows"],
        default=D("samples"),
        help="one sample per subject map, or one per window map (needs --save-windows "
        "at the participant level); CV is grouped by subject either way",
    )
    g.add_argument(
        "--map",
        dest="group_map",
        choices=list(GROUP_MAPS),
        default=D("group_map"),
        help="group level: the participant-level map the primary parcel model, the PCA baseline and the "
        "CNN learn from: dfcsd (dFC variability, default), dfcexcess (its excess over the stationary "
        "null; needs --null-surrogates > 0), fc (static FC) or dfcmean (mean dFC); the static-FC and "
        "mean-dFC controls run on the same folds whatever the map",
    )
    g.add_argument(
        "--timescale",
        default=D("timescale"),
        metavar=f"{{LENGTH,{AUTO_TIMESCALE}}}",
        help="group level: the window length of the maps, one of the participant level's "
        "--window-lengths ('60s'; default: its first, --window-length), or auto: chosen inside each "
        "training fold by an inner subject-level CV of the primary model on the training subjects only",
    )
    g.add_argument(
        "--clinical-covariates",
        nargs="+",
        default=list(D("clinical_covariates")),
        metavar="COL",
        help="group level: more numeric participants.tsv columns for the clinical baseline model (it "
        "always uses age, time_since_stroke_months where participants.tsv has them, and lesion volume); "
        "the primary model's value over it is tested (cv_summary.json clinical_value)",
    )
    g.add_argument(
        "--conformal-coverage",
        type=_fraction,
        default=D("conformal_coverage"),
        help="group level: coverage of the conformal prediction sets (class) and UL-FMA intervals that "
        "the primary model's cross-validation checks and the exported model gives each new subject "
        "(default %(default)s)",
    )
    g.add_argument("--cv-folds", type=_positive_int, default=D("cv_folds"), help="subject-level CV folds")
    g.add_argument(
        "--cv",
        dest="cv_scheme",
        choices=list(CV_SCHEMES),
        default=D("cv_scheme"),
        help="group level: subject (the repeated subject-level k-fold only), site (also leave-one-site-out: "
        "each site held out once, scored per site with bootstrap intervals; needs 2+ sites), or auto "
        f"(default: site when at least {MIN_SITES_AUTO} sites have patients of both classes)",
    )
    g.add_argument(
        "--harmonize",
        choices=list(HARMONIZE_METHODS),
        default=D("harmonize"),
        help="group level: combat harmonises the parcel models' features across sites with ComBat fitted "
        "inside each training fold only (the training outcome protected; test subjects adjusted with the "
        "fold's estimates, without theirs); combat-nolabel does not protect the outcome (removes more of "
        "a site offset aliased with its class mix, and some class signal with it); needs 3+ subjects per "
        "site. none (default) leaves them as they are",
    )
    g.add_argument("--cv-repeats", type=_positive_int, default=D("cv_repeats"), help="CV repetitions")
    g.add_argument(
        "--n-permutations",
        type=_nonneg_int,
        default=D("n_permutations"),
        help="label permutations for every model's p-value (of the balanced accuracy; of the MAE with "
        "--target regression, the scores permuted); 100+ for papers",
    )
    g.add_argument(
        "--permute-cnn",
        action="store_true",
        default=D("permute_cnn"),
        help="also permute the CNN: each draw retrains it folds x repeats times (100 draws of 5 x 5: "
        "2,500 trainings); without it the primary parcel model and the other linear models are permuted",
    )
    g.add_argument("--epochs", type=_positive_int, default=D("epochs"), help="maximum training epochs")
    g.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default=D("device"), help="auto uses CUDA when present"
    )
    g.add_argument(
        "--cnn-precision",
        choices=["float32", "bfloat16"],
        default=D("cnn_precision"),
        help="precision of the CNN's training forward pass; bfloat16 is about 1.5x faster on CPU "
        "(see the README's benchmarks before using it)",
    )
    g.add_argument("--random-seed", type=int, default=D("random_seed"), help="seed of every random step")

    g = parser.add_argument_group("Options to handle performance")
    g.add_argument(
        "--nprocs",
        "--n-cpus",
        "--n_cpus",
        "--nthreads",
        type=_positive_int,
        default=D("nprocs"),
        help="processes for Nipype's MultiProc (default: the CPUs this process may use)",
    )
    g.add_argument(
        "--omp-nthreads",
        type=_positive_int,
        default=D("omp_nthreads"),
        help="threads per process (BLAS and the stationary null in every node; PyTorch in each "
        "cross-validation fold, permutation and final training). Default: participant level, the "
        "processes divided by the subjects (1 to 8: one subject gets the whole machine; 1 with "
        "--use-plugin); group level, 1",
    )
    g.add_argument(
        "--mem-gb", "--mem_gb", type=float, default=D("mem_gb"), help="memory limit for MultiProc (GB)"
    )
    g.add_argument(
        "--mem",
        "--mem-mb",
        "--mem_mb",
        dest="mem_mb",
        type=float,
        default=None,
        metavar="MB",
        help="memory limit for MultiProc in MB, as fMRIPrep's --mem (wins over --mem-gb)",
    )
    g.add_argument(
        "--use-plugin",
        type=_existing_path,
        default=None,
        metavar="FILE",
        help="Nipype plugin YAML (plugin: MultiProc | SLURM, plugin_args)",
    )
    g.add_argument(
        "-w",
        "--work-dir",
        "--work_dir",
        type=Path,
        default=None,
        help="working directory; reuse it to resume (default: output_dir/../work)",
    )

    g = parser.add_argument_group("Other options")
    g.add_argument(
        "--config-file",
        type=_existing_path,
        default=None,
        metavar="FILE",
        help="options from a run configuration (output_dir/logs/strokefc_<level>_config.toml); "
        "options given on the command line win",
    )
    g.add_argument(
        "--boilerplate-only",
        action="store_true",
        help="write the methods text (output_dir/logs/CITATION.md) and stop",
    )
    g.add_argument(
        "--reports-only",
        action="store_true",
        help="rewrite the HTML reports (and predictions table) from the existing outputs; run nothing",
    )
    g.add_argument(
        "--stop-on-first-crash",
        action="store_true",
        help="stop the whole run at the first failed node (default: finish the other subjects)",
    )
    g.add_argument(
        "--write-graph",
        action="store_true",
        help="write the workflow graph to output_dir/logs (SVG; needs Graphviz's dot)",
    )
    g.add_argument(
        "--clean-workdir",
        action="store_true",
        help="empty the working directory before running: only one strokefc created (it holds a "
        ".strokefc-workdir file) and that holds no input or output folder (not with concurrent runs "
        "sharing it)",
    )
    g.add_argument(
        "--bids-database-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="keep pybids' index of the fMRIPrep dataset here and reuse it in later runs "
        "(large datasets index once)",
    )
    g.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="more messages: -v adds strokefc's debug messages, Nipype's progress and "
        "tracebacks for errors; -vv adds Nipype's debug messages",
    )
    add_fmriprep_options(parser)
    return parser


def _saved_options(argv: list[str] | None) -> dict:
    """Options of ``--config-file`` (by ``dest``), read before parsing so that they become defaults."""
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config-file", type=_existing_path, default=None)
    known, _ = pre.parse_known_args(argv)
    if known.config_file is None:
        return {}
    return dict(read_toml(known.config_file).get("options", {}))


def parse_args(argv: list[str] | None = None) -> RunConfig:
    """Parse and validate; every problem is reported in one ``parser.error`` (exit code 2)."""
    parser = build_parser()
    saved = _saved_options(argv)
    if saved:
        parser.set_defaults(**{k: v for k, v in saved.items() if k != "bids_filters"})
    opts = parser.parse_args(argv)
    problems = []
    window = {
        key: option_default(key)
        for key in ("window_length", "window_step", "window_shape", "window_estimator")
    }
    if opts.dfc_preset:
        window.update(DFC_PRESETS[opts.dfc_preset])
    for key in window:
        if getattr(opts, key) is not None:
            window[key] = getattr(opts, key)
    extra = tuple(str(x) for x in getattr(opts, "extra_window_lengths", None) or ())
    if opts.window_lengths:
        if opts.window_length is not None and opts.window_length != opts.window_lengths[0]:
            problems.append("give --window-length or --window-lengths (its first length), not both")
        window["window_length"], extra = opts.window_lengths[0], tuple(opts.window_lengths[1:])
    for length in (window["window_length"], *extra):
        try:
            split_duration(length)
        except ValueError:
            problems.append(f"window length {length!r} is not a duration: give seconds ('60s') or volumes")
    labels_seen = [timescale_label(x) for x in (window["window_length"], *extra) if _is_duration(x)]
    if len(set(labels_seen)) < len(labels_seen):
        problems.append("--window-lengths repeats a length")
    labels = []
    for label in opts.participant_label:
        text = label[4:] if label.startswith("sub-") else label
        if not text.isalnum():
            problems.append(
                f"participant label {label!r} must be letters and digits (no '/', '..' or spaces)"
            )
        if text not in labels:  # "01 sub-01 01" is one subject
            labels.append(text)
    sessions = []
    for label in opts.session_id:
        text = label[4:] if label.startswith("ses-") else label
        if not text.isalnum():
            problems.append(f"session label {label!r} must be letters and digits")
        sessions.append(text)
    fmristroke_dir = None
    for item in opts.datasets:
        name, _, folder = item.partition("=")
        if name != "fmristroke" or not folder:
            problems.append(f"--datasets {item!r}: give fmristroke=DIR (the only dataset strokefc reads)")
        elif not Path(folder).is_dir():
            problems.append(f"--datasets {item!r}: {folder} is not a folder")
        else:
            fmristroke_dir = Path(folder).resolve()
    habits = translate(opts, supported_space=D("space"), default_space=D("space"))
    problems += habits.problems
    if habits.fmristroke_dir:
        if fmristroke_dir and fmristroke_dir != habits.fmristroke_dir:
            problems.append("--derivatives and --datasets name two fMRIStroke folders; give one")
        fmristroke_dir = habits.fmristroke_dir
    if opts.seed_mask and opts.seed_coords:
        problems.append("--seed-mask and --seed-coords are exclusive: give one")
    if opts.high_pass and opts.low_pass and opts.high_pass >= opts.low_pass:
        problems.append(f"--high-pass ({opts.high_pass}) must be below --low-pass ({opts.low_pass})")
    if opts.analysis_level == "group" and opts.model:
        problems.append("--model is for the participant level (the group level trains a model)")
    filters = dict(saved.get("bids_filters") or {})
    if opts.bids_filter_file:
        try:
            filters = json.loads(opts.bids_filter_file.read_text())
            if not isinstance(filters, dict):
                problems.append("--bids-filter-file must hold a JSON object")
        except json.JSONDecodeError as exc:
            problems.append(f"--bids-filter-file is not valid JSON: {exc}")
    if problems:
        parser.error("; ".join(problems))
    for note in habits.notes:
        print(f"strokefc: note: {note}", file=sys.stderr)
    opts.space = habits.space or opts.space
    opts.res = habits.res or opts.res
    opts.fmriprep_dir = habits.fmriprep_dir or opts.fmriprep_dir
    opts.lesion_dir = habits.lesion_dir or opts.lesion_dir

    bids_dir = opts.bids_dir.expanduser().resolve()
    output_dir = opts.output_dir.expanduser().resolve()
    if opts.analysis_level == "participant" or not opts.boilerplate_only:
        bids_dir, fmriprep_dir = resolve_datasets(bids_dir, opts.fmriprep_dir)
    else:
        fmriprep_dir = opts.fmriprep_dir or bids_dir / "derivatives" / "fmriprep"
    work_dir = (opts.work_dir or output_dir.parent / "work").expanduser().resolve()
    values = {dest: getattr(opts, dest) for dest in OPTIONS if hasattr(opts, dest)}
    if opts.mem_mb is not None:
        values["mem_gb"] = opts.mem_mb / 1000.0
    values.update(
        window,
        participant_label=tuple(labels),
        session_id=tuple(sessions),
        fmristroke_dir=fmristroke_dir,
        window_length=str(window["window_length"]),
        extra_window_lengths=extra,
        window_step=int(window["window_step"]),
        seed_mask=str(opts.seed_mask) if opts.seed_mask else None,
        seed_coords=tuple(opts.seed_coords) if opts.seed_coords else None,
    )
    values["bids_filters"] = filters
    config = build_config(
        bids_dir=bids_dir,
        output_dir=output_dir,
        analysis_level=opts.analysis_level,
        fmriprep_dir=Path(fmriprep_dir),
        work_dir=work_dir,
        model=opts.model,
        values=values,
    )
    return replace(config, command=("strokefc", *(sys.argv[1:] if argv is None else argv)))


def flag_names(parser: argparse.ArgumentParser | None = None) -> dict[str, str]:
    """Qualified parameter name (``WindowParams.window_step``) -> its flag (``--window-step``)."""
    parser = parser or build_parser()
    names = {}
    for action in parser._actions:
        longs = [o for o in action.option_strings if o.startswith("--")]
        if action.dest in OPTIONS and longs:
            names[parameter_name(action.dest)] = longs[0]
    return names
