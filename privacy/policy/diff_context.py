"""How `policy diff` judges a context dimension: its declared values, or its opening.

A declared dimension (a list) is judged by the list rule it is given (privacy.policy.diff).
Opening one (``{open: {...}}``) loosens: any valid label an app sends is stored as sent
and shown once a DP selection finds enough people; closing one tightens. Between two
open forms each selection setting is judged by what it lets out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from privacy.policy.change import MISSING, Change, Direction, change, plain
from privacy.policy.open import OpenDimension

__all__ = ["context_rule"]

Rule = Callable[[Any, str, Any, Any], list[Change]]

_LOOSENS, _TIGHTENS = Direction.LOOSENS, Direction.TIGHTENS

# Each open setting: the direction of a larger value, why if larger, why if smaller.
_SELECTION = {
    "min_users": (
        _TIGHTENS,
        "a value needs more people before any answer shows it",
        "a value used by fewer people can show in answers",
    ),
    "max_values_per_user": (
        _LOOSENS,
        "one person's labels count towards more values",
        "one person's labels count towards fewer values",
    ),
    "max_values": (
        _LOOSENS,
        "one answer may show more of the selected values",
        "one answer shows fewer of the selected values",
    ),
    "delta": (
        _LOOSENS,
        "a selection may fail its threshold with a larger probability δ",
        "a selection may fail its threshold with a smaller probability δ",
    ),
    "rho": (
        Direction.NEUTRAL,
        "a selection costs more budget (charged: the budget still bounds what can be "
        "learned) and picks values more reliably",
        "a selection costs less budget and picks values less reliably",
    ),
}


def context_rule(declared: Rule) -> Rule:
    """The rule of one context dimension; ``declared`` judges a change between two lists."""

    def rule(sides: Any, key: str, old: Any, new: Any) -> list[Change]:
        was_open, is_open = isinstance(old, OpenDimension), isinstance(new, OpenDimension)
        if was_open and is_open:
            return _selection_changes(key, old, new)
        if is_open:
            reason = (
                "the dimension is opened: any label an app sends (1-64 of A-Za-z0-9._-) is "
                'stored as sent instead of as "other", and answers show each value a DP '
                f"selection finds used by about {new.open.min_users} people or more (δ charged)"
            )
            return [change(key, _shown(old), "open", _LOOSENS, reason)]
        if was_open:
            reason = (
                "the dimension is no longer stored"
                if new is MISSING
                else 'the dimension is closed: labels other than these are stored as "other"'
            )
            return [change(key, "open", _shown(new), _TIGHTENS, reason)]
        return declared(sides, key, old, new)

    return rule


def _shown(side: Any) -> Any:
    return side if side is MISSING else [plain(v) for v in side]


def _selection_changes(key: str, old: OpenDimension, new: OpenDimension) -> list[Change]:
    out = []
    for name, (larger, if_larger, if_smaller) in _SELECTION.items():
        o, n = getattr(old.open, name), getattr(new.open, name)
        if o == n:
            continue
        reverse = {_LOOSENS: _TIGHTENS, _TIGHTENS: _LOOSENS}.get(larger, larger)
        direction, reason = (larger, if_larger) if n > o else (reverse, if_smaller)
        out.append(change(f"{key}.open.{name}", o, n, direction, reason))
    return out
