"""Group-level interfaces: each calls one group-level step in its node directory.

The steps: :mod:`workflows.group_inputs`, :mod:`workflows.cross_validation`, :mod:`workflows.permutation`,
:mod:`workflows.cv_summary`, :mod:`workflows.export` and :mod:`workflows.explain`.
"""

from __future__ import annotations

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    TraitedSpec,
    isdefined,
    traits,
)

from workflows.activation_patterns import explain_parcel_model
from workflows.cross_validation import run_fold
from workflows.cv_summary import summarise_cv
from workflows.explain import summarise_saliency
from workflows.export import export_model, train_final
from workflows.group_inputs import prepare_inputs
from workflows.interfaces.base import StrokefcInterface
from workflows.params import GroupParams
from workflows.permutation import permutation_draw

#: Imported by the nodes that train or explain a CNN (folds, ``--permute-cnn`` draws, a CNN's final fit)
#: when they run, not by the others: a SLURM job of a permutation draw or of the summary starts without
#: PyTorch. A pool of Nipype workers imports them ahead, once, for all its workers.
WORKER_IMPORTS = ("torch", "captum.attr", "workflows.cnn")

_PARAMS_DESC = "GroupParams.to_dict() (workflows.params.GroupParams)"


class _PrepareInputSpec(BaseInterfaceInputSpec):
    subjects = traits.List(
        traits.Dict, mandatory=True, desc="dicts with label, map_file, windows_file, lesion_side, score"
    )
    params = traits.Dict(mandatory=True, desc=_PARAMS_DESC)


class _PrepareOutputSpec(TraitedSpec):
    data_file = File(exists=True, desc="npz with samples x, labels y, subject groups and subject maps")
    grid_file = File(exists=True, desc="JSON description of the CNN grid")
    cohort_file = File(exists=True, desc="cohort.tsv: included subjects, score, class, lesion side")
    class_maps = traits.List(File(exists=True), desc="mean maps of each class and their difference")


class PrepareGroupInputs(StrokefcInterface):
    """Lesion-align, mask, crop and resample every map onto the CNN grid."""

    input_spec = _PrepareInputSpec
    output_spec = _PrepareOutputSpec

    def _run_interface(self, runtime):
        out = prepare_inputs(self.inputs.subjects, GroupParams.from_dict(self.inputs.params), runtime.cwd)
        self._results.update(out._asdict())
        return runtime


class _RunFoldInputSpec(BaseInterfaceInputSpec):
    data_file = File(exists=True, mandatory=True, desc="npz from PrepareGroupInputs")
    fold = traits.Dict(mandatory=True, desc="{repeat, fold, test: [subject labels]}")
    params = traits.Dict(mandatory=True, desc=_PARAMS_DESC)


class _RunFoldOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="JSON with the fold's predictions, metrics and training curve")
    saliency_file = File(exists=True, desc="npz: the fold CNN's signed saliency on its test units, per class")


class RunFold(StrokefcInterface):
    """Fit every model on one fold's training subjects; predict (and, the CNN, explain) its test subjects."""

    input_spec = _RunFoldInputSpec
    output_spec = _RunFoldOutputSpec

    def _run_interface(self, runtime):
        out = run_fold(
            self.inputs.data_file, self.inputs.fold, GroupParams.from_dict(self.inputs.params), runtime.cwd
        )
        self._results.update(out._asdict())
        return runtime


class _RunPermutationInputSpec(BaseInterfaceInputSpec):
    data_file = File(exists=True, mandatory=True, desc="npz from PrepareGroupInputs")
    index = traits.Int(mandatory=True, desc="index of the permutation (seeds the shuffle)")
    params = traits.Dict(mandatory=True, desc=_PARAMS_DESC)
    # a plain string, not a Directory: Nipype would hash the folder's content, which every draw changes
    draws_dir = traits.Str(
        "", usedefault=True, desc="folder of stored draws, read back on a rerun ('' = none)"
    )
    grid_file = File(exists=True, desc="CNN grid JSON: with the CNN permuted, its held-out region saliency")


class _RunPermutationOutputSpec(TraitedSpec):
    null_scores = traits.Dict(
        desc="model -> mean balanced accuracy (regression: MAE) on permuted labels (scores)"
    )
    null_saliency = traits.Dict(
        desc="atlas label -> the permuted CNN's held-out region statistic ({}: the CNN not permuted)"
    )


class RunPermutation(StrokefcInterface):
    """One draw of the label-permutation null of every model (as many repeats of k-fold as observed)."""

    input_spec = _RunPermutationInputSpec
    output_spec = _RunPermutationOutputSpec

    def _run_interface(self, runtime):
        draw = permutation_draw(
            self.inputs.data_file,
            self.inputs.index,
            GroupParams.from_dict(self.inputs.params),
            self.inputs.draws_dir or None,
            self.inputs.grid_file if isdefined(self.inputs.grid_file) else None,
        )
        self._results["null_scores"], self._results["null_saliency"] = draw.null, draw.saliency
        return runtime


class _SummariseInputSpec(BaseInterfaceInputSpec):
    fold_files = traits.List(File(exists=True), mandatory=True, desc="outputs of RunFold")
    null = traits.List(traits.Dict, desc="per draw, model -> null balanced accuracy or MAE (empty: no test)")
    site_fold_files = traits.List(File(exists=True), desc="outputs of RunFold on leave-one-site-out folds")
    data_file = File(exists=True, mandatory=True, desc="npz from PrepareGroupInputs")
    params = traits.Dict(mandatory=True, desc=_PARAMS_DESC)


class _SummariseOutputSpec(TraitedSpec):
    summary_file = File(exists=True, desc="cv_summary.json")
    predictions_file = File(exists=True, desc="cv_predictions.tsv")
    curves_file = File(exists=True, desc="training_curves.tsv")
    site_predictions_file = File(exists=True, desc="site_predictions.tsv (leave-one-site-out only)")
    learning_curves_file = File(exists=True, desc="learning_curves.tsv (the primary model by training size)")
    decision_curves_file = File(exists=True, desc="decision_curves.tsv (classification only)")


class SummariseCV(StrokefcInterface):
    """Write cv_summary.json and the group tables (predictions, training, learning and decision curves)."""

    input_spec = _SummariseInputSpec
    output_spec = _SummariseOutputSpec

    def _run_interface(self, runtime):
        null = list(self.inputs.null) if isdefined(self.inputs.null) else []
        sites = list(self.inputs.site_fold_files) if isdefined(self.inputs.site_fold_files) else []
        out = summarise_cv(
            self.inputs.fold_files,
            null,
            self.inputs.data_file,
            GroupParams.from_dict(self.inputs.params),
            runtime.cwd,
            site_fold_files=sites,
        )
        self._results.update({k: v for k, v in out._asdict().items() if v is not None})
        return runtime


class _TrainFinalInputSpec(BaseInterfaceInputSpec):
    data_file = File(exists=True, mandatory=True, desc="npz from PrepareGroupInputs")
    params = traits.Dict(mandatory=True, desc=_PARAMS_DESC)


class _TrainFinalOutputSpec(TraitedSpec):
    out_dir = Directory(exists=True, desc="final model (safetensors + partial card)")


class TrainFinal(StrokefcInterface):
    """Train the final model on every labelled subject."""

    input_spec = _TrainFinalInputSpec
    output_spec = _TrainFinalOutputSpec

    def _run_interface(self, runtime):
        self._results["out_dir"] = train_final(
            self.inputs.data_file, GroupParams.from_dict(self.inputs.params), runtime.cwd
        )
        return runtime


class _ExportInputSpec(BaseInterfaceInputSpec):
    final_dir = Directory(exists=True, mandatory=True, desc="output of TrainFinal")
    grid_file = File(exists=True, mandatory=True, desc="CNN grid JSON")
    summary_file = File(exists=True, mandatory=True, desc="cv_summary.json (CV metrics go in the card)")
    predictions_file = File(
        exists=True, desc="cv_predictions.tsv (the exported model's conformal calibration scores)"
    )
    params = traits.Dict(mandatory=True, desc=_PARAMS_DESC)
    shared_params = traits.Dict(desc="space and dFC/denoising parameters shared by the maps")
    cohort = traits.Dict(desc="the training cohort's description (workflows.model_card.training_cohort)")


class _ExportOutputSpec(TraitedSpec):
    model_dir = Directory(exists=True, desc="model.safetensors + model_card.json")
    model_files = traits.List(File(exists=True), desc="the files of model_dir")


class ExportModel(StrokefcInterface):
    """Export the final model as safetensors weights with a complete model card."""

    input_spec = _ExportInputSpec
    output_spec = _ExportOutputSpec

    def _run_interface(self, runtime):
        shared = self.inputs.shared_params if isdefined(self.inputs.shared_params) else {}
        model_dir = export_model(
            self.inputs.final_dir,
            self.inputs.grid_file,
            self.inputs.summary_file,
            GroupParams.from_dict(self.inputs.params),
            shared,
            os.path.join(runtime.cwd, "model"),
            cohort=self.inputs.cohort if isdefined(self.inputs.cohort) else None,
            predictions_file=(
                self.inputs.predictions_file if isdefined(self.inputs.predictions_file) else None
            ),
        )
        self._results.update(
            model_dir=model_dir,
            model_files=sorted(
                os.path.join(model_dir, f) for f in os.listdir(model_dir) if not f.startswith(".")
            ),
        )
        return runtime


class _ExplainInputSpec(BaseInterfaceInputSpec):
    saliency_files = traits.List(File(exists=True), mandatory=True, desc="RunFold saliency_file outputs")
    data_file = File(exists=True, mandatory=True, desc="npz from PrepareGroupInputs (parcels, labels)")
    grid_file = File(exists=True, mandatory=True, desc="CNN grid JSON")
    params = traits.Dict(mandatory=True, desc=_PARAMS_DESC)
    space = traits.Str(desc="template space of the maps (recorded in the sidecars)")
    null_saliency = traits.List(
        traits.Dict, desc="per permutation draw, the permuted CNN's region statistic (empty: no null)"
    )


class _ExplainOutputSpec(TraitedSpec):
    saliency_file = File(exists=True, desc="desc-heldoutsaliency_map.nii.gz (lesion-aligned, CNN grid)")
    regions_file = File(exists=True, desc="saliency_regions.tsv (HCPEx parcels, signed)")
    class_saliency_files = traits.List(File(exists=True), desc="class maps and every JSON sidecar")


class _PatternsInputSpec(BaseInterfaceInputSpec):
    data_file = File(exists=True, mandatory=True, desc="npz from PrepareGroupInputs (maps, parcels, labels)")
    grid_file = File(exists=True, mandatory=True, desc="CNN grid JSON")
    folds = traits.List(traits.Dict, mandatory=True, desc="the planned folds (test unit labels)")
    params = traits.Dict(mandatory=True, desc=_PARAMS_DESC)


class _PatternsOutputSpec(TraitedSpec):
    out_files = traits.List(
        File(exists=True), desc="parcel_patterns.tsv and its sidecar (none: not computed)"
    )


class ExplainParcelModel(StrokefcInterface):
    """The primary parcel model's activation patterns over the fold models, with their fold stability."""

    input_spec = _PatternsInputSpec
    output_spec = _PatternsOutputSpec

    def _run_interface(self, runtime):
        self._results["out_files"] = explain_parcel_model(
            self.inputs.data_file,
            self.inputs.grid_file,
            list(self.inputs.folds),
            GroupParams.from_dict(self.inputs.params),
            runtime.cwd,
        )
        return runtime


class ExplainHeldOut(StrokefcInterface):
    """Held-out signed saliency averaged over subjects (and per class), and the HCPEx region ranking."""

    input_spec = _ExplainInputSpec
    output_spec = _ExplainOutputSpec

    def _run_interface(self, runtime):
        out = summarise_saliency(
            self.inputs.saliency_files,
            self.inputs.data_file,
            self.inputs.grid_file,
            GroupParams.from_dict(self.inputs.params),
            runtime.cwd,
            (self.inputs.space if isdefined(self.inputs.space) else "") or None,
            list(self.inputs.null_saliency) if isdefined(self.inputs.null_saliency) else None,
        )
        self._results.update(out._asdict())
        return runtime
