"""TemplateFlow's template names without its pybids index (workflows.interfaces.template_names)."""

import json
import os
import subprocess
import sys
import zipfile
from importlib.util import find_spec
from pathlib import Path

import pytest

from workflows.interfaces.template_names import _NamesFirstLayout, install, template_names

templateflow = pytest.importorskip("templateflow")
from templateflow.client import TemplateFlowClient  # noqa: E402
from templateflow.conf.cache import CacheConfig, TemplateFlowCache  # noqa: E402


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A TemplateFlow home from templateflow's own stub: every description, a few image placeholders,
    and what pybids' index leaves out (an empty template folder, scripts, hidden files)."""
    skeleton = (
        Path(find_spec("templateflow").submodule_search_locations[0]) / "conf" / "templateflow-skel.zip"
    )
    root = tmp_path / "templateflow"
    with zipfile.ZipFile(skeleton) as archive:
        names = archive.namelist()
        wanted = [n for n in names if n.endswith("template_description.json")]
        wanted += [n for n in names if n.startswith("tpl-MNI152NLin2009cAsym/") and "_T1w.nii.gz" in n][:3]
        archive.extractall(root, wanted)
    (root / "tpl-Empty").mkdir()
    (root / "scripts").mkdir()
    (root / "scripts" / "tpl-Script.py").write_text("")
    (root / ".hidden").write_text("")
    return root


def _client(root: Path) -> TemplateFlowClient:
    return TemplateFlowClient(cache=TemplateFlowCache(CacheConfig(root=root, autoupdate=False)))


def test_names_are_the_indexed_templates(home: Path) -> None:
    indexed = _client(home).templates()  # pybids' index of the whole home
    assert "MNI152NLin2009cAsym" in indexed
    assert "Empty" not in indexed
    assert template_names(home) == indexed


def test_stand_in_answers_names_and_metadata_without_an_index(home: Path) -> None:
    client = _client(home)
    assert install(client.cache)
    assert install(client.cache)  # idempotent
    assert client.templates() == template_names(home)
    meta = client.get_metadata("MNI152NLin2009cAsym")  # what the sink reads for a res- output's sidecar
    assert meta == json.loads((home / "tpl-MNI152NLin2009cAsym" / "template_description.json").read_text())
    assert isinstance(client.cache.__dict__["layout"], _NamesFirstLayout)  # still no index


def test_any_other_query_builds_the_real_index(home: Path) -> None:
    client = _client(home)
    install(client.cache)
    found = client.ls("MNI152NLin2009cAsym", suffix="T1w", extension=".nii.gz")
    assert found
    assert all(p.name.endswith("_T1w.nii.gz") for p in found)
    assert not isinstance(client.cache.__dict__["layout"], _NamesFirstLayout)  # the real one replaced it
    assert client.templates() == template_names(home)
    assert client.templates(suffix="T1w") == ["MNI152NLin2009cAsym"]  # filters go to the index


def test_a_built_index_is_left_alone(home: Path) -> None:
    client = _client(home)
    client.templates()  # builds the real layout
    assert not install(client.cache)
    assert not isinstance(client.cache.__dict__["layout"], _NamesFirstLayout)


def test_importing_the_sink_leaves_templateflow_unindexed(home: Path) -> None:
    """In a fresh process (as strokefc and each Nipype forkserver are), with a real home."""
    code = (
        "import templateflow.conf as c, workflows.interfaces.bids as b;"
        "layout = c._cache.__dict__['layout'];"
        "assert type(layout).__name__ == '_NamesFirstLayout', layout;"
        "print(','.join(b.DerivativesDataSink._standard_spaces))"
    )
    env = dict(os.environ, TEMPLATEFLOW_HOME=str(home), PYTHONPATH=str(Path(__file__).parents[1]))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().split(",") == template_names(home)
