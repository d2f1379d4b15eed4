"""Durations as a policy writes them: ``30d``, ``12h``, ``90m``, ``45s``.

One positive whole number and one unit, nothing else: no fractions, no compound forms
such as ``1d12h``, no bare numbers. A reviewer reads each value at a glance and a
number without a unit (seconds? days?) cannot slip through. Output is the shortest exact
form, so ``timedelta(hours=36)`` is written ``36h`` and ``timedelta(days=1)`` ``1d``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

# Fourteen digits hold the largest timedelta in seconds (about 8.6e13), so whatever
# format_duration writes parses back; larger numbers are refused as too long.
DURATION_PATTERN = r"^[1-9][0-9]{0,13}[dhms]$"
_DURATION_RE = re.compile(DURATION_PATTERN)

# Largest unit first: format_duration picks the first that divides exactly.
_UNITS: tuple[tuple[str, timedelta], ...] = (
    ("d", timedelta(days=1)),
    ("h", timedelta(hours=1)),
    ("m", timedelta(minutes=1)),
    ("s", timedelta(seconds=1)),
)
_UNIT_OF = dict(_UNITS)

DURATION_HELP = "a positive whole number followed by d, h, m or s (e.g. 30d, 12h, 90m, 45s)"


def parse_duration(text: str) -> timedelta:
    """Parse ``"30d"``, ``"12h"``, ``"90m"`` or ``"45s"``; raise ``ValueError`` otherwise."""
    if not _DURATION_RE.match(text):
        raise ValueError(f"{text!r} is not a duration: write {DURATION_HELP}")
    try:
        return int(text[:-1]) * _UNIT_OF[text[-1]]
    except OverflowError:
        raise ValueError(f"{text!r} is longer than any duration Python can hold") from None


def format_duration(td: timedelta) -> str:
    """The shortest exact form of a positive whole number of seconds (``36h``, ``1d``).

    Raises ``ValueError`` for a zero, negative or sub-second duration, which no policy
    value can be.
    """
    if td <= timedelta(0) or td % timedelta(seconds=1):
        raise ValueError(f"{td!r} is not a positive whole number of seconds")
    for suffix, unit in _UNITS:
        if not td % unit:
            return f"{td // unit}{suffix}"
    raise AssertionError("unreachable: every whole number of seconds has a unit")


def _validate_duration(value: Any) -> timedelta:
    # A timedelta is accepted so that code can build policies directly; anything else
    # must be the string form (a bare number has no unit and is refused on purpose).
    if isinstance(value, timedelta):
        if value <= timedelta(0) or value % timedelta(seconds=1):
            raise PydanticCustomError(
                "duration",
                "must be a positive whole number of seconds, got {got}",
                {"got": str(value)},
            )
        return value
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise PydanticCustomError("duration", "{message}", {"message": str(exc)}) from None
    raise PydanticCustomError(
        "duration", "{got} is not a duration: write " + DURATION_HELP, {"got": repr(value)}
    )


Duration = Annotated[
    timedelta,
    PlainValidator(_validate_duration),
    # JSON (and so YAML, and the explain/diff output) gets the same form a policy is
    # written in; Python keeps the timedelta.
    PlainSerializer(format_duration, return_type=str, when_used="json"),
    WithJsonSchema(
        {"type": "string", "pattern": DURATION_PATTERN, "examples": ["30d", "12h", "90m", "45s"]}
    ),
]
"""A positive duration written as ``<whole number><d|h|m|s>``."""
