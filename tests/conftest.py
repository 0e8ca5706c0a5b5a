"""Shared fixtures: a seeded RNG, paths to the shared real data, and a small generated cohort."""

import os

import numpy as np
import pytest
from helpers import IN_CI, SHARED_DATA, simulate


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
