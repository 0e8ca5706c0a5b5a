"""What the participant level's main process imports: no PyTorch or scikit-learn (seconds of CPU per run);
what a group-level node that trains no CNN imports: no PyTorch (a SLURM job of its own starts faster).

The process that plans the run and builds the workflow never trains or predicts; the modules that do
(the CNN, the group report, the validation of predictions) are imported where they are used.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from workflows.labels import is_severe

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "sklearn")


def _loaded(code: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    probe = f"{code}\nimport sys\nprint(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, check=True)
    return out.stdout.split()


def test_the_participant_level_and_its_workflow_import_neither_pytorch_nor_scikit_learn():
    assert _loaded("import bids_app.cli, bids_app.participant_level, workflows.participant") == []


def test_the_probe_sees_a_heavy_import():  # the checks here can fail: the CNN and the models import them
    assert set(_loaded("import workflows.cnn, workflows.models")) == set(HEAVY)


def test_a_group_node_that_trains_no_cnn_starts_without_pytorch():
    """A SLURM job of the group level unpickles its node (the interface module) and runs one step: the
    input preparation, a draw of the linear models, the summary and a parcel model's final fit need no
    PyTorch (over a second of every such job's start), and neither does the driver that builds the graph."""
    code = (
        "import bids_app.group_level, workflows.interfaces.group, workflows.group_inputs, "
        "workflows.permutation, workflows.cv_summary, workflows.export, workflows.activation_patterns"
    )
    assert _loaded(code) == ["sklearn"]


def test_the_group_worker_pool_preloads_pytorch_for_the_folds():
    from nipype.pipeline import engine as pe

    from bids_app.console import preload_modules
    from workflows.interfaces.group import RunFold

    wf = pe.Workflow("w")
    wf.add_nodes([pe.Node(RunFold(), "cv_fold")])
    assert {"torch", "captum.attr", "workflows.cnn", "workflows.interfaces.group"} <= set(
        preload_modules(wf._graph)
    )


@pytest.mark.parametrize(("score", "severe"), [(19.5, True), (20.0, True), (20.5, False)])
def test_the_label_rule_is_inclusive_at_the_threshold(score, severe):
    assert is_severe(score, 20.0) is severe


def test_the_worker_pool_preloads_what_the_interfaces_import_when_they_run():
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    from bids_app.console import preload_modules
    from workflows.interfaces.predict import PredictSubject
    from workflows.interfaces.reportlets import RunReportlets

    wf = pe.Workflow("w")
    wf.add_nodes(
        [
            pe.Node(RunReportlets(), "reportlets"),
            pe.Node(PredictSubject(), "predict"),
            pe.Node(niu.IdentityInterface(["a"]), "ident"),
        ]
    )
    modules = preload_modules(wf._graph)
    wanted = {
        "workflows.plotting",
        "nilearn.plotting",
        "workflows.prediction",
        "workflows.interfaces.reportlets",
    }
    assert wanted <= set(modules)
    assert "nipype.interfaces.utility.base" in modules  # an interface without WORKER_IMPORTS
    assert modules == sorted(modules)
