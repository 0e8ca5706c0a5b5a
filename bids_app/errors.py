"""The one exception type for problems a user can fix.

The CLI turns :class:`InputError` into exit code 2 (usage/input error) with the message only;
any other exception is a processing failure (exit code 1).
"""


class InputError(ValueError):
    """A problem with the user's input: the message says what, where, and how to fix it."""

    def __init__(self, what: str, where: str | None = None, fix: str | None = None):
        self.what, self.where, self.fix = what, where, fix
        parts = [what.rstrip(".") + "."]
        if where:
            parts.append(f"Where: {where}.")
        if fix:
            parts.append(f"How to fix: {fix.rstrip('.')}.")
        super().__init__(" ".join(parts))
