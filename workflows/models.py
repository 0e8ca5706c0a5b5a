"""The model registry: every model of the group level, once, for both targets.

Each :class:`ModelSpec` says what a model is called (internal name, label, colour, description per
target), what it reads (its input: the dFC-SD samples, a subject's static-FC or mean-dFC map, or its
quality measures), how it fits and predicts on one training fold for a classification and a regression
target, whether it is the primary model, a control or a reference, and whether it is exported. The
cross-validation, the permutation test, the summaries, the report, the figures, the console summary,
the model card and the methods text all read the models from :data:`MODELS`.

The linear models share one fitting path: standardise (and impute) the features, then the estimator of
the target. Where a strength is chosen, :func:`nested_estimator` picks it by an inner subject-level CV
on the training subjects only: an L2 logistic regression for the class, a ridge for the score.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse
from scipy.linalg import LinAlgWarning
from sklearn.compose import ColumnTransformer
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, Ridge, RidgeCV
from sklearn.model_selection import GridSearchCV, GroupKFold, StratifiedGroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from workflows.calibration import calibrated
from workflows.harmonize import harmonize_fold
from workflows.params import AUTO_TIMESCALE, PROTECT_OUTCOME, TARGETS, GroupParams

if TYPE_CHECKING:
    from workflows.cnn import StrokeCNN

#: ``fit_predict(x_train, y_train, groups_train, x_test, seed=...) -> (test predictions, curve_rows)``:
#: the probability of severe (classification) or the predicted score (regression) of each test sample.
FitPredict = Callable[..., tuple[np.ndarray, list[dict[str, Any]]]]

#: The atlas of the parcel models (and of the saliency region table), on MNI152NLin2009cAsym.
PARCEL_ATLAS = "HCPEx"
#: Parcels with fewer voxels than this on the CNN grid are left out (their mean is too noisy).
MIN_PARCEL_VOXELS = 3
#: Regularisation strengths searched by the inner CV of the nested logistic regression.
PARCEL_CS = tuple(float(c) for c in np.logspace(-4, 1, 11))
#: L1 strengths searched by the inner CV of the sparse parcel model (whole pipeline refit per split).
SPARSE_CS = tuple(float(c) for c in np.logspace(-2, 1, 7))
#: Elastic-net mixing (the L1 share of the penalty) searched by the inner CV of the elastic-net parcel
#: model, with every strength of :data:`ENET_CS` (0 would be the dense L2 model, 1 the L1 model).
ENET_L1_RATIOS = (0.1, 0.5, 0.9)
#: Strengths searched with each mixing by the inner CV of the elastic-net parcel model.
ENET_CS = tuple(float(c) for c in np.logspace(-2, 1, 7))
#: saga's stopping tolerance for the elastic net (the largest relative change of the coefficients): 1e-3
#: rather than 1e-4 costs 3-10x fewer epochs at the weakest penalties, for changes far below fold noise.
ENET_TOL = 1e-3
#: Ridge penalties searched by the inner CV of the nested ridge (standardised features).
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 5, 15))
#: Inner subject-level folds of the nested CV (fewer when the training subjects are too few).
INNER_FOLDS = 5
#: L2 penalty, spelled as the installed scikit-learn wants it (1.8 moved it to ``l1_ratios=(0,)``).
_LRCV_L2 = {
    key: value
    for key, value in {"l1_ratios": (0.0,), "use_legacy_attributes": False}.items()
    if key in inspect.signature(LogisticRegressionCV).parameters
}
#: L1 penalty, spelled as the installed scikit-learn wants it (1.8 deprecated ``penalty`` for ``l1_ratio``).
_LR_L1: dict[str, Any] = (
    {"l1_ratio": 1.0}
    if inspect.signature(LogisticRegression).parameters["penalty"].default == "deprecated"
    else {"penalty": "l1"}
)
#: Elastic-net penalty, spelled as the installed scikit-learn wants it (1.8: ``l1_ratio`` alone says it).
_LR_ENET: dict[str, Any] = {} if "l1_ratio" in _LR_L1 else {"penalty": "elasticnet"}
#: Quality measures and lesion volume of the confound-only model (sidecar fields, per subject). Lesion
#: volume tracks impairment: a model that only sees lesion size must not pass for one reading connectivity.
CONFOUND_FEATURES = (
    "mean_fd_mm",
    "censored_fraction",
    "volumes_kept",
    "windows_kept",
    "dof_remaining",
    "lesion_volume_ml",
)

# -- inputs: what each model reads, and the array of the group inputs (workflows.group_inputs) holding it
DFCSD, FC, DFCMEAN, QUALITY, CLINICAL = "dfcsd", "fc", "dfcmean", "confounds", "clinical"
#: Input -> array name in the group inputs (npz). ``dfcsd`` are the samples (maps or window maps); the
#: others have one row per unit (subject or subject-session).
INPUT_ARRAYS = {
    DFCSD: "x",
    FC: "control_fc",
    DFCMEAN: "control_dfcmean",
    QUALITY: "confounds",
    CLINICAL: "clinical",
}
#: Group-input array of the clinical covariates' names (the columns of ``clinical``).
CLINICAL_NAMES = "clinical_names"
#: The clinical model's covariate from the map sidecars (the others come from participants.tsv).
LESION_VOLUME = "lesion_volume_ml"
#: Subject-level maps (participant-level ``stat-<name>``) that some models read besides the dFC SD.
CONTROL_MAPS = (FC, DFCMEAN)
#: Group-input arrays of the map at every window length (n_timescales, units, ...) and their names
#: ("44s"), present when the participant level wrote several (``--window-lengths``).
TIMESCALE_MAPS, TIMESCALE_NAMES = "timescale_maps", "timescale_names"
#: Group-input array of the motor prior's label volume on the grid (:mod:`workflows.motor_prior`),
#: present when the maps are lesion-aligned.
PRIOR_REGIONS = "prior_regions"


# ------------------------------------------------------------------------------------ shared fitting
def map_pipeline(*steps: Any) -> Pipeline:
    """Standardise map features, unknown (NaN: lesion-excluded) ones at the training mean, then ``steps``."""
    return make_pipeline(
        StandardScaler(), SimpleImputer(strategy="constant", fill_value=0.0, keep_empty_features=True), *steps
    )


def confound_pipeline(estimator: Any, n_features: int | None = None) -> Pipeline:
    """Impute unknown quality measures by the training median, standardise, then ``estimator``.

    With ``n_features``, the input has one more column after the ``n_features`` measures: the site
    (an integer code), one-hot encoded on the training fold's sites (a site unseen in training, as in
    leave-one-site-out, is all zeros).
    """
    quality = make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler())
    if n_features is None:
        return make_pipeline(quality, estimator)
    columns = ColumnTransformer(
        [
            ("quality", quality, list(range(n_features))),
            ("site", OneHotEncoder(handle_unknown="ignore", sparse_output=False), [n_features]),
        ]
    )
    return make_pipeline(columns, estimator)


def fold_features(
    f_train: np.ndarray,
    f_test: np.ndarray,
    y_train: np.ndarray,
    sites_train: np.ndarray | None,
    sites_test: np.ndarray | None,
    protect_outcome: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """A fold's parcel features, ComBat-harmonised on its training rows when sites are given
    (:func:`workflows.harmonize.harmonize_fold`: with ``protect_outcome`` the training outcome is a
    protected covariate, test rows are adjusted without theirs)."""
    if sites_train is None or sites_test is None:
        return f_train, f_test
    protect = y_train if protect_outcome else None
    return harmonize_fold(f_train, f_test, sites_train, sites_test, protect=protect)


def make_baseline(n_train: int, max_components: int = 20, seed: int = 0, final: Any = None) -> Pipeline:
    """StandardScaler -> PCA -> L2 logistic regression (or the estimator ``final``), for one training fold.

    Excluded voxels (NaN: a lesion or its mirror) are ignored by the scaler and then set to 0, the
    training mean. UL-FMA regression passes the nested ridge as ``final``.
    """
    n_components = max(1, min(max_components, n_train - 1))
    return map_pipeline(
        PCA(n_components=n_components, random_state=seed),
        LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000) if final is None else final,
    )


def inner_splits(target: str, y: np.ndarray, groups: np.ndarray, seed: int) -> list | None:
    """Subject-level splits of the training fold that choose a strength (None: too few subjects).

    The splitter differs by target on purpose. A class needs both classes in every inner split, so
    classification stratifies (StratifiedGroupKFold) and needs at least 2 training subjects per class;
    a score has no class to stratify on, so regression splits subjects as they come (GroupKFold) and
    needs 3 of them.
    """
    if target == "regression":
        n_subjects = len(np.unique(groups))
        if n_subjects < 3:
            return None
        splitter = GroupKFold(min(INNER_FOLDS, n_subjects), shuffle=True, random_state=seed)
        return list(splitter.split(np.zeros(len(groups)), groups=groups))
    _, first = np.unique(groups, return_index=True)
    smallest = int(np.bincount(np.asarray(y)[first].astype(int), minlength=2).min())
    if smallest < 2:
        return None
    stratified = StratifiedGroupKFold(min(INNER_FOLDS, smallest), shuffle=True, random_state=seed)
    return list(stratified.split(np.zeros(len(y)), y, groups))


def nested_estimator(target: str, y: np.ndarray, groups: np.ndarray, seed: int) -> Any:
    """The target's linear estimator, its strength chosen by :func:`inner_splits` (nested CV).

    Classification: L2 logistic regression (balanced class weights, log-loss); regression: ridge (mean
    squared error). Without inner splits the strength stays at C = 1 or alpha = 1.

    In :func:`map_pipeline` the scaler is fit on the whole outer training fold before this inner CV
    chooses the strength: the outer estimate stays unbiased, the choice of C sees the inner test
    subjects' scaling. Refitting the scaler per inner split (as :func:`sparse_estimator` and
    :func:`enet_estimator` do) changed the chosen C in 7 of 15 folds of a focal cohort (probabilities
    by up to 0.08), so the primary model keeps this path until it is re-validated.
    """
    inner = inner_splits(target, y, groups, seed)
    if target == "regression":
        if inner is None:
            return Ridge(alpha=1.0)
        return RidgeCV(alphas=RIDGE_ALPHAS, cv=inner, scoring="neg_mean_squared_error")
    if inner is None:
        return LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000)
    return LogisticRegressionCV(
        Cs=list(PARCEL_CS),
        cv=inner,
        class_weight="balanced",
        scoring="neg_log_loss",
        max_iter=5000,
        **_LRCV_L2,
    )


def _fit_predict(
    model: Pipeline, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, target: str
) -> np.ndarray:
    """Fit ``model``; the test probability of severe, or the predicted score."""
    with warnings.catch_warnings():  # the smallest ridge penalties on p >> n features: expected, harmless
        warnings.simplefilter("ignore", LinAlgWarning)
        model.fit(x_train, y_train)
    return model.predict(x_test) if target == "regression" else model.predict_proba(x_test)[:, 1]


def parcel_matrix(
    labels: np.ndarray, min_voxels: int = MIN_PARCEL_VOXELS
) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Averaging operator ``A`` (voxels x parcels) of an integer label image, and the parcel ids kept.

    ``x.reshape(n, -1) @ A`` gives the (n, parcels) parcel means of samples ``x`` on the same grid.
    """
    flat = np.asarray(labels).reshape(-1).astype(int)
    ids, counts = np.unique(flat[flat > 0], return_counts=True)
    ids = ids[counts >= min_voxels]
    if ids.size == 0:
        raise ValueError("no parcel has enough voxels on this grid")
    column = {int(p): j for j, p in enumerate(ids)}
    rows = np.flatnonzero(np.isin(flat, ids))
    cols = np.array([column[int(flat[r])] for r in rows])
    weights = 1.0 / np.bincount(cols, minlength=ids.size)[cols]
    return sparse.csr_matrix((weights, (rows, cols)), shape=(flat.size, ids.size)), ids


def parcel_means(x: np.ndarray, operator: sparse.csr_matrix) -> np.ndarray:
    """Parcel means (n, parcels) of samples ``x`` (n, X, Y, Z) over their finite voxels.

    Excluded voxels (NaN: a lesion or its mirror) leave the mean; a parcel with no finite voxel in a
    sample is NaN there (the model imputes it from its training fold).
    """
    flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    finite = np.isfinite(flat)
    sums = np.asarray(operator.T @ np.where(finite, flat, 0.0).T).T
    weights = np.asarray(operator.T @ finite.T.astype(np.float64)).T
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weights > 0, sums / weights, np.nan)


# ------------------------------------------------------------------------- one fit per model family
def parcel_fit_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    x_test: np.ndarray,
    *,
    operator: sparse.csr_matrix,
    target: str = "classification",
    seed: int = 0,
    sites_train: np.ndarray | None = None,
    sites_test: np.ndarray | None = None,
    protect_outcome: bool = True,
) -> tuple[np.ndarray, list]:
    """Nested-CV parcel model: parcel means (ComBat-harmonised in the fold when sites are given),
    standardised, and :func:`nested_estimator`."""
    model = map_pipeline(nested_estimator(target, y_train, groups_train, seed))
    f_train, f_test = fold_features(
        parcel_means(x_train, operator),
        parcel_means(x_test, operator),
        y_train,
        sites_train,
        sites_test,
        protect_outcome,
    )
    return _fit_predict(model, f_train, y_train, f_test, target), []


def sparse_estimator(y: np.ndarray, groups: np.ndarray, seed: int) -> Any:
    """L1 logistic regression on standardised parcel features, C chosen by an inner subject-level CV.

    The inner CV refits the whole pipeline (scaler and imputer included) on each inner training split
    (:class:`sklearn.model_selection.GridSearchCV`), so the choice of C sees no inner test subject.
    Without inner splits (fewer than 2 training subjects in a class) C stays at 1. liblinear shuffles
    the data with ``seed`` (by default it would draw from NumPy's global state, which differs between
    processes: the same fold gave other predictions in a SLURM job than in a MultiProc worker).
    """
    base = map_pipeline(
        LogisticRegression(
            C=1.0,
            solver="liblinear",
            class_weight="balanced",
            max_iter=5000,
            random_state=seed,
            **_LR_L1,
        )
    )
    inner = inner_splits("classification", y, groups, seed)
    if inner is None:
        return base
    return GridSearchCV(
        base, {"logisticregression__C": list(SPARSE_CS)}, cv=inner, scoring="neg_log_loss", refit=True
    )


def enet_estimator(y: np.ndarray, groups: np.ndarray, seed: int) -> Any:
    """Elastic-net logistic regression on standardised parcel features, its mixing (L1 share,
    :data:`ENET_L1_RATIOS`) and strength (:data:`ENET_CS`) chosen together by an inner subject-level CV.

    As for :func:`sparse_estimator`, the inner CV refits the whole pipeline (scaler and imputer included)
    on each inner training split, so neither choice sees an inner test subject; log-loss, balanced class
    weights. Without inner splits the mixing stays at 0.5 and C at 1. saga draws from ``seed``.
    """
    base = map_pipeline(
        LogisticRegression(
            C=1.0,
            l1_ratio=0.5,
            solver="saga",
            class_weight="balanced",
            max_iter=5000,
            tol=ENET_TOL,
            random_state=seed,
            **_LR_ENET,
        )
    )
    inner = inner_splits("classification", y, groups, seed)
    if inner is None:
        return base
    grid = {"logisticregression__C": list(ENET_CS), "logisticregression__l1_ratio": list(ENET_L1_RATIOS)}
    return GridSearchCV(base, grid, cv=inner, scoring="neg_log_loss", refit=True)


def _searched_fit_predict(
    estimator: Callable[[np.ndarray, np.ndarray, int], Any],
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    x_test: np.ndarray,
    *,
    operator: sparse.csr_matrix,
    seed: int = 0,
    sites_train: np.ndarray | None = None,
    sites_test: np.ndarray | None = None,
    protect_outcome: bool = True,
) -> tuple[np.ndarray, list]:
    """A parcel model whose whole pipeline is searched by an inner CV (``estimator(y, groups, seed)``):
    parcel means, ComBat-harmonised in the fold when sites are given; the probability of severe."""
    model = estimator(y_train, groups_train, seed)
    f_train, f_test = fold_features(
        parcel_means(x_train, operator),
        parcel_means(x_test, operator),
        y_train,
        sites_train,
        sites_test,
        protect_outcome,
    )
    with warnings.catch_warnings():  # the solvers' convergence notes at the weakest penalties
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(f_train, y_train)
    return model.predict_proba(f_test)[:, 1], []


def sparse_fit_predict(x_train: np.ndarray, *args: Any, **kwargs: Any) -> tuple[np.ndarray, list]:
    """Sparse parcel model: parcel means (ComBat-harmonised in the fold when sites are given), then
    :func:`sparse_estimator` (the probability of severe). Arguments as :func:`_searched_fit_predict`.

    A few parcels carry a focal effect; the dense L2 model spreads its weight over hundreds of noise
    parcels and misses it, the L1 model selects them.
    """
    return _searched_fit_predict(sparse_estimator, x_train, *args, **kwargs)


def enet_fit_predict(x_train: np.ndarray, *args: Any, **kwargs: Any) -> tuple[np.ndarray, list]:
    """Elastic-net parcel model: parcel means (ComBat-harmonised in the fold when sites are given), then
    :func:`enet_estimator` (the probability of severe). Arguments as :func:`_searched_fit_predict`.

    The inner CV chooses how sparse to be: near L1 for a focal effect (a few parcels), near L2 for a
    distributed one.
    """
    return _searched_fit_predict(enet_estimator, x_train, *args, **kwargs)


def baseline_fit_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    x_test: np.ndarray,
    *,
    target: str = "classification",
    seed: int = 0,
) -> tuple[np.ndarray, list]:
    """Voxel PCA baseline (flattened voxels): logistic regression at C = 1, or the nested ridge."""
    final = nested_estimator(target, y_train, groups_train, seed) if target == "regression" else None
    model = make_baseline(len(y_train), seed=seed, final=final)
    flat = x_train.reshape(len(x_train), -1)
    return _fit_predict(model, flat, y_train, x_test.reshape(len(x_test), -1), target), []


def confound_fit_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    x_test: np.ndarray,
    *,
    target: str = "classification",
    seed: int = 0,
    site_column: bool = False,
) -> tuple[np.ndarray, list]:
    """Confound-only model on (n, features) quality measures; NaN (unknown) values are imputed in-fold.

    ``site_column``: the last column is the site code, one-hot encoded in-fold (:func:`confound_pipeline`).
    """
    del groups_train, seed  # the signature of every model; this one needs neither
    estimator = (
        Ridge(alpha=1.0)
        if target == "regression"
        else LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    )
    n_features = x_train.shape[1] - 1 if site_column else None
    return _fit_predict(confound_pipeline(estimator, n_features), x_train, y_train, x_test, target), []


def mean_fit_predict(
    x_train: np.ndarray, y_train: np.ndarray, groups_train: np.ndarray, x_test: np.ndarray, *, seed: int = 0
) -> tuple[np.ndarray, list]:
    """Predict the training subjects' mean score (each subject counted once, whatever its samples)."""
    del x_train, seed
    _, first = np.unique(groups_train, return_index=True)
    return np.full(len(x_test), float(np.mean(np.asarray(y_train, dtype=float)[first]))), []


def cnn_fit_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    x_test: np.ndarray,
    *,
    seed: int,
    params: GroupParams,
    explain: Callable[[StrokeCNN, np.ndarray], None] | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Train the CNN (two-class or one-output head, by target) on one training fold; predict its test samples.

    ``explain`` sees the fold's model and its test samples only (:func:`workflows.cnn.fit_predict`).
    """
    from workflows.cnn import fit_predict  # PyTorch only when a CNN is trained (the report reads labels)

    train = replace(params.train, seed=params.random_seed + seed)
    regression = params.target == "regression"
    return fit_predict(x_train, y_train, groups_train, x_test, train, regression=regression, explain=explain)


# ----------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class FitContext:
    """What a model needs besides its fold: the settings, the parcel operator, the CNN's explainer."""

    params: GroupParams
    operator: sparse.csr_matrix | None = None
    explain: Callable[[StrokeCNN, np.ndarray], None] | None = None
    site_column: bool = False  # the confound inputs end with a site code (one-hot in the fold)
    prior_operator: sparse.csr_matrix | None = None  # region means of the motor prior


def _parcels(ctx: FitContext) -> FitPredict:
    return partial(parcel_fit_predict, operator=ctx.operator, target=ctx.params.target)


def _prior(ctx: FitContext) -> FitPredict:
    return partial(parcel_fit_predict, operator=ctx.prior_operator, target=ctx.params.target)


def _sparse(ctx: FitContext) -> FitPredict:
    return partial(sparse_fit_predict, operator=ctx.operator)


def _enet(ctx: FitContext) -> FitPredict:
    return partial(enet_fit_predict, operator=ctx.operator)


def _baseline(ctx: FitContext) -> FitPredict:
    def fit(
        x_train: np.ndarray,
        y_train: np.ndarray,
        groups_train: np.ndarray,
        x_test: np.ndarray,
        *,
        seed: int = 0,
    ) -> tuple[np.ndarray, list]:
        return baseline_fit_predict(
            x_train,
            y_train,
            groups_train,
            x_test,
            target=ctx.params.target,
            seed=ctx.params.random_seed + seed,
        )

    return fit


def _cnn(ctx: FitContext) -> FitPredict:
    return partial(cnn_fit_predict, params=ctx.params, explain=ctx.explain)


@dataclass(frozen=True)
class ModelSpec:
    """One model family of the group level (see the module docstring)."""

    name: str  # internal name: cv_summary.json keys, the ``model`` column of cv_predictions.tsv
    label: str  # in tables, figures and the console
    colour: str  # in figures (Okabe-Ito, colour-blind friendly)
    description: Mapping[str, str]  # target -> what the model is (cv_summary.json, the report)
    methods: str  # the model in the methods text (a noun phrase)
    noun: str  # its short name in sentences ("the CNN")
    input: str  # DFCSD, FC, DFCMEAN, QUALITY or CLINICAL (see INPUT_ARRAYS)
    build: Callable[[FitContext], FitPredict]  # -> fit_predict on the input's arrays
    role: str = "model"  # "primary", "model", "baseline", "control", "clinical" or "reference"
    targets: tuple[str, ...] = TARGETS
    calibrated: bool = True  # recalibrated with --calibration (classification)
    always_permuted: bool = True  # False: permuted only on request (--permute-cnn)
    exported: bool = False  # can be trained on every subject and exported to ``model/`` (--export-model)
    labels: Mapping[str, str] | None = None  # target -> label, where it differs from ``label``
    harmonized: bool = False  # parcel features ComBat-harmonised in the fold with --harmonize combat
    requires: str | None = None  # a group-input array the model needs besides its input

    def label_for(self, target: str) -> str:
        return (self.labels or {}).get(target, self.label)


_INNER = f"an inner stratified group {INNER_FOLDS}-fold CV on the training subjects only"
_RIDGE = (
    f"a ridge whose penalty is chosen among {len(RIDGE_ALPHAS)} values (1e-2 to 1e5) by an inner group "
    f"{INNER_FOLDS}-fold CV (mean squared error) on the training subjects only"
)
PARCEL_DESCRIPTION = (
    "mean of the map in each parcel of the HCPEx atlas (lesion-aligned CNN grid), standardised, and an "
    "L2 logistic regression (balanced class weights) whose regularisation is chosen among "
    f"{len(PARCEL_CS)} values by {_INNER}"
)
#: The a-priori motor-network model (:mod:`workflows.motor_prior`).
MOTOR_PRIOR_MODEL = "motor_prior"
MOTOR_PRIOR_DESCRIPTION = (
    "mean of the map in each of 12 motor-network regions named from the stroke literature before any "
    "data were seen (M1, SMA, dorsal and ventral premotor cortex, thalamus, putamen, motor cerebellum; "
    "ipsi- and contralesional on the lesion-aligned grid; workflows/motor_prior.py), standardised, and "
    "the primary model's nested L2 logistic regression"
)
_QUALITY = ", ".join(CONFOUND_FEATURES) + " (median-imputed and standardised inside each training fold)"
_CLINICAL = (
    "age, time since stroke and lesion volume where known, and any participants.tsv columns named with "
    "--clinical-covariates (median-imputed and standardised inside each training fold)"
)

#: Every model, in the order of tables and figures (the primary first). A model runs for the targets it
#: lists, and only when its input was given (the static-FC and mean-dFC maps are optional).
MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="parcel",
            noun="the primary parcel model",
            label="dFC-SD parcels (primary)",
            colour="#009E73",
            description={
                "classification": "dFC-SD parcel model (primary): " + PARCEL_DESCRIPTION,
                "regression": "dFC-SD parcel model (primary): mean of the map in each HCPEx parcel "
                "(lesion-aligned CNN grid), standardised, and " + _RIDGE,
            },
            methods="the mean dFC SD in each parcel of the HCPex atlas [@hcpex], standardised, with a "
            "linear model whose strength was chosen by nested subject-level cross-validation",
            input=DFCSD,
            build=_parcels,
            harmonized=True,
            role="primary",
            exported=True,  # the default export (workflows.parcel_model)
        ),
        ModelSpec(
            name=MOTOR_PRIOR_MODEL,
            noun="the motor-prior model",
            label="dFC-SD motor network (a priori)",
            colour="#AA3377",
            description={
                "classification": "motor-prior model: " + MOTOR_PRIOR_DESCRIPTION,
                "regression": "motor-prior model: mean of the map in each of 12 a-priori motor-network "
                "regions (lesion-aligned grid), standardised, and " + _RIDGE,
            },
            methods="the mean dFC SD in 12 motor-network regions named before the analysis from the "
            "stroke literature (M1, SMA, premotor cortex, thalamus, putamen and motor cerebellum, "
            "ipsi- and contralesional) [@carter2010] [@park2011] [@grefkes2011], standardised, with the "
            "same nested linear model",
            input=DFCSD,
            build=_prior,
            harmonized=True,
            requires=PRIOR_REGIONS,
            exported=True,  # --export-model motor_prior (workflows.parcel_model)
        ),
        ModelSpec(
            name="cnn",
            noun="the CNN",
            label="3D CNN",
            colour="#0072B2",
            description={
                "classification": "3D CNN on the dFC-SD maps (location-aware head; see workflows/cnn.py)",
                "regression": "3D CNN on the dFC-SD maps with a one-output head (Huber loss on the UL-FMA "
                "standardised with the training fold's mean and SD)",
            },
            methods="a compact 3D convolutional neural network (PyTorch [@pytorch]) on the whole map",
            input=DFCSD,
            build=_cnn,
            calibrated=False,  # recalibrating it would train it 4x per fold
            always_permuted=False,  # every draw costs as many trainings as the observed CV
            exported=True,
        ),
        ModelSpec(
            name="parcel_l1",
            noun="the sparse parcel model",
            label="dFC-SD parcels, L1 (sparse)",
            colour="#F0E442",
            description={
                "classification": "sparse parcel model: mean of the map in each HCPEx parcel, "
                "standardised, and an L1 logistic regression (balanced class weights) whose strength is "
                f"chosen among {len(SPARSE_CS)} values by {_INNER}, the whole pipeline refit in each "
                "inner split (for focal effects)",
            },
            methods="a sparse parcel model (L1 logistic regression on the same parcels, its strength "
            "chosen by nested subject-level cross-validation of the whole pipeline)",
            input=DFCSD,
            build=_sparse,
            harmonized=True,
            targets=("classification",),
            exported=True,  # --export-model parcel_l1 (workflows.parcel_model)
        ),
        ModelSpec(
            name="parcel_enet",
            noun="the elastic-net parcel model",
            label="dFC-SD parcels, elastic net",
            colour="#CC6677",
            description={
                "classification": "elastic-net parcel model: mean of the map in each HCPEx parcel, "
                "standardised, and an elastic-net logistic regression (balanced class weights) whose "
                f"L1 share ({', '.join(f'{r:g}' for r in ENET_L1_RATIOS)}) and strength "
                f"({len(ENET_CS)} values) are chosen together by {_INNER}, the whole pipeline refit in "
                "each inner split (sparse for focal effects, dense for distributed ones)",
            },
            methods="an elastic-net parcel model (logistic regression on the same parcels, its L1 share "
            "and strength chosen by nested subject-level cross-validation of the whole pipeline)",
            input=DFCSD,
            build=_enet,
            harmonized=True,
            targets=("classification",),
            exported=True,  # --export-model parcel_enet (workflows.parcel_model)
        ),
        ModelSpec(
            name="baseline",
            noun="the PCA baseline",
            label="Voxel PCA-logistic",
            labels={"regression": "Voxel PCA-ridge"},
            colour="#D55E00",
            description={
                "classification": "L2-regularised logistic regression (C=1, balanced class weights) on the "
                "principal components (up to 20) of the voxelwise z-scored masked maps; scaler, PCA and "
                "classifier fit inside each training fold (scikit-learn pipeline)",
                "regression": "voxel PCA (up to 20 components of the z-scored maps) and " + _RIDGE,
            },
            methods="a voxel baseline (up to 20 principal components of the z-scored maps)",
            input=DFCSD,
            build=_baseline,
            role="baseline",
        ),
        ModelSpec(
            name="parcel_fc",
            noun="the static-FC control",
            label="Static FC (control)",
            colour="#CC79A7",
            description={
                "classification": "control: the parcel model on static-FC maps (is dFC-SD more than "
                "static FC?)",
                "regression": "control: the parcel model on static-FC maps",
            },
            methods="the parcel model on static-FC maps",
            input=FC,
            build=_parcels,
            harmonized=True,
            role="control",
        ),
        ModelSpec(
            name="parcel_dfcmean",
            noun="the mean-dFC control",
            label="Mean dFC (control)",
            colour="#56B4E9",
            description={
                "classification": "control: the parcel model on mean-dFC maps",
                "regression": "control: the parcel model on mean-dFC maps",
            },
            methods="the parcel model on mean-dFC maps",
            input=DFCMEAN,
            build=_parcels,
            harmonized=True,
            role="control",
        ),
        ModelSpec(
            name=QUALITY,
            noun="the confound-only model",
            label="Motion/QC only (control)",
            colour="#E69F00",
            description={
                "classification": "control: L2 logistic regression (C=1, balanced class weights) on "
                "quality measures and lesion volume only: " + _QUALITY,
                "regression": "control: ridge (alpha = 1) on quality measures and lesion volume only: "
                + _QUALITY,
            },
            methods="a confound-only model of quality measures and lesion volume ("
            + ", ".join(CONFOUND_FEATURES)
            + ")",
            input=QUALITY,
            build=lambda ctx: partial(
                confound_fit_predict, target=ctx.params.target, site_column=ctx.site_column
            ),
            role="control",
        ),
        ModelSpec(
            name=CLINICAL,
            noun="the clinical baseline",
            label="Clinical variables (baseline)",
            colour="#000000",
            description={
                "classification": "clinical baseline: L2 logistic regression (C=1, balanced class weights) "
                "on " + _CLINICAL,
                "regression": "clinical baseline: ridge (alpha = 1) on " + _CLINICAL,
            },
            methods="a clinical baseline (age, time since stroke and lesion volume where known, and the "
            "participants.tsv columns named with --clinical-covariates, imputed and standardised inside "
            "each training fold)",
            input=CLINICAL,
            build=lambda ctx: partial(confound_fit_predict, target=ctx.params.target),
            role="clinical",
        ),
        ModelSpec(
            name="mean",
            noun="the training-mean reference",
            label="Training mean (reference)",
            colour="#999999",
            description={
                "regression": "reference: every test subject predicted at the training subjects' mean UL-FMA"
            },
            methods="the training subjects' mean score",
            input=QUALITY,  # read, then ignored
            build=lambda ctx: mean_fit_predict,
            role="reference",
            targets=("regression",),
        ),
    )
}
#: The model every other one is compared with (paired bootstrap and corrected t-test).
PRIMARY_MODEL = next(name for name, spec in MODELS.items() if spec.role == "primary")
#: The voxel baseline (its description is recorded on its own in cv_summary.json).
BASELINE_MODEL = next(name for name, spec in MODELS.items() if spec.role == "baseline")
#: The CNN (exported with ``--export-model cnn``).
CNN_MODEL = "cnn"
#: The model each ``GroupParams.export_model`` choice trains on every subject and exports (``model/``).
EXPORTABLE = {
    "primary": PRIMARY_MODEL,
    "cnn": CNN_MODEL,
    "parcel_l1": "parcel_l1",
    "parcel_enet": "parcel_enet",
    MOTOR_PRIOR_MODEL: MOTOR_PRIOR_MODEL,
}
#: The exportable parcel models and the estimator fitted on every subject (its inner CV on every subject's
#: splits): the nested L2/ridge pipeline of the primary model, the searched pipelines of the sparse ones.
PARCEL_EXPORTS = {
    PRIMARY_MODEL: None,
    "parcel_l1": sparse_estimator,
    "parcel_enet": enet_estimator,
    MOTOR_PRIOR_MODEL: None,
}
#: The label volume (group-input array) of each exportable parcel model's features.
PARCEL_VOLUMES = {name: "parcels" for name in PARCEL_EXPORTS} | {MOTOR_PRIOR_MODEL: PRIOR_REGIONS}


def exported_model(params: GroupParams) -> str:
    """The registry name of the model ``params`` export (the primary parcel model by default)."""
    return EXPORTABLE[params.export_model]


#: The regression references every model is compared with (bootstrap of the MAE difference).
REGRESSION_REFERENCES = ("mean", QUALITY, CLINICAL)
#: Labels of every model name, for tables and figures (``labels[target][name]``).
LABELS = {target: {name: spec.label_for(target) for name, spec in MODELS.items()} for target in TARGETS}
#: Colours of every model name, for figures.
COLOURS = {name: spec.colour for name, spec in MODELS.items()}
#: Colours of the models outside the registry (the primary model at other window lengths), in order
#: (Paul Tol's muted palette: colour-blind friendly, none of them a registry colour).
EXTRA_COLOURS = ("#882255", "#117733", "#332288", "#AA4499", "#44AA99", "#DDCC77", "#661100", "#6699CC")


def model_label(name: str, target: str = "classification") -> str:
    """The label of a model name in tables, legends and the console: the registry's, and for the primary
    model at another window length (:func:`timescale_model`) the primary's label with that length."""
    if name in MODELS:
        return MODELS[name].label_for(target)
    prefix = f"{PRIMARY_MODEL}_ts"
    if name.startswith(prefix):
        return f"{MODELS[PRIMARY_MODEL].label_for(target)} at {name[len(prefix) :]} windows"
    return name


def model_colours(names: Any) -> dict[str, str]:
    """One distinct colour per model name: the registry's, then :data:`EXTRA_COLOURS` in turn for the
    others (cycled, with a different dash in the figures, when there are more of them)."""
    out, extra = {}, 0
    for name in names:
        if name in COLOURS:
            out[name] = COLOURS[name]
        else:
            out[name] = EXTRA_COLOURS[extra % len(EXTRA_COLOURS)]
            extra += 1
    return out


def models_for(target: str) -> list[ModelSpec]:
    """The models of ``target``, in registry order."""
    return [spec for spec in MODELS.values() if target in spec.targets]


def descriptions(target: str) -> dict[str, str]:
    """Model name -> description, for ``target``."""
    return {spec.name: spec.description[target] for spec in models_for(target)}


def ordered(names: Any) -> list[str]:
    """``names`` in registry order, unknown names last (in their own order)."""
    names = list(names)
    return [n for n in MODELS if n in names] + [n for n in names if n not in MODELS]


def permuted_models(params: GroupParams) -> list[str]:
    """The models the permutation test re-runs on shuffled labels (empty when no test is run).

    The test is of the balanced accuracy (classification) or of the MAE (regression, scores shuffled
    between subjects); the CNN only on request; a reference (the training mean) has nothing to test.
    """
    if params.cv.n_permutations <= 0:
        return []
    return [
        s.name
        for s in models_for(params.target)
        if s.role != "reference" and (s.always_permuted or params.cv.permute_cnn)
    ]


@dataclass(frozen=True)
class FoldSites:
    """The sites of every sample and whether the in-fold ComBat protects the training outcome."""

    sites: np.ndarray
    protect_outcome: bool = True


def _site_kwargs(sites: FoldSites | None, idx_train: np.ndarray, idx_test: np.ndarray) -> dict[str, Any]:
    """The sites of a fold's training and test samples, for a harmonised model (none: no keywords)."""
    if sites is None:
        return {}
    return {
        "sites_train": sites.sites[idx_train],
        "sites_test": sites.sites[idx_test],
        "protect_outcome": sites.protect_outcome,
    }


def _by_index(data: np.ndarray, fit_predict: FitPredict, sites: FoldSites | None = None) -> FitPredict:
    """A model that receives sample indices and looks its inputs up in ``data`` (and, for a model
    harmonised in the fold, the samples' ``sites``)."""

    def fit(
        idx_train: np.ndarray, y_train: np.ndarray, g_train: np.ndarray, idx_test: np.ndarray, seed: int = 0
    ) -> tuple[np.ndarray, list]:
        return fit_predict(
            data[idx_train],
            y_train,
            g_train,
            data[idx_test],
            seed=seed,
            **_site_kwargs(sites, idx_train, idx_test),
        )

    return fit


def timescale_model(name: str) -> str:
    """The name of the primary parcel model on the maps of window length ``name`` (``'parcel_ts60s'``)."""
    return f"{PRIMARY_MODEL}_ts{name}"


def inner_score(x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, target: str, seed: int) -> float:
    """How well the primary model's estimator predicts ``y`` from features ``x`` in its own inner
    subject-level CV (best mean inner score over its strengths: minus log-loss, or minus MSE), or NaN
    when the subjects are too few for inner splits. Only the rows given are seen."""
    if inner_splits(target, y, groups, seed) is None:
        return float("nan")
    estimator = nested_estimator(target, y, groups, seed)
    model = map_pipeline(estimator)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)
        model.fit(x, y)
    fitted = model[-1]
    if target == "regression":
        return float(fitted.best_score_)
    scores = fitted.scores_  # (inner folds, [l1 ratios,] strengths); a dict by class in older releases
    if isinstance(scores, dict):
        scores = next(iter(scores.values()))
    scores = np.asarray(scores)
    return float(np.max(np.mean(scores.reshape(scores.shape[0], -1), axis=0)))


def select_timescale(
    candidates: Mapping[str, np.ndarray],
    y: np.ndarray,
    groups: np.ndarray,
    *,
    operator: sparse.csr_matrix,
    target: str,
    seed: int,
) -> str:
    """The window length (a key of ``candidates``: name -> training samples) at which the primary parcel
    model scores best in its inner subject-level CV of the training subjects ``groups`` only
    (:func:`inner_score`); the first candidate when the subjects are too few for inner splits."""
    scores = {
        name: inner_score(parcel_means(x, operator), y, groups, target=target, seed=seed)
        for name, x in candidates.items()
    }
    finite = {k: v for k, v in scores.items() if np.isfinite(v)}
    return max(finite, key=lambda k: finite[k]) if finite else next(iter(candidates))


class TimescaleChoice:
    """``--timescale auto``: the window length of one training fold, chosen on its training samples only
    (:func:`select_timescale`), once per fold and shared by every map model of the fold; each choice is
    appended to ``record``."""

    def __init__(
        self,
        maps: np.ndarray,
        names: Sequence[str],
        operator: sparse.csr_matrix,
        target: str,
        record: list[dict[str, Any]] | None = None,
    ) -> None:
        self.maps, self.names, self.operator, self.target = maps, list(names), operator, target
        self.record = record if record is not None else []
        self._cache: dict[tuple[bytes, int], int] = {}

    def __call__(self, idx_train: np.ndarray, y_train: np.ndarray, g_train: np.ndarray, seed: int) -> int:
        key = (np.asarray(idx_train).tobytes(), int(seed))
        if key not in self._cache:
            candidates = {name: self.maps[i][idx_train] for i, name in enumerate(self.names)}
            name = select_timescale(
                candidates, y_train, g_train, operator=self.operator, target=self.target, seed=seed
            )
            self._cache[key] = self.names.index(name)
            self.record.append({"seed": int(seed), "n_train": len(idx_train), "timescale": name})
        return self._cache[key]


def _auto_timescale(
    choice: TimescaleChoice, fit_predict: FitPredict, sites: FoldSites | None = None
) -> FitPredict:
    """A map model that reads the maps of the window length its training fold chose."""

    def fit(
        idx_train: np.ndarray, y_train: np.ndarray, g_train: np.ndarray, idx_test: np.ndarray, seed: int = 0
    ) -> tuple[np.ndarray, list]:
        data = choice.maps[choice(idx_train, y_train, g_train, seed)]
        return fit_predict(
            data[idx_train],
            y_train,
            g_train,
            data[idx_test],
            seed=seed,
            **_site_kwargs(sites, idx_train, idx_test),
        )

    return fit


def fold_models(
    data: Mapping[str, np.ndarray],
    params: GroupParams,
    explain: Callable[[StrokeCNN, np.ndarray], None] | None = None,
    record: list[dict[str, Any]] | None = None,
) -> dict[str, FitPredict]:
    """Every model of the target whose input is present, as functions of sample indices.

    The map models read the samples (``params.map``); the others the row of each sample's unit in
    their input (``data`` are the group inputs, :func:`workflows.group_inputs.prepare_inputs`).
    ``explain`` goes to the CNN. With ``params.calibration`` every classifier but the CNN is
    recalibrated in-fold. When the inputs hold the maps at several window lengths, the primary parcel
    model also runs on each (:func:`timescale_model`, same folds), and with ``params.timescale`` auto
    every map model reads the window length its training fold chose (:class:`TimescaleChoice`; the
    choices are appended to ``record``).

    With sites in the inputs (``sites``, one per unit) the confound-only model also reads the site
    (one-hot in the fold), and with ``params.harmonize`` combat the parcel models' features are
    ComBat-harmonised inside each training fold (:attr:`ModelSpec.harmonized`).
    """
    operator, _ = parcel_matrix(data["parcels"])
    row = {str(s): i for i, s in enumerate(data["subjects"])}
    unit_of_sample = np.array([row[str(g)] for g in data["groups"]])
    unit_sites = np.asarray(data["sites"]).astype(str) if "sites" in data else None
    several = unit_sites is not None and len(set(unit_sites.tolist())) > 1
    prior = parcel_matrix(data[PRIOR_REGIONS])[0] if PRIOR_REGIONS in data else None
    ctx = FitContext(params, operator, explain, site_column=several, prior_operator=prior)
    harmonize_sites = None
    if params.harmonize != "none":
        if unit_sites is None or not several:
            raise ValueError(f"GroupParams.harmonize {params.harmonize} needs the sites of at least 2 sites")
        harmonize_sites = FoldSites(unit_sites[unit_of_sample], PROTECT_OUTCOME[params.harmonize])
    choice = None
    if TIMESCALE_MAPS in data:
        ts_maps = data[TIMESCALE_MAPS][:, unit_of_sample]
        ts_names = [str(n) for n in data[TIMESCALE_NAMES]]
        if params.timescale == AUTO_TIMESCALE:
            choice = TimescaleChoice(ts_maps, ts_names, operator, params.target, record)
    elif params.timescale == AUTO_TIMESCALE:
        raise ValueError("GroupParams.timescale auto needs the maps at several window lengths")
    models: dict[str, FitPredict] = {}
    for spec in models_for(params.target):
        array = INPUT_ARRAYS[spec.input]
        if array not in data or (spec.requires and spec.requires not in data):
            continue
        inputs = data[array] if spec.input == DFCSD else data[array][unit_of_sample]
        if spec.input == QUALITY and unit_sites is not None and several:  # the site's code, last
            codes = np.unique(unit_sites, return_inverse=True)[1].reshape(-1).astype(float)
            inputs = np.column_stack([inputs, codes[unit_of_sample]])
        sites = harmonize_sites if spec.harmonized else None
        if spec.input == DFCSD and choice is not None:
            model = _auto_timescale(choice, spec.build(ctx), sites)
        else:
            model = _by_index(inputs, spec.build(ctx), sites)
        if params.target == "classification" and spec.calibrated:
            model = calibrated(model, params.calibration)
        models[spec.name] = model
    if TIMESCALE_MAPS in data:  # the primary model at each window length, against the same controls
        for i, name in enumerate(ts_names):
            model = _by_index(ts_maps[i], MODELS[PRIMARY_MODEL].build(ctx), harmonize_sites)
            if params.target == "classification":
                model = calibrated(model, params.calibration)
            models[timescale_model(name)] = model
    return models
