"""The one exception type for problems a user can fix, raised by the science layer.

Numeric code names its own *parameters* (``window_length``), never command-line flags: the app shell
(the command line) renders the same error with its flags (``--window-length``) through
:meth:`InputError.render`. ``InputError`` is a :class:`ValueError`, so notebook users can catch either.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path


class InputError(ValueError):
    """A problem with the user's input: what is wrong, where, and how to fix it.

    Parameters
    ----------
    what, where, fix : str
        The three parts of the message; ``where`` is a file, a table row or a parameter name.
    params : tuple of str
        Qualified parameter names that the message mentions (``"DenoiseParams.fd_thresh"``); an
        application renames them (to its flags) with :meth:`render`.
    """

    def __init__(
        self, what: str, where: str | None = None, fix: str | None = None, params: tuple[str, ...] = ()
    ) -> None:
        self.what, self.where, self.fix = what, where, fix
        self.params = tuple(params)
        super().__init__(self.render())

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message, with each parameter in ``params`` renamed through ``names`` (e.g. to its flag)."""
        parts = [self.what.rstrip(".") + "."]
        if self.where:
            parts.append(f"Where: {self.where}.")
        if self.fix:
            parts.append(f"How to fix: {self.fix.rstrip('.')}.")
        text = " ".join(parts)
        for param, name in (names or {}).items():  # qualified names ("WindowParams.window_step")
            text = re.sub(rf"(?<![\w.]){re.escape(param)}(?![\w])", name, text)
        return text

    def to_dict(self) -> dict:
        """JSON-able record (what a failed node leaves behind for the app to report)."""
        return {"what": self.what, "where": self.where, "fix": self.fix, "params": list(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping) -> InputError:
        """Inverse of :meth:`to_dict`."""
        return cls(data["what"], data.get("where"), data.get("fix"), tuple(data.get("params", ())))


def check_choice(value: object, choices: Iterable[str], what: str, param: str) -> None:
    """Raise the :class:`InputError` of an unknown choice: ``"<what> 'x' is unknown"``, where ``param``
    (e.g. ``"GroupParams.map"``, rendered as its flag by the app), and the choices to use."""
    options = list(choices)
    if value not in options:
        raise InputError(
            f"{what} {value!r} is unknown", param, f"use one of {', '.join(options)}", params=(param,)
        )


#: File a node leaves in its working directory when it stops on an :class:`InputError`.
FAILURE_RECORD = "input_error.json"


def write_failure_record(directory: str | Path, error: InputError) -> Path:
    """Record ``error`` in ``directory`` so that the application reports it without parsing tracebacks."""
    path = Path(directory) / FAILURE_RECORD
    path.write_text(json.dumps(error.to_dict(), indent=2, sort_keys=True) + "\n")
    return path
