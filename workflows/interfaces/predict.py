"""Prediction of one subject with a trained model (safetensors weights + JSON model card)."""

import json
import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    TraitedSpec,
    isdefined,
    traits,
)

from workflows.interfaces.base import StrokefcInterface
from workflows.utils.bids import bids_uri

#: Imported by the interface when it runs (PyTorch), not by the process that builds the workflow;
#: a pool of Nipype workers may import them ahead, once, for all its workers.
WORKER_IMPORTS = ("workflows.prediction",)


class _PredictInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="subject-level dFC SD map")
    model_dir = Directory(exists=True, mandatory=True, desc="model.safetensors + model_card.json")
    lesion_side = traits.Enum("L", "R", mandatory=True, desc="lesion hemisphere (for alignment)")
    subject = traits.Str(mandatory=True, desc="label without sub-")
    space = traits.Str(mandatory=True, desc="template space of the map")
    meta = traits.Dict(desc="sidecar of a run map (shared parameters are checked)")
    lesion_masks = traits.List(
        File(exists=True), desc="the subject's lesion masks: out of the input, as in training"
    )
    derivative_file = traits.Either(
        File(exists=True),
        traits.List(File(exists=True)),
        desc="in_file as written in the output dataset (recorded as a bids:: URI)",
    )
    output_dir = traits.Str(desc="the output dataset (root of the bids:: URI)")
    model_uri = traits.Str(desc="the model as a BIDS URI (bids:model:...), recorded instead of its path")


class _PredictOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="prediction JSON")
    prob_severe = traits.Float(desc="probability of severe impairment (NaN for a regression model)")


class PredictSubject(StrokefcInterface):
    """Check the model against the subject's map, then predict (refusing mismatches)."""

    input_spec = _PredictInputSpec
    output_spec = _PredictOutputSpec

    def _map_uri(self) -> str | None:
        """``bids::<path>`` of the written map (the sink's ``out_file``), when it is known."""
        written = self.inputs.derivative_file
        if not isdefined(written) or not isdefined(self.inputs.output_dir):
            return None
        written = written[0] if isinstance(written, list) else written
        return bids_uri(written, self.inputs.output_dir, "")

    def _run_interface(self, runtime):
        # imported here (PyTorch): the process that builds the workflow never predicts
        from workflows.prediction import predict_subject

        result = predict_subject(
            self.inputs.in_file,
            self.inputs.model_dir,
            subject=self.inputs.subject,
            lesion_side=self.inputs.lesion_side,
            space=self.inputs.space,
            meta=self.inputs.meta,
            lesion_files=self.inputs.lesion_masks if isdefined(self.inputs.lesion_masks) else (),
            map_uri=self._map_uri(),
            model_uri=self.inputs.model_uri if isdefined(self.inputs.model_uri) else None,
        )
        out = os.path.join(runtime.cwd, "prediction.json")
        with open(out, "w") as fh:
            json.dump(result, fh, indent=2, sort_keys=True)
        prob = result["prob_severe"]
        self._results.update(out_file=out, prob_severe=float("nan") if prob is None else prob)
        return runtime
