"""Shared fixtures: a seeded RNG, paths to the shared real data, and a small generated cohort."""

import os

# One BLAS/OpenMP thread per test process, set before numpy and torch start their thread pools (child
# processes inherit it): `make test` runs 2 xdist workers on 2 cores, and oversubscribed OpenBLAS threads
# spin, which made a 120 x 570 SVD take 1-7 s instead of 20 ms on a shared machine.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def _template_names_only() -> str | None:
    """A TemplateFlow home with each template's description and nothing else, from the skeleton that
    templateflow ships (None if it is not found).

    Importing niworkflows' sink lists TemplateFlow's templates, which indexes all ~2,600 files of the
    home with pybids: about 6 s of CPU in every strokefc process and every Nipype forkserver, some 100
    times in the suite. strokefc reads no TemplateFlow file; the template names, all the sink uses, are
    the same here (one description per template), and indexing them takes well under a second.
    """
    import atexit
    import importlib.util
    import shutil
    import tempfile
    import zipfile
    from pathlib import Path

    spec = importlib.util.find_spec("templateflow")  # found, not imported: it reads the variable once
    skeleton = Path(spec.submodule_search_locations[0]) / "conf" / "templateflow-skel.zip" if spec else None
    if skeleton is None or not skeleton.is_file():
        return None
    home = tempfile.mkdtemp(prefix="strokefc-tests-templateflow-")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    with zipfile.ZipFile(skeleton) as archive:
        archive.extractall(home, [n for n in archive.namelist() if n.endswith("template_description.json")])
    return home


if "TEMPLATEFLOW_HOME" not in os.environ and (_home := _template_names_only()):
    os.environ["TEMPLATEFLOW_HOME"] = _home  # child processes (strokefc, Nipype's workers) inherit it

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from helpers import IN_CI, SHARED_DATA, simulate  # noqa: E402

#: The modules that take longest, longest first (``--durations`` of ``CI=true make test``, 2026-12-03).
#: ``make test`` (``--dist loadfile --no-loadscope-reorder``) gives each xdist worker one whole module at
#: a time in this order: the long ones start first and no worker is left alone on one at the end, and a
#: module's fixtures (the SLURM cluster, the container image, a participant run) are built once.
SLOW_MODULES = (
    "test_slurm",
    "test_container",
    "test_reliability",
    "test_sessions_qc",
    "test_participant_level",
    "test_external_validation",
    "test_console",
    "test_cnn",
)


def _module_rank(item) -> tuple[int, int]:
    """The listed slow modules first, then the other modules with integration tests, then the rest."""
    name = item.path.stem
    if name in SLOW_MODULES:
        return (0, SLOW_MODULES.index(name))
    return (1, 0) if item.get_closest_marker("integration") else (2, 0)


def pytest_collection_modifyitems(config, items):
    """Slow modules first, each module's tests together and in their order; container and SLURM tests
    run in CI (CI=true) or with STROKEFC_SLOW_TESTS=1 and are skipped otherwise."""
    first = {}  # a module's place: its best rank, then its first test's index
    for index, item in enumerate(items):
        first[item.path] = min(first.get(item.path, (_module_rank(item), index)), (_module_rank(item), index))
    items.sort(key=lambda item: first[item.path])
    if IN_CI or os.environ.get("STROKEFC_SLOW_TESTS"):
        return
    skip = pytest.mark.skip(reason="needs CI=true (container build / SLURM daemons)")
    for item in items:
        if "container" in item.keywords or "slurm" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def rng():
    return np.random.default_rng(20251124)


@pytest.fixture(scope="session")
def shared_data():
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def cohort(tmp_path_factory):
    """Four patients on the 4 mm grid, 200 volumes (read-only for tests: copy before altering)."""
    return simulate(tmp_path_factory.mktemp("cohort"))
