"""The words of a policy explanation: numbers, durations and periods as a reviewer reads
them, and what each event type and identifier field means in plain language.

`privacy.policy.explain` builds its sentences from these; nothing here reads a policy.
"""

from __future__ import annotations

import textwrap
from datetime import timedelta

from privacy.durations import format_duration
from privacy.events import EventType

__all__ = [
    "EVENT_WORDS",
    "IDENTIFIER_USE",
    "RHO",
    "SQUARED",
    "TIMES",
    "delta_text",
    "duration",
    "joined",
    "number",
    "percent",
    "period_count",
    "period_name",
    "precision",
    "wrap",
]

_DAY = timedelta(days=1)
# Spelled by name: ruff flags the literal characters as look-alikes of p and x.
RHO = "\N{GREEK SMALL LETTER RHO}"
TIMES = "\N{MULTIPLICATION SIGN}"
SQUARED = "\N{SUPERSCRIPT TWO}"

# What each event type carries, in a reviewer's words (the payload fields of privacy.events).
EVENT_WORDS: dict[EventType, str] = {
    EventType.RESPONSE_SHOWN: "a response was shown (its position among the candidates)",
    EventType.CLICK_THROUGH: "a person clicked one of several responses (its position)",
    EventType.REFORMULATION: (
        "a person rephrased their query (a similarity score from 0 to 1 computed by the app, "
        "not the text)"
    ),
    EventType.COPY_PASTE: (
        "a person copied part of a response (where the copied span starts and ends, its "
        "length, and whether it was pasted inside or outside the product; not the text)"
    ),
    EventType.EDIT: "a person edited a response (how much, as a fraction from 0 to 1)",
    EventType.DWELL: "how long a response stayed on screen and how far it was scrolled",
    EventType.ABANDONMENT: "a session ended without completion (after how many milliseconds)",
    EventType.TASK_COMPLETION: "the downstream task succeeded or failed",
    EventType.REGENERATE: "a person asked for another answer (which attempt, 1 to 20)",
    EventType.STOP_GENERATION: (
        "a person stopped an answer while it was being written (after how many milliseconds)"
    ),
    EventType.FEEDBACK: (
        "a person rated an answer: thumbs up or down, optionally 1 to 5 stars; no comment text"
    ),
}

IDENTIFIER_USE: dict[str, tuple[str, str]] = {
    # field: (what its pseudonym allows, what dropping it prevents)
    "user_id": (
        "it bounds each person's contribution to an answer and counts distinct users",
        "",  # the policy model refuses to drop user_id
    ),
    "session_id": (
        "events of one session can be grouped together (abandonment, sampling by session)",
        "events of one session cannot be grouped together",
    ),
    "query_id": (
        "events about the same query can be joined",
        "events about the same query cannot be joined",
    ),
    "response_id": (
        "events about the same response can be joined",
        "events about the same response cannot be joined",
    ),
}


def wrap(text: str, width: int, initial_indent: str = "", subsequent_indent: str = "") -> list[str]:
    """``text`` wrapped to ``width`` columns, never between a symbol and its value."""
    # "ε = 4" must not be broken across lines: glue it with no-break spaces, which
    # textwrap does not split on, and turn them back into spaces afterwards.
    glued = text.replace(" = ", "\N{NO-BREAK SPACE}=\N{NO-BREAK SPACE}")
    lines = textwrap.wrap(
        glued, width, initial_indent=initial_indent, subsequent_indent=subsequent_indent
    )
    return [line.replace("\N{NO-BREAK SPACE}", " ") for line in lines]


def number(x: float) -> str:
    """A number as a person reads it: 3 significant digits, thousands separated."""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def duration(td: timedelta) -> str:
    """``30d`` → "30 days", ``1h`` → "1 hour"."""
    text = format_duration(td)
    n, unit = int(text[:-1]), {"d": "day", "h": "hour", "m": "minute", "s": "second"}[text[-1]]
    return f"{n} {unit}" + ("s" if n != 1 else "")


def period_name(td: timedelta) -> str:
    """The salt period as the object of "within any one …": "day", "6-hour period"."""
    if td == _DAY:
        return "day"
    text = duration(td).removesuffix("s").replace(" ", "-")
    return f"{text} period"


def period_count(n: int, td: timedelta) -> str:
    """``n`` salt periods: "30 days", "1 6-hour period"."""
    return f"{n} {period_name(td)}" + ("s" if n != 1 else "")


def precision(td: timedelta) -> str:
    """Rounding target: "the minute", "the hour", "15 minutes"."""
    text = duration(td)
    return f"the {text[2:]}" if text.startswith("1 ") else text


def percent(rate: float) -> str:
    """A rate as a percentage: 0.5 → "50 %"."""
    return f"{rate * 100:.3g} %"


def delta_text(value: float) -> str:
    """``1e-08`` → ``1e-8``: the way a policy writes it."""
    return f"{value:g}".replace("e-0", "e-")


def joined(items: list[str]) -> str:
    """ "a", "a and b", "a, b and c"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
