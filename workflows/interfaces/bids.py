"""strokefc's ``DerivativesDataSink``: niworkflows' sink with strokefc's entities and path patterns."""

import json
from importlib.resources import files

from nipype.interfaces.base import File, InputMultiObject
from niworkflows.interfaces.bids import DerivativesDataSink as _NiworkflowsSink

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
    """

    input_spec = _SinkInputSpec
    out_path_base = ""
    _config_entities = frozenset(e["name"] for e in _CONFIG["entities"])
    _config_entities_dict = _CONFIG["entities"]
    _file_patterns = tuple(_CONFIG["default_path_patterns"])
