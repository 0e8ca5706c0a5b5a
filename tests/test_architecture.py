"""The layers hold: bids_app -> workflows only, plain steps without Nipype, a leaf utils, no import cycle."""

import subprocess
import sys
from pathlib import Path

import grimp

REPO = Path(__file__).resolve().parents[1]


def test_import_contracts_are_kept():
    exe = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run(
        [str(exe), "--config", str(REPO / "pyproject.toml")], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 kept, 0 broken" in proc.stdout


def _cycles(graph) -> list[list[str]]:
    """Every module-level import cycle (depth-first search; each cycle reported once)."""
    modules = sorted(graph.modules)
    colour, stack, cycles = dict.fromkeys(modules, 0), [], []

    def visit(module: str) -> None:
        colour[module] = 1
        stack.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in colour:
                continue
            if colour[imported] == 1:
                cycles.append([*stack[stack.index(imported) :], imported])
            elif colour[imported] == 0:
                visit(imported)
        stack.pop()
        colour[module] = 2

    for module in modules:
        if colour[module] == 0:
            visit(module)
    return cycles


def test_no_import_cycle():
    graph = grimp.build_graph("bids_app", "workflows")
    # a package's __init__ importing its own submodules is not a cycle between modules
    cycles = [c for c in _cycles(graph) if not all(m.startswith(c[0] + ".") or m == c[0] for m in c)]
    assert cycles == []


def test_the_cycle_finder_finds_cycles():
    class Graph:
        modules = frozenset({"a", "b", "c"})

        @staticmethod
        def find_modules_directly_imported_by(module):
            return {"a": {"b"}, "b": {"c"}, "c": {"a"}}[module]

    assert _cycles(Graph()) == [["a", "b", "c", "a"]]
