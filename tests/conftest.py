"""Shared fixtures: a seeded RNG, paths to the shared real data, and a small generated cohort."""

import os

# One BLAS/OpenMP thread per test process, set before numpy and torch start their thread pools (child
# processes inherit it): `make test` runs 2 xdist workers on 2 cores, and oversubscribed OpenBLAS threads
# spin, which made a 120 x 570 SVD take 1-7 s instead of 20 ms on a shared machine.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from helpers import IN_CI, SHARED_DATA, simulate  # noqa: E402


def pytest_collection_modifyitems(config, items):
    """Container and SLURM tests run in CI (CI=true) or with STROKEFC_SLOW_TESTS=1; skipped otherwise."""
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
