"""The parameter objects of every step: one frozen dataclass per step, so each default exists once.

Plain Python (standard library only): the command line builds its parser and ``--help`` from these
classes without importing NumPy, nilearn, Nipype or PyTorch. The steps, the interfaces, the methods
text, the sidecars and the model card all read the same objects from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from workflows.utils.errors import InputError, check_choice

# -- denoising (workflows.denoise) -------------------------------------------------------------------
#: Denoising strategies -> :func:`nilearn.interfaces.fmriprep.load_confounds` keyword arguments.
STRATEGIES = {
    "simple": {"strategy": ("motion", "wm_csf"), "motion": "full", "wm_csf": "basic"},
    "simple+gsr": {
        "strategy": ("motion", "wm_csf", "global_signal"),
        "motion": "full",
        "wm_csf": "basic",
        "global_signal": "basic",
    },
    "scrubbing": {"strategy": ("motion", "wm_csf", "scrub"), "motion": "full", "wm_csf": "basic"},
    "compcor": {"strategy": ("motion", "high_pass", "compcor"), "motion": "full", "compcor": "anat_combined"},
}
#: Lesion-aware strategies: the base strategy plus the lesion's own signal (its mean and first principal
#: components, as fMRIStroke's lesion CompCor; Yourganov et al. 2018), and smoothing that keeps the
#: lesion's cavity signal out of the tissue around it. They need a lesion mask.
LESION_STRATEGIES = {"simple+lesion": "simple", "compcor+lesion": "compcor"}
STRATEGIES.update({name: STRATEGIES[base] for name, base in LESION_STRATEGIES.items()})
#: What each strategy regresses, in words (the methods text and ``--help``); ``{k}`` = lesion_components.
STRATEGY_TEXT = {
    "simple": "24 head-motion parameters (6 rigid-body parameters, their derivatives and squares) and the "
    "mean white-matter and CSF signals",
    "simple+gsr": "24 head-motion parameters, the mean white-matter and CSF signals and the global signal",
    "scrubbing": "24 head-motion parameters and the mean white-matter and CSF signals, with high-motion "
    "volumes censored",
    "compcor": "24 head-motion parameters, anatomical CompCor components (combined white-matter and CSF "
    "mask) and fMRIPrep's cosine drift regressors",
}
STRATEGY_TEXT.update(
    {
        name: STRATEGY_TEXT[base] + ", plus the lesion's mean signal and its first {k} principal components "
        "(unsmoothed, voxelwise z-scored lesion voxels, as in fMRIStroke's lesion CompCor)"
        for name, base in LESION_STRATEGIES.items()
    }
)


@dataclass(frozen=True)
class DenoiseParams:
    """Confound strategy, censoring, filtering and smoothing of the denoising step."""

    strategy: str = "simple"
    high_pass: float | None = 0.01
    low_pass: float | None = 0.08
    smoothing_fwhm: float | None = 6.0
    fd_thresh: float = 0.5
    std_dvars_thresh: float = 1.5
    n_compcor: int | str = "all"  # "all" = the components fMRIPrep retained (50% variance)
    dummy_scans: int | str = "auto"
    lesion_components: int = 4  # principal components of the lesion signal (besides its mean), +lesion only


# -- sliding windows (workflows.dfc) ---------------------------------------------------------------
#: ``tapered-circular`` is GIFT's window: the tapered window over the whole run, circularly shifted
#: (its Gaussian tails reach every volume), laid as GIFT lays it (see :func:`circular_taper`).
WINDOW_SHAPES = ("rectangular", "hamming", "tapered", "tapered-circular")
#: How a window's correlation is estimated: "weighted" = Pearson r with the taper as sample weights;
#: "tapered-series" = multiply both series by the taper, then Pearson r (DPABI's y_SCA_Window, GIFT).
WINDOW_ESTIMATORS = ("weighted", "tapered-series")


@dataclass(frozen=True)
class WindowParams:
    """Sliding windows of the dFC step (``window_length``: ``'60s'`` or ``'30vol'``; step in volumes)."""

    # 44 s = Allen et al. 2014's 22-TR window at TR 2 s. Coupling states last tens of seconds to a few
    # minutes, and on generated cohorts with 40-80 s dwell times and 180-240 volumes (the 6-8 minute runs
    # of stroke protocols) 44 s windows found dynamics-only effects best (oracle 0.84-0.93) where 100 s
    # windows lost them (0.62-0.82), with no false positives on null cohorts
    # (benchmarks/results/timescales-2026-12-03.md). Windows shorter than 1/high-pass (100 s at 0.01 Hz)
    # carry spurious stationary fluctuations (Leonardi & Van De Ville 2015): the stationary null below
    # measures that floor per subject, and stat-dfcexcess subtracts it.
    window_length: str = "44s"
    # other window lengths (--window-lengths 44s 60s 100s: the first is window_length), each with its
    # own maps (desc-win<length>) and stationary null; none by default (the participant level stays
    # cheap; the group level's --timescale chooses among them). Windows of 30-60 s are the range
    # Shirer et al. 2012 found to track cognitive states; 100 s (1/high-pass) is the length that needs
    # no null by Leonardi & Van De Ville's rule.
    extra_window_lengths: tuple[str, ...] = ()
    window_step: int = 1
    window_shape: str = "rectangular"
    window_estimator: str = "weighted"  # see WINDOW_ESTIMATORS; identical for rectangular windows
    min_window_coverage: float = 0.8  # windows with a smaller kept fraction are dropped
    save_windows: bool = False  # also write the 4D window maps
    # phase-randomised surrogates of the stationary null behind stat-dfcexcess (0 = no null)
    null_surrogates: int = 50


#: Window settings of the tools and papers they name (``--dfc-preset``).
DFC_PRESETS: dict[str, dict[str, Any]] = {
    # DPABI Temporal Dynamic Analysis: 30-TR Hamming window, step 1 TR; y_SCA_Window multiplies the
    # series by the window, then correlates.
    "dpabi": {
        "window_length": "30vol",
        "window_step": 1,
        "window_shape": "hamming",
        "window_estimator": "tapered-series",
    },
    # DynamicBC: 50-TR rectangular window, 60% overlap (step 20 TRs).
    "dynamicbc": {"window_length": "50vol", "window_step": 20, "window_shape": "rectangular"},
    # Allen et al. 2014: 22-TR rectangle convolved with a Gaussian (sigma 3 TRs), step 1 TR; GIFT
    # multiplies the series by the full-run window, Gaussian tails included, then correlates.
    "allen": {
        "window_length": "22vol",
        "window_step": 1,
        "window_shape": "tapered-circular",
        "window_estimator": "tapered-series",
    },
}


def split_duration(value: str | int | float) -> tuple[float, str]:
    """``'60s'`` -> ``(60.0, 's')``, ``'30vol'`` -> ``(30, 'vol')``; a bare number is seconds.

    Raises ValueError when ``value`` is not a duration.
    """
    text = str(value).strip().lower()
    if text.endswith("vol"):
        return int(text[:-3]), "vol"
    return float(text[:-1] if text.endswith("s") else text), "s"


def describe_duration(value: str | int | float) -> str:
    """A duration in words, read as :func:`parse_duration` reads it: ``'60'`` -> ``'60 s'``."""
    number, unit = split_duration(value)
    return f"{number:g} s" if unit == "s" else f"{int(number)} volume{'s' if number != 1 else ''}"


def parse_duration(value: str | int | float, tr: float, name: str = "WindowParams.window_length") -> int:
    """Convert ``'60s'``, ``'30vol'`` or a bare number of seconds to a whole number of volumes.

    Seconds are rounded to the nearest whole volume (at least 2).
    """
    try:
        number, unit = split_duration(value)
        n = int(number) if unit == "vol" else round(number / tr)
    except ValueError:
        raise InputError(
            f"{name} {value!r} is not a duration",
            name,
            "give seconds ('60s') or volumes ('30vol')",
            params=(name,),
        ) from None
    if n < 1:
        raise InputError(
            f"{name} {value!r} is shorter than one volume (TR {tr} s)",
            name,
            "give a longer duration",
            params=(name,),
        )
    return n


#: Prefix of the ``desc-`` label that names a map at another window length than ``window_length``.
TIMESCALE_PREFIX = "win"


def timescale_label(length: str | int | float) -> str:
    """The ``desc-`` label of maps at window ``length``: ``'60s'`` -> ``'win60s'``.

    BIDS labels are letters and digits: a decimal point becomes ``p`` (``'44.5s'`` -> ``'win44p5s'``).
    """
    number, unit = split_duration(length)
    return f"{TIMESCALE_PREFIX}{number:g}{unit}".replace(".", "p")


def timescale_seconds(name: str) -> float:
    """``'60s'`` -> 60.0 (the group level names timescales by their window length in seconds)."""
    return split_duration(name)[0]


# -- seed (workflows.seeds) ------------------------------------------------------------------------


@dataclass(frozen=True)
class SeedParams:
    """How the seed is drawn: a user mask, else a sphere, else the atlas' M1 (for left lesions; mirrored)."""

    seed_atlas: str = "HCPEx"
    seed_mask: str | None = None  # left-hemisphere mask, or the hemi-L file of a hemi-L/hemi-R pair
    seed_coords: tuple[float, float, float] | None = None  # left-hemisphere sphere centre (mm)
    seed_radius: float = 6.0  # sphere radius (mm)


# -- lesion (workflows.lesion) ------------------------------------------------------------------------


@dataclass(frozen=True)
class LesionParams:
    """How a lesion mask becomes the lesion that leaves the maps and gives the side."""

    # voxels with a value >= threshold are the lesion: a probabilistic mask (0..1) is cut at 0.5, as
    # a warped T1w mask is (workflows.lesion_warp); a binary mask (0/1, 0/255) is the same at any
    # threshold in (0, 1]
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise InputError(
                f"lesion threshold {self.threshold!r} is not in (0, 1]",
                "LesionParams.threshold",
                "give a fraction such as 0.5",
                params=("LesionParams.threshold",),
            )


# -- quality control (workflows.qc, workflows.lag) -------------------------------------------------------

#: Lag (s) of the ipsilesional relative to the contralesional hemisphere above which a run is flagged:
#: Siegel et al. 2016 (J Cereb Blood Flow Metab 36:2162) found such lag in ~30% of subacute patients,
#: with grossly aberrant FC; their later stroke FC studies exclude (or lag-correct) patients beyond 1 s.
LAG_FLAG_S = 1.0


@dataclass(frozen=True)
class QCParams:
    """Exclusion rules and hemodynamic-lag QC of each run (None switches a rule off)."""

    # retained time after censoring and dummy scans (s): xcp_d's default (4 minutes), in which 44 s
    # windows fit more than five times
    min_time: float | None = 240.0
    # mean framewise displacement (mm): Parkes et al. 2018's lenient gross-motion criterion
    max_mean_fd: float | None = 0.55
    # valid windows (enough of their taper weight kept): an SD over fewer is not a variability estimate
    min_windows: int = 5
    # temporal degrees of freedom left after band-pass and confound regression (Parkes et al. 2018)
    min_dof: float | None = 10.0
    lag_search: float = 6.0  # +/- seconds searched for each voxel's lag
    max_lag: float = LAG_FLAG_S  # ipsi - contra lag (s, M1 or hemisphere) above which a run is flagged


# -- group level (workflows.models, workflows.cross_validation, workflows.cnn) -----------------------------

#: What the group level learns: the severe/mild class, or the UL-FMA score (both: :mod:`workflows.models`).
TARGETS = ("classification", "regression")
#: ``--export-model`` choices: the pre-specified primary parcel model (default), the CNN, or the sparse
#: parcel models (L1, elastic net; classification only), by their registry names.
EXPORT_CHOICES = ("primary", "cnn", "parcel_l1", "parcel_enet", "motor_prior")
#: The export choices that only exist for a classification target.
CLASSIFICATION_EXPORTS = ("parcel_l1", "parcel_enet")
#: ``--calibration`` choices: no recalibration, Platt scaling, isotonic regression.
CALIBRATION_METHODS = ("none", "sigmoid", "isotonic")
#: ``--map``: the participant-level map the map models (primary parcel model, PCA baseline, CNN) learn
#: from, and what it is in words (the methods text, the model card, the report).
GROUP_MAPS = {
    "dfcsd": "dFC variability (SD over windows of the Fisher-z seed correlation)",
    "dfcexcess": "excess dFC variability over the stationary null (observed SD minus the surrogates' mean "
    "SD)",
    "fc": "static (whole-run) Fisher-z seed correlation",
    "dfcmean": "mean over windows of the Fisher-z seed correlation",
}
#: ``--timescale auto``: the window length chosen inside each training fold by nested CV.
AUTO_TIMESCALE = "auto"
#: participants.tsv columns of the clinical baseline model whenever the table has them (the simulator's
#: ``--clinical-covariates`` writes both); lesion volume comes from the map sidecars.
CLINICAL_COLUMNS = ("age", "time_since_stroke_months")
#: ``--cv`` choices: the subject-level repeated k-fold only ("subject"), plus leave-one-site-out ("site"),
#: or leave-one-site-out added when the cohort has enough sites ("auto": :data:`MIN_SITES_AUTO`).
CV_SCHEMES = ("auto", "subject", "site")
#: Sites with patients of both classes that ``--cv auto`` needs to add leave-one-site-out validation: with
#: two, each held-out site is predicted by a model of one other site only.
MIN_SITES_AUTO = 3
#: ``--harmonize`` choices: none, or ComBat of the parcel features fitted inside each training fold, with
#: the training subjects' outcome protected ("combat") or not ("combat-nolabel"; benchmarks/sites.py).
HARMONIZE_METHODS = ("none", "combat", "combat-nolabel")
#: ``--harmonize`` choices that protect the training outcome in the fold's ComBat fit.
PROTECT_OUTCOME = {"none": False, "combat": True, "combat-nolabel": False}


@dataclass(frozen=True)
class CVParams:
    """Subject-level cross-validation: repeated stratified k-fold, and the label-permutation test."""

    cv_folds: int = 5
    cv_repeats: int = 5
    n_permutations: int = 0  # 0 = no permutation test; 100+ for papers
    # the CNN in every draw costs n_permutations x folds x repeats trainings (2,500 for 100 draws of 5 x 5):
    # off by default, the primary (parcel) and the other linear models are always permuted
    permute_cnn: bool = False
    # "subject": the repeated subject-level k-fold only; "site": also leave-one-site-out (every site held
    # out once, trained on the others), reported per site; "auto": site when at least MIN_SITES_AUTO
    # sites have patients of both classes (CV_SCHEMES)
    scheme: str = "auto"

    def __post_init__(self) -> None:
        check_choice(self.scheme, CV_SCHEMES, "cross-validation scheme", "CVParams.scheme")


@dataclass(frozen=True)
class TrainSettings:
    """Hyper-parameters of one training run (recorded in the model card)."""

    epochs: int = 40  # maximum; early stopping usually ends training sooner
    batch_size: int = 4
    learning_rate: float = 5e-3
    weight_decay: float = 1e-2
    patience: int = 8
    min_epochs: int = 10
    val_fraction: float = 0.2
    shift_vox: int = 0  # random shifts blur the alignment the location-aware head relies on
    noise: float = 0.1
    channels: tuple[int, ...] = field(default=(4, 8, 16, 32))
    dropout: float = 0.3
    downsample: str = "avg"  # "avg" keeps regional means (a localised effect); "max" keeps peaks
    pool: int = 2  # head: average-pool the last feature maps to pool^3 cells (1 = global, no location)
    seed: int = 0
    device: str = "auto"  # "auto" uses CUDA when present
    # "bfloat16" autocasts the training forward pass (about 1.5x faster on this CPU); weights, optimiser,
    # validation and prediction stay float32. float32 by default: see benchmarks/cnn_paths.py
    precision: str = "float32"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["channels"] = list(self.channels)
        return out


@dataclass(frozen=True)
class GroupParams:
    """Everything that shapes the group-level results (recorded in cv_summary.json and the model card)."""

    severe_threshold: float = 20.0  # UL-FMA <= threshold is "severe"
    # "classification" (severe vs mild-to-moderate) or "regression" of the UL-FMA score itself
    # (workflows.models; the folds are the same, planned from the class)
    target: str = "classification"
    label_column: str = "ul_fma"
    # recalibration of the non-CNN classifiers' probabilities inside each training fold
    # (workflows.calibration): "none", "sigmoid" (Platt) or "isotonic"
    calibration: str = "none"
    align_lesion: bool = True  # mirror right-lesion maps so that x < 0 is ipsilesional
    cnn_resolution: float = 3.0  # voxel size (mm) of the CNN input
    samples: str = "maps"  # "maps": one per subject; "windows": window maps, grouped by subject
    random_seed: int = 0
    max_windows: int = 20  # window maps kept per subject with samples="windows" (neighbours are near copies)
    # "template": the MNI152 brain mask (no subject shapes the grid); "maps": voxels non-zero in at least
    # group_mask_min_fraction of the maps (all subjects, test folds included: the first version's choice)
    group_mask: str = "template"
    group_mask_min_fraction: float = 0.9
    threads: int = 1  # PyTorch threads per fold, permutation and final-training process
    # the map the map models read (GROUP_MAPS). dfcsd by default: on generated cohorts (dwell 40-80 s,
    # 180-240 volumes, 44 s windows) raw dfcsd and the null-referenced dfcexcess found dynamics-only
    # effects equally (oracle 0.89 vs 0.93 at 180 volumes, 0.84 vs 0.83 at 240) with no false positive
    # on null cohorts (benchmarks/results/timescales-2026-12-03.md): no evidence to change the default
    map: str = "dfcsd"
    # window length of the maps: None = the participant level's --window-length (the maps without a
    # timescale label), a length ("60s", "30vol") among its --window-lengths, or "auto" (AUTO_TIMESCALE):
    # chosen inside each training fold by an inner subject-level CV of the primary model
    timescale: str | None = None
    # the model trained on every subject and exported to model/: "primary" (the validated parcel model),
    # "cnn", or a sparse parcel model ("parcel_l1", "parcel_enet"; classification) (workflows.export)
    export_model: str = "primary"
    # more numeric participants.tsv columns for the clinical baseline model (besides CLINICAL_COLUMNS and
    # lesion volume); a named column that is missing or not numeric stops the run (workflows.models)
    clinical_covariates: tuple[str, ...] = ()
    # stated coverage of the conformal prediction sets (class) and intervals (UL-FMA) of the primary and
    # exported models (workflows.conformal); 0.9 = the truth in the set for 90% of new subjects
    conformal_coverage: float = 0.9
    # the participants.tsv column naming each patient's scanning site (absent: one site); with
    # sites_from_sidecars the site is read from the BOLD sidecars' scanner fields instead
    site_column: str = "site"
    sites_from_sidecars: bool = False
    # "combat": ComBat (workflows.harmonize) of the parcel features of the parcel models, fitted inside
    # each training fold only and applied to its test subjects with the fold's estimates, the training
    # outcome protected (keeps the class where a site recruits more severe patients, but keeps the part of
    # a site's offset that is aliased with its class mix); "combat-nolabel": the same without the outcome
    # (removes that part too, and with it some class signal). On generated 3-site cohorts with recruitment
    # tilted by class: null 0.65 vs 0.50, true effect 0.78 vs 0.65 (benchmarks/results/sites-2026-12-03.md)
    harmonize: str = "none"
    cv: CVParams = field(default_factory=CVParams)
    train: TrainSettings = field(default_factory=TrainSettings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "clinical_covariates", tuple(self.clinical_covariates))  # argparse: a list
        check_choice(self.target, TARGETS, "target", "GroupParams.target")
        check_choice(self.map, GROUP_MAPS, "map", "GroupParams.map")
        if self.timescale not in (None, AUTO_TIMESCALE):
            parse_duration(self.timescale, 1.0, "GroupParams.timescale")  # a duration, or a clear error
        if self.samples == "windows" and (self.map != "dfcsd" or self.timescale is not None):
            raise InputError(
                "samples 'windows' learns from the 4D window maps of the default window length: a map "
                "or a timescale cannot be chosen with it",
                "GroupParams.samples",
                "use samples 'maps' with GroupParams.map / GroupParams.timescale, or leave them unset",
                params=("GroupParams.samples", "GroupParams.map", "GroupParams.timescale"),
            )
        check_choice(self.export_model, EXPORT_CHOICES, "export model", "GroupParams.export_model")
        if self.export_model in CLASSIFICATION_EXPORTS and self.target != "classification":
            raise InputError(
                f"export model {self.export_model!r} is a classifier; the target is {self.target}",
                "GroupParams.export_model",
                "export the primary model or the CNN for a regression, or set the target to classification",
                params=("GroupParams.export_model", "GroupParams.target"),
            )
        check_choice(self.calibration, CALIBRATION_METHODS, "calibration", "GroupParams.calibration")
        if not 0.0 < self.conformal_coverage < 1.0:
            raise InputError(
                f"conformal coverage {self.conformal_coverage!r} is not between 0 and 1",
                "GroupParams.conformal_coverage",
                "give a share such as 0.9 (90% of new subjects' sets hold the truth)",
                params=("GroupParams.conformal_coverage",),
            )
        check_choice(self.harmonize, HARMONIZE_METHODS, "harmonisation", "GroupParams.harmonize")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able view (nested sections), for records and Nipype inputs."""
        out = asdict(self)
        out["train"] = self.train.to_dict()
        out["clinical_covariates"] = list(self.clinical_covariates)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GroupParams:
        """Inverse of :meth:`to_dict`."""
        train = dict(data.get("train", {}))
        if "channels" in train:
            train["channels"] = tuple(train["channels"])
        return cls(
            **{
                **data,
                "clinical_covariates": tuple(data.get("clinical_covariates", ())),
                "cv": CVParams(**data.get("cv", {})),
                "train": TrainSettings(**train),
            }
        )
