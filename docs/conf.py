"""Sphinx configuration of the strokefc documentation (``make docs``: built with -W, warnings fail).

Pages are MyST markdown; the command-line reference is generated from ``bids_app.parser.build_parser``
(sphinx-argparse) and the TSV column tables from ``workflows.columns`` (``_ext/strokefc_tables.py``), so
neither can drift from the code.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout, not an installed copy
sys.path.insert(0, str(Path(__file__).parent / "_ext"))

from bids_app import __version__  # noqa: E402

project = "strokefc"
author = "strokefc developers"
copyright = "2026, strokefc developers (Apache-2.0)"
version = release = __version__

extensions = ["myst_parser", "sphinxarg.ext", "strokefc_tables"]
source_suffix = {".md": "markdown"}
myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
exclude_patterns = ["_build"]
# The benchmark records (benchmarks/results/*.md, included unchanged on the benchmarks page) are dated
# files whose sections start at level 3; they are records, not rewritten for the site.
suppress_warnings = ["myst.header"]
html_theme = "alabaster"
html_theme_options = {"description": "Dynamic functional connectivity in stroke, as a BIDS App"}
