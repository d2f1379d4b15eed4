"""A change of meaning between two policies, its direction, and how it is shown.

`privacy.policy.diff` judges every key; this module holds what it reports: one `Change`
per change of meaning (key, old and new values as a policy writes them, a direction and
the reason for it) and the `PolicyDiff` that lists them.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum, StrEnum
from typing import Any

from privacy.durations import format_duration

__all__ = [
    "ARROW",
    "MISSING",
    "Change",
    "Direction",
    "PolicyDiff",
    "change",
    "plain",
    "show",
    "written",
]

ARROW = "\N{RIGHTWARDS ARROW}"
_LONG = 60  # longer text values (descriptions) are cut in the one-line summary


class _Missing(Enum):
    MISSING = "(not set)"


MISSING = _Missing.MISSING  # a mapping entry one of the policies does not write


class Direction(StrEnum):
    """How a change moves a policy."""

    LOOSENS = "loosens"
    TIGHTENS = "tightens"
    NEUTRAL = "neutral"


@dataclass(frozen=True)
class Change:
    """One change of meaning: the key, old and new values (JSON-ready), its direction.

    ``old`` or ``new`` is None when the key is not written on that side (its default
    applies) or, for list members, when members were only added or only removed.
    ``summary`` is the change as shown (``90d → 180d``, ``adds ide, docs``); ``reason``
    says in plain words why it has this direction.
    """

    key: str
    old: Any
    new: Any
    direction: Direction
    summary: str
    reason: str

    def __str__(self) -> str:
        return f"{self.direction.value.upper():<9}{self.key}: {self.summary}"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: key, old, new, direction, summary, reason."""
        return {
            "key": self.key,
            "old": self.old,
            "new": self.new,
            "direction": self.direction.value,
            "summary": self.summary,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class PolicyDiff:
    """Every change of meaning from one policy to another, in the order of the file."""

    changes: tuple[Change, ...]

    @property
    def loosens(self) -> bool:
        """Whether any change loosens the policy (the CI gate fails on this)."""
        return any(c.direction is Direction.LOOSENS for c in self.changes)

    def count(self, direction: Direction) -> int:
        """How many changes go in ``direction``."""
        return sum(1 for c in self.changes if c.direction is direction)

    def as_text(self) -> str:
        """One line per change with its reason indented below, then a one-line tally."""
        lines: list[str] = []
        for c in self.changes:
            lines += [
                str(c),
                *textwrap.wrap(c.reason, 88, initial_indent=" " * 9, subsequent_indent=" " * 9),
            ]
        if not self.changes:
            lines.append("No change in meaning.")
        else:
            n = len(self.changes)
            lines.append(
                f"{n} change{'s' if n != 1 else ''}: "
                + ", ".join(f"{self.count(d)} {d.value}" for d in Direction)
                + "."
            )
        return "\n".join(lines) + "\n"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: ``loosens`` and every change."""
        return {"loosens": self.loosens, "changes": [c.as_dict() for c in self.changes]}


# --- values as a policy writes them -----------------------------------------------------


def plain(value: Any) -> str:
    """A value as a policy writes it (durations ``30d``, deltas ``1e-8``)."""
    if value is MISSING or value is None:
        return "(not set)"
    if isinstance(value, timedelta):
        return format_duration(value)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, float):
        return f"{value:g}".replace("e-0", "e-").replace("e+0", "e+")
    if isinstance(value, list | tuple):
        return "[" + ", ".join(plain(v) for v in value) + "]"
    return str(value)


def show(value: Any) -> str:
    """``plain``, with long text (descriptions) cut to fit a summary line."""
    text = plain(value)
    return text if len(text) <= _LONG else text[: _LONG - 1] + "\N{HORIZONTAL ELLIPSIS}"


def written(value: Any, effective: Any) -> str:
    """How a side shows in a summary: its value, or the default that applies."""
    return show(value) if value is not MISSING else f"(not set: {show(effective)})"


def _json(value: Any) -> Any:
    if value is MISSING:
        return None
    if isinstance(value, timedelta | Enum):
        return plain(value)
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    return value


def change(
    key: str,
    old: Any,
    new: Any,
    direction: Direction,
    reason: str,
    summary: str | None = None,
) -> Change:
    """A `Change` with JSON-ready values and, unless given, the summary ``old → new``."""
    summary = summary or f"{show(old)} {ARROW} {show(new)}"
    return Change(key, _json(old), _json(new), direction, summary, reason)
