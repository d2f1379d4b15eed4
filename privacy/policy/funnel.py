"""The funnel a policy declares (``privacy.metrics.funnel``): ordered steps after a response.

`session_funnel` (privacy/funnel.py) reads it: of the epoch-sessions with a
``response_shown``, the share that went on to each step, in order. A step is an event type,
optionally narrowed by one of its enumerated payload fields::

    funnel:
      steps: [click_through, copy_paste, {task_completion: {outcome: success}}]

Each step is stored in a canonical text form (``task_completion:outcome=success``), which
the file may also use. Only enumerated fields can narrow a step, so every condition is a
comparison with a label the event model itself declares: nothing from the file reaches
the SQL but those labels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from privacy.events import EventType
from privacy.policy.errors import Violation, raise_all

__all__ = ["MAX_STEPS", "STEP_FIELDS", "FunnelSettings", "Step", "funnel_violations", "parse_step"]

MAX_STEPS = 8
"""The most steps a funnel may have (each one more histogram bin per cell)."""

STEP_FIELDS: Mapping[EventType, Mapping[str, tuple[str, ...]]] = {
    EventType.COPY_PASTE: {"destination": ("internal", "external")},
    EventType.TASK_COMPLETION: {"outcome": ("success", "failure")},
    EventType.FEEDBACK: {"thumbs": ("up", "down")},
}
"""The payload fields that may narrow a step of each event type, with their values."""

_STEP_TYPES = tuple(t.value for t in EventType if t is not EventType.RESPONSE_SHOWN)
_SHAPE = "write a step as an event type, or {task_completion: {outcome: success}}"


@dataclass(frozen=True)
class Step:
    """One funnel step: an event type and the (field, value) pairs its events must have."""

    event_type: EventType
    where: tuple[tuple[str, str], ...] = ()

    @property
    def name(self) -> str:
        """The canonical text: ``click_through``, ``task_completion:outcome=success``."""
        if not self.where:
            return self.event_type.value
        return self.event_type.value + ":" + ",".join(f"{k}={v}" for k, v in self.where)


def parse_step(value: Any) -> Step:
    """A step from its YAML form (text or a one-key mapping); ValueError says what is wrong."""
    if isinstance(value, Mapping):
        if len(value) != 1:
            raise ValueError(f"a step names one event type; {_SHAPE}")
        ((kind, conditions),) = value.items()
        if not isinstance(conditions, Mapping) or not conditions:
            raise ValueError(f"the conditions of {kind!r} must be a mapping; {_SHAPE}")
        where = tuple((str(k), v) for k, v in conditions.items())
    elif isinstance(value, str):
        kind, _, rest = value.partition(":")
        pairs = [p.partition("=") for p in rest.split(",")] if rest else []
        if any(not sep for _, sep, _ in pairs):
            raise ValueError(f"{value!r}: conditions are written field=value; {_SHAPE}")
        where = tuple((k, v) for k, _, v in pairs)
    else:
        raise ValueError(_SHAPE)
    if kind == EventType.RESPONSE_SHOWN.value:
        raise ValueError("response_shown is where the funnel starts (its denominator), not a step")
    if kind not in _STEP_TYPES:
        raise ValueError(f"{kind!r} is not an event type (allowed: {', '.join(_STEP_TYPES)})")
    event_type = EventType(kind)
    fields = STEP_FIELDS.get(event_type, {})
    checked: list[tuple[str, str]] = []
    for field, wanted in where:
        if field not in fields:
            allowed = ", ".join(fields) or "none: it has no enumerated field"
            raise ValueError(f"a {kind} step cannot be narrowed by {field!r} (allowed: {allowed})")
        if wanted not in fields[field]:
            raise ValueError(
                f"{kind} {field} must be one of {', '.join(fields[field])}, not {wanted!r}"
            )
        checked.append((field, str(wanted)))
    if len({f for f, _ in checked}) != len(checked):
        raise ValueError(f"{kind}: a field is named twice")
    return Step(event_type, tuple(sorted(checked)))


def _canonical(value: Any) -> Any:
    if not isinstance(value, list):
        return value  # pydantic reports the wrong type
    out: list[Any] = []
    problems: list[Violation] = []
    for i, item in enumerate(value):
        try:
            out.append(parse_step(item).name)
        except ValueError as exc:
            problems.append(Violation((i,), str(exc)))
    raise_all(problems)
    return out


class FunnelSettings(BaseModel):
    """The ``privacy.metrics.funnel`` key: the ordered steps of `session_funnel`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Canonical step texts, in order; empty: no funnel declared (the metric is unavailable).
    steps: Annotated[list[str], BeforeValidator(_canonical), Field(max_length=MAX_STEPS)] = Field(
        default_factory=list
    )

    @field_validator("steps")
    @classmethod
    def _unique(cls, steps: list[str]) -> list[str]:
        # The same step twice would make the second a copy of the first.
        seen: dict[str, int] = {}
        found = []
        for i, s in enumerate(steps):
            if s in seen:
                found.append(Violation((i,), f"duplicate step {s!r} (also at [{seen[s]}])"))
            seen.setdefault(s, i)
        raise_all(found)
        return steps

    def parsed(self) -> tuple[Step, ...]:
        """The steps, parsed (they were validated when the policy was loaded)."""
        return tuple(parse_step(s) for s in self.steps)


def funnel_violations(
    steps: Sequence[str], collected: Sequence[EventType], rates: Mapping[EventType, float]
) -> list[Violation]:
    """Rules across sections: steps of collected types, all sampled at one rate.

    A step of a type the policy does not collect could never be reached. Sessions are
    kept whole per type at each type's rate, so a step sampled more thinly than
    response_shown would look rarer than it is: the funnel needs one rate for all.
    """
    path = ("privacy", "metrics", "funnel", "steps")
    parsed = [parse_step(s) for s in steps]
    found = [
        Violation((*path, i), f"{s.event_type.value} is not an allowed event type")
        for i, s in enumerate(parsed)
        if s.event_type not in collected
    ]
    if parsed and EventType.RESPONSE_SHOWN not in collected:
        found.append(Violation(path, "a funnel starts at response_shown, which is not collected"))
    kinds = [EventType.RESPONSE_SHOWN, *(s.event_type for s in parsed)]
    if parsed and len({rates.get(t, 1.0) for t in kinds}) > 1:
        listed = ", ".join(f"{t.value} {rates.get(t, 1.0):g}" for t in dict.fromkeys(kinds))
        found.append(
            Violation(
                path,
                f"response_shown and every step must share one sampling rate ({listed}): "
                "a step sampled more thinly would look rarer than it is",
            )
        )
    return found
