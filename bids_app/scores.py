"""UL-FMA scores from participants.tsv: one parser and one range check for both levels."""

from __future__ import annotations

from workflows.utils.errors import InputError

#: The upper-extremity Fugl-Meyer assessment ranges from 0 to 66.
UL_FMA_RANGE = (0.0, 66.0)


def parse_score(
    raw: str, where: str, *, subject: str | None = None, allow_missing_hint: bool = False
) -> float:
    """A UL-FMA score as a float; non-numbers and values outside 0..66 are input errors naming ``where``."""
    who = f" of sub-{subject}" if subject else ""
    try:
        value = float(raw)
    except ValueError:
        fix = (
            "write a score in 0..66, or n/a with --allow-missing-labels"
            if allow_missing_hint
            else "write a score in 0..66 or n/a"
        )
        raise InputError(f"UL-FMA {raw!r}{who} is not a number", where, fix) from None
    low, high = UL_FMA_RANGE
    if not low <= value <= high:
        raise InputError(f"UL-FMA {value:g}{who} is outside 0..66", where, "correct the score")
    return value
