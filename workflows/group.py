"""Group level as a Nipype graph: lesion-aligned inputs -> subject-level CV (+ held-out saliency) -> model.

The steps are the plain functions of :mod:`workflows.training`; this module only wires them. Every file
that lands in ``output_dir`` goes through an always-run writer node (``ds_*``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from workflows.interfaces import group as gi
from workflows.interfaces.writers import WriteOutputs
from workflows.model_card import training_cohort
from workflows.model_io import json_clean
from workflows.params import GroupParams
from workflows.training import plan_folds


def init_group_wf(
    *,
    subjects: Sequence[dict],
    params: GroupParams,
    shared_params: dict,
    output_dir: str | Path,
    excluded: Mapping[str, str] | None = None,
    name: str = "strokefc_group_wf",
) -> pe.Workflow:
    """Build the group-level workflow.

    Workflow graph::

        inputnode.subjects -> prepare (align, grid, samples) -> ds_group (cohort.tsv, class maps)
           prepare -> cv_fold (MapNode: every model per subject-level fold; folds run in parallel;
                      the fold's CNN explains its own test subjects)
              -> [permutation (MapNode, every model; only when params.cv.n_permutations > 0, classification)]
              -> summarise_cv -> ds_cv (cv_summary.json, cv_predictions.tsv, training_curves.tsv)
              cv_fold -> explain (held-out saliency maps, saliency_regions.tsv) -> ds_explain
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

    Inputs (``inputnode``): ``subjects``.
    Outputs (``outputnode``): ``summary_file``, ``model_dir``, ``saliency_file``, ``regions_file``.
    """
    output_dir = Path(output_dir).absolute()
    group_dir, model_dir = str(output_dir / "group"), str(output_dir / "model")
    folds = plan_folds(list(subjects), params)
    params_dict = params.to_dict()

    wf = pe.Workflow(name=name)
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
            cohort=json_clean(training_cohort(list(subjects), params.severe_threshold, excluded)),
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
    cv_files = pe.Node(niu.Merge(3), name="cv_files", run_without_submitting=True)
    explain_files = pe.Node(niu.Merge(3), name="explain_files", run_without_submitting=True)
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
                [("summary_file", "in1"), ("predictions_file", "in2"), ("curves_file", "in3")],
            ),
            (cv_files, ds_cv, [("out", "in_files")]),
            (prepare, train, [("data_file", "data_file")]),
            (train, export, [("out_dir", "final_dir")]),
            (prepare, export, [("grid_file", "grid_file")]),
            (summarise, export, [("summary_file", "summary_file")]),
            (export, ds_model, [("model_files", "in_files")]),
            (prepare, explain, [("data_file", "data_file"), ("grid_file", "grid_file")]),
            (cv_fold, explain, [("saliency_file", "saliency_files")]),
            (
                explain,
                explain_files,
                [("saliency_file", "in1"), ("regions_file", "in2"), ("class_saliency_files", "in3")],
            ),
            (explain_files, ds_explain, [("out", "in_files")]),
            (summarise, outputnode, [("summary_file", "summary_file")]),
            (export, outputnode, [("model_dir", "model_dir")]),
            (explain, outputnode, [("saliency_file", "saliency_file"), ("regions_file", "regions_file")]),
        ]
    )
    if params.cv.n_permutations > 0 and params.target != "regression":  # tests balanced accuracy
        permutation = pe.MapNode(
            gi.RunPermutation(params=params_dict), iterfield=["index"], name="permutation"
        )
        permutation.inputs.index = list(range(params.cv.n_permutations))
        wf.connect(
            [
                (prepare, permutation, [("data_file", "data_file")]),
                (permutation, summarise, [("null_balanced_accuracy", "null")]),
            ]
        )
    return wf
