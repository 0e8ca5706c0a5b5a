"""The benchmark records on the ``benchmarks`` page (a Sphinx ``source-read`` hook, no Sphinx import:
the test suite checks it without the docs extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The dated benchmark records, included in full by the ``benchmarks`` page (newest first).
RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results"


def include_results(app: Any, docname: str, source: list[str]) -> None:
    """Append every ``benchmarks/results/*.md`` to the ``benchmarks`` page, so a new record needs no
    docs edit (``source-read`` hook)."""
    if docname != "benchmarks":
        return
    parts = []
    for path in sorted(RESULTS.glob("*.md"), key=lambda p: (p.stem[-10:], p.stem), reverse=True):
        parts.append(f"\n```{{include}} ../benchmarks/results/{path.name}\n:heading-offset: 1\n```\n")
    source[0] += "".join(parts)
