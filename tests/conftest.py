"""Shared fixtures: a seeded RNG, paths to the shared real data, and small generated cohorts."""

import os
from pathlib import Path

import numpy as np
import pytest

#: The real data shared with the project (never copied into the repository): ../shared/data, or
#: STROKEFC_SHARED_DATA when the checkout lives elsewhere.
SHARED_DATA = Path(
    os.environ.get("STROKEFC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
#: The one CI switch of the tests (the Makefile installs the system packages when CI is "true").
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


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


def simulate(root: Path, **kwargs) -> Path:
    """A generated cohort (raw BIDS + fMRIPrep derivatives) under ``root/bids``."""
    from strokefc_sim import simulate_cohort

    bids = root / "bids"
    defaults = {"n_subjects": 4, "resolution": 4, "n_volumes": 200, "seed": 1}
    simulate_cohort(bids, **{**defaults, **kwargs})
    return bids


@pytest.fixture(scope="session")
def cohort(tmp_path_factory):
    """Four patients on the 4 mm grid, 200 volumes (read-only for tests: copy before altering)."""
    return simulate(tmp_path_factory.mktemp("cohort"))


#: Exclusion rules off, for generated runs kept short to keep the tests fast.
NO_QC = ("--min-time", "none", "--min-dof", "none", "--min-windows", "2")


def run_cli(*args) -> int:
    from bids_app.cli import main

    try:
        return main([str(a) for a in args])
    except SystemExit as exc:  # argparse errors exit 2
        return exc.code


def tiny_group_maps(root: Path, rng, n_subjects: int = 12, spread: float = 0.0) -> list:
    """``GroupSubject``s of tiny generated dFC maps on an 8 mm grid (a blob in the even, severe ones).

    Scores: 10 (severe) for even subjects and 40 for odd ones, plus ``spread * i`` so that a regression
    target varies within the classes; every third subject has a right lesion (its map mirrored).
    """
    import nibabel as nb

    from bids_app.group_level import GroupSubject

    shape = (20, 24, 20)
    aff = np.diag([8.0, 8.0, 8.0, 1.0])
    aff[:3, 3] = [-76.0, -110.0, -70.0]
    ijk = np.indices(shape).astype(float)
    brain = (
        ((ijk - np.array([9.5, 12, 9.5])[:, None, None, None]) / np.array([8, 10, 8])[:, None, None, None])
        ** 2
    ).sum(0) < 1
    subjects = []
    for i in range(n_subjects):
        data = (brain * (0.2 + 0.02 * rng.normal(size=shape))).astype(np.float32)
        if i % 2 == 0:
            data[4:9, 10:15, 9:14] += 0.05 * brain[4:9, 10:15, 9:14]
        side = "L" if i % 3 else "R"
        data = data if side == "L" else data[::-1].copy()
        path = root / f"sub-{i:02d}.nii.gz"
        nb.save(nb.Nifti1Image(data, aff), path)
        score = (10.0 if i % 2 == 0 else 40.0) + spread * i
        subjects.append(GroupSubject(f"{i:02d}", path, None, side, score))
    return subjects
