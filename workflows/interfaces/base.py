"""Base class of strokefc's interfaces: a node that stops on an :class:`InputError` leaves a record of it.

Nipype turns every exception into a crash file holding a traceback. So that the application can say
what went wrong, where and how to fix it without parsing that text, the error is also written as JSON
(:data:`workflows.utils.errors.FAILURE_RECORD`) in the node's working directory.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from nipype.interfaces.base import SimpleInterface

from workflows.utils.errors import InputError, write_failure_record


def _recording(run_interface: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    @functools.wraps(run_interface)
    def wrapper(self: Any, runtime: Any) -> Any:
        try:
            return run_interface(self, runtime)
        except InputError as exc:
            write_failure_record(runtime.cwd, exc)
            raise

    return wrapper


class StrokefcInterface(SimpleInterface):
    """``SimpleInterface`` whose ``_run_interface`` records input errors (see the module docstring)."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_run_interface" in cls.__dict__:
            cls._run_interface = _recording(cls.__dict__["_run_interface"])
