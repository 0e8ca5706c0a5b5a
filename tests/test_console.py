"""The console of a run: the science layer's progress lines reach it from Nipype's worker processes,
Nipype's node records do not (without -v)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers import NO_QC, check_progress_lines, run_strokefc_timed, simulate

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import numpy as np

    sys.path.insert(0, {tests!r})
    from helpers import tiny_group_maps

    from bids_app.console import make_plugin, setup_logging
    from workflows.group import init_group_wf
    from workflows.params import CVParams, GroupParams, TrainSettings

    setup_logging({verbose})
    root = Path({root!r})
    subjects = tiny_group_maps(root, np.random.default_rng(3))
    params = GroupParams(
        cnn_resolution=8.0,
        cv=CVParams(cv_folds=2, cv_repeats=1, n_permutations=2),
        train=TrainSettings(epochs=1, device="cpu"),
    )
    wf = init_group_wf(
        subjects=[s.as_dict() for s in subjects], params=params, output_dir=root / "out",
        shared_params={{"Space": "MNI152NLin2009cAsym"}},
    )
    wf.base_dir = str(root / "work")
    args = {{"n_procs": 2, "raise_insufficient": False, "mp_context": "forkserver"}}
    wf.run(plugin=make_plugin("MultiProc", args), plugin_args=args)
    """
)


@pytest.mark.integration
def test_group_progress_comes_from_the_workers_and_nipype_stays_silent(tmp_path):
    """Folds, permutations and the final model run in MultiProc workers; their progress lines show,
    Nipype's node records do not (``-v`` shows them: tests/test_reliability.py)."""
    script = SCRIPT.format(tests=str(Path(__file__).parent), verbose=0, root=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=900)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text
    assert "strokefc.group INFO: cross-validation: fold 1/2 done" in text
    assert "strokefc.group INFO: cross-validation: fold 2/2 done" in text
    assert "permutation test: permutation 2/2 done" in text
    assert "final model: trained on every subject" in text
    assert "[Node]" not in text


@pytest.mark.integration
def test_participant_progress_counts_up_and_its_time_left_comes_true(tmp_path):
    """Five subjects on two workers (subjects finish in pairs, the fifth runs alone): each line counts
    one more subject, and each time left said after the first quarter of the run is within a factor
    of 2 of the time that was left (tests/test_progress.py: the same check on synthetic schedules)."""
    bids = simulate(tmp_path, n_subjects=5)
    code, timed = run_strokefc_timed(
        bids, tmp_path / "out", "participant", "--work-dir", tmp_path / "work", "--nprocs", 2,
        "--skip-bids-validation", *NO_QC,
    )  # fmt: skip
    text = "".join(f"{t:6.1f} {line}" for t, line in timed)
    print(text)  # the timed console, shown with pytest -rP
    assert code == 0, text
    assert "[Node]" not in text
    assert check_progress_lines(timed, start=0.0) >= 3, text
