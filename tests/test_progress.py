"""The time left of the participant progress lines, against runs scheduled here as MultiProc does
(synthetic timelines: the factor-2 check of tests/test_console.py on many schedules, in milliseconds)."""

import itertools
from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import check_progress_lines

from bids_app.progress import SubjectProgress, estimate_time_left

#: A subject's chain of nodes and their run times (s) as measured on a 4 mm subject: denoise, dFC,
#: report figures, and the sinks.
CHAIN = [("sources", 0.1), ("denoise", 6.0), ("seed", 0.1), ("dfc", 22.0), ("reportlets", 17.0)] + [
    (f"ds_{i}", 0.1) for i in range(10)
]
EPOCH = 1.8e9


def _node(name, start=None, duration=None):
    runtime = None
    if start is not None:
        runtime = SimpleNamespace(
            startTime=datetime.fromtimestamp(EPOCH + start, UTC).isoformat(), duration=duration
        )
    return SimpleNamespace(fullname=name, result=SimpleNamespace(runtime=runtime))


def run_schedule(
    n_subjects, n_procs, rng, startup=20.0, spread=0.3, slow_subject=None, known=True, cores=None, gap=0.0
):
    """Runs ``n_subjects`` chains on ``n_procs`` workers, the ready node of the earliest subject first
    (as :class:`StrokefcMultiProcPlugin` with :func:`subject_priority`), the workers ready ``startup`` s
    after the first submission; feeds :class:`SubjectProgress` the callbacks at their times.

    The jobs running at once share ``cores`` (default: one a worker; fewer on a busy machine, where a
    node takes longer than its CPU time). CPU times vary by a factor drawn per subject (``spread``) and
    per node; ``slow_subject`` takes 1.6 times as long (more volumes; a subject far slower than any
    before it cannot be foreseen). ``known``: :class:`SubjectProgress` is told the number of workers.
    ``gap``: seconds between a node's end and its successor's submission (Nipype's main process on a
    busy machine). Returns the progress lines with their times.
    """
    cores = n_procs if cores is None else cores
    names = {
        s: [f"strokefc_participant_wf.sub_{s:02d}_wf.dfc_task_rest_wf.{leaf}" for leaf, _ in CHAIN]
        for s in range(1, n_subjects + 1)
    }
    graph = {}
    for chain in names.values():
        graph.update({a: [b] for a, b in itertools.pairwise(chain)})
        graph[chain[-1]] = []
    now, cpu = [EPOCH], [0.0]
    lines = []
    progress = SubjectProgress(
        None,
        printer=lambda text, **_: lines.append((now[0] - EPOCH, text)),
        workers=n_procs if known else None,
        graph=graph,
        clock=lambda: now[0],
        cpu_seconds=lambda: cpu[0],
    )
    factor = {s: rng.uniform(1 - spread, 1 + spread) * (1.6 if s == slow_subject else 1) for s in names}
    step = dict.fromkeys(names, 0)  # each subject's next node
    not_before = dict.fromkeys(names, 0.0)  # when its next node can be submitted
    active = {}  # subject -> [CPU seconds left, when its node began]
    t = 0.0
    while True:
        idle = [s for s in sorted(names) if s not in active and step[s] < len(CHAIN)]
        held = sum(0 < step[s] and not_before[s] > t for s in idle)  # a subject keeps its worker
        for s in [s for s in idle if not_before[s] <= t][: n_procs - len(active) - held]:
            now[0] = EPOCH + t
            progress(_node(names[s][step[s]]), "start")
            work = CHAIN[step[s]][1] * factor[s] * rng.uniform(0.8, 1.25)
            active[s] = [work, max(t, startup)]
        waiting = [not_before[s] for s in idle if s not in active and not_before[s] > t]
        if not active:
            if not waiting:
                return lines
            t = min(waiting)
            continue
        t = max(t, startup)
        speed = min(1.0, cores / len(active))
        dt = min(min(left for left, _ in active.values()) / speed, min(waiting, default=np.inf) - t)
        t += dt
        cpu[0] += dt * speed * len(active)
        now[0] = EPOCH + t
        for s in sorted(active):
            active[s][0] -= dt * speed
            if active[s][0] <= 1e-9:
                begin = active.pop(s)[1]
                progress(_node(names[s][step[s]], begin, t - begin), "end")
                step[s] += 1
                not_before[s] = t + gap


@pytest.mark.parametrize(
    ("n_subjects", "n_procs", "cores", "slow", "known", "gap"),
    [
        (5, 2, None, None, True, 0.0),
        (24, 2, None, None, True, 0.0),
        (8, 4, None, None, True, 0.0),
        (9, 4, None, None, True, 0.0),
        (3, 2, None, None, True, 0.0),
        (12, 2, None, 10, True, 0.0),  # a slow subject is seen once its first long node has run
        (12, 4, None, 1, True, 0.0),
        (9, 4, None, None, False, 0.0),
        (24, 2, None, None, False, 0.0),
        (5, 2, 1.0, None, True, 0.0),  # as on the shared 2-core machine: the last subject ran twice as fast
        (9, 4, 2.0, None, True, 0.0),
        (24, 2, 1.3, None, False, 0.0),
        (5, 2, 1.0, None, True, 2.0),  # and Nipype's main process slow between nodes
        (24, 2, None, None, True, 2.0),
    ],
)
def test_time_left_is_within_a_factor_of_2_after_the_first_quarter(
    n_subjects, n_procs, cores, slow, known, gap
):
    """Subjects finish in batches of ``n_procs``; five subjects on four workers take two rounds; on a
    busy machine a subject left alone runs faster than in company; a slow subject late (or first) shows
    once its first long node has run; the workers are counted or inferred from the rate."""
    for seed in range(5):
        rng = np.random.default_rng(seed)
        lines = run_schedule(n_subjects, n_procs, rng, slow_subject=slow, known=known, cores=cores, gap=gap)
        assert len(lines) == n_subjects
        assert check_progress_lines([(t, text + "\n") for t, text in lines], start=0.0) >= 1


def test_time_left_before_any_worker_node_ends_is_not_said():
    lines = []
    progress = SubjectProgress(
        None, printer=lambda text, **_: lines.append(text), graph={"w.sub_01_wf.a": [], "w.sub_02_wf.a": []}
    )
    progress(_node("w.sub_01_wf.a"), "end")  # no run time: a node that ran locally or was cached
    assert lines == ["  sub-01 done (1/2, 0.0 min elapsed)"]


def test_the_estimate_schedules_the_subjects_left_on_the_workers():
    def left(started, queued, workers, speedup=1.0):
        return estimate_time_left([(w, 0) for w in started], [(w, 0) for w in queued], workers, speedup)

    assert left(started=[10, 20], queued=[30, 30, 30], workers=2) == 70  # 10+30+30, 20+30
    assert left(started=[5], queued=[40], workers=4) == 40  # the last one runs alone
    assert left(started=[5, 5, 5, 5], queued=[40], workers=4) == 45
    assert left(started=[], queued=[], workers=2) == 0
    assert left(started=[10, 10, 10, 10], queued=[], workers=2) == pytest.approx(20)  # sharing 2 workers
    # two workers sharing one core: alone, the last subject runs twice as fast as in company
    assert left(started=[40, 40], queued=[40], workers=2, speedup=2.5) == 60
    assert left(started=[40], queued=[], workers=4, speedup=2.5) == 16
    # the wait between nodes does not run faster
    assert estimate_time_left([(40, 10)], [], workers=2, speedup=2.5) == 30


def test_a_failed_node_takes_what_depends_on_it_out_of_the_work_left():
    now = [EPOCH]
    graph = {"w.sub_01_wf.a": ["w.sub_01_wf.b"], "w.sub_01_wf.b": [], "w.sub_02_wf.a": ["w.sub_02_wf.b"]}
    graph["w.sub_02_wf.b"] = []
    lines = []
    progress = SubjectProgress(
        None, printer=lambda text, **_: lines.append(text), graph=graph, clock=lambda: now[0]
    )
    for name in ("w.sub_01_wf.a", "w.sub_02_wf.a"):
        progress(_node(name), "start")
    now[0] += 10
    progress(_node("w.sub_01_wf.a", 0, 10), "end")
    progress(_node("w.sub_02_wf.a"), "exception")
    assert lines[-1].startswith("  sub-02 failed (see the summary at the end) (1/2,")
    assert progress.pending == {"w.sub_01_wf.b"}
    progress(_node("w.sub_01_wf.b"), "start")
    now[0] += 10
    progress(_node("w.sub_01_wf.b", 10, 10), "end")
    assert lines[-1] == "  sub-01 done (2/2, 0.3 min elapsed)"


def test_cpu_time_of_a_process_is_read_from_proc():
    import os
    import subprocess
    import sys
    import time

    from bids_app.console import process_cpu_seconds

    if not os.path.exists(f"/proc/{os.getpid()}/stat"):
        pytest.skip("no /proc here: the estimate takes run times as CPU time")
    before = process_cpu_seconds(os.getpid())
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    assert process_cpu_seconds(os.getpid()) - before == pytest.approx(0.3, abs=0.1)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    assert process_cpu_seconds(ended.pid) is None
