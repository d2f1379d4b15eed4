"""The chat signals of the catalogue: regenerations, stopped answers and explicit feedback.

Explicit feedback (thumbs, stars) is the signal teams reach for first and the least
representative one: every feedback metric says so in its description (docs/metrics.md).
"""

from __future__ import annotations

from privacy.events import CONTEXT_DIMENSIONS, EventType
from privacy.metric_model import Metric, Scale, mean_and_median

__all__ = ["CHAT_METRICS"]

_CONTEXT = CONTEXT_DIMENSIONS
_RS = EventType.RESPONSE_SHOWN
_STOP_EDGES = (
    *range(0, 10_000, 1_000),
    *range(10_000, 30_000, 2_500),
    *range(30_000, 60_000, 5_000),
    *range(60_000, 120_000, 15_000),
    *range(120_000, 300_001, 30_000),
)
# Stars: a mean only. A median of five values read from a histogram would say little.
_RATING = Scale("rating", 1, 1, 5)
_STOP = Scale("after_ms", 1, 0, 300_000, _STOP_EDGES)

# Said of every explicit-feedback metric: it describes raters, not users.
_FEW_RATE = (
    "Only a few users rate, and those who do are not typical (the very pleased and the "
    "annoyed rate more): read it beside feedback_rate and the implicit signals, never "
    "as the satisfaction of all users."
)

CHAT_METRICS: tuple[Metric, ...] = (
    Metric(
        name="regenerate_rate",
        title="Regenerate rate",
        description=(
            "Requests for another answer per response shown. Higher means users more often "
            "rejected an answer outright; a regeneration is a stronger negative signal than "
            "a reformulation, since the question stayed the same."
        ),
        kind="rate",
        numerator="regenerate events",
        denominator="response_shown events",
        dimensions=_CONTEXT,
        unit="ratio",
        event_types=(EventType.REGENERATE, _RS),
    ),
    Metric(
        name="stop_rate",
        title="Stop rate",
        description=(
            "Streaming answers stopped by the user per response shown. A stop can mean the "
            "answer went the wrong way, or that the user already had what they needed: "
            "read it with stop_time and task_completion_rate."
        ),
        kind="rate",
        numerator="stop_generation events",
        denominator="response_shown events",
        dimensions=_CONTEXT,
        unit="ratio",
        event_types=(EventType.STOP_GENERATION, _RS),
    ),
    *mean_and_median(
        "stop_time",
        "Time to stop",
        "time from the start of a streaming answer to the user stopping it, in milliseconds",
        EventType.STOP_GENERATION,
        _STOP,
        "ms",
        _CONTEXT,
        "Early stops suggest the answer went the wrong way from the start.",
    ),
    Metric(
        name="feedback_rate",
        title="Feedback rate",
        description=(
            "Explicit ratings (thumbs up or down) per response shown: how many answers "
            "were rated at all. " + _FEW_RATE
        ),
        kind="rate",
        numerator="feedback events",
        denominator="response_shown events",
        dimensions=_CONTEXT,
        unit="ratio",
        event_types=(EventType.FEEDBACK, _RS),
    ),
    Metric(
        name="thumbs_up_rate",
        title="Thumbs-up rate",
        description=(
            "Thumbs up per rated answer (feedback events with thumbs up over all feedback "
            "events). " + _FEW_RATE
        ),
        kind="rate",
        numerator="feedback events with thumbs up",
        denominator="feedback events",
        dimensions=_CONTEXT,
        unit="ratio",
        event_types=(EventType.FEEDBACK, EventType.FEEDBACK),
    ),
    mean_and_median(
        "feedback_rating",
        "Rating",
        "star rating (1 to 5) of feedback events that carry one",
        EventType.FEEDBACK,
        _RATING,
        "stars",
        _CONTEXT,
        _FEW_RATE,
    )[0],
)
