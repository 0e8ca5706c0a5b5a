"""SLURM for real: a one-node cluster on localhost (scripts/slurm-local) runs the participant level through
Nipype's SLURM plugin (``--use-plugin``) and the array-job example; outputs must equal a MultiProc run's.

The group level goes through the cluster too (the permutation example drives it): its folds, permutation
draws and final training as SLURM jobs, stopped and resumed, equal to MultiProc.

Marked ``slurm``: runs in CI (CI=true) or with STROKEFC_SLOW_TESTS=1. Needs root and Debian's slurm-wlm
and munge (scripts/install-system-deps). The daemons started here are stopped at the end.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nb
import numpy as np
import pytest
from helpers import IN_CI, NO_QC

pytestmark = pytest.mark.slurm

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SLURM_LOCAL = ROOT / "scripts" / "slurm-local"


def _jobs(jobcomp: Path) -> list[dict]:
    """Completed-job records (jobcomp/filetxt: one line of Key=Value per job)."""
    if not jobcomp.exists():
        return []
    return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in jobcomp.read_text().splitlines()]


def _finished_job(jobcomp: Path, job_id: str, timeout: float) -> dict:
    """The completion record of ``job_id``, waited for (every 0.2 s: ``sbatch --wait`` backs off to
    half a minute between its checks, which here cost more than the job)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = [j for j in _jobs(jobcomp) if j.get("JobId") == job_id]
        if done:
            return done[0]
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not finish within {timeout} s")


def _free_port_pair() -> int:
    """A port P with P and P+1 free (slurmctld and slurmd)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            if port > 64000:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port pair")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """Start munged + slurmctld + slurmd in a temp dir; yield the environment that points at it."""
    missing = [exe for exe in ("slurmctld", "slurmd", "munged", "sbatch") if shutil.which(exe) is None]
    if missing or os.geteuid() != 0:
        reason = (
            f"needs root and slurm-wlm/munge (missing: {missing or 'root'}); run scripts/install-system-deps"
        )
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    cluster = tmp_path_factory.mktemp("slurm")
    # Another cluster may run here (a port pair of its own). Two CPUs, as on a 2-core runner: nproc says
    # 1 under OMP_NUM_THREADS=1, and one CPU ran both subjects' jobs one after the other.
    port_env = dict(os.environ, SLURM_LOCAL_PORT=str(_free_port_pair()), SLURM_LOCAL_CPUS="2")
    proc = subprocess.run(
        [str(SLURM_LOCAL), "start", str(cluster)], capture_output=True, text=True, timeout=120, env=port_env
    )
    assert proc.returncode == 0, proc.stderr
    # Nipype's driver asks the queue every poll_sleep_duration (2 s by default, paid once per job along
    # each chain of dependent jobs): 0.5 s on this one-node cluster, where squeue answers at once.
    (cluster / "nipype").mkdir()
    (cluster / "nipype" / "nipype.cfg").write_text("[execution]\npoll_sleep_duration = 0.5\n")
    env = dict(
        os.environ,
        SLURM_CONF=str(cluster / "slurm.conf"),
        LOGNAME=os.environ.get("LOGNAME", "root"),
        OMP_NUM_THREADS="1",
        NIPYPE_CONFIG_DIR=str(cluster / "nipype"),
    )
    yield {"env": env, "dir": cluster, "jobcomp": cluster / "jobcomp.log"}
    subprocess.run([str(SLURM_LOCAL), "stop", str(cluster)], capture_output=True, text=True, timeout=60)
    pidfiles = [cluster / f"{name}.pid" for name in ("munged", "slurmctld", "slurmd")]
    assert not any(p.exists() for p in pidfiles), "daemons left running"


#: A participant run kept short (no null surrogates, exclusion rules off: 120 volumes).
FAST = ("--skip-bids-validation", "--null-surrogates", "0", *NO_QC)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Six generated patients through the participant level (MultiProc): the reference of the SLURM
    participant run (one of them), the input of the array job and of the two group runs."""
    root = tmp_path_factory.mktemp("slurm_cohort")
    bids = root / "bids"
    subprocess.run(
        [
            str(BIN / "strokefc-simulate"),
            str(bids),
            "--n-subjects",
            "6",
            "--voxel-size",
            "4",
            "--n-volumes",
            "120",
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    _strokefc(
        [bids, root / "participant", "participant", "-w", root / "work_participant", "--nprocs", "2", *FAST]
    )
    return root


def _strokefc(args, env=None, cwd=None):
    proc = subprocess.run(
        [str(BIN / "strokefc"), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=1200,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def _maps(out: Path, subjects: tuple[str, ...] = ("sub-",)) -> dict[str, np.ndarray]:
    """The participant maps under ``out`` whose path starts with one of ``subjects``."""
    return {
        name: np.asanyarray(nb.load(p).dataobj)
        for p in sorted(out.glob("sub-*/**/*.nii.gz"))
        if (name := str(p.relative_to(out))).startswith(subjects)
    }


def _sidecars(out: Path, subjects: tuple[str, ...] = ("sub-",)) -> dict[str, dict]:
    return {
        name: json.loads(p.read_text())
        for p in sorted(out.glob("sub-*/**/*.json"))
        if (name := str(p.relative_to(out))).startswith(subjects)
    }


def test_participant_level_through_slurm_equals_multiproc(slurm, cohort):
    """``--use-plugin`` with ``plugin: SLURM``: every node is a SLURM job; the maps of a subject equal
    those of the module's MultiProc run (one subject: each of its nodes is a job of its own, and the
    array-job test below runs two subjects side by side)."""
    bids = cohort / "bids"
    labels = ("01",)
    plugin = cohort / "plugin.yml"
    plugin.write_text(
        "plugin: SLURM\nplugin_args:\n  sbatch_args: --cpus-per-task=1 --time=00:20:00\n  max_jobs: 4\n"
    )
    before = len(_jobs(slurm["jobcomp"]))
    _strokefc(
        [
            bids,
            cohort / "participant_slurm",
            "participant",
            "-w",
            cohort / "work_participant_slurm",
            "--use-plugin",
            plugin,
            "--participant-label",
            *labels,
            *FAST,
        ],
        env=slurm["env"],
    )

    jobs = _jobs(slurm["jobcomp"])[before:]
    # Nipype names each job <node>.<workflow...>.<LOGNAME>: the subject's nodes went through SLURM.
    for label in labels:
        mine = [j for j in jobs if f"sub_{label}_wf" in j.get("Name", "")]
        assert mine, f"no SLURM job ran for sub-{label}: {[j.get('Name') for j in jobs]}"
        assert {j["JobState"] for j in mine} == {"COMPLETED"}
    assert any(j["Name"].startswith("dfc.") for j in jobs)
    # Nothing is left in the queue.
    queue = subprocess.run(["squeue", "-h"], capture_output=True, text=True, env=slurm["env"], check=True)
    assert queue.stdout.strip() == ""

    mine = tuple(f"sub-{label}/" for label in labels)
    ref, got = _maps(cohort / "participant", mine), _maps(cohort / "participant_slurm")
    assert ref
    assert sorted(ref) == sorted(got)
    assert any("stat-dfcsd_boldmap" in name for name in ref)
    for name, data in ref.items():
        np.testing.assert_allclose(got[name], data, rtol=0, atol=1e-6, err_msg=name)
    ref_meta, got_meta = _sidecars(cohort / "participant", mine), _sidecars(cohort / "participant_slurm")
    assert sorted(ref_meta) == sorted(got_meta)
    for name, meta in ref_meta.items():
        drop = {"Sources", "GeneratedAt", "DateCreated"}
        assert {k: v for k, v in got_meta[name].items() if k not in drop} == {
            k: v for k, v in meta.items() if k not in drop
        }, name


def test_sbatch_array_then_dependent_group_job(slurm, cohort):
    """The documented submission: an array job (one participant per task, the real example script, with
    STROKEFC_EXEC instead of Apptainer) and a group job held by --dependency=afterok on it."""
    bids, out = cohort / "bids", cohort / "out_array"
    env = dict(
        slurm["env"],
        BIDS_DIR=str(bids),
        OUT_DIR=str(out),
        STROKEFC_EXEC=str(BIN / "strokefc"),
        STROKEFC_ARGS=" ".join(FAST),
    )
    sub = subprocess.run(
        [
            "sbatch",
            "--parsable",
            "--array=1-2",
            "--cpus-per-task=1",
            "--mem=1G",
            str(ROOT / "singularity" / "slurm_participant.sbatch"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=cohort,
    )
    assert sub.returncode == 0, sub.stderr
    array_id = sub.stdout.strip().split(";")[0]
    # The group job: the real script; --boilerplate-only keeps it short (2 of 6 subjects have maps).
    group = subprocess.run(
        [
            "sbatch",
            "--parsable",
            f"--dependency=afterok:{array_id}",
            "--cpus-per-task=1",
            "--mem=1G",
            str(ROOT / "singularity" / "slurm_group.sbatch"),
        ],
        capture_output=True,
        text=True,
        env=dict(env, STROKEFC_ARGS="--boilerplate-only"),
        cwd=cohort,
    )
    assert group.returncode == 0, group.stderr
    group_job = _finished_job(slurm["jobcomp"], group.stdout.strip(), timeout=1200)
    logs = "\n".join(p.read_text() for p in sorted(cohort.glob("strokefc-*.log")))

    jobs = {j["JobId"]: j for j in _jobs(slurm["jobcomp"])}
    tasks = [j for j in jobs.values() if j.get("Name") == "strokefc-participant"]
    assert len(tasks) >= 2
    assert all(j["JobState"] == "COMPLETED" for j in tasks)
    assert group_job["JobState"] == "COMPLETED", logs
    assert group_job["StartTime"] >= max(j["EndTime"] for j in tasks)  # ISO times sort as text
    for label in ("01", "02"):
        assert list((out / f"sub-{label}").glob("func/*stat-dfcsd_boldmap.nii.gz")), f"sub-{label} maps"
        assert (out.parent / "out_array_work" / f"sub-{label}").is_dir()
        assert f"participant sub-{label}" in logs
    assert "strokefc group level" in logs
    assert f"Methods boilerplate: {out / 'logs' / 'CITATION.md'}" in logs


# ------------------------------------------------------------------ the group level on the cluster
#: One tiny group level for both runs: the same seed, folds, draws and settings.
GROUP_ARGS = (
    "--skip-bids-validation",
    "--cv-folds",
    "2",
    "--cv-repeats",
    "1",
    "--epochs",
    "2",
    "--cnn-resolution",
    "4",
    "--device",
    "cpu",
    "--random-seed",
    "3",
)
#: Draws: the first run is stopped after two of them, the second computes the others.
N_DRAWS = 4
#: Keys that record when a file was written, not what it holds.
WHEN = {"Date", "GeneratedAt", "DateCreated"}


def _without_dates(value):
    if isinstance(value, dict):
        return {k: _without_dates(v) for k, v in value.items() if k not in WHEN}
    if isinstance(value, list):
        return [_without_dates(v) for v in value]
    return value


def _draws(work: Path) -> dict[Path, tuple[int, int]]:
    """The stored permutation draws: path -> (inode, mtime): a draw computed again is written anew."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in work.glob("permutation_draws/*/draw-*.json")}


def test_group_level_through_slurm_equals_multiproc_and_resumes(slurm, cohort):
    """singularity/slurm_group_permutations.sbatch drives ``group --use-plugin`` (plugin: SLURM): every
    fold, permutation draw and the final training is a SLURM job. The driver is stopped after two
    draws (it cancels its jobs), started again, and computes only the draws it lacks; the results
    equal a MultiProc run's for the same seed."""
    root = cohort
    bids = root / "bids"
    out_mp, out_slurm = root / "out_multiproc", root / "out_slurm"
    shutil.copytree(root / "participant", out_mp)
    shutil.copytree(root / "participant", out_slurm)
    _strokefc(
        [
            bids,
            out_mp,
            "group",
            "-w",
            root / "work_mp",
            "--nprocs",
            "2",
            "--omp-nthreads",
            "1",
            "--n-permutations",
            N_DRAWS,
            *GROUP_ARGS,
        ],
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )

    env = dict(
        slurm["env"],
        BIDS_DIR=str(bids),
        OUT_DIR=str(out_slurm),
        STROKEFC_EXEC=str(BIN / "strokefc"),
        STROKEFC_ARGS=" ".join(GROUP_ARGS),
        N_PERMUTATIONS=str(N_DRAWS),
        JOB_CPUS="1",
        JOB_MEM="2G",
        JOB_TIME="00:20:00",
        # more than the cluster's two CPUs: SLURM's queue holds the jobs waiting for a CPU, and a job
        # starts as soon as one frees (with 2, Nipype submitted the final training and the patterns
        # before the folds, and nothing else until they ended: 10 s more on this test)
        MAX_JOBS="8",
    )
    work = root / "out_slurm_work" / "group"
    # The driver runs as the script it is, but outside SLURM: on the two-CPU test cluster a driver job
    # would hold one CPU for the whole run while its node jobs share the other.
    driver = ["bash", str(ROOT / "singularity" / "slurm_group_permutations.sbatch")]
    before = len(_jobs(slurm["jobcomp"]))
    with open(root / "driver-1.log", "w") as log:
        first = subprocess.Popen(driver, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
        deadline = time.time() + 900
        while len(_draws(work)) < 2 and first.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert len(_draws(work)) >= 2, "no permutation draw was stored in time"
        first.send_signal(signal.SIGTERM)  # what SLURM sends the batch shell (scancel, --signal)
        assert first.wait(timeout=120) == 143
    stopped = (root / "driver-1.log").read_text()
    assert "Submit again with the same variables to resume" in stopped
    while time.time() < deadline:  # every job the driver submitted leaves the queue
        queue = subprocess.run(["squeue", "-h"], capture_output=True, text=True, env=env, check=True)
        if not queue.stdout.strip():
            break
        time.sleep(0.5)
    assert not queue.stdout.strip(), f"jobs left after the driver stopped:\n{queue.stdout}"
    kept = _draws(work)
    assert 2 <= len(kept) < N_DRAWS, f"{len(kept)} draws stored before the stop: nothing left to resume"
    time.sleep(2)  # jobcomp records a cancelled job as it leaves
    interrupted = _jobs(slurm["jobcomp"])[before:]
    assert any(j["JobState"] == "CANCELLED" for j in interrupted), (
        f"the driver's node jobs were not cancelled with it: {interrupted}"
    )

    middle = len(_jobs(slurm["jobcomp"]))
    again = subprocess.run(driver, capture_output=True, text=True, env=env, cwd=root, timeout=1800)
    assert again.returncode == 0, (again.stdout + again.stderr)[-4000:]
    jobs = _jobs(slurm["jobcomp"])[middle:]
    assert {j["JobState"] for j in jobs} == {"COMPLETED"}
    # Nipype names a job <node>.<workflow...>.<LOGNAME>: the folds, draws and final training were jobs
    # (in the stopped run or this one), every draw of this run one it lacked
    names = [j.get("Name", "") for j in _jobs(slurm["jobcomp"])[before:]]
    for node in ("_cv_fold0.", "_cv_fold1.", "_permutation", "train_final."):
        assert any(n.startswith(node) for n in names), f"no SLURM job for {node}: {names}"
    # the MapNodes' parents only gather their subnodes' results: in the driver, not as jobs of their own
    assert not [n for n in names if n.startswith(("cv_fold.", "permutation."))], names
    resumed = [j["Name"] for j in jobs if j.get("Name", "").startswith("_permutation")]
    assert 0 < len(resumed) <= N_DRAWS - len(kept), resumed
    stored = _draws(work)
    assert len(stored) == N_DRAWS
    assert {p: stored[p] for p in kept} == kept  # the draws of the stopped run were not computed again

    for table in ("cv_predictions.tsv", "training_curves.tsv", "cohort.tsv", "saliency_regions.tsv"):
        assert (out_slurm / "group" / table).read_text() == (out_mp / "group" / table).read_text(), table
    ref = json.loads((out_mp / "group" / "cv_summary.json").read_text())
    got = json.loads((out_slurm / "group" / "cv_summary.json").read_text())
    assert got["permutation"]["n"] == N_DRAWS
    assert got["permutation"]["null_balanced_accuracy"] == ref["permutation"]["null_balanced_accuracy"]
    assert _without_dates(got) == _without_dates(ref)
    card = json.loads((out_slurm / "model" / "model_card.json").read_text())  # its weights' SHA-256 too
    assert _without_dates(card) == _without_dates(
        json.loads((out_mp / "model" / "model_card.json").read_text())
    )
    ref_maps = {p.name: np.asanyarray(nb.load(p).dataobj) for p in (out_mp / "group").glob("*.nii.gz")}
    got_maps = {p.name: np.asanyarray(nb.load(p).dataobj) for p in (out_slurm / "group").glob("*.nii.gz")}
    assert ref_maps
    assert sorted(got_maps) == sorted(ref_maps)
    for name, data in ref_maps.items():  # class maps and held-out saliency
        np.testing.assert_array_equal(got_maps[name], data, err_msg=name)
