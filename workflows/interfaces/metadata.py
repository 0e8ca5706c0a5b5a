"""Assemble the JSON sidecar content of a run's derivatives from each step's record."""

from nipype.interfaces.base import BaseInterfaceInputSpec, SimpleInterface, TraitedSpec, traits


class _MergeInputSpec(BaseInterfaceInputSpec):
    denoise_info = traits.Dict(mandatory=True, desc="from DenoiseBold")
    seed_info = traits.Dict(mandatory=True, desc="from MakeSeed")
    dfc_info = traits.Dict(mandatory=True, desc="from ComputeDFC")
    static = traits.Dict(desc="known at build time: lesion side and source, sources, versions")


class _MergeOutputSpec(TraitedSpec):
    meta = traits.Dict(desc="sidecar content")
    warnings = traits.List(traits.Str, desc="warnings for the report")


class MergeMetadata(SimpleInterface):
    """One dictionary per run: every parameter, count and source that made the maps."""

    input_spec = _MergeInputSpec
    output_spec = _MergeOutputSpec

    def _run_interface(self, runtime):
        from workflows.metadata import merge_run_metadata

        meta = merge_run_metadata(self.inputs.denoise_info, self.inputs.seed_info,
                                  self.inputs.dfc_info, self.inputs.static or {})
        self._results.update(meta=meta, warnings=meta.get("Warnings", []))
        return runtime
