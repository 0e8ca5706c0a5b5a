"""The import contracts hold (strokefc_sim > bids_app > workflows; plain steps; a leaf utils; an order in
bids_app), they catch a module nobody listed, and no import cycle exists."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("bids_app", "workflows", "strokefc_sim")


def lint_imports(root: Path) -> tuple[subprocess.CompletedProcess, int]:
    """``lint-imports`` on the tree at ``root``: the process and its number of broken contracts."""
    exe = Path(sys.executable).parent / "lint-imports"
    env = {**os.environ, "PYTHONPATH": str(root), "COLUMNS": "500"}  # one contract per line
    proc = subprocess.run(
        [str(exe), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
    )
    summary = re.search(r"Contracts: \d+ kept, (\d+) broken\.", proc.stdout)
    assert summary, proc.stdout + proc.stderr
    return proc, int(summary.group(1))


def test_import_contracts_are_kept():
    proc, broken = lint_imports(REPO)
    assert broken == 0, proc.stdout
    assert proc.returncode == 0


@pytest.fixture
def tree(tmp_path):
    """A copy of the packages, the contracts and their contract type, to plant modules in."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    (tmp_path / "tests").mkdir()
    shutil.copy(REPO / "tests" / "import_contracts.py", tmp_path / "tests")
    return tmp_path


STEPS_ARE_PLAIN = "Steps are plain"
LAYERS = "strokefc_sim (simulator) -> bids_app"
UTILS_LEAF = "workflows.utils is a leaf"
BIDS_APP_ORDER = "bids_app: cli >"


@pytest.mark.parametrize(
    ("planted", "contract"),
    [
        ({"workflows/new_step.py": "import nipype\n"}, STEPS_ARE_PLAIN),
        ({"workflows/new_step.py": "from niworkflows.utils import misc\n"}, STEPS_ARE_PLAIN),
        ({"workflows/new_step.py": "from workflows.interfaces import base\n"}, STEPS_ARE_PLAIN),
        ({"workflows/new_step.py": "def f():\n    from workflows import participant\n"}, STEPS_ARE_PLAIN),
        # a step reaching Nipype through a builder module that does not exist today
        (
            {
                "workflows/outputs.py": "import nipype\n",
                "workflows/new_step.py": "import workflows.outputs\n",
            },
            STEPS_ARE_PLAIN,
        ),
        ({"workflows/new_step.py": "import bids_app\n"}, LAYERS),
        ({"workflows/new_step.py": "import strokefc_sim\n"}, LAYERS),
        ({"bids_app/new_helper.py": "from strokefc_sim import simulate_cohort\n"}, LAYERS),
        ({"workflows/utils/new_util.py": "from workflows import dfc\n"}, UTILS_LEAF),
        ({"bids_app/config.py": "from bids_app import cli\n"}, BIDS_APP_ORDER),
    ],
    ids=lambda v: next(iter(v.values())).strip() if isinstance(v, dict) else None,
)
def test_a_planted_import_breaks_its_contract(tree, planted, contract):
    for path, code in planted.items():
        target = tree / path
        target.write_text((target.read_text() if target.exists() else "") + code)
    proc, broken = lint_imports(tree)
    assert broken == 1, proc.stdout
    assert re.search(rf"^{re.escape(contract)}.* BROKEN$", proc.stdout, re.M), proc.stdout


def test_a_new_builder_module_may_import_nipype(tree):
    (tree / "workflows" / "outputs.py").write_text("import nipype\nfrom workflows.interfaces import base\n")
    proc, broken = lint_imports(tree)
    assert broken == 0, proc.stdout


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
    graph = grimp.build_graph(*PACKAGES)
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
