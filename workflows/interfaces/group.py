"""Group-level interfaces: each calls one step function of :mod:`workflows.group`."""

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _PrepareInputSpec(BaseInterfaceInputSpec):
    subjects = traits.List(traits.Dict, mandatory=True,
                           desc="dicts with label, map_file, windows_file, lesion_side, score")
    settings = traits.Dict(mandatory=True, desc="group-level settings (workflows.group.settings_from_config)")
    group_dir = traits.Str(mandatory=True, desc="output_dir/group (cohort.tsv and class maps go there)")


class _PrepareOutputSpec(TraitedSpec):
    data_file = File(exists=True, desc="npz with samples x, labels y, subject groups and subject maps")
    grid_file = File(exists=True, desc="JSON description of the CNN grid")


class PrepareGroupInputs(SimpleInterface):
    """Lesion-align, mask, crop and resample every map onto the CNN grid."""

    input_spec = _PrepareInputSpec
    output_spec = _PrepareOutputSpec

    def _run_interface(self, runtime):
        from workflows.group import prepare_inputs

        data, grid = prepare_inputs(self.inputs.subjects, self.inputs.settings, self.inputs.group_dir,
                                    runtime.cwd)
        self._results.update(data_file=data, grid_file=grid)
        return runtime


class _RunFoldInputSpec(BaseInterfaceInputSpec):
    data_file = File(exists=True, mandatory=True, desc="npz from PrepareGroupInputs")
    fold = traits.Dict(mandatory=True, desc="{repeat, fold, test: [subject labels]}")
    settings = traits.Dict(mandatory=True, desc="group-level settings")


class _RunFoldOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="JSON with the fold's predictions, metrics and training curve")


class RunFold(SimpleInterface):
    """Fit the CNN and the baseline on one fold's training subjects; predict its test subjects."""

    input_spec = _RunFoldInputSpec
    output_spec = _RunFoldOutputSpec

    def _run_interface(self, runtime):
        from workflows.group import run_fold

        self._results["out_file"] = run_fold(self.inputs.data_file, self.inputs.fold, self.inputs.settings,
                                             runtime.cwd)
        return runtime


class _RunPermutationInputSpec(BaseInterfaceInputSpec):
    data_file = File(exists=True, mandatory=True, desc="npz from PrepareGroupInputs")
    index = traits.Int(mandatory=True, desc="index of the permutation (seeds the shuffle)")
    settings = traits.Dict(mandatory=True, desc="group-level settings")


class _RunPermutationOutputSpec(TraitedSpec):
    null_balanced_accuracy = traits.Float(desc="mean balanced accuracy on permuted labels")


class RunPermutation(SimpleInterface):
    """One draw of the label-permutation null distribution (CNN, one repeat of k-fold)."""

    input_spec = _RunPermutationInputSpec
    output_spec = _RunPermutationOutputSpec

    def _run_interface(self, runtime):
        from workflows.group import run_permutation

        self._results["null_balanced_accuracy"] = run_permutation(self.inputs.data_file, self.inputs.index,
                                                                  self.inputs.settings)
        return runtime


class _SummariseInputSpec(BaseInterfaceInputSpec):
    fold_files = traits.List(File(exists=True), mandatory=True, desc="outputs of RunFold")
    null = traits.List(traits.Float, desc="permutation null balanced accuracies (empty: no test)")
    data_file = File(exists=True, mandatory=True, desc="npz from PrepareGroupInputs")
    settings = traits.Dict(mandatory=True, desc="group-level settings")
    group_dir = traits.Str(mandatory=True, desc="output_dir/group")


class _SummariseOutputSpec(TraitedSpec):
    summary_file = File(exists=True, desc="cv_summary.json")


class SummariseCV(SimpleInterface):
    """Write cv_predictions.tsv, training_curves.tsv and cv_summary.json from the folds."""

    input_spec = _SummariseInputSpec
    output_spec = _SummariseOutputSpec

    def _run_interface(self, runtime):
        from nipype.interfaces.base import isdefined

        from workflows.group import summarise_cv

        null = list(self.inputs.null) if isdefined(self.inputs.null) else []
        self._results["summary_file"] = summarise_cv(self.inputs.fold_files, null, self.inputs.data_file,
                                                     self.inputs.settings, self.inputs.group_dir)
        return runtime


class _TrainFinalInputSpec(BaseInterfaceInputSpec):
    data_file = File(exists=True, mandatory=True, desc="npz from PrepareGroupInputs")
    settings = traits.Dict(mandatory=True, desc="group-level settings")


class _TrainFinalOutputSpec(TraitedSpec):
    out_dir = Directory(exists=True, desc="final model (safetensors + partial card)")


class TrainFinal(SimpleInterface):
    """Train the final model on every labelled subject."""

    input_spec = _TrainFinalInputSpec
    output_spec = _TrainFinalOutputSpec

    def _run_interface(self, runtime):
        from workflows.group import train_final

        self._results["out_dir"] = train_final(self.inputs.data_file, self.inputs.settings, runtime.cwd)
        return runtime


class _ExportInputSpec(BaseInterfaceInputSpec):
    final_dir = Directory(exists=True, mandatory=True, desc="output of TrainFinal")
    grid_file = File(exists=True, mandatory=True, desc="CNN grid JSON")
    summary_file = File(exists=True, mandatory=True, desc="cv_summary.json (CV metrics go in the card)")
    settings = traits.Dict(mandatory=True, desc="group-level settings")
    shared_params = traits.Dict(desc="space and dFC/denoising parameters shared by the maps")
    model_dir = traits.Str(mandatory=True, desc="output_dir/model")


class _ExportOutputSpec(TraitedSpec):
    model_dir = Directory(exists=True, desc="model.safetensors + model_card.json")


class ExportModel(SimpleInterface):
    """Export the final model as safetensors weights with a complete model card."""

    input_spec = _ExportInputSpec
    output_spec = _ExportOutputSpec

    def _run_interface(self, runtime):
        from workflows.group import export_model

        self._results["model_dir"] = export_model(
            self.inputs.final_dir, self.inputs.grid_file, self.inputs.summary_file, self.inputs.settings,
            self.inputs.shared_params, os.path.abspath(self.inputs.model_dir))
        return runtime


class _ExplainInputSpec(BaseInterfaceInputSpec):
    data_file = File(exists=True, mandatory=True, desc="npz from PrepareGroupInputs")
    model_dir = Directory(exists=True, mandatory=True, desc="exported model (loaded safely)")
    settings = traits.Dict(mandatory=True, desc="group-level settings")
    group_dir = traits.Str(mandatory=True, desc="output_dir/group")


class _ExplainOutputSpec(TraitedSpec):
    saliency_file = File(exists=True, desc="desc-saliency_map.nii.gz (lesion-aligned, CNN grid)")
    regions_file = File(exists=True, desc="top_regions.tsv (AAL)")


class ExplainModel(SimpleInterface):
    """Integrated-gradients saliency averaged over subjects and the AAL region ranking."""

    input_spec = _ExplainInputSpec
    output_spec = _ExplainOutputSpec

    def _run_interface(self, runtime):
        from workflows.group import explain_model

        sal, regions = explain_model(self.inputs.data_file, self.inputs.model_dir, self.inputs.settings,
                                     self.inputs.group_dir)
        self._results.update(saliency_file=sal, regions_file=regions)
        return runtime
