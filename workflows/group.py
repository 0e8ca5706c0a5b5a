"""Group level as a Nipype graph: lesion-aligned inputs -> subject-level CV (+ held-out saliency) -> model.

The steps are plain functions (:mod:`workflows.group_inputs`, :mod:`workflows.cross_validation`,
:mod:`workflows.permutation`, :mod:`workflows.cv_summary`, :mod:`workflows.explain`,
:mod:`workflows.export`); this module only wires them, and writes the methods text of what it wires
(:func:`describe_group`, the workflow's ``__desc__``). Every file that lands in ``output_dir`` goes
through an always-run writer node (``ds_*``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from workflows.activation_patterns import patterns_computed
from workflows.calibration import CALIBRATION_NAMES
from workflows.cross_validation import plan_folds
from workflows.decision_curve import DCA_THRESHOLDS
from workflows.interfaces import group as gi
from workflows.interfaces.writers import WriteOutputs
from workflows.learning_curve import LEARNING_FRACTIONS
from workflows.model_card import training_cohort
from workflows.model_io import json_clean
from workflows.models import (
    CNN_MODEL,
    CONTROL_MAPS,
    MODELS,
    PRIMARY_MODEL,
    ModelSpec,
    exported_model,
    models_for,
    permuted_models,
)
from workflows.params import (
    AUTO_TIMESCALE,
    GROUP_MAPS,
    MIN_SITES_AUTO,
    PROTECT_OUTCOME,
    GroupParams,
    describe_duration,
)
from workflows.sites import check_site_options, plan_site_folds


def _join(items: Sequence[str]) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _statistics(params: GroupParams, specs: list[ModelSpec]) -> str:
    """The comparisons and the permutation test, in words."""
    regression = params.target == "regression"
    references = [s for s in specs if s.role == "reference"]
    against = "the primary model" + (
        " and each reference (" + _join([s.methods for s in references]) + ")" if references else ""
    )
    metric = "MAE" if regression else "balanced accuracy"
    text = (
        f"Every model was compared with {against} by a paired subject-level bootstrap (1000 draws of "
        f"subjects, the same draws for every model) of the pooled out-of-fold {metric}, and by the "
        "corrected resampled t-test of the fold-wise differences [@nadeau2003]."
    )
    permuted = [MODELS[name] for name in permuted_models(params)]
    if permuted:
        left_out = [s for s in specs if s not in permuted and s.role != "reference"]
        return text + (
            f" Significance of the {metric} was assessed with {int(params.cv.n_permutations)} "
            + ("permutations of the UL-FMA scores" if regression else "label permutations")
            + " (whole subjects exchanged, a subject's sessions together, within blocks of subjects with "
            "as many sessions [@winkler2015], then the whole cross-validation, "
            f"{int(params.cv.cv_repeats)} repeat(s) as for the observed score, run again) of "
            + _join([s.noun for s in permuted])
            + ("; " + _join([s.noun for s in left_out]) + " not permuted (costly)" if left_out else "")
            + "."
        )
    return text + " No permutation test was run."


def _clinical(params: GroupParams, specs: list[ModelSpec]) -> str:
    """The clinical baseline, the test of the primary model's value over it, and the conformal sets."""
    coverage = f"{100 * params.conformal_coverage:g}%"
    conformal = (
        " Each test subject of the primary model received a conformal prediction "
        + ("interval of the UL-FMA" if params.target == "regression" else "set of classes")
        + f" at {coverage} coverage [@angelopoulos2023], its threshold computed from out-of-fold "
        "predictions of the fold's training subjects only (subject-level inner splits), and the share of "
        "test subjects covered was recorded; the exported model carries the same calibration from the "
        "cross-validated predictions of every subject."
    )
    clinical = [s for s in specs if s.role == "clinical"]
    if not clinical:
        return conformal
    extra = list(params.clinical_covariates)
    return (
        f" The primary model's value over {clinical[0].methods}"
        + (" (also " + _join([f"`{c}`" for c in extra]) + ")" if extra else "")
        + ", fit on the same folds when participants.tsv or the sidecars gave them, was tested on the "
        "out-of-fold predictions by a likelihood-ratio test of nested models (outcome on the clinical "
        "variables, then also on the primary model's cross-validated prediction) [@dinga2020]." + conformal
    )


def _curves(params: GroupParams) -> str:
    """Decision curves, the learning curve and the minimum sample size, in words."""
    fractions = _join([f"{100 * f:.0f}%" for f in LEARNING_FRACTIONS if f < 1])
    text = (
        f" A learning curve refit the primary model on nested subsets ({fractions}) of the subjects of "
        "each outer training fold"
        + ("" if params.target == "regression" else ", stratified by class")
        + ", and scored it on the fold's unchanged test subjects."
    )
    if params.target == "regression":
        return text
    return text + (
        " Decision curves [@vickers2006] gave the net benefit of every classifier's out-of-fold "
        f"probabilities at threshold probabilities {min(DCA_THRESHOLDS):.2f} to {max(DCA_THRESHOLDS):.2f} "
        "(each repeat's predictions, then averaged), against treating every patient and treating none. "
        "The minimum sample size for developing a model of the binary outcome [@riley2020] was computed at "
        "the cohort's prevalence with the primary model's parcels as candidate parameters, across "
        "anticipated C statistics and at its out-of-fold AUC."
    )


def _timescales(params: GroupParams) -> str:
    """The window length of the maps (a chosen one, or one chosen inside each training fold)."""
    if params.timescale is None:
        return ""
    if params.timescale == AUTO_TIMESCALE:
        return (
            " The window length of the maps was chosen inside each training fold, among those the "
            "participant level computed, as the one at which the primary model scored best in its inner "
            "subject-level cross-validation of the training subjects (never the fold's test subjects); "
            "the primary model was also run at each window length on the same folds and compared with "
            "the static-FC control."
        )
    return f" The maps of the {describe_duration(params.timescale)} windows were used."


def _sites(params: GroupParams) -> str:
    """Leave-one-site-out validation and ComBat harmonisation, in words (empty when neither applies)."""
    text = ""
    site_cv = (
        "each site was held out once, the models trained on the subjects of the other sites (every "
        "fitted step inside that training set) and scored on the held-out site's subjects, per site and "
        "pooled, with subject-bootstrap 95% intervals"
    )
    if params.cv.scheme == "site":
        text += f" Leave-one-site-out validation was run next to the subject-level folds: {site_cv}."
    elif params.cv.scheme == "auto":
        text += (
            f" When at least {MIN_SITES_AUTO} sites had patients of both classes, leave-one-site-out "
            f"validation was run next to the subject-level folds: {site_cv}."
        )
    if params.harmonize != "none":
        protected = PROTECT_OUTCOME[params.harmonize]
        text += (
            " The parcel features of the parcel models were harmonised across sites with ComBat "
            "[@johnson2007] [@fortin2018] fitted inside each training fold only"
            + (", the training subjects' outcome protected as a covariate" if protected else "")
            + "; test subjects were adjusted with the training fold's site estimates"
            + (" and without their outcome" if protected else "")
            + " (a site absent from training was estimated from its own subjects' features, without "
            "labels)."
        )
    return text


def describe_group(params: GroupParams) -> str:
    """The methods text of the group level, from its parameters and the model registry.

    :func:`init_group_wf` sets it as the workflow's ``__desc__``, and the methods boilerplate reads it
    from here, so that the text names what the graph runs.
    """
    regression = params.target == "regression"
    specs = models_for(params.target)
    primary, exported = MODELS[PRIMARY_MODEL], MODELS[exported_model(params)]
    others = [s for s in specs if s.role in ("model", "baseline")]
    controls = [s for s in specs if s.role == "control"]
    align = (
        "Maps of patients with right-hemisphere lesions were mirrored about x = 0 (world "
        "coordinates) so that the lesioned hemisphere is on the left for everyone"
        if params.align_lesion
        else "Maps were not mirrored (lesion alignment off)"
    )
    samples = (
        "one sample per subject (the dFC variability map)"
        if params.samples == "maps" and params.map == "dfcsd"
        else f"one sample per subject (the `stat-{params.map}` map: {GROUP_MAPS[params.map]})"
        if params.samples == "maps"
        else "one sample per window map, with window predictions averaged per subject (soft vote)"
    )
    task = (
        "predict the UL-FMA score itself (regression; severity read from the predicted score at the same "
        "threshold)"
        if regression
        else "classify severity (severe vs mild-to-moderate)"
    )
    estimator = "ridge regressions" if regression else "L2 logistic regressions with balanced class weights"
    inner = (
        "subjects split without stratification, as a score has no class"
        if regression
        else "stratified by class"
    )
    head = (
        "a one-output head and a Huber loss on the score standardised with the training fold's mean and SD"
        if regression
        else "a two-class head"
    )
    metrics = (
        "MAE, RMSE, Pearson and Spearman r, R² and the balanced accuracy of the thresholded prediction"
        if regression
        else "balanced accuracy, ROC AUC, sensitivity, specificity, F1 and Brier score"
    )
    calibration = (
        ""
        if regression
        else " Predicted probabilities come from class-weighted models and were not recalibrated."
        if params.calibration == "none"
        else " The probabilities of every model but the network were recalibrated by "
        f"{CALIBRATION_NAMES[params.calibration]} fit inside each training fold on out-of-fold "
        "predictions of its subjects (subject-level inner splits)."
    )
    return (
        f"At the group level, patients were labelled severe when their upper-limb Fugl-Meyer score "
        f"(column `{params.label_column}`) was <= {float(params.severe_threshold):g}, and "
        f"mild-to-moderate otherwise, and models were trained to {task}. {align}, and resampled to "
        f"{float(params.cnn_resolution):g} mm voxels; models were trained on {samples}. "
        f"The primary model was {primary.methods}. It was compared on the same folds with "
        + _join([s.methods for s in others])
        + ", and with the control models: "
        + _join(
            [
                s.methods + (" (when every subject had one)" if s.input in CONTROL_MAPS else "")
                for s in controls
            ]
        )
        + (
            "; the reference was " + _join([s.methods for s in specs if s.role == "reference"])
            if any(s.role == "reference" for s in specs)
            else ""
        )
        + f". The linear models were {estimator}; where a strength was chosen, an inner subject-level "
        f"cross-validation on the training subjects chose it ({inner}). The network had {head} and was "
        f"trained for at most {int(params.train.epochs)} epochs with early stopping on a validation split "
        "of its training subjects. "
        f"Performance was estimated by {int(params.cv.cv_folds)}-fold cross-validation repeated "
        f"{int(params.cv.cv_repeats)} times, stratified by class and split by subject so that no subject "
        "(none of its sessions or windows) contributes to both training and test folds, with every "
        f"fitted step inside the training folds; each fold's test subjects gave the {metrics}. "
        + _statistics(params, specs)
        + _clinical(params, specs)
        + _curves(params)
        + _timescales(params)
        + _sites(params)
        + calibration
        + f" The random seed was {params.random_seed}. "
        f"The exported (deployed) model is {exported.noun}, trained on every labelled subject with the "
        "same settings; its card records its subject-bootstrap interval, its permutation p-value, the "
        "calibration "
        + ("in the large and slope" if regression else "intercept and slope and the scaled Brier score")
        + " of its out-of-fold predictions [@vancalster2019], and the cross-validated performance of "
        "every model."
        " Saliency was computed on held-out subjects: each cross-validation fold's network explained "
        "only its own test subjects with signed integrated gradients of "
        + ("minus the predicted score" if regression else "the severe-vs-mild log-odds")
        + ", averaged per subject and then over subjects, and summarised over the parcels of the HCPex "
        "atlas [@hcpex] (MNI152NLin2009cAsym, the maps' space), midline parcels as bilateral. "
        "A region's stability was the share of fold models whose own held-out subjects ranked it among "
        "the top regions"
        + (
            "; its null, the same held-out saliency of every permuted-label draw's networks, gave each "
            "region a permutation p-value, also corrected over regions by the maximum statistic"
            if CNN_MODEL in permuted_models(params)
            else "; the network was not permuted, so the regions have no null"
        )
        + ". The region table is shown only when the network passes its own permutation test."
        + (
            f" {primary.noun[0].upper() + primary.noun[1:]} was explained by its activation patterns "
            "[@haufe2014] (each parcel's covariance with the model's decision value over the test subjects "
            "of each fold's model, per SD of that value), averaged over the fold models, with the same "
            "stability."
            if patterns_computed(params)
            else ""
        )
    )


def init_group_wf(
    *,
    subjects: Sequence[dict],
    params: GroupParams,
    shared_params: dict,
    output_dir: str | Path,
    excluded: Mapping[str, str] | None = None,
    dataset: Mapping[str, Any] | None = None,
    draws_dir: str | Path | None = None,
    name: str = "strokefc_group_wf",
) -> Workflow:
    """Build the group-level workflow (a LiterateWorkflow whose ``__desc__`` is :func:`describe_group`).

    Workflow graph::

        inputnode.subjects -> prepare (align, grid, samples) -> ds_group (cohort.tsv, class maps)
           prepare -> cv_fold (MapNode: every model per subject-level fold; folds run in parallel;
                      the fold's CNN explains its own test subjects)
              -> [permutation (MapNode, every model; only when params.cv.n_permutations > 0; with the CNN
                  permuted, its folds' held-out region saliency -> explain: the region table's null)]
              -> summarise_cv -> ds_cv (cv_summary.json, cv_predictions.tsv, training_curves.tsv,
                 learning_curves.tsv, decision_curves.tsv [classification])
              cv_fold -> explain (held-out saliency maps, saliency_regions.tsv) -> ds_explain
           prepare -> patterns (the primary model's activation patterns per fold: parcel_patterns.tsv)
              -> ds_explain
           prepare -> train_final (all subjects) -> export (card with the CV metrics) -> ds_model
        summarise_cv, export, explain -> outputnode

    The folds are planned here from the subjects' labels, so the split is fixed and visible before
    anything runs; every sample of a subject follows the subject.

    Parameters
    ----------
    subjects : list of dict
        ``label``, ``map_file``, ``windows_file`` ('' when absent), ``lesion_side``, ``score`` (UL-FMA).
    params : GroupParams
        Labels, CNN grid, samples, cross-validation and training settings.
    shared_params : dict
        Space and dFC/denoising parameters shared by every map (recorded in the model card).
    output_dir : path
        The output dataset; outputs go to ``group/`` and ``model/`` inside it.
    excluded : dict, optional
        Left-out unit -> reason, for the model card's training-cohort description.
    dataset : dict, optional
        The training dataset's ``dataset_description.json``: the card records its subjects by hash
        within it, so that ``participant --model`` flags predictions of training subjects.
    draws_dir : path, optional
        Where every permutation draw is stored as it finishes, so that a rerun (after an interruption,
        or with more draws) computes only the draws it lacks (:func:`workflows.permutation.run_permutation`).

    The fold, permutation and final-training nodes are independent Nipype jobs: with
    ``--use-plugin`` (``plugin: SLURM``) each runs as its own cluster job.

    Inputs (``inputnode``): ``subjects``.
    Outputs (``outputnode``): ``summary_file``, ``model_dir``, ``saliency_file``, ``regions_file``.
    """
    output_dir = Path(output_dir).absolute()
    group_dir, model_dir = str(output_dir / "group"), str(output_dir / "model")
    folds = plan_folds(list(subjects), params)
    site_folds = plan_site_folds(list(subjects), params) if check_site_options(subjects, params) else []
    params_dict = params.to_dict()

    wf = Workflow(name=name)
    wf.__desc__ = describe_group(params)
    inputnode = pe.Node(niu.IdentityInterface(fields=["subjects"]), name="inputnode")
    inputnode.inputs.subjects = list(subjects)
    outputnode = pe.Node(
        niu.IdentityInterface(fields=["summary_file", "model_dir", "saliency_file", "regions_file"]),
        name="outputnode",
    )
    prepare = pe.Node(gi.PrepareGroupInputs(params=params_dict), name="prepare")
    cv_fold = pe.MapNode(gi.RunFold(params=params_dict), iterfield=["fold"], name="cv_fold")
    cv_fold.inputs.fold = folds
    summarise = pe.Node(gi.SummariseCV(params=params_dict), name="summarise_cv")
    train = pe.Node(gi.TrainFinal(params=params_dict), name="train_final")
    export = pe.Node(
        gi.ExportModel(
            params=params_dict,
            shared_params=dict(shared_params or {}),
            cohort=json_clean(
                training_cohort(list(subjects), params.severe_threshold, excluded, dataset=dataset)
            ),
        ),
        name="export",
    )
    explain = pe.Node(
        gi.ExplainHeldOut(params=params_dict, space=str((shared_params or {}).get("Space") or "")),
        name="explain",
    )

    def writer(name: str, out_dir: str) -> pe.Node:
        return pe.Node(WriteOutputs(out_dir=out_dir), name=name, run_without_submitting=True)

    ds_group, ds_cv, ds_model, ds_explain = (
        writer("ds_group", group_dir),
        writer("ds_cv", group_dir),
        writer("ds_model", model_dir),
        writer("ds_explain", group_dir),
    )
    group_files = pe.Node(niu.Merge(2), name="group_files", run_without_submitting=True)
    classification = params.target != "regression"  # decision curves need probabilities of a class
    cv_files = pe.Node(niu.Merge(5 if classification else 4), name="cv_files", run_without_submitting=True)
    explain_files = pe.Node(niu.Merge(4), name="explain_files", run_without_submitting=True)
    patterns = pe.Node(gi.ExplainParcelModel(params=params_dict, folds=folds), name="patterns")
    wf.connect(
        [
            (inputnode, prepare, [("subjects", "subjects")]),
            (prepare, group_files, [("cohort_file", "in1"), ("class_maps", "in2")]),
            (group_files, ds_group, [("out", "in_files")]),
            (prepare, cv_fold, [("data_file", "data_file")]),
            (prepare, summarise, [("data_file", "data_file")]),
            (cv_fold, summarise, [("out_file", "fold_files")]),
            (
                summarise,
                cv_files,
                [
                    ("summary_file", "in1"),
                    ("predictions_file", "in2"),
                    ("curves_file", "in3"),
                    ("learning_curves_file", "in4"),
                ],
            ),
            (cv_files, ds_cv, [("out", "in_files")]),
            (prepare, train, [("data_file", "data_file")]),
            (train, export, [("out_dir", "final_dir")]),
            (prepare, export, [("grid_file", "grid_file")]),
            (summarise, export, [("summary_file", "summary_file"), ("predictions_file", "predictions_file")]),
            (export, ds_model, [("model_files", "in_files")]),
            (prepare, explain, [("data_file", "data_file"), ("grid_file", "grid_file")]),
            (cv_fold, explain, [("saliency_file", "saliency_files")]),
            (
                explain,
                explain_files,
                [("saliency_file", "in1"), ("regions_file", "in2"), ("class_saliency_files", "in3")],
            ),
            (prepare, patterns, [("data_file", "data_file"), ("grid_file", "grid_file")]),
            (patterns, explain_files, [("out_files", "in4")]),
            (explain_files, ds_explain, [("out", "in_files")]),
            (summarise, outputnode, [("summary_file", "summary_file")]),
            (export, outputnode, [("model_dir", "model_dir")]),
            (explain, outputnode, [("saliency_file", "saliency_file"), ("regions_file", "regions_file")]),
        ]
    )
    if classification:
        wf.connect(summarise, "decision_curves_file", cv_files, "in5")
    if site_folds:  # leave-one-site-out, next to the subject-level folds (its own summary section)
        site_fold = pe.MapNode(gi.RunFold(params=params_dict), iterfield=["fold"], name="site_fold")
        site_fold.inputs.fold = site_folds
        site_files = pe.Node(niu.Merge(1), name="site_files", run_without_submitting=True)
        ds_sites = writer("ds_sites", group_dir)
        wf.connect(
            [
                (prepare, site_fold, [("data_file", "data_file")]),
                (site_fold, summarise, [("out_file", "site_fold_files")]),
                (summarise, site_files, [("site_predictions_file", "in1")]),
                (site_files, ds_sites, [("out", "in_files")]),
            ]
        )
    if permuted_models(params):  # the same decision as the methods text's
        permutation = pe.MapNode(
            gi.RunPermutation(params=params_dict), iterfield=["index"], name="permutation"
        )
        permutation.inputs.index = list(range(params.cv.n_permutations))
        permutation.inputs.draws_dir = str(Path(draws_dir).absolute()) if draws_dir else ""
        wf.connect(
            [
                (prepare, permutation, [("data_file", "data_file")]),
                (permutation, summarise, [("null_scores", "null")]),
            ]
        )
        if CNN_MODEL in permuted_models(params):  # the permuted CNNs explain their test subjects too
            wf.connect(
                [
                    (prepare, permutation, [("grid_file", "grid_file")]),
                    (permutation, explain, [("null_saliency", "null_saliency")]),
                ]
            )
    return wf
