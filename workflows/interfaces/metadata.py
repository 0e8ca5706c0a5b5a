"""Assemble the JSON sidecar content of a run's derivatives from each step's record."""

from nipype.interfaces.base import BaseInterfaceInputSpec, TraitedSpec, isdefined, traits

from workflows.columns import tsv_sidecar
from workflows.interfaces.base import StrokefcInterface
from workflows.metadata import merge_run_metadata
from workflows.utils.bids import bids_uri
from workflows.utils.io import read_tsv_header


class _MergeInputSpec(BaseInterfaceInputSpec):
    denoise_info = traits.Dict(mandatory=True, desc="from DenoiseBold")
    seed_info = traits.Dict(mandatory=True, desc="from MakeSeed")
    dfc_info = traits.Dict(mandatory=True, desc="from ComputeDFC")
    lesion_info = traits.Dict(desc="from LesionOnGrid, when the subject has a lesion mask")
    lag_info = traits.Dict(desc="from HemodynamicLag")
    static = traits.Dict(desc="known at build time: lesion side and source, versions, repetition time")
    source_files = traits.List(traits.Str, desc="input files of the run (recorded as Sources)")
    dataset_root = traits.Str(desc="the fMRIPrep dataset the sources belong to (for bids: URIs)")


class _MergeOutputSpec(TraitedSpec):
    meta = traits.Dict(desc="sidecar content")
    warnings = traits.List(traits.Str, desc="warnings for the report")


class MergeMetadata(StrokefcInterface):
    """One dictionary per run: every parameter, count and source that made the maps."""

    input_spec = _MergeInputSpec
    output_spec = _MergeOutputSpec

    def _run_interface(self, runtime):
        static = dict(self.inputs.static or {})
        if isdefined(self.inputs.source_files):
            static["Sources"] = [bids_uri(f, self.inputs.dataset_root) for f in self.inputs.source_files]
        lesion = self.inputs.lesion_info if isdefined(self.inputs.lesion_info) else None
        lag = self.inputs.lag_info if isdefined(self.inputs.lag_info) else None
        meta = merge_run_metadata(
            self.inputs.denoise_info, self.inputs.seed_info, self.inputs.dfc_info, static, lesion, lag
        )
        self._results.update(meta=meta, warnings=meta.get("Warnings", []))
        return runtime


class _TSVSidecarInputSpec(BaseInterfaceInputSpec):
    in_file = traits.File(exists=True, mandatory=True, desc="a tab-separated table with a header")
    description = traits.Str("", usedefault=True, desc="what the table is (the sidecar's Description)")
    extra = traits.Dict(desc="further sidecar entries (e.g. the atlases of named regions)")


class _TSVSidecarOutputSpec(TraitedSpec):
    meta = traits.Dict(desc="BIDS TSV sidecar: every column's description and units")


class TSVSidecar(StrokefcInterface):
    """The JSON sidecar of a table from its header (:func:`workflows.columns.tsv_sidecar`), for a sink."""

    input_spec = _TSVSidecarInputSpec
    output_spec = _TSVSidecarOutputSpec

    def _run_interface(self, runtime):
        meta = tsv_sidecar(read_tsv_header(self.inputs.in_file), self.inputs.description)
        self._results["meta"] = {**meta, **(self.inputs.extra if isdefined(self.inputs.extra) else {})}
        return runtime
