"""`make bench`: time strokefc's hot paths against references, print a table, write a dated results file.

Five benchmarks (issues 7 and 16), each measured in one run of this script:

1. ``kernel``: the vectorised sliding-window dFC (``workflows.dfc.sliding_window_dfc``) on a fMRIPrep
   ``res-2`` run (97x115x97, ~230k brain voxels, 240 volumes, window 30, step 1) against the naive
   per-window ``numpy.corrcoef`` reference (timed on a voxel subset and scaled linearly in voxels) and
   against loading and scaling the BOLD ``.nii.gz`` into float32 (issue 16: kernel <= 0.5x the load,
   >= 50x the naive); equality with the naive reference (1e-5 in z) for rectangular, Hamming and
   tapered windows with censored volumes, on a voxel subset.
2. ``participant``: the participant level end to end in one process (1 subject, same run,
   ``--nprocs 1``, reports included): wall and CPU time, peak RSS (sampled from ``/proc``), and each
   Nipype node's share (issue 16: < 60 s, < 2.5 GB); then the same subject with the default processes
   and threads (all the machine's CPUs), as a user runs one patient (issue 28: < 60 s, < 2.5 GB).
3. ``group``: the group level on the 69-subject generator cohort (4 mm, 200 volumes) with default CV
   settings: wall time, CNN training throughput, inference time per subject, and ``participant
   --model`` on 2 subjects end to end (issue 28: < 30 s).
4. ``scaling``: the participant level for 1, 2, 4, 8 and 24 subjects (4 mm, 200 volumes, ``--nprocs
   2``): the time per subject must not grow, and 24 subjects take < 5 s each (issue 28).
5. ``model-predict``: ``participant --model`` on 2 held-out subjects end to end (fresh work folder:
   maps, null, prediction, reports; issue 28: < 30 s), with a model that a quick group level (2 folds,
   1 repeat, 5 epochs) trains once on the other subjects of a small generated cohort and that is kept in
   ``--cache``. Unlike ``group``'s own measurement it needs no 69-subject cohort.
6. ``cnn``: PyTorch's CPU paths for the CNN (float32, channels-last 3D, bfloat16 autocast,
   ``torch.compile``) and the balanced accuracy of float32 vs bfloat16 training on the same folds of
   planted cohorts (``benchmarks/cnn_paths.py``).
7. ``focal``: every parcel model, the PCA baseline and the blob-mean oracle on an 81-voxel ball at +2 SD
   in 48 subjects on the real 3 mm grid, in i.i.d. and smooth noise, and its null (issue 23: the
   elastic net >= 0.9; ``benchmarks/focal_effect.py``, which alone also writes the detectable-effect
   table).

Generated data and work folders live in ``--cache`` (default ``/tmp/strokefc-bench``, outside the
repository); simulated cohorts are reused between runs, work and output folders are always fresh.
The machine may be shared: the load average at the start is recorded, and figures are upper bounds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
import traceback
from importlib import metadata
from pathlib import Path

import cnn_paths  # benchmarks/ (this script's folder) is on sys.path
import focal_effect
import numpy as np

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

SECTIONS = ("kernel", "participant", "group", "scaling", "model-predict", "cnn", "focal")
FULL = {
    "res": 2,
    "vols": 240,
    "naive_voxels": 5000,
    "group_n": 69,
    "group_vols": 200,
    "scale_res": 4,
    "scale_vols": 200,
    "scale_n": (1, 2, 4, 8, 24),
    "predict_n": 14,
    "predict_vols": 200,
    "cv_repeats": None,
    "epochs": None,
    "cnn_quick": False,
    "focal_quick": False,
}
QUICK = {
    "res": 4,
    "vols": 150,
    "naive_voxels": 1000,
    "group_n": 12,
    "group_vols": 150,
    "scale_res": 4,
    "scale_vols": 100,
    "scale_n": (1, 2),
    "predict_n": 8,
    "predict_vols": 100,
    "cv_repeats": 1,
    "epochs": 3,
    "cnn_quick": True,
    "focal_quick": True,
}
NODE_RE = re.compile(r'\[Node\] Finished "([^"]+)", elapsed time ([0-9.]+)s')


# ----------------------------------------------------------------------------- measuring helpers
def best_of(fn, repeats: int) -> tuple[float, object]:
    """Fastest of ``repeats`` calls (s) and the last result: the minimum is the least load-disturbed."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def _tree_memory(root: int) -> tuple[int, int]:
    """(RSS, PSS) in bytes summed over ``root`` and its descendants, read from /proc (no psutil needed).

    The RSS sum counts shared pages (libraries, copy-on-write) once per process and so overstates the
    footprint of a forked MultiProc pool; PSS splits shared pages between the processes sharing them.
    """
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    rss = pss = 0
    todo = [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/smaps_rollup") as fh:
                for line in fh:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1]) * 1024
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1]) * 1024
        except OSError:
            pass
    return rss, pss


def _adopt_orphans() -> None:
    """Make this process the reaper of its orphaned descendants (Linux ``PR_SET_CHILD_SUBREAPER``).

    Nipype's forkserver (and the MultiProc workers it forked) outlive the ``strokefc`` process that
    started them by a moment and are never waited for by it; reparented to this process instead of
    init, they are reaped here, so that ``RUSAGE_CHILDREN`` holds the whole tree's CPU time.
    """
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):  # not Linux: the workers' CPU goes uncounted
        pass


def _reap_orphans(timeout: float = 10.0) -> None:
    """Wait for the descendants that outlived the measured command (see :func:`_adopt_orphans`)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def run_measured(cmd: list, log_file: Path, interval: float = 0.1) -> dict:
    """Run ``cmd``; return wall time (s), CPU time of the whole process tree (s), peak process-tree RSS
    (bytes), the load average at the start. Output to ``log_file``."""
    cmd = [str(c) for c in cmd]
    _adopt_orphans()
    load = os.getloadavg()[0]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_file, "w") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
        t0 = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        peak = [0, 0]

        def sample():
            while proc.poll() is None:
                rss, pss = _tree_memory(proc.pid)
                peak[0], peak[1] = max(peak[0], rss), max(peak[1], pss)
                time.sleep(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        code = proc.wait()
        wall = time.perf_counter() - t0
        sampler.join()
        _reap_orphans()
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise RuntimeError(f"exit {code}; see {log_file}: {' '.join(cmd)}")
    # user + system CPU of the command and of every descendant (MultiProc workers and forkserver)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "wall_s": wall,
        "cpu_s": cpu,
        "peak_rss": peak[0],
        "peak_pss": peak[1],
        "load_start": load,
        "log": str(log_file),
    }


def node_times(log_file: Path) -> dict[str, float]:
    """Summed elapsed time per Nipype node name (the ``-v`` log's ``[Node] Finished`` lines)."""
    out: dict[str, float] = {}
    for name, sec in NODE_RE.findall(Path(log_file).read_text(errors="replace")):
        base = re.sub(r"^_?(.*?)\d*$", r"\1", name)  # MapNode children "_cv_fold3" -> "cv_fold"
        out[base] = out.get(base, 0.0) + float(sec)
    return out


def simulate(cache: Path, name: str, n: int, res: int, vols: int) -> Path:
    """A cached ``strokefc-simulate`` cohort (seed 1); regenerated only if missing or incomplete."""
    bids = cache / name
    stamp = bids / ".complete"
    if not stamp.exists():
        shutil.rmtree(bids, ignore_errors=True)
        print(f"  simulating {name}: {n} subject(s), {res} mm, {vols} volumes ...", flush=True)
        cmd = [
            BIN / "strokefc-simulate",
            bids,
            "--n-subjects",
            n,
            "--resolution",
            res,
            "--n-volumes",
            vols,
            "--seed",
            1,
        ]
        subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)
        stamp.write_text("")
    return bids


def fresh(*paths: Path) -> None:
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)


def participant_cmd(bids: Path, out: Path, work: Path, labels=None, extra=(), nprocs: int = 2) -> list:
    cmd = [BIN / "strokefc", bids, out, "participant", "--work-dir", work, "--nprocs", nprocs, "-v", *extra]
    if labels:
        cmd += ["--participant-label", *labels]
    return cmd


def gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.2f} GB"


# ----------------------------------------------------------------------------- benchmarks
def bench_kernel(cache: Path, p: dict) -> dict:
    """Vectorised dFC vs naive per-window corrcoef vs loading the BOLD into float32."""
    import nibabel as nb

    from workflows.dfc import WindowSpec, naive_sliding_window_dfc, sliding_window_dfc

    bids = simulate(cache, f"single_{p['res']}mm_{p['vols']}", 1, p["res"], p["vols"])
    func = bids / "derivatives" / "fmriprep" / "sub-01" / "func"
    bold = next(func.glob("*desc-preproc_bold.nii.gz"))
    mask_file = next(func.glob("*desc-brain_mask.nii.gz"))
    t_load, img_data = best_of(lambda: nb.load(str(bold)).get_fdata(dtype=np.float32), 3)
    cpu_load, _ = best_of_cpu(lambda: nb.load(str(bold)).get_fdata(dtype=np.float32), 1)
    mask = np.asarray(nb.load(str(mask_file)).dataobj) > 0
    data = np.ascontiguousarray(img_data[mask].T)  # (T, V) float32, as the pipeline hands it over
    del img_data
    n_t, n_v = data.shape
    rng = np.random.default_rng(0)
    seed = data[:, rng.choice(n_v, 50, replace=False)].mean(axis=1).astype(np.float64)
    t_vec, res = best_of(lambda: sliding_window_dfc(seed, data, WindowSpec.volumes(30, step=1)), 3)
    cpu_vec, _ = best_of_cpu(lambda: sliding_window_dfc(seed, data, WindowSpec.volumes(30, step=1)), 1)
    n_sub = min(p["naive_voxels"], n_v)
    sub = np.sort(rng.choice(n_v, n_sub, replace=False))
    t_naive_sub, z_naive = best_of(
        lambda: naive_sliding_window_dfc(seed, data[:, sub], WindowSpec.volumes(30, step=1)), 1
    )
    t_naive = t_naive_sub * n_v / n_sub
    err = float(np.nanmax(np.abs(z_naive.std(axis=0, ddof=1) - res.sd[sub])))
    equality = _kernel_equality(seed, data[:, sub[:300]], n_t)
    from workflows.dfc_null import stationary_null

    # the stationary null's target (issue 17): 100 surrogates, 100 s windows at TR 2, two threads, on this
    # run and on every 8th voxel (the voxel count of a 4 mm run)
    def null(block: np.ndarray) -> float:
        return best_of(
            lambda: stationary_null(seed, block, WindowSpec.volumes(50), n_surrogates=100, n_jobs=2), 1
        )[0]

    return {
        "null_100_s": null(data),
        "null_100_4mm_s": null(np.ascontiguousarray(data[:, ::8])),
        "null_4mm_voxels": int(data[:, ::8].shape[1]),
        "grid": "x".join(map(str, mask.shape)),
        "n_voxels": int(n_v),
        "n_volumes": int(n_t),
        "n_windows": int(n_t - 30 + 1),
        "load_s": t_load,
        "vectorised_s": t_vec,
        "naive_subset_voxels": int(n_sub),
        "naive_subset_s": t_naive_sub,
        "naive_s": t_naive,
        "speedup_vs_naive": t_naive / t_vec,
        "kernel_over_load": t_vec / t_load,
        "load_cpu_s": cpu_load,
        "vectorised_cpu_s": cpu_vec,
        "kernel_over_load_cpu": cpu_vec / cpu_load,
        "max_abs_sd_diff": err,
        "equality": equality,
        "bold_gz_mb": bold.stat().st_size / 1e6,
    }


#: Censored volumes of the equality check (a pair, singles, one near each end).
CENSORED = (3, 40, 41, 97, 150, 151, 152, 200)


def _kernel_equality(seed: np.ndarray, data: np.ndarray, n_t: int) -> dict[str, float]:
    """Max |z| difference of the kernel from the naive per-window reference, censored volumes included."""
    from workflows.dfc import WindowSpec, naive_sliding_window_dfc, sliding_window_dfc

    kept = np.ones(n_t, bool)
    kept[[c for c in CENSORED if c < n_t]] = False
    out = {}
    for shape, estimator in (
        ("rectangular", "weighted"),
        ("hamming", "weighted"),
        ("tapered", "weighted"),
        ("hamming", "tapered-series"),
    ):
        window = WindowSpec.volumes(30, step=1, shape=shape, estimator=estimator)
        res = sliding_window_dfc(seed, data, window, kept=kept, keep_windows=True)
        ref = naive_sliding_window_dfc(seed, data, window, kept=kept)[res.plan.valid]
        out[f"{shape}/{estimator}"] = float(np.abs(res.windows - ref).max())
    return out


def best_of_cpu(fn, repeats: int) -> tuple[float, object]:
    """Least process CPU time (s) of ``repeats`` calls: what the call costs, whatever else runs."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.process_time()
        out = fn()
        times.append(time.process_time() - t0)
    return min(times), out


def bench_participant(cache: Path, p: dict) -> dict:
    """Participant level end to end on one subject in one process; wall, CPU, peak RSS and node shares."""
    bids = simulate(cache, f"single_{p['res']}mm_{p['vols']}", 1, p["res"], p["vols"])
    run_dir = cache / "runs" / "participant"
    fresh(run_dir)
    run_dir.mkdir(parents=True)
    cmd = participant_cmd(bids, run_dir / "out", run_dir / "work", nprocs=1)
    r = run_measured(cmd, run_dir / "log.txt")
    nodes = node_times(run_dir / "log.txt")
    r["nodes"] = dict(sorted(nodes.items(), key=lambda kv: -kv[1]))
    r["node_sum_s"] = sum(nodes.values())
    # the same subject as a user runs it: the default processes (this machine's CPUs) and threads (all of
    # them for a lone subject: ExecutionParams.threads_per_process)
    from bids_app.config import available_cpus

    fresh(run_dir)
    run_dir.mkdir(parents=True)
    nprocs = available_cpus()
    cmd = participant_cmd(bids, run_dir / "out", run_dir / "work", nprocs=nprocs)
    r["defaults"] = {**run_measured(cmd, run_dir / "log.txt"), "nprocs": nprocs}
    return r


def _group_epochs(run_dir: Path, out: Path, n: int) -> dict:
    """Folds run and mean epochs actually trained (early stopping), from the fold JSON files."""
    folds = sorted((run_dir / "work").rglob("fold_r*_f*.json"))
    # a fold file holds one training-curve row per epoch of its CNN (the baseline has no curve)
    epochs = [len(json.loads(f.read_text())["curves"]) for f in folds]
    return {"n_folds": len(folds), "mean_epochs": float(np.mean(epochs)) if epochs else float("nan")}


def _group_training(run_dir: Path, out: Path, n: int) -> dict:
    """CNN training throughput: ``train_model`` for 3 epochs on the prepared inputs, 1 torch thread."""
    import torch

    from workflows.cnn import train_model, validation_split
    from workflows.params import TrainSettings

    d = np.load(next((run_dir / "work").rglob("group_inputs.npz")))
    x, y, groups = d["x"], d["y"], d["groups"]
    torch.set_num_threads(1)  # as in the parallel fold nodes
    n_ep = 3
    settings = TrainSettings(epochs=n_ep, min_epochs=n_ep, patience=n_ep, seed=0)
    is_val = validation_split(y, groups, settings.val_fraction, np.random.default_rng(0))
    t_train, _ = best_of(lambda: train_model(x, y, groups, settings), 1)
    return {
        "cnn_input_shape": "x".join(map(str, x.shape[1:])),
        "train_samples_per_epoch": int((~is_val).sum()),
        "train_samples_per_s_1thread": n_ep * int((~is_val).sum()) / t_train,
    }


def _group_inference(run_dir: Path, out: Path, n: int) -> dict:
    """``predict_subject`` (load the safe model, check the card, regrid, forward) on up to 5 subjects."""
    from bids_app.queries import derivatives_layout, find_subject_map, read_json
    from workflows.prediction import predict_subject
    from workflows.utils.bids import sidecar_path

    times = []
    layout = derivatives_layout(out)
    for label in [f"{i:02d}" for i in range(1, min(n, 5) + 1)]:
        map_file = find_subject_map(layout, label, space="MNI152NLin2009cAsym", res=None)
        meta = read_json(sidecar_path(map_file), "the map's JSON sidecar")
        t0 = time.perf_counter()
        predict_subject(
            map_file,
            out / "model",
            subject=label,
            lesion_side=meta["LesionHemisphere"],
            space=meta["Space"],
            meta=meta,
        )
        times.append(time.perf_counter() - t0)
    return {"inference_s_per_subject": float(np.median(times)), "inference_s_first": times[0]}


def _group_predict_cli(run_dir: Path, out: Path, n: int) -> dict:
    """Wall time of ``participant --model`` on 2 subjects end to end (maps, prediction, reports)."""
    work = run_dir.parent / "predict"
    fresh(work)
    work.mkdir(parents=True)
    cohort = out.with_name(out.name.removesuffix("_out"))  # the cohort's BIDS folder (bench_group)
    cmd = participant_cmd(cohort, work / "out", work / "work", ["01", "02"], extra=("--model", out / "model"))
    r = run_measured(cmd, work / "log.txt")
    return {"predict_cli_2_wall_s": r["wall_s"]}


def _group_permutation(run_dir: Path, out: Path, n: int) -> dict:
    """CPU time of one permutation draw as ``--n-permutations`` runs it (linear models, same CV)."""
    from workflows.params import CVParams, GroupParams
    from workflows.permutation import run_permutation

    data = run_dir / "work" / "strokefc_group_wf" / "prepare" / "group_inputs.npz"
    cv = json.loads((out / "group" / "cv_summary.json").read_text()).get("cv", {})
    params = GroupParams(cv=CVParams(cv_folds=cv.get("folds", 5), cv_repeats=cv.get("repeats", 5)))
    t = time.process_time()
    run_permutation(data, 0, params)
    return {"permutation_draw_cpu_s": time.process_time() - t}


def _group_half(run_dir: Path, out: Path, n: int, cmd: list) -> dict:
    """Wall time of the same group run on the first half of the subjects (is the cost linear in subjects?)."""
    half = n // 2
    work = run_dir.parent / "group_half"
    fresh(work)
    work.mkdir(parents=True)
    labels = [f"{i:02d}" for i in range(1, half + 1)]
    r = run_measured(
        [*cmd[:4], "--work-dir", work / "work", *cmd[6:], "--participant-label", *labels], work / "log.txt"
    )
    return {"half_n": half, "half_wall_s": r["wall_s"]}


def bench_group(cache: Path, p: dict) -> dict:
    """Group level (default CV) on the generator cohort; training throughput and inference per subject."""
    n = p["group_n"]
    bids = simulate(cache, f"cohort{n}_{p['group_vols']}", n, 4, p["group_vols"])
    out = cache / f"cohort{n}_{p['group_vols']}_out"
    prep_stamp = out / ".participant-complete"
    nan = float("nan")
    res: dict = {
        "n_subjects": n,
        "n_folds": 0,
        "mean_epochs": nan,
        "cnn_input_shape": "?",
        "train_samples_per_epoch": 0,
        "train_samples_per_s_1thread": nan,
        "inference_s_per_subject": nan,
        "inference_s_first": nan,
    }
    if not prep_stamp.exists():  # participant maps are a prerequisite, cached with the cohort
        fresh(out, cache / f"cohort{n}_work")
        print(f"  participant level for the {n}-subject cohort (prerequisite) ...", flush=True)
        r = run_measured(participant_cmd(bids, out, cache / f"cohort{n}_work"), cache / f"cohort{n}_part.log")
        out.mkdir(parents=True, exist_ok=True)
        prep_stamp.write_text(json.dumps(r))
    res["participant_prereq"] = json.loads(prep_stamp.read_text())

    run_dir = cache / "runs" / "group"
    fresh(run_dir, out / "model", out / "group")
    run_dir.mkdir(parents=True)
    cmd = [BIN / "strokefc", bids, out, "group", "--work-dir", run_dir / "work", "--nprocs", 2, "-v"]
    if p["cv_repeats"]:
        cmd += ["--cv-repeats", p["cv_repeats"]]
    if p["epochs"]:
        cmd += ["--epochs", p["epochs"]]
    res.update(run_measured(cmd, run_dir / "log.txt"))
    res["cv_repeats"] = p["cv_repeats"] or 5
    res["nodes"] = node_times(run_dir / "log.txt")

    steps = (
        _group_epochs,
        _group_training,
        _group_inference,
        _group_predict_cli,
        _group_permutation,
        _group_half,
    )
    for step in steps:  # a failure here keeps the wall time
        try:
            res.update(step(run_dir, out, n) if step is not _group_half else step(run_dir, out, n, cmd))
        except Exception as exc:  # noqa: BLE001  (a failed measurement is reported, the rest kept)
            traceback.print_exc()
            res.setdefault("errors", []).append(f"{step.__name__}: {type(exc).__name__}: {exc}")
    return res


def bench_scaling(cache: Path, p: dict) -> dict:
    """Participant level for 1, 2, 4 subjects: time per subject should stay flat."""
    n_max = max(p["scale_n"])
    bids = simulate(
        cache, f"scale{n_max}_{p['scale_res']}mm_{p['scale_vols']}", n_max, p["scale_res"], p["scale_vols"]
    )
    rows = []
    for n in p["scale_n"]:
        run_dir = cache / "runs" / f"scaling{n}"
        fresh(run_dir)
        run_dir.mkdir(parents=True)
        labels = [f"{i:02d}" for i in range(1, n + 1)]
        r = run_measured(
            participant_cmd(bids, run_dir / "out", run_dir / "work", labels), run_dir / "log.txt"
        )
        rows.append(
            {
                "n": n,
                "wall_s": r["wall_s"],
                "per_subject_s": r["wall_s"] / n,
                "cpu_s": r["cpu_s"],
                "cpu_per_subject_s": r["cpu_s"] / n,
                "load_start": r["load_start"],
                "peak_rss": r["peak_rss"],
            }
        )
    return {"rows": rows}


def bench_model_predict(cache: Path, p: dict) -> dict:
    """``participant --model`` on 2 held-out subjects, fresh work folder; the model is built once."""
    n = p["predict_n"]
    name = f"predict{n}_4mm_{p['predict_vols']}"
    bids = simulate(cache, name, n, 4, p["predict_vols"])
    held = [f"{n - 1:02d}", f"{n:02d}"]
    train = [f"{i:02d}" for i in range(1, n - 1)]
    out = cache / f"{name}_out"
    stamp = out / ".model-complete"
    if not stamp.exists():  # the model: participant maps and a quick group level, cached with the cohort
        fresh(out, cache / f"{name}_work")
        print(f"  building the model on {len(train)} subjects (prerequisite, cached) ...", flush=True)
        work = cache / f"{name}_work"
        common = ["--participant-label", *train, "--work-dir", work, "--nprocs", 2]
        steps = (
            [BIN / "strokefc", bids, out, "participant", *common],
            [
                BIN / "strokefc",
                bids,
                out,
                "group",
                *common,
                "--cv-folds",
                2,
                "--cv-repeats",
                1,
                "--epochs",
                5,
            ],
        )
        for i, cmd in enumerate(steps):
            subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)
            print(f"    step {i + 1}/2 done", flush=True)
        stamp.write_text("")
    run_dir = cache / "runs" / "model-predict"
    fresh(run_dir)
    run_dir.mkdir(parents=True)
    cmd = participant_cmd(bids, run_dir / "out", run_dir / "work", held, extra=("--model", out / "model"))
    r = run_measured(cmd, run_dir / "log.txt")
    r["subjects"] = held
    r["predictions"] = len(list((run_dir / "out").rglob("*_prediction.json")))
    return r


# ----------------------------------------------------------------------------- reporting
#: Section name -> its benchmark (``make bench`` runs them in this order).
BENCHES = {
    "kernel": bench_kernel,
    "participant": bench_participant,
    "group": bench_group,
    "scaling": bench_scaling,
    "model-predict": bench_model_predict,
    "cnn": lambda cache, p: cnn_paths.bench_cnn(quick=p["cnn_quick"]),
    "focal": lambda cache, p: focal_effect.bench_focal(quick=p["focal_quick"]),
}


def machine_info() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (ln.split(":", 1)[1].strip() for ln in lscpu.splitlines() if ln.startswith("Model name")),
        platform.processor(),
    )
    versions = {}
    for pkg in (
        "strokefc",
        "numpy",
        "scipy",
        "nibabel",
        "nilearn",
        "nipype",
        "niworkflows",
        "pybids",
        "torch",
    ):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "-"
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "load_avg_start": os.getloadavg(),
        "python": platform.python_version(),
        "versions": versions,
        "commit": commit,
        "kernel": platform.release(),
    }


def ok(flag: bool) -> str:
    return "met" if flag else "MISSED"


def summary_rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(benchmark, measured, target, status) rows."""
    rows = []
    k = results.get("kernel")
    if k:
        rows += [
            (
                "dFC kernel, vectorised",
                f"{k['vectorised_s']:.2f} s ({k['n_voxels']} vox x {k['n_windows']} win)",
                "",
                "",
            ),
            (
                "  vs naive corrcoef",
                f"{k['speedup_vs_naive']:.0f}x faster (naive {k['naive_s']:.0f} s, scaled "
                f"from {k['naive_subset_voxels']} vox)",
                ">= 50x",
                ok(k["speedup_vs_naive"] >= 50),
            ),
            (
                "  vs loading .nii.gz to float32",
                f"kernel/load = {k['kernel_over_load']:.2f} wall (load {k['load_s']:.2f} s), "
                f"{k['kernel_over_load_cpu']:.2f} CPU",
                "<= 0.5",
                ok(k["kernel_over_load"] <= 0.5),
            ),
            (
                "  equal to naive, censored (max |dz|)",
                ", ".join(f"{name} {v:.1e}" for name, v in k["equality"].items()),
                "<= 1e-5",
                ok(max(k["equality"].values()) <= 1e-5),
            ),
            (
                "stationary null, 100 surrogates, 4 mm",
                f"{k['null_100_4mm_s']:.1f} s ({k['null_4mm_voxels']} vox, 50-volume windows, 2 threads)",
                "<= 10 s",
                ok(k["null_100_4mm_s"] <= 10),
            ),
            (
                f"stationary null, 100 surrogates, {k['grid']} grid",
                f"{k['null_100_s']:.1f} s ({k['n_voxels']} vox, 2 threads)",
                "<= 30 s",
                ok(k["null_100_s"] <= 30),
            ),
        ]
    pr = results.get("participant")
    if pr:
        rows += _participant_rows("1 process", pr)
        d = pr.get("defaults")
        if d:
            rows += _participant_rows(f"defaults ({d['nprocs']} processes and threads)", d)
    g = results.get("group")
    if g:
        rows += [
            (
                f"group, {g['n_subjects']} subj, {g['n_folds']} folds (x{g['cv_repeats']} rep), wall",
                f"{g['wall_s'] / 60:.1f} min",
                "< 10 min",
                ok(g["wall_s"] < 600),
            ),
            (
                "  CNN training throughput",
                f"{g['train_samples_per_s_1thread']:.1f} samples/s per process "
                f"(1 thread, {g['cnn_input_shape']})",
                "",
                "",
            ),
            (
                "  inference per subject",
                f"{g['inference_s_per_subject']:.2f} s",
                "< 1 s",
                ok(g["inference_s_per_subject"] < 1),
            ),
        ]
        if "half_wall_s" in g:
            rows.append(
                (
                    f"  same, {g['half_n']} subjects (linear in subjects?)",
                    f"{g['half_wall_s'] / 60:.1f} min ({g['wall_s'] / g['half_wall_s']:.2f}x for "
                    f"{g['n_subjects'] / g['half_n']:.2f}x the subjects)",
                    "linear",
                    ok(g["wall_s"] / g["half_wall_s"] <= 1.2 * g["n_subjects"] / g["half_n"]),
                )
            )
        if "predict_cli_2_wall_s" in g:
            rows.append(
                (
                    "  participant --model, 2 subjects, wall",
                    f"{g['predict_cli_2_wall_s']:.1f} s (maps, prediction and reports)",
                    "< 30 s",
                    ok(g["predict_cli_2_wall_s"] < 30),
                )
            )
        if "permutation_draw_cpu_s" in g:
            est = 100 * g["permutation_draw_cpu_s"] / 2 / 60  # two draws at a time on 2 cores
            rows.append(
                (
                    "  100 permutations (linear models; estimate)",
                    f"{est:.0f} min (one draw {g['permutation_draw_cpu_s']:.0f} s CPU, x100 / 2 cores)",
                    "< 60 min",
                    ok(est < 60),
                )
            )
    if results.get("cnn"):
        rows += cnn_paths.rows(results["cnn"])
    if results.get("focal"):
        rows += focal_effect.rows(results["focal"])
    mp = results.get("model-predict")
    if mp:
        rows.append(
            (
                "participant --model, 2 subjects, 2 processes",
                f"{mp['wall_s']:.1f} s wall, {_num(mp, 'cpu_s')} s CPU "
                f"(load {_num(mp, 'load_start', '.2f')})",
                "< 30 s",
                ok(mp["wall_s"] < 30),
            )
        )
    s = results.get("scaling")
    if s:
        series = ", ".join(f"{r['n']}: {r['per_subject_s']:.1f}" for r in s["rows"])
        per = [r["per_subject_s"] for r in s["rows"]]
        # flat: no subject count costs more than 1.2x the smallest count's time per subject
        flat = ok(max(per) <= per[0] * 1.2) if len(per) > 1 else ""  # one count: nothing to compare
        rows.append(("scaling, s/subject (n: s)", series, "flat", flat))
        for r in s["rows"]:
            if r["n"] == 24:
                rows.append(
                    (
                        "participant 4 mm, 24 subjects, 2 processes",
                        f"{r['per_subject_s']:.1f} s/subject ({r['wall_s']:.0f} s)",
                        "< 5 s/subject",
                        ok(r["per_subject_s"] < 5),
                    )
                )
    return rows


def render_table(rows) -> str:
    widths = [
        max(len(r[i]) for r in [*rows, ("Benchmark", "Measured", "Target", "Status")]) for i in range(4)
    ]
    head = ("Benchmark", "Measured", "Target", "Status")
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return "\n".join(lines)


def _num(row: dict, key: str, fmt: str = ".1f") -> str:
    """``row[key]`` formatted, or "?" for a row recorded before the field existed."""
    return format(row[key], fmt) if key in row else "?"


def _participant_rows(setting: str, r: dict) -> list[tuple]:
    """The 2 mm subject's wall time and peak memory rows (targets: < 60 s, < 2.5 GB)."""
    return [
        (
            f"participant, 1 subject, {setting}, wall",
            f"{r['wall_s']:.1f} s ({r['cpu_s']:.1f} s CPU)",
            "< 60 s",
            ok(r["wall_s"] < 60),
        ),
        (f"participant, {setting}, peak RSS", gb(r["peak_rss"]), "< 2.5 GB", ok(r["peak_rss"] < 2.5e9)),
    ]


def details(results: dict) -> str:
    out = []
    pr = results.get("participant")
    if pr:
        out.append("### Participant level: node shares (1 subject, 1 process)\n")
        out.append(
            f"Wall {pr['wall_s']:.1f} s, CPU {pr['cpu_s']:.1f} s; summed node time {pr['node_sum_s']:.1f} s; "
            "the rest is start-up, BIDS validation, pybids indexing, workflow build and report assembly.\n"
        )
        out.append("| Node | Time (s) | Share of wall |\n|---|---|---|")
        out += [f"| {n} | {t:.2f} | {100 * t / pr['wall_s']:.0f}% |" for n, t in pr["nodes"].items()]
        out.append("")
    g = results.get("group")
    if g:
        out.append("### Group level\n")
        pre = g["participant_prereq"]
        out.append(
            f"- Participant level for the {g['n_subjects']} subjects (prerequisite, not a target): "
            f"{pre['wall_s']:.0f} s, {pre['wall_s'] / g['n_subjects']:.1f} s/subject, "
            f"peak RSS {gb(pre['peak_rss'])}."
        )
        out.append(
            f"- Group run peak RSS (tree): {gb(g['peak_rss'])}; mean epochs per fold (early stopping): "
            f"{g['mean_epochs']:.1f}."
        )
        out.append(
            f"- Training throughput measured with `train_model` for 3 epochs on "
            f"{g['train_samples_per_epoch']} training samples, 1 torch thread (as in a fold node)."
        )
        out.append(
            f"- Inference: `predict_subject` (load safetensors model, check card, regrid, forward); "
            f"median of up to 5 subjects; first call {g['inference_s_first']:.2f} s."
        )
        nodes = ", ".join(f"{n} {t:.0f} s" for n, t in sorted(g["nodes"].items(), key=lambda kv: -kv[1]))
        out.append(f"- Node times (summed over MapNode children): {nodes}.")
        if g["cv_repeats"] != 5 and "cv_fold" in g["nodes"]:
            cv_share = g["nodes"]["cv_fold"] / 2  # fold nodes run two at a time
            est = g["wall_s"] + (5 / g["cv_repeats"] - 1) * cv_share
            out.append(
                f"- Run with --cv-repeats {g['cv_repeats']} (the default is 5). The folds are independent "
                f"nodes, so the default costs about {est / 60:.1f} min here (this wall plus "
                f"{5 / g['cv_repeats'] - 1:.0f}x the fold time divided by 2 processes); an estimate, "
                "not a measurement."
            )
        out += [f"- Error: {e}" for e in g.get("errors", [])]
        out.append("")
    mp = results.get("model-predict")
    if mp:
        out.append("### participant --model (2 held-out subjects, --nprocs 2, fresh work folder)\n")
        out.append(
            f"- Wall {mp['wall_s']:.1f} s, CPU {_num(mp, 'cpu_s')} s (whole tree), load at start "
            f"{_num(mp, 'load_start', '.2f')}, peak RSS {gb(mp['peak_rss']) if 'peak_rss' in mp else '?'}; "
            f"subjects {', '.join(mp.get('subjects', []))}, {mp.get('predictions', '?')} prediction file(s) "
            "written. The model (a quick group level on the cohort's other subjects) is built once, "
            "outside the timing.\n"
        )
    s = results.get("scaling")
    if s:
        out.append("### Scaling (participant level, --nprocs 2)\n")
        out.append(
            "| Subjects | Wall (s) | s/subject | CPU (s, whole tree) | CPU s/subject | Load at start "
            "| Peak RSS |\n|---|---|---|---|---|---|---|"
        )
        out += [
            f"| {r['n']} | {r['wall_s']:.1f} | {r['per_subject_s']:.1f} | {_num(r, 'cpu_s')} "
            f"| {_num(r, 'cpu_per_subject_s')} | {_num(r, 'load_start', '.2f')} | {gb(r['peak_rss'])} |"
            for r in s["rows"]
        ]
        out.append("")
    k = results.get("kernel")
    if k:
        out.append("### dFC kernel\n")
        out.append(
            f"- Run: {k['grid']} grid, {k['n_voxels']} brain voxels, {k['n_volumes']} volumes, window 30, "
            f"step 1 ({k['n_windows']} windows); BOLD .nii.gz {k['bold_gz_mb']:.0f} MB."
        )
        out.append(
            f"- Naive reference timed on {k['naive_subset_voxels']} random voxels "
            f"({k['naive_subset_s']:.1f} s) and scaled linearly to all voxels (one corrcoef per window "
            f"over the subset; on all voxels at once it would cost more, its matrix is voxels squared). "
            f"Max |SD difference| vectorised vs naive on that subset: {k['max_abs_sd_diff']:.1e} (Fisher z)."
        )
        out.append(
            f"- Load: {k['load_s']:.2f} s wall, {k['load_cpu_s']:.2f} s CPU; "
            f"kernel {k['vectorised_s']:.2f} s wall, {k['vectorised_cpu_s']:.2f} s CPU "
            "(wall: best of 3; CPU: one call; naive: 1 run)."
        )
        out.append(
            "- Equality with the naive reference (window 30, step 1, volumes "
            f"{', '.join(map(str, CENSORED))} censored, 300 voxels, every valid window): max |z difference| "
            + ", ".join(f"{name} {v:.1e}" for name, v in k["equality"].items())
            + ".\n"
        )
    for name, err in results.get("errors", {}).items():
        out.append(f"- {name} failed: {err}")
    return "\n".join(out)


def write_results(info: dict, results: dict, args, table: str) -> Path:
    today = dt.date.today().isoformat()
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    part = "" if set(only) >= set(SECTIONS) else "-" + "-".join(only)
    path = REPO / "benchmarks" / "results" / f"{today}{part}{'-quick' if args.quick else ''}.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    v = ", ".join(f"{k} {val}" for k, val in info["versions"].items())
    la = ", ".join(f"{x:.2f}" for x in info["load_avg_start"])
    text = f"""# strokefc benchmarks, {today}{" (--quick)" if args.quick else ""}

- Machine: {info["cpu"]}, {info["cores"]} cores (Linux {info["kernel"]})
- Load average at start (1, 5, 15 min): {la}. The machine is shared with other jobs, so every time here
  is an upper bound.
- Python {info["python"]}; {v}; commit {info["commit"]}
- Command: `{" ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}`; total {results["total_s"] / 60:.1f} min

{table}

{details(results)}
Raw numbers:

```json
{json.dumps({k: v for k, v in results.items()}, indent=1, default=str)}
```
"""
    path.write_text(text)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke check")
    parser.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}"
    )
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/strokefc-bench"),
        help="cohorts (reused) and work folders (fresh each run)",
    )
    parser.add_argument(
        "--cv-repeats",
        type=int,
        default=None,
        help="group level: override the CV repeats (default: the app's default, 5)",
    )
    parser.add_argument(
        "--scale-n",
        default=None,
        help="scaling: comma-separated subject counts (default 1,2,4,8,24; e.g. 24 for the target alone)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only; no results file")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"--only: unknown {sorted(unknown)}; choose from {','.join(SECTIONS)}")
    p = dict(QUICK if args.quick else FULL)
    if args.cv_repeats:
        p["cv_repeats"] = args.cv_repeats
    if args.scale_n:
        try:
            p["scale_n"] = tuple(sorted({int(x) for x in args.scale_n.split(",") if x.strip()}))
        except ValueError:
            parser.error(f"--scale-n: comma-separated whole numbers, not {args.scale_n!r}")
        if not p["scale_n"] or min(p["scale_n"]) < 1:
            parser.error("--scale-n: subject counts of 1 or more")
    args.cache.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    print(f"{info['cpu']}, {info['cores']} cores, load average {info['load_avg_start']}", flush=True)
    t0 = time.perf_counter()
    results: dict = {}
    errors: dict = {}
    # the group level first: it is the longest, and run while the machine is freshest
    for name in ("group", "kernel", "participant", "scaling", "model-predict", "cnn", "focal"):
        if name in only:
            print(f"== {name}", flush=True)
            t = time.perf_counter()
            try:
                results[name] = BENCHES[name](args.cache, p)
            except Exception as exc:  # noqa: BLE001  (keep the other sections' figures; report the failure)
                traceback.print_exc()
                errors[name] = f"{type(exc).__name__}: {exc}"
            print(f"   done in {time.perf_counter() - t:.0f} s", flush=True)
    results["total_s"] = time.perf_counter() - t0
    results["load_avg_end"] = os.getloadavg()
    if errors:
        results["errors"] = errors
    table = render_table(summary_rows(results))
    print("\n" + table)
    if not args.no_write:
        print(f"\nwrote {write_results(info, results, args, table)}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
