"""One line per finished or failed subject during a participant run (a Nipype status callback)."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from nipype.interfaces.utility import IdentityInterface
from nipype.pipeline import engine as pe


def _subject_of(fullname: str) -> str | None:
    for part in fullname.split("."):
        if part.startswith("sub_") and part.endswith("_wf"):
            return part[4:-3]
    return None


class SubjectProgress:
    """Counts the finished nodes of each subject; prints when a subject's last node ends or one fails.

    Nipype runs identity nodes without reporting them, so a subject's node count excludes them.
    """

    def __init__(self, workflow: pe.Workflow, printer: Any = print) -> None:
        flat = workflow._create_flat_graph()
        self.expected = Counter(
            _subject_of(node.fullname)
            for node in flat.nodes()
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
        remaining = elapsed / done * (total - done)
        eta = f", about {remaining / 60:.0f} min left" if done < total else ""
        self.printer(
            f"  sub-{subject} {what} ({done}/{total}, {elapsed / 60:.1f} min elapsed{eta})", flush=True
        )
