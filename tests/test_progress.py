"""The time left of the participant progress lines, against runs scheduled here as MultiProc does
(synthetic timelines: the factor-2 check of tests/test_console.py on many schedules, in milliseconds)."""

import heapq
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


def run_schedule(n_subjects, n_procs, rng, startup=20.0, spread=0.3, slow_subject=None, known=True):
    """Runs ``n_subjects`` chains on ``n_procs`` workers, the ready node of the earliest subject first
    (as :class:`StrokefcMultiProcPlugin` with :func:`subject_priority`), the workers ready ``startup`` s
    after the first submission; feeds :class:`SubjectProgress` the callbacks at their times.

    Run times vary by a factor drawn per subject (``spread``) and per node; ``slow_subject`` takes 1.6
    times as long (more volumes; a subject far slower than any before it cannot be foreseen).
    ``known``: :class:`SubjectProgress` is told the number of workers. Returns the progress lines with
    their times.
    """
    names = {
        s: [f"strokefc_participant_wf.sub_{s:02d}_wf.dfc_task_rest_wf.{leaf}" for leaf, _ in CHAIN]
        for s in range(1, n_subjects + 1)
    }
    graph = {}
    for chain in names.values():
        graph.update({a: [b] for a, b in itertools.pairwise(chain)})
        graph[chain[-1]] = []
    now = [EPOCH]
    lines = []
    progress = SubjectProgress(
        None,
        printer=lambda text, **_: lines.append((now[0] - EPOCH, text)),
        workers=n_procs if known else None,
        graph=graph,
        clock=lambda: now[0],
    )
    factor = {s: rng.uniform(1 - spread, 1 + spread) * (1.6 if s == slow_subject else 1) for s in names}
    step = dict.fromkeys(names, 0)  # each subject's next node
    running, events, t = set(), [], 0.0
    while True:
        ready = [s for s in sorted(names) if s not in running and step[s] < len(CHAIN)]
        for s in ready[: n_procs - len(running)]:
            running.add(s)
            base = CHAIN[step[s]][1]
            name = names[s][step[s]]
            now[0] = EPOCH + t
            progress(_node(name), "start")
            begin = max(t, startup)
            duration = base * factor[s] * rng.uniform(0.8, 1.25)
            heapq.heappush(events, (begin + duration + 0.05, s, name, begin, duration))
        if not events:
            return lines
        t, s, name, begin, duration = heapq.heappop(events)
        now[0] = EPOCH + t
        running.discard(s)
        step[s] += 1
        progress(_node(name, begin, duration), "end")


@pytest.mark.parametrize(
    ("n_subjects", "n_procs", "slow", "known"),
    [
        (5, 2, None, True),
        (24, 2, None, True),
        (8, 4, None, True),
        (9, 4, None, True),
        (3, 2, None, True),
        (12, 2, 12, True),
        (12, 4, 1, True),
        (9, 4, None, False),
        (24, 2, None, False),
    ],
)
def test_time_left_is_within_a_factor_of_2_after_the_first_quarter(n_subjects, n_procs, slow, known):
    """Subjects finish in batches of ``n_procs``; five subjects on four workers take two rounds; a slow
    subject last (or first) is not seen coming; the workers are counted or inferred from the rate."""
    for seed in range(5):
        lines = run_schedule(n_subjects, n_procs, np.random.default_rng(seed), slow_subject=slow, known=known)
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
    assert estimate_time_left(started=[10, 20], queued=[30, 30, 30], workers=2) == 70  # 10+30+30, 20+30
    assert estimate_time_left(started=[5], queued=[40], workers=4) == 40  # the last one runs alone
    assert estimate_time_left(started=[5, 5, 5, 5], queued=[40], workers=4) == 45
    assert estimate_time_left(started=[], queued=[], workers=2) == 0


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
