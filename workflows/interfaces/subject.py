"""Subject-level aggregation of run maps (window-count-weighted mean)."""

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    TraitedSpec,
    traits,
)

from workflows.dfc import weighted_mean_maps
from workflows.interfaces.base import StrokefcInterface


class _AggregateInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="run-level maps")
    dfc_infos = traits.List(traits.Dict, mandatory=True, desc="ComputeDFC info of each run")
    run_metas = traits.List(traits.Dict, mandatory=True, desc="sidecar content of each run")
    static = traits.Dict(desc="subject-level sidecar fields")


class _AggregateOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="subject-level map")
    meta = traits.Dict(desc="sidecar content")


class AggregateRuns(StrokefcInterface):
    """Average run maps weighted by their valid windows; record the runs and weights."""

    input_spec = _AggregateInputSpec
    output_spec = _AggregateOutputSpec

    def _run_interface(self, runtime):
        weights = [info["WindowsKept"] for info in self.inputs.dfc_infos]
        img = weighted_mean_maps(list(self.inputs.in_files), weights)
        out = os.path.join(runtime.cwd, "subject_dfcsd.nii.gz")
        img.to_filename(out)
        first = self.inputs.run_metas[0]
        shared = {k: v for k, v in first.items() if all(m.get(k) == v for m in self.inputs.run_metas[1:])}
        meta = {
            **shared,
            **(self.inputs.static or {}),
            "Description": "Subject-level dFC variability: mean of the run maps weighted by "
            "their number of valid windows",
            "RunWeights_windows": weights,
            "Sources": [s for m in self.inputs.run_metas for s in m.get("Sources", [])[:1]],
        }
        self._results.update(out_file=out, meta=meta)
        return runtime
