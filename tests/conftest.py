"""Shared fixtures: a seeded RNG, paths to the shared real data, and a small generated cohort."""

import os

# One BLAS/OpenMP thread per test process, set before numpy and torch start their thread pools (child
# processes inherit it): `make test` runs 2 xdist workers on 2 cores, and oversubscribed OpenBLAS threads
# spin, which made a 120 x 570 SVD take 1-7 s instead of 20 ms on a shared machine.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


import shutil  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from helpers import IMAGE, IMAGE_BUILD, IN_CI, SHARED_DATA, simulate  # noqa: E402

#: The modules that take longest, longest first (``--durations`` of ``CI=true make test``, 2026-12-03).
#: ``make test`` (``--dist loadfile --no-loadscope-reorder``) gives each xdist worker one whole module at
#: a time in this order: the long ones start first and no worker is left alone on one at the end, and a
#: module's fixtures (the SLURM cluster, the container image, a participant run) are built once.
#: When the container image is built in the background (:func:`pytest_configure`: not yet built on this
#: machine, 5.5 minutes), the container module moves to the end of them, so a worker reaching it does not
#: wait; an image already built is refreshed by the module's fixture (its cached layers: about a minute).
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
    if name == "test_container" and os.environ.get(IMAGE_BUILD):
        return (0, len(SLOW_MODULES))
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


def pytest_configure(config):
    """Start the container image's first build in the background where the container tests will run
    (CI or STROKEFC_SLOW_TESTS, the whole suite, no -m, no image built yet): its minutes overlap the other
    tests instead of holding a worker (tests/test_container.py's fixture waits for it). Only the first
    process starts it (xdist's workers inherit the variable naming its folder)."""
    if hasattr(config, "workerinput") or IMAGE_BUILD in os.environ:
        return
    if not (IN_CI or os.environ.get("STROKEFC_SLOW_TESTS")) or config.option.markexpr:
        return
    tests = Path(__file__).parent
    if not any(Path(a.split("::")[0]).resolve() in (tests, tests / "test_container.py") for a in config.args):
        return
    if shutil.which("podman") is None or shutil.which("debootstrap") is None:
        return  # the fixture says what is missing
    script = tests.parent / "scripts" / "container-test"
    if subprocess.run([script, "podman", "image", "exists", IMAGE], capture_output=True).returncode == 0:
        return  # built before: the fixture refreshes it from its cached layers
    folder = tempfile.mkdtemp(prefix="strokefc-image-build-")
    # rc is written last and whole (rename): its presence means the build is over
    shell = f'cd "{folder}" && "{script}" build >log 2>&1; echo $? >rc.part; mv rc.part rc'
    config.stash[_BUILD] = subprocess.Popen(["bash", "-c", shell], start_new_session=True)
    os.environ[IMAGE_BUILD] = folder


def pytest_unconfigure(config):
    """A build still running when the session ends (stopped early, container tests deselected) is ended."""
    build = config.stash.get(_BUILD, None)
    if build is not None and build.poll() is None:
        os.killpg(build.pid, signal.SIGTERM)
        build.wait()


_BUILD = pytest.StashKey[subprocess.Popen]()


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
