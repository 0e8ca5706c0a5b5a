"""One line per finished or failed subject during a participant run (a Nipype status callback).

Lines come as subjects finish, because MultiProc runs the ready jobs subject by subject
(:func:`subject_priority`); the time left is said once two subjects are done (one subject also
carries the pipeline's start-up, so it overestimates by about the number of parallel jobs).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe


def _subject_of(fullname: str) -> str | None:
    for part in fullname.split("."):
        if part.startswith("sub_") and part.endswith("_wf"):
            return part[4:-3]
    return None


def subject_priority(labels: list[str]) -> Callable[[Any], int]:
    """A node's rank for MultiProc: the position of its subject in ``labels`` (others first)."""
    rank = {label: i for i, label in enumerate(labels)}
    return lambda node: rank.get(_subject_of(node.fullname) or "", -1)


#: Subjects done before the time left is estimated.
MIN_DONE_FOR_ESTIMATE = 2


def _time_left(seconds: float) -> str:
    return f"about {seconds / 60:.0f} min left" if seconds >= 90 else "under 2 min left"


class SubjectProgress:
    """Counts the finished nodes of each subject; prints when a subject's last node ends or one fails.

    Nipype runs identity nodes without reporting them, so a subject's node count excludes them.
    """

    def __init__(
        self,
        workflow: pe.Workflow | None,
        printer: Any = print,
        expected: Mapping[str, int] | None = None,
    ) -> None:
        """``expected``: node counts by subject, when there is no ``workflow`` to count them from."""
        self.expected: Counter[str | None] = Counter(expected or {})
        if workflow is not None:
            self.expected.update(
                _subject_of(node.fullname)
                for node in workflow._create_flat_graph().nodes()
                if not isinstance(node.interface, IdentityInterface)
            )
        self.expected.pop(None, None)
        self.finished: Counter[str | None] = Counter()
        self.reported: set[str] = set()
        self.started = time.time()
        self.printer = printer
        self.lock = threading.Lock()

    def __call__(self, node: pe.Node, status: str) -> None:
        subject = _subject_of(node.fullname)
        if subject is None or status == "start":
            return
        with self.lock:
            if subject in self.reported:
                return
            if status == "exception":
                self._report(subject, "failed (see the summary at the end)")
                return
            self.finished[subject] += 1
            if self.finished[subject] >= self.expected[subject]:
                self._report(subject, "done")

    def _report(self, subject: str, what: str) -> None:
        self.reported.add(subject)
        done, total = len(self.reported), len(self.expected)
        elapsed = time.time() - self.started
        eta = ""
        if MIN_DONE_FOR_ESTIMATE <= done < total:
            eta = f", {_time_left(elapsed / done * (total - done))}"
        self.printer(
            f"  sub-{subject} {what} ({done}/{total}, {elapsed / 60:.1f} min elapsed{eta})", flush=True
        )
