"""The documentation site is wired: its configuration loads, every page is reachable, the generated
parts point at real code, and CI builds it with warnings as errors.

Sphinx is not a test dependency (``make docs`` installs the ``docs`` extra, and ``.ci/run`` runs it),
so these checks need none; the full build runs here only where Sphinx is installed.
"""

import re
import runpy
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def test_conf_loads_and_names_its_extensions():
    conf = runpy.run_path(str(DOCS / "conf.py"))
    assert {"myst_parser", "sphinxarg.ext", "strokefc_tables"} <= set(conf["extensions"])
    from bids_app import __version__

    assert conf["release"] == __version__


def test_every_page_is_in_the_toctree():
    index = (DOCS / "index.md").read_text()
    block = re.search(r"```\{toctree\}(.*?)```", index, re.S).group(1)
    listed = {
        line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith(":")
    }
    pages = {p.stem for p in DOCS.glob("*.md")} - {"index"}
    assert pages <= listed, f"pages missing from index.md's toctree: {sorted(pages - listed)}"
    assert not listed - pages, "toctree names a missing page"


def test_generated_parts_point_at_real_code():
    usage = (DOCS / "usage.md").read_text()
    module = re.search(r":module: (\S+)", usage).group(1)
    func = re.search(r":func: (\S+)", usage).group(1)
    parser = getattr(__import__(module, fromlist=[func]), func)()
    assert parser.prog == "strokefc"
    options = {o for a in parser._actions for o in a.option_strings}
    for flag in ("--fs-license-file", "--notrack", "--output-spaces", "--derivatives"):
        assert flag in options
        assert flag in usage  # the habits table (the generated reference lists every option)
    assert "{column-table}" in (DOCS / "outputs.md").read_text()


def test_benchmark_records_are_all_included(monkeypatch):
    monkeypatch.syspath_prepend(str(DOCS / "_ext"))
    import strokefc_results

    source = [""]
    strokefc_results.include_results(None, "benchmarks", source)
    records = sorted((ROOT / "benchmarks" / "results").glob("*.md"))
    assert records
    for record in records:
        assert f"../benchmarks/results/{record.name}" in source[0]
    other = [""]
    strokefc_results.include_results(None, "usage", other)
    assert other == [""]


def test_make_docs_fails_on_warnings_and_ci_runs_it():
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^docs:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    assert "sphinx -W" in recipe
    assert "make docs" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.integration
def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    pytest.importorskip("sphinxarg")
    from sphinx.cmd.build import build_main

    assert build_main(["-W", "-q", "-n", "-b", "html", str(DOCS), str(tmp_path / "html")]) == 0
    usage = (tmp_path / "html" / "usage.html").read_text()
    assert "--output-spaces" in usage
    assert "stat-dfcexcess" in (tmp_path / "html" / "outputs.html").read_text()
