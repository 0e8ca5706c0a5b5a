"""What the participant level's main process imports: no PyTorch or scikit-learn (seconds of CPU per run).

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


def test_the_probe_sees_a_heavy_import():  # the check above can fail: the group level does import them
    assert set(_loaded("import bids_app.reports.group")) == set(HEAVY)


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
