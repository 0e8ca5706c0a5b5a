"""What tests share besides fixtures: data paths, the CI switch, a generated cohort, the CLI in-process."""

import os
from pathlib import Path

import numpy as np

#: The real data shared with the project (never copied into the repository): ../shared/data, or
#: STROKEFC_SHARED_DATA when the checkout lives elsewhere.
SHARED_DATA = Path(
    os.environ.get("STROKEFC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
#: The one CI switch of the tests (the Makefile installs the system packages when CI is "true").
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def simulate(root: Path, **kwargs) -> Path:
    """A generated cohort (raw BIDS + fMRIPrep derivatives) under ``root/bids``."""
    from strokefc_sim import simulate_cohort

    bids = root / "bids"
    defaults = {"n_subjects": 4, "resolution": 4, "n_volumes": 200, "seed": 1}
    simulate_cohort(bids, **{**defaults, **kwargs})
    return bids


#: Exclusion rules off, for generated runs kept short to keep the tests fast.
NO_QC = ("--min-time", "none", "--min-dof", "none", "--min-windows", "2")


def run_cli(*args) -> int:
    from bids_app.cli import main

    try:
        return main([str(a) for a in args])
    except SystemExit as exc:  # argparse errors exit 2
        return exc.code


def run_strokefc(*args, timeout: float = 900) -> tuple[int, str]:
    """The ``strokefc`` console script in a subprocess: its exit code and its whole output (stdout and
    stderr together, Nipype's worker processes included: what a user sees).
    """
    import subprocess
    import sys

    proc = subprocess.run(
        [str(Path(sys.executable).parent / "strokefc"), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    return proc.returncode, proc.stdout


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
