"""strokefc's ``DerivativesDataSink``: niworkflows' sink with strokefc's entities and path patterns,
writing atomically."""

import json
import shutil
from importlib.resources import files
from pathlib import Path

from nipype.interfaces.base import File, InputMultiObject, isdefined

from workflows.interfaces import template_names
from workflows.utils.atomic import atomic_move

template_names.install()  # before niworkflows' sink module, which lists TemplateFlow's templates on import

from niworkflows.interfaces.bids import DerivativesDataSink as _NiworkflowsSink  # noqa: E402

_CONFIG = json.loads(files("workflows").joinpath("data/strokefc_bids_config.json").read_text())


class _SinkInputSpec(_NiworkflowsSink.input_spec):
    # the source only names the output: hashed by its path, not by reading it (Nipype's content hash
    # read a 2 mm BOLD of 100 MB once per sink, 17 times per run: about 5-10 s)
    source_file = InputMultiObject(
        File(exists=False),
        mandatory=True,
        hash_files=False,
        desc="the source file(s) to extract entities from (hashed by path)",
    )


class DerivativesDataSink(_NiworkflowsSink):
    """Write a derivative named from the fMRIPrep source plus ``seed-``/``stat-`` entities.

    ``out_path_base = ''`` puts files straight under ``base_directory`` (the output dataset); the
    patterns carry ``res`` once (niworkflows' default patterns double it for fMRIPrep sources).

    niworkflows writes in place (a killed run left a truncated map under its final name): here it
    writes into a staging folder in the node's working directory, and each file is then moved into
    the output dataset atomically (:func:`workflows.utils.atomic.atomic_move`), the sidecar before
    its data, so a map never appears without its sidecar nor half-written.
    """

    input_spec = _SinkInputSpec
    out_path_base = ""
    _config_entities = frozenset(e["name"] for e in _CONFIG["entities"])
    _config_entities_dict = _CONFIG["entities"]
    _file_patterns = tuple(_CONFIG["default_path_patterns"])

    def _run_interface(self, runtime):
        final = Path(self.inputs.base_directory if isdefined(self.inputs.base_directory) else runtime.cwd)
        final = final.absolute()
        staging = Path(runtime.cwd) / "staging"
        shutil.rmtree(staging, ignore_errors=True)
        self.inputs.base_directory = str(staging)
        try:
            runtime = super()._run_interface(runtime)
        finally:
            self.inputs.base_directory = str(final)
        meta = self._results.get("out_meta")
        if meta:  # a single written file has its sidecar
            self._results["out_meta"] = str(atomic_move(meta, final / Path(meta).relative_to(staging)))
        self._results["out_file"] = [
            str(atomic_move(path, final / Path(path).relative_to(staging)))
            for path in self._results["out_file"]
        ]
        shutil.rmtree(staging, ignore_errors=True)
        return runtime
