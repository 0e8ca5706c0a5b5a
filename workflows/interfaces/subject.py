"""Subject-level aggregation of run maps (window-count-weighted mean)."""

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    TraitedSpec,
    isdefined,
    traits,
)

from workflows.dfc import weighted_mean_maps
from workflows.interfaces.base import StrokefcInterface


class _AggregateInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="run-level maps")
    dfc_infos = traits.List(traits.Dict, mandatory=True, desc="ComputeDFC info of each run")
    run_metas = traits.List(traits.Dict, mandatory=True, desc="sidecar content of each run")
    static = traits.Dict(desc="subject-level sidecar fields")
    run_maps = traits.List(
        traits.Dict, desc="each run's maps by name (ComputeDFC.maps): every one is averaged too"
    )


class _AggregateOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="subject-level map")
    out_maps = traits.Dict(desc="subject-level map of every name in run_maps (dfcsd: out_file)")
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
        out_maps = {"dfcsd": out}
        run_maps = self.inputs.run_maps if isdefined(self.inputs.run_maps) else []
        for key in [k for k in (run_maps[0] if run_maps else {}) if k != "dfcsd"]:
            if not all(key in m for m in run_maps):
                continue
            label = key.partition("_")[2]  # another window length: weighted by its own windows
            key_weights = [
                info["OtherTimescales"][label]["WindowsKept"] if label else info["WindowsKept"]
                for info in self.inputs.dfc_infos
            ]
            path = os.path.join(runtime.cwd, f"subject_{key}.nii.gz")
            weighted_mean_maps([m[key] for m in run_maps], key_weights).to_filename(path)
            out_maps[key] = path
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
        others = [m.get("OtherTimescales", {}) for m in self.inputs.run_metas]
        if others[0]:  # the other window lengths' records: what their runs share (the window length)
            meta["OtherTimescales"] = {
                label: {k: v for k, v in rec.items() if all(o.get(label, {}).get(k) == v for o in others[1:])}
                for label, rec in others[0].items()
            }
        self._results.update(out_file=out, out_maps=out_maps, meta=meta)
        return runtime
