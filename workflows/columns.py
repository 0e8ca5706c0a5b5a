"""What every column of every TSV strokefc writes means, and in which units: one dictionary.

BIDS describes a TSV's columns in a JSON sidecar (``{"column": {"Description": ..., "Units": ...}}``).
:data:`COLUMNS` holds each column once, whatever table it appears in; :func:`tsv_sidecar` builds the
sidecar of a table from its header, and confound regressors, whose names come from fMRIPrep, fMRIStroke
or the lesion strategies, are described by :data:`PATTERNS`. A column described nowhere is logged and
marked undocumented in the sidecar (a run never fails for it); ``tests/test_columns.py`` checks with
``strict=True`` that every column of every table is described.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

LOGGER = logging.getLogger("strokefc.columns")

#: Column name -> BIDS column description (``Description`` and, for quantities, ``Units``).
COLUMNS: dict[str, dict[str, Any]] = {
    # identifiers
    "participant_id": {"Description": "participant (sub-<label>)"},
    "session": {"Description": "session (ses-<label>); n/a without sessions"},
    "run": {"Description": "the BOLD run (file name up to the space entity)"},
    # seed and window tables (participant level)
    "seed": {"Description": "mean denoised signal of the seed's voxels", "Units": "arbitrary"},
    "kept": {
        "Description": "1 = volume used; 0 = censored or dummy scan",
        "Levels": {"0": "not used", "1": "used"},
    },
    "start_volume": {"Description": "first volume of the window (0-based, dummy scans included)"},
    "end_volume": {"Description": "last volume of the window (0-based, inclusive)"},
    "onset_s": {"Description": "onset of the window's first volume", "Units": "s"},
    "kept_volumes": {"Description": "uncensored volumes in the window"},
    "coverage": {"Description": "share of the window's taper weight on kept volumes", "Units": "fraction"},
    "valid": {"Description": "1 when the window enters the maps (coverage >= MinWindowCoverage)"},
    # QC table
    "mean_fd_mm": {"Description": "mean framewise displacement after dummy scans", "Units": "mm"},
    "max_fd_mm": {"Description": "largest framewise displacement after dummy scans", "Units": "mm"},
    "volumes_total": {"Description": "volumes of the run, dummy scans included"},
    "dummy_scans": {"Description": "non-steady-state volumes dropped at the start"},
    "volumes_censored": {"Description": "volumes censored (scrubbing), after dummy scans"},
    "retained_time_s": {"Description": "kept volumes x repetition time", "Units": "s"},
    "dof_in_band": {"Description": "temporal degrees of freedom the band-pass keeps"},
    "regressors": {"Description": "confound regressors"},
    "dof_remaining": {
        "Description": "degrees of freedom left after band-pass and regression (Parkes et al. 2018)"
    },
    "windows_total": {"Description": "sliding windows laid over the run"},
    "windows_valid": {"Description": "windows with enough of their taper weight on kept volumes"},
    "seed_tsnr": {
        "Description": "median temporal SNR (mean / SD over kept volumes) of the seed's voxels, before "
        "denoising"
    },
    "lesion_volume_ml": {"Description": "lesion volume, when a lesion mask is known", "Units": "ml"},
    "lag_m1_s": {
        "Description": "median hemodynamic lag of ipsilesional minus contralesional M1",
        "Units": "s",
    },
    "lag_hemisphere_s": {
        "Description": "median hemodynamic lag of the lesioned minus the other hemisphere",
        "Units": "s",
    },
    "lag_flagged": {"Description": "1 when either lag difference exceeds QCParams.max_lag"},
    "excluded": {"Description": "1 when an exclusion rule removed the run (no maps)"},
    "reason": {
        "Description": "why the run (or subject) was excluded; for a processed run, input problems that "
        "changed what was applied (a missing FD column, a TR conflict), else empty"
    },
    # group level: cohort, cross-validation, training curves, saliency regions
    "ul_fma": {"Description": "upper-limb Fugl-Meyer score (0-66)", "Units": "points"},
    "class": {
        "Description": "impairment class from the UL-FMA score",
        "Levels": {"severe": "UL-FMA <= threshold", "mild-to-moderate": "UL-FMA > threshold"},
    },
    "lesion_side": {"Description": "lesioned hemisphere", "Levels": {"L": "left", "R": "right"}},
    "included": {"Description": "true when the subject entered the group analysis"},
    "site": {
        "Description": "scanning site: the participants.tsv site column, or the BOLD sidecars' scanner "
        "fields (Manufacturer, ManufacturersModelName, InstitutionName, MagneticFieldStrength) with "
        "--site-from-sidecars"
    },
    "censored_fraction": {"Description": "share of the volumes censored", "Units": "fraction"},
    "volumes_kept": {"Description": "volumes used after censoring and dummy scans"},
    "windows_kept": {"Description": "valid sliding windows"},
    "repeat": {"Description": "repeat of the repeated subject-level k-fold cross-validation (0-based)"},
    "fold": {"Description": "fold within the repeat (0-based); its test subjects never train it"},
    "model": {"Description": "model name (see cv_summary.json, models)"},
    "y_true": {
        "Description": "true value: the class (1 = severe, 0 = mild-to-moderate), or the UL-FMA score "
        "for a regression model (--target regression)"
    },
    "predicted_score": {"Description": "predicted UL-FMA score (regression models)", "Units": "points"},
    "prob_severe": {"Description": "predicted probability of severe impairment", "Units": "probability"},
    "prediction_set": {
        "Description": "conformal prediction set of the primary model (workflows.conformal): the classes "
        "(mild-to-moderate, severe, joined by |) whose nonconformity is within the fold's threshold; none "
        "= no class; n/a for the other models"
    },
    "interval_lower": {
        "Description": "lower end of the primary model's conformal UL-FMA interval; n/a for the others",
        "Units": "points",
    },
    "interval_upper": {
        "Description": "upper end of the primary model's conformal UL-FMA interval; n/a for the others",
        "Units": "points",
    },
    "conformal_threshold": {
        "Description": "the fold's conformal threshold: the ceil((n+1) coverage)-th smallest out-of-fold "
        "nonconformity score of its training subjects (n/a: infinite, too few subjects)"
    },
    "conformal_covered": {
        "Description": "1 when the conformal set or interval holds the true class or score",
        "Levels": {"0": "not covered", "1": "covered"},
    },
    "epoch": {"Description": "training epoch (1-based)"},
    "train_loss": {"Description": "class-weighted cross-entropy on the training samples", "Units": "nats"},
    "val_loss": {
        "Description": "class-weighted cross-entropy on the validation subjects (whole subjects held out "
        "of the fold's training subjects for early stopping; never a test subject)",
        "Units": "nats",
    },
    # learning curves (the primary model by training size) and decision curves (net benefit)
    "fraction": {
        "Description": "share of the fold's training subjects the model was refit on (nested "
        "subject-level subsets, stratified by class; 1 = the fold's own fit)",
        "Units": "fraction",
    },
    "n_train_subjects": {"Description": "training subjects of that subset"},
    "balanced_accuracy": {
        "Description": "balanced accuracy on the fold's unchanged test subjects (for a regression, of the "
        "thresholded predicted score)",
        "Units": "fraction",
    },
    "mae": {"Description": "mean absolute error on the fold's unchanged test subjects", "Units": "points"},
    "threshold": {
        "Description": "threshold probability: a patient is treated (called severe) when the predicted "
        "probability of severe is at least this",
        "Units": "probability",
    },
    "net_benefit": {
        "Description": "net benefit TP/n - FP/n * t/(1-t) of the model's out-of-fold probabilities, mean "
        "over CV repeats (Vickers & Elkin 2006)",
        "Units": "fraction",
    },
    "net_benefit_min": {"Description": "lowest net benefit of a single CV repeat", "Units": "fraction"},
    "net_benefit_max": {"Description": "highest net benefit of a single CV repeat", "Units": "fraction"},
    "treat_all": {
        "Description": "net benefit of treating every patient: prevalence - (1 - prevalence) * t/(1-t)",
        "Units": "fraction",
    },
    "treat_none": {"Description": "net benefit of treating no patient (always 0)", "Units": "fraction"},
    "n_repeats": {"Description": "CV repeats whose out-of-fold predictions entered the mean"},
    "region": {"Description": "HCPEx parcel (MNI152NLin2009cAsym), hemisphere suffix removed"},
    "side": {
        "Description": "relative to the lesion after alignment (x < 0 ipsilesional); 'bilateral (midline)' "
        "when at least 20% (workflows.explain.MIDLINE_FRACTION) of the parcel's grid voxels lie on each "
        "side of x = 0"
    },
    "class_difference": {
        "Description": "mean_saliency_severe - mean_saliency_mild; the rows are ranked by its absolute "
        "value. Positive: the region pushes severe subjects toward severe and mild-to-moderate subjects "
        "toward mild (it supports the right class in both)",
        "Units": "log-odds",
    },
    "mean_saliency_severe": {
        "Description": "mean signed held-out integrated gradient over the parcel's voxels, severe subjects "
        "(positive pushes toward severe)",
        "Units": "log-odds",
    },
    "mean_saliency_mild": {"Description": "the same over the mild-to-moderate subjects", "Units": "log-odds"},
    "mean_saliency": {
        "Description": "the same over all subjects (near 0 for a region read linearly: the baseline is the "
        "training mean, so the classes' attributions cancel)",
        "Units": "log-odds",
    },
    "n_voxels": {"Description": "parcel voxels inside the CNN mask"},
    "activation_pattern": {
        "Description": "the primary parcel model's activation pattern (Haufe et al. 2014): covariance of the "
        "parcel's standardised feature with the model's decision value over the fold's test subjects, per SD "
        "of the decision value, mean over the fold models (positive: higher in subjects the model calls "
        "severe, or for a regression, predicts a higher score)",
        "Units": "SD of the feature per SD of the decision value",
    },
    "fold_top_share": {
        "Description": "stability: share of the cross-validation fold models (folds x repeats) whose own "
        "held-out subjects rank the region among the table's top regions (workflows.explain.TOP_REGIONS) "
        "by |class_difference|",
        "Units": "fraction",
    },
    "fold_sign_agreement": {
        "Description": "share of the fold models whose class_difference on their own held-out subjects "
        "has the sign of the pooled one",
        "Units": "fraction",
    },
    "null_p": {
        "Description": "permutation p of |class_difference| among the permuted-label CNNs' held-out "
        "saliency ((1 + draws as large) / (1 + draws)); n/a when the CNN was not permuted (--permute-cnn)"
    },
    "null_p_fwe": {
        "Description": "null_p corrected for every region: against each draw's largest |class_difference| "
        "over all regions (family-wise error)"
    },
    "stable_above_null": {
        "Description": "yes when fold_top_share >= 0.5 (workflows.explain.STABLE_SHARE) and null_p_fwe < "
        "0.05 (workflows.explain.NULL_ALPHA); n/a without a null",
        "Levels": {"yes": "stable and above the null", "no": "not both", "n/a": "no permutation null"},
    },
    # predictions.tsv (participant --model)
    "predicted_class": {
        "Description": "severe when prob_severe >= decision_threshold, else mild-to-moderate"
    },
    "decision_threshold": {
        "Description": "probability threshold of the predicted class",
        "Units": "probability",
    },
    "label_definition": {"Description": "the model's label rule"},
    "conformal_coverage": {
        "Description": "stated coverage of the conformal set or interval (share of new subjects whose set "
        "holds the truth), calibrated on the training subjects' cross-validated predictions",
        "Units": "fraction",
    },
    "ul_fma_lower": {"Description": "lower end of the conformal UL-FMA interval", "Units": "points"},
    "ul_fma_upper": {"Description": "upper end of the conformal UL-FMA interval", "Units": "points"},
    "target": {
        "Description": "what the model predicts: regression (a UL-FMA score); empty for classification"
    },
    "predicted_ul_fma": {"Description": "UL-FMA predicted by a regression model", "Units": "points"},
    "model_cv_mae": {
        "Description": "the regression model's cross-validated mean absolute error (model card)",
        "Units": "points",
    },
    "model_id": {
        "Description": "first 12 hex digits of the model id: SHA-256 of the weights and of every card "
        "field that changes a prediction"
    },
    "model_type": {"Description": "the deployed model: parcel (the primary parcel model) or cnn"},
    "calibrated": {"Description": "true when the model's probabilities were recalibrated"},
    "in_training": {
        "Description": "whether the model was trained on this subject of this dataset (model card)",
        "Levels": {
            "yes": "in the training set: an in-sample prediction, not a validation",
            "no": "not a training subject",
            "unknown": "the model card does not record its training subjects",
        },
    },
    "validation_note": {"Description": "why a prediction does not count as a validation"},
    "model_dir": {"Description": "the model directory used"},
    "model_cv_balanced_accuracy": {
        "Description": "the model's cross-validated balanced accuracy on its training cohort (model card)"
    },
    "map_file": {"Description": "the dFC-SD map the prediction was made from (BIDS URI)"},
    "resampled": {
        "Description": "true when the map's grid differed from the model's source grid (resampled)"
    },
    "source_voxel_size_mm": {"Description": "voxel size of the map before resampling", "Units": "mm"},
    "model_source_voxel_size_mm": {"Description": "voxel size of the model's training maps", "Units": "mm"},
    "grid_coverage": {
        "Description": "share of the model's brain mask the resampled map covers (non-zero)",
        "Units": "fraction",
    },
    "resampling": {"Description": "how the map was put on the model's input grid"},
    "ul_fma_true": {
        "Description": "true UL-FMA score, when participants.tsv (or sessions.tsv) has it",
        "Units": "points",
    },
    "class_true": {
        "Description": "true class from ul_fma_true",
        "Levels": {"severe": "", "mild-to-moderate": ""},
    },
}

#: Confound-regressor name patterns (fMRIPrep, fMRIStroke, strokefc's lesion regressors) -> description.
PATTERNS: tuple[tuple[str, dict[str, Any]], ...] = (
    (
        r"(trans|rot)_[xyz](_derivative1)?(_power2)?",
        {
            "Description": "head-motion parameter (fMRIPrep; "
            "trans in mm, rot in rad), its temporal derivative and/or square",
            "Units": "mm or rad",
        },
    ),
    (
        r"(white_matter|csf|global_signal)(_nolesion)?(_derivative1)?(_power2)?",
        {
            "Description": "mean signal of a tissue compartment (fMRIPrep; _nolesion: fMRIStroke, lesion "
            "removed), its derivative and/or square",
            "Units": "arbitrary",
        },
    ),
    (r"[atcw]_comp_cor_\d+", {"Description": "CompCor principal component (fMRIPrep)", "Units": "arbitrary"}),
    (
        r"cosine\d+",
        {"Description": "discrete cosine high-pass basis function (fMRIPrep)", "Units": "arbitrary"},
    ),
    (r"lesion_mean", {"Description": "mean signal of the lesion (+lesion strategies)", "Units": "arbitrary"}),
    (
        r"lesion_comp_cor_\d+",
        {
            "Description": "principal component of the lesion's signal (+lesion strategies)",
            "Units": "arbitrary",
        },
    ),
    (r"lesion|ica_lesion.*", {"Description": "fMRIStroke lesion regressor", "Units": "arbitrary"}),
    (
        r"motion_outlier\d+|non_steady_state_outlier\d+",
        {"Description": "spike regressor of one volume (fMRIPrep)"},
    ),
    (
        r"z_.+",
        {
            "Description": "Fisher-z windowed correlation of the seed with the named report region "
            "(contraM1, ipsiSMA, ipsiThalamus)",
            "Units": "Fisher z",
        },
    ),
)


def describe_column(name: str) -> dict[str, Any]:
    """The BIDS description of one column; ``KeyError`` for a column described nowhere."""
    if name in COLUMNS:
        return dict(COLUMNS[name])
    for pattern, description in PATTERNS:
        if re.fullmatch(pattern, name):
            return dict(description)
    raise KeyError(f"column {name!r} has no description in workflows.columns")


def tsv_sidecar(columns: Iterable[str], description: str = "", strict: bool = False) -> dict[str, Any]:
    """The JSON sidecar of a TSV with these columns: a description per column, with units.

    An undescribed column raises ``KeyError`` with ``strict``, else is logged and marked undocumented.
    """
    out: dict[str, Any] = {"Description": description} if description else {}
    for name in columns:
        try:
            out[name] = describe_column(name)
        except KeyError:
            if strict:
                raise
            LOGGER.warning("column %r has no description in workflows.columns", name)
            out[name] = {"Description": "undocumented column"}
    return out
