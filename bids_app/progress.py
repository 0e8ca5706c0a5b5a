"""One line per finished or failed subject during a participant run (a Nipype status callback).

Lines come as subjects finish, because MultiProc runs the ready jobs subject by subject
(:func:`subject_priority`). The time left schedules the work left on the workers
(:func:`estimate_time_left`): a node's expected run time is the mean of the same node in the subjects
done, as the nodes' own results measure it (so a worker's start-up is not counted as work), times
the subject's own pace, plus the wait between nodes the subjects done had; the workers' CPU time
says how much faster the last subjects run alone. Counting
subjects instead (the time per finished subject times the subjects left) was off by up to the number
of workers: subjects finish in batches of that size, and the first of a batch said as much time left
as a whole batch, the last almost none.
"""

from __future__ import annotations

import os
import pickle
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe


def _subject_of(fullname: str) -> str | None:
    for part in fullname.split("."):
        if part.startswith("sub_") and part.endswith("_wf"):
            return part[4:-3]
    return None


def _within_subject(fullname: str) -> str:
    """A node's name below its subject's workflow: the same node of every subject has the same one."""
    parts = fullname.split(".")
    for i, part in enumerate(parts):
        if part.startswith("sub_") and part.endswith("_wf"):
            return ".".join(parts[i + 1 :])
    return fullname


def subject_priority(labels: list[str]) -> Callable[[Any], int]:
    """A node's rank for MultiProc: the position of its subject in ``labels`` (others first)."""
    rank = {label: i for i, label in enumerate(labels)}
    return lambda node: rank.get(_subject_of(node.fullname) or "", -1)


def estimate_time_left(
    started: Iterable[tuple[float, float]],
    queued: Iterable[tuple[float, float]],
    workers: int,
    speedup: float = 1.0,
) -> float:
    """Seconds until the last subject is done, from each subject's ``(work, wait)`` left: ``started``
    ones each on a worker, ``queued`` ones in the order they will start, each on the first worker free.

    Work is in seconds as the nodes ran with every worker busy; wait is the time between its nodes
    (Nipype's main process checks, submits and collects). A subject's nodes run one after another;
    when fewer subjects than workers are left, their work runs up to ``speedup`` times faster (at most
    ``workers / k`` with ``k`` running: on a machine busy with other work the run's share of the cores
    goes to the subjects left); with more, they share the workers. Scheduling what is left, rather
    than dividing it by the rate so far, counts the parallelism the end of a run really has: five
    subjects on four workers take two rounds, and the last subject runs alone.
    """
    waiting = deque(queued)
    active = [(work, wait) for work, wait in started if work + wait > 0]
    elapsed = 0.0
    while active or waiting:
        while len(active) < workers and waiting:
            active.append(waiting.popleft())
        speed = min(max(1.0, speedup), workers / len(active))
        durations = [work / speed + wait for work, wait in active]
        step = min(durations)
        elapsed += step
        active = [
            (work * (1 - step / d), wait * (1 - step / d))
            for (work, wait), d in zip(active, durations, strict=True)
            if d - step > 1e-9
        ]
    return elapsed


def workers_of(plugin: str, plugin_args: Mapping[str, Any]) -> int | None:
    """The jobs a plugin runs at once (``None`` for a batch system: as many as its queue grants)."""
    if plugin == "Linear":
        return 1
    if plugin == "MultiProc":
        return int(plugin_args.get("n_procs") or os.cpu_count() or 1)
    return None


def _time_left(seconds: float) -> str:
    if seconds >= 90:
        return f"about {seconds / 60:.0f} min left"
    if seconds >= 10:
        return f"about {5 * round(seconds / 5)} s left"
    return "a few seconds left"


def _run_time(node: Any) -> tuple[float, float] | None:
    """When a finished node started (epoch seconds) and how long it ran, from its result file; ``None``
    when the result does not say (a node that does not report, a result that cannot be read)."""
    try:
        runtime = node.result.runtime
        return datetime.fromisoformat(runtime.startTime).timestamp(), float(runtime.duration)
    # the estimate is a nicety: a result it cannot read must not stop the run
    except (OSError, EOFError, pickle.UnpicklingError, AttributeError, TypeError, ValueError):
        return None


class SubjectProgress:
    """Counts the finished nodes of each subject; prints when a subject's last node ends or one fails.

    Nipype runs identity nodes without reporting them, so a subject's node count excludes them.
    """

    def __init__(
        self,
        workflow: pe.Workflow | None,
        printer: Any = print,
        workers: int | None = None,
        graph: Mapping[str, Iterable[str]] | None = None,
        clock: Callable[[], float] = time.time,
        cpu_seconds: Callable[[], float | None] | None = None,
    ) -> None:
        """``workers``: the jobs run at once (``None``: the work done per second so far, rounded).
        ``graph``: every reporting node's full name and its successors', when there is no ``workflow``
        to read them from. ``clock``: the time now (epoch seconds). ``cpu_seconds``: the CPU time the
        workers have used (``None``, or returning ``None``: run times are taken as CPU time)."""
        self.successors: dict[str, list[str]] = {k: list(v) for k, v in (graph or {}).items()}
        if workflow is not None:
            flat = workflow._create_flat_graph()
            for node in flat.nodes():
                # identity nodes never report: their successors become their predecessors'
                if not isinstance(node.interface, IdentityInterface):
                    self.successors[node.fullname] = _reporting_successors(flat, node)
        self.expected: Counter[str | None] = Counter(_subject_of(name) for name in self.successors)
        self.expected.pop(None, None)
        self.workers = workers
        self.pending = set(self.successors)  # nodes not finished, failed nor skipped
        self.running: dict[str, float] = {}  # node -> when it was submitted
        self.samples: dict[str, list[float]] = defaultdict(list)  # run times by name within a subject
        self.leaf_samples: dict[str, list[float]] = defaultdict(list)  # and by the node's own name
        self.ran: dict[str | None, dict[str, float]] = defaultdict(dict)  # subject -> node -> run time
        self.work_done = 0.0
        self.subject_start: dict[str | None, float] = {}  # when a subject's first worker node began
        self.waits: list[float] = []  # a done subject's wall time not in its nodes, a node
        self.first_start: float | None = None
        self.finished: Counter[str | None] = Counter()
        self.reported: set[str] = set()
        self.clock = clock
        self.cpu_seconds = cpu_seconds
        self.started = clock()
        self.printer = printer
        self.lock = threading.Lock()

    def __call__(self, node: pe.Node, status: str) -> None:
        with self.lock:
            self._account(node, status)
            subject = _subject_of(node.fullname)
            if subject is None or status == "start" or subject in self.reported:
                return
            if status == "exception":
                self._report(subject, "failed (see the summary at the end)")
                return
            self.finished[subject] += 1
            if self.finished[subject] >= self.expected[subject]:
                self._record_wait(subject)
                self._report(subject, "done")

    def _record_wait(self, subject: str) -> None:
        """How long a finished subject waited between its nodes, a node: Nipype's main process checks,
        submits and collects each node, and on a busy machine that took about as long as the nodes
        (28 nodes a subject, most of them sinks)."""
        ran = self.ran.get(subject, {})
        if subject in self.subject_start and ran:
            span = self.clock() - self.subject_start[subject]
            self.waits.append(max(0.0, span - sum(ran.values())) / self.expected[subject])

    def _account(self, node: pe.Node, status: str) -> None:
        name = node.fullname
        if status == "start":
            self.running[name] = self.clock()
            return
        submitted = self.running.pop(name, None)
        self.pending.discard(name)
        if status == "exception":  # Nipype skips what depends on a failed node
            self.pending.difference_update(_descendants(self.successors, name))
            return
        run = _run_time(node)
        if run is None or run[0] < self.started:  # a node cached from an earlier run cost this run nothing
            return
        self.work_done += run[1]
        self.ran[_subject_of(name)][name] = run[1]
        self.samples[_within_subject(name)].append(run[1])
        self.leaf_samples[name.rsplit(".", 1)[-1]].append(run[1])
        if submitted is not None:  # ran in a worker: the rate starts with the workers' first node
            self.first_start = run[0] if self.first_start is None else min(self.first_start, run[0])
            subject = _subject_of(name)
            self.subject_start[subject] = min(self.subject_start.get(subject, run[0]), run[0])

    def expected_run_time(self, name: str) -> float:
        """The mean run time of this node in the subjects done so far (of nodes with its name when no
        subject had it; 0 when none)."""
        samples = self.samples.get(_within_subject(name)) or self.leaf_samples.get(name.rsplit(".", 1)[-1])
        return sum(samples) / len(samples) if samples else 0.0

    def pace(self, subject: str | None) -> float:
        """How much longer than expected this subject's nodes ran so far (1 before any ran): a subject
        with more volumes is slower at every node. Shrunk towards 1 by a tenth of a subject's work,
        so that a first short node (a sink run in a hundredth of a second) does not set it."""
        ran = self.ran.get(subject)
        if not ran:
            return 1.0
        prior = 0.1 * self.work_done / max(1, len(self.ran))
        expected = sum(self.expected_run_time(name) for name in ran)
        return (sum(ran.values()) + prior) / (expected + prior) if expected + prior > 0 else 1.0

    def time_left(self) -> float | None:
        """Seconds until every subject is done, or ``None`` before the first worker's node ends."""
        if self.first_start is None:
            return None
        now = self.clock()
        left: dict[str | None, float] = defaultdict(float)
        nodes: Counter[str | None] = Counter()
        done = self.work_done
        pace = {subject: self.pace(subject) for subject in self.ran}
        for name in self.pending:
            subject = _subject_of(name)
            expected = self.expected_run_time(name) * pace.get(subject, 1.0)
            ran = min(now - self.running[name], expected) if name in self.running else 0.0
            left[subject] += expected - ran
            nodes[subject] += 1
            done += ran
        begun = {_subject_of(name) for name in self.running} | set(self.finished)
        elapsed = max(now - self.first_start, 1e-9)
        workers = self.workers or max(1, round(done / elapsed))
        wait = sum(self.waits) / len(self.waits) if self.waits else 0.0
        # a node that got a fraction of a core (a busy machine) runs faster when fewer subjects share
        # the run's cores: its run time over its CPU time says by how much at most
        cpu = self.cpu_seconds() if self.cpu_seconds else None
        speedup = done / cpu if cpu and done > 0 else 1.0
        order = sorted(left, key=str)
        started = [(left[s], nodes[s] * wait) for s in order if s in begun]
        queued = [(left[s], nodes[s] * wait) for s in order if s not in begun]
        return estimate_time_left(started, queued, workers, speedup)

    def _report(self, subject: str, what: str) -> None:
        self.reported.add(subject)
        done, total = len(self.reported), len(self.expected)
        elapsed = self.clock() - self.started
        seconds = self.time_left() if done < total else None
        eta = "" if seconds is None else f", {_time_left(seconds)}"
        self.printer(
            f"  sub-{subject} {what} ({done}/{total}, {elapsed / 60:.1f} min elapsed{eta})", flush=True
        )


def _reporting_successors(flat: Any, node: Any) -> list[str]:
    """The nodes after ``node`` in ``flat``, looking through identity nodes (which never report)."""
    found: list[str] = []
    stack = list(flat.successors(node))
    seen = set()
    while stack:
        nxt = stack.pop()
        if nxt in seen:
            continue
        seen.add(nxt)
        if isinstance(nxt.interface, IdentityInterface):
            stack.extend(flat.successors(nxt))
        else:
            found.append(nxt.fullname)
    return found


def _descendants(successors: Mapping[str, Iterable[str]], name: str) -> set[str]:
    found: set[str] = set()
    stack = list(successors.get(name, ()))
    while stack:
        nxt = stack.pop()
        if nxt not in found:
            found.add(nxt)
            stack.extend(successors.get(nxt, ()))
    return found
