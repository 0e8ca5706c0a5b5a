"""strokefc's ``DerivativesDataSink``: niworkflows' sink with strokefc's entities and path patterns."""

import json
from importlib.resources import files

from niworkflows.interfaces.bids import DerivativesDataSink as _NiworkflowsSink

_CONFIG = json.loads(files("workflows").joinpath("data/strokefc_bids_config.json").read_text())


class DerivativesDataSink(_NiworkflowsSink):
    """Write a derivative named from the fMRIPrep source plus ``seed-``/``stat-`` entities.

    ``out_path_base = ''`` puts files straight under ``base_directory`` (the output dataset); the
    patterns carry ``res`` once (niworkflows' default patterns double it for fMRIPrep sources).
    """

    out_path_base = ""
    _config_entities = frozenset(e["name"] for e in _CONFIG["entities"])
    _config_entities_dict = _CONFIG["entities"]
    _file_patterns = tuple(_CONFIG["default_path_patterns"])
