"""Writer node for outputs outside the BIDS naming (group tables and maps, the model directory).

Every TSV gets a JSON sidecar describing its columns (:func:`workflows.columns.tsv_sidecar`).

Like niworkflows' ``DerivativesDataSink`` it always runs, even when every upstream node is cached, so a
rerun that reuses the working directory rewrites outputs that were deleted from ``output_dir``.
"""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from workflows.columns import tsv_sidecar
from workflows.utils.atomic import atomic_copy
from workflows.utils.bids import sidecar_path
from workflows.utils.io import atomic_write_json, read_tsv_header


class _CopyInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="files to write (names are kept)")
    out_dir = traits.Str(mandatory=True, desc="destination folder (created when missing)")


class _CopyOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="written files")


class WriteOutputs(SimpleInterface):
    """Copy files (an image's JSON sidecar with it; a TSV gets its column sidecar) atomically; always runs."""

    input_spec = _CopyInputSpec
    output_spec = _CopyOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        out_dir = Path(self.inputs.out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        sources = list(self.inputs.in_files)
        sources += [str(sidecar_path(s)) for s in sources if str(s).endswith((".nii", ".nii.gz"))]
        tables = {str(Path(s).with_suffix(".json")) for s in sources if str(s).endswith(".tsv")}
        sources = [s for s in sources if str(s) not in tables]  # a table's own sidecar is merged below
        for src in [s for s in dict.fromkeys(sources) if Path(s).exists()]:
            dst = atomic_copy(src, out_dir / Path(src).name)
            written.append(str(dst))
            if dst.suffix == ".tsv":  # column descriptions, under what the step put in its own sidecar
                own = Path(src).with_suffix(".json")
                meta = tsv_sidecar(read_tsv_header(dst))
                meta.update(json.loads(own.read_text()) if own.exists() else {})
                written.append(str(atomic_write_json(dst.with_suffix(".json"), meta)))
        self._results["out_files"] = written
        return runtime
