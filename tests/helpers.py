"""What tests share besides fixtures: data paths, the CI switch, a generated cohort, the CLI in-process
and in a subprocess (its output timed), the check of the progress lines."""

import os
import re
from pathlib import Path

import numpy as np

#: The real data shared with the project (never copied into the repository): ../shared/data, or
#: STROKEFC_SHARED_DATA when the checkout lives elsewhere.
SHARED_DATA = Path(
    os.environ.get("STROKEFC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
#: The one CI switch of the tests (the Makefile installs the system packages when CI is "true").
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
#: The variable naming the folder (``log``, ``rc``) of the container image's background build
#: (conftest.py's ``pytest_configure`` starts it; tests/test_container.py waits for it).
IMAGE_BUILD = "STROKEFC_IMAGE_BUILD"
#: The container image the tests build and run (scripts/container-test's default).
IMAGE = os.environ.get("IMAGE", "localhost/strokefc:test")


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
    code, lines = run_strokefc_timed(*args, timeout=timeout)
    return code, "".join(line for _, line in lines)


def run_strokefc_timed(*args, timeout: float = 900) -> tuple[int, list[tuple[float, str]]]:
    """:func:`run_strokefc` with each output line and the time it came, in seconds since the start;
    the last item is the exit (with an empty line)."""
    import subprocess
    import sys
    import threading
    import time

    started = time.monotonic()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "strokefc"), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    killed = threading.Event()
    timer = threading.Timer(timeout, lambda: (killed.set(), proc.kill()))
    timer.start()
    try:
        assert proc.stdout is not None
        lines = [(time.monotonic() - started, line) for line in proc.stdout]
        code = proc.wait()
    finally:
        timer.cancel()
    if killed.is_set():
        raise subprocess.TimeoutExpired(proc.args, timeout, "".join(line for _, line in lines))
    return code, [*lines, (time.monotonic() - started, "")]


#: A subject's progress line: ``  sub-01 done (3/8, 1.2 min elapsed, about 4 min left)``.
PROGRESS_LINE = re.compile(
    r"^  sub-\S+ (?:done|failed.*) \((\d+)/(\d+), [\d.]+ min elapsed(?:, (.*) left)?\)$"
)


def said_seconds_left(text: str) -> float:
    """The seconds a progress line's time left says (``a few seconds``: 5)."""
    if text == "a few seconds":
        return 5.0
    number, unit = re.fullmatch(r"about (\d+) (min|s)", text).groups()
    return float(number) * (60 if unit == "min" else 1)


def check_progress_lines(timed: list[tuple[float, str]], start: float, tolerance_s: float = 10.0) -> int:
    """Asserts that the progress lines among ``timed`` (time, text) count subjects up, and that every
    time left said after the first quarter of the run (``start`` to the last subject's line) is within
    a factor of 2 of the time really left, or within ``tolerance_s`` of it. Returns the lines checked.

    The tolerance is for the last seconds: times under 90 s are said to 5 s, under 10 s as "a few
    seconds", and a node's end is seen when Nipype next polls; a factor of 2 on 3 s tells a reader
    nothing.
    """
    found = [(t, PROGRESS_LINE.match(line.rstrip("\n"))) for t, line in timed]
    progress = [(t, m) for t, m in found if m]
    assert progress, "no progress line"
    shown = "".join(f"\n{t:7.1f} s {m.group(0)}" for t, m in progress)
    counts = [int(m.group(1)) for _, m in progress]
    assert counts == sorted(set(counts)), f"the subjects done do not count up:{shown}"
    assert counts[-1] == int(progress[-1][1].group(2)), f"the last line is not the last subject:{shown}"
    end = progress[-1][0]
    checked = 0
    for t, m in progress:
        if m.group(3) is None or t < start + (end - start) / 4:
            continue
        said, true = said_seconds_left(m.group(3)), end - t
        assert true / 2 <= said <= true * 2 or abs(said - true) <= tolerance_s, (
            f"at {t:.0f} s: {m.group(0).strip()!r}, truly {true:.0f} s left (from {start:.0f} s):{shown}"
        )
        checked += 1
    return checked


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


def save_group_inputs(
    path: Path, x: np.ndarray, y: np.ndarray, parcels: np.ndarray, confounds: np.ndarray
) -> np.ndarray:
    """A ``group_inputs.npz`` as the group level's prepare step writes it, one map per subject, all
    left-lesioned; returns the subjects' labels ("00", "01", ...)."""
    labels = np.array([f"{i:02d}" for i in range(len(y))])
    np.savez(
        path,
        x=x,
        y=y,
        groups=labels,
        split_groups=labels,
        subjects=labels,
        y_subject=y,
        maps=x,
        sides=np.array(["L"] * len(y)),
        parcels=parcels,
        confounds=confounds,
    )
    return labels


def fewer_bootstrap_draws(monkeypatch, n_boot: int = 100) -> None:
    """External validation (``bids_app.reporting.external_validation``) with ``n_boot`` bootstrap draws
    instead of 1000, for tests that check its counts, notes and point metrics, not its intervals (since
    the draws are scored with NumPy, 1000 draws cost about 0.1 s of CPU, so this saves little now)."""
    from functools import partial

    from bids_app import reporting
    from workflows import external_validation

    fewer = partial(external_validation.validation_summary, n_boot=n_boot)
    monkeypatch.setattr(external_validation, "validation_summary", fewer)  # imported where it is used
    monkeypatch.setattr(reporting, "validation_summary", fewer, raising=False)  # or at the module's top


def fewer_group_bootstrap_draws(monkeypatch, n_boot: int = 100) -> None:
    """The group level's summary (``workflows.cv_summary``, run in-process by Nipype's Linear plugin) with
    ``n_boot`` bootstrap draws instead of 1000, for group runs that check its wiring and records (which
    models are compared, which fields are written), not its intervals: the 1000-draw subject bootstraps of
    every model and of the calibration took about a third of a tiny group run's CPU time."""
    from functools import partial

    from workflows import cv_summary

    for name in ("bootstrap_comparison", "regression_bootstrap", "calibration_summary", "site_summary"):
        monkeypatch.setattr(cv_summary, name, partial(getattr(cv_summary, name), n_boot=n_boot))
