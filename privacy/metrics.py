"""The metric catalogue: the signal statistics an analyst may ask for, in plain words.

Each metric says what it counts (numerator and denominator), how its values are bounded
before aggregation, and which public dimensions it may be grouped by. The catalogue is
pure data: `privacy.policy.grants` says which metrics a policy makes available and to
whom, `privacy.query` turns a request into a plan with sensitivities and noise, and
`service.queries` turns the plan into SQL. Every metric here is documented in
docs/metrics.md.

The value bounds of a metric are part of its definition: a value outside them is clamped
before anything is summed, which is what lets the sensitivity of a sum be derived from
the catalogue and the policy instead of from the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from privacy.chat_metrics import CHAT_METRICS
from privacy.events import CONTEXT_DIMENSIONS, EventType
from privacy.funnel import FUNNEL_METRICS
from privacy.metric_model import (
    Kind,
    Metric,
    Scale,
    bounded_total,
    mean_and_median,
    tail_quantiles,
)

__all__ = [
    "DIMENSIONS",
    "METRICS",
    "Kind",
    "Metric",
    "Scale",
]

# Every dimension a metric may be grouped by besides "day", in the order cells are laid
# out (the canonical order, whatever order a request names them in).
DIMENSIONS: tuple[str, ...] = ("event_type", "position", *CONTEXT_DIMENSIONS)


_CONTEXT = CONTEXT_DIMENSIONS
_RS = EventType.RESPONSE_SHOWN

# Bin edges: fine where values are common, coarse in the tail.
_SPAN_EDGES = (
    *range(0, 100, 10),
    *range(100, 300, 25),
    *range(300, 1000, 100),
    *range(1000, 2000, 250),
    *range(2000, 5001, 500),
)
_BPS_EDGES = tuple(range(0, 10_001, 500))  # 20 bins of 0.05
_DWELL_EDGES = (
    *range(0, 10_000, 1_000),
    *range(10_000, 30_000, 2_500),
    *range(30_000, 60_000, 5_000),
    *range(60_000, 120_000, 15_000),
    *range(120_000, 300_001, 30_000),
)

# Time to abandonment: most sessions are left within minutes; an hour bounds the rest.
_ABANDON_EDGES = (
    *range(0, 60_000, 5_000),
    *range(60_000, 300_000, 30_000),
    *range(300_000, 1_800_000, 150_000),
    *range(1_800_000, 3_600_001, 600_000),
)

_SPAN = Scale("span_length", 1, 0, 5_000, _SPAN_EDGES)
_EDIT = Scale("edit_ratio", 10_000, 0, 10_000, _BPS_EDGES)
_DWELL = Scale("dwell_ms", 1, 0, 300_000, _DWELL_EDGES)
_SCROLL = Scale("scroll_depth", 10_000, 0, 10_000, _BPS_EDGES)
_ABANDON = Scale("after_ms", 1, 0, 3_600_000, _ABANDON_EDGES)


_ALL: tuple[Metric, ...] = (
    Metric(
        name="event_count",
        title="Events",
        description=(
            "How many events were stored, by event type if asked. Sampled event types are "
            "reweighted (each kept event counts 1 / its inclusion probability), so the "
            "count estimates the events that happened, not only those kept."
        ),
        kind="count",
        numerator="events (each weighted by 1 / inclusion probability)",
        denominator=None,
        dimensions=("event_type", *_CONTEXT),
        unit="events",
        event_types=tuple(EventType),
    ),
    Metric(
        name="active_users",
        title="Active users",
        description=(
            "Distinct user pseudonyms with at least one stored event, per day (a person "
            "active on two days counts once on each). Users whose only events were "
            "sampled out are not seen, so under sampling this is a lower bound."
        ),
        kind="distinct",
        numerator="distinct user pseudonyms with at least one event",
        denominator=None,
        dimensions=_CONTEXT,
        unit="users",
        event_types=tuple(EventType),
    ),
    Metric(
        name="task_completion_rate",
        title="Task completion rate",
        description=(
            "Successful downstream task completions per response shown: the strongest "
            "implicit signal that a response was useful."
        ),
        kind="rate",
        numerator="task_completion events with outcome success",
        denominator="response_shown events",
        dimensions=_CONTEXT,
        unit="ratio",
        event_types=(EventType.TASK_COMPLETION, _RS),
    ),
    Metric(
        name="reformulation_rate",
        title="Reformulation rate",
        description=(
            "Reformulations per response shown, counting only those whose similarity to "
            "the previous query is at least the policy's threshold, so clarifying "
            "follow-ups are not counted. Higher means users more often had to ask again."
        ),
        kind="rate",
        numerator="reformulation events with similarity >= the policy threshold",
        denominator="response_shown events",
        dimensions=_CONTEXT,
        unit="ratio",
        event_types=(EventType.REFORMULATION, _RS),
    ),
    Metric(
        name="click_through_rate",
        title="Click-through rate",
        description=(
            "Clicks per response shown at the same position (positions 1..P declared by "
            "the policy). Grouped by position it makes position bias visible: top "
            "positions are examined more, so they are clicked more."
        ),
        kind="rate",
        numerator="click_through events at positions 1..P",
        denominator="response_shown events at positions 1..P",
        dimensions=("position", *_CONTEXT),
        unit="ratio",
        event_types=(EventType.CLICK_THROUGH, _RS),
    ),
    Metric(
        name="click_through_rate_debiased",
        title="Click-through rate, position-debiased",
        description=(
            "Clicks reweighted by the inverse of the policy's examination propensity of "
            "their position, per response shown: an estimate of how often a response would "
            "be clicked if it were examined. Compare positions with it; it is only as good "
            "as the declared propensities, and may exceed 1 where they are too low."
        ),
        kind="rate",
        numerator="click_through events at positions 1..P, each weighted 1 / propensity(position)",
        denominator="response_shown events at positions 1..P",
        dimensions=("position", *_CONTEXT),
        unit="ratio",
        event_types=(EventType.CLICK_THROUGH, _RS),
    ),
    Metric(
        name="long_copy_rate",
        title="Long-copy rate",
        description=(
            "Copies of at least the policy's minimum span (characters) per response shown. "
            "A long copy is a strong sign the response was used as is."
        ),
        kind="rate",
        numerator="copy_paste events with span_length >= the policy's long_copy_min_span",
        denominator="response_shown events",
        dimensions=_CONTEXT,
        unit="ratio",
        event_types=(EventType.COPY_PASTE, _RS),
    ),
    *mean_and_median(
        "copy_span_length",
        "Copied span length",
        "copied span length in characters",
        EventType.COPY_PASTE,
        _SPAN,
        "chars",
        _CONTEXT,
        "Longer copies mean more of a response was reused.",
    ),
    *mean_and_median(
        "edit_ratio",
        "Edit ratio",
        "edit ratio (normalised edit distance of the user's edit, 0 = kept as is)",
        EventType.EDIT,
        _EDIT,
        "ratio",
        ("task_type", "surface", "cohort", "model"),
        "Lower means responses were accepted with fewer changes; compare within a task_type, "
        "as the normal amount of editing differs between task types.",
    ),
    *mean_and_median(
        "dwell_time",
        "Dwell time",
        "dwell time in milliseconds",
        EventType.DWELL,
        _DWELL,
        "ms",
        _CONTEXT,
        "A weak signal (long dwell can mean interest or confusion): read it at cohort level.",
    ),
    *mean_and_median(
        "scroll_depth",
        "Scroll depth",
        "scroll depth (fraction of the response scrolled, 0 to 1)",
        EventType.DWELL,
        _SCROLL,
        "ratio",
        _CONTEXT,
        "A weak signal: read it at cohort level.",
    ),
    Metric(
        name="abandonment_rate",
        title="Abandonment rate",
        description=(
            "Sessions with an abandonment event per session with a response shown. Counted "
            "per epoch-session: a session that crosses an epoch boundary (midnight UTC by "
            "default) counts as two sessions."
        ),
        kind="rate",
        numerator="epoch-sessions with at least one abandonment event",
        denominator="epoch-sessions with at least one response_shown event",
        dimensions=_CONTEXT,
        unit="ratio",
        event_types=(EventType.ABANDONMENT, _RS),
        needs=("session_id",),
    ),
    *mean_and_median(
        "time_to_abandonment",
        "Time to abandonment",
        "time from the start of a session to its abandonment, in milliseconds",
        EventType.ABANDONMENT,
        _ABANDON,
        "ms",
        _CONTEXT,
        "Per abandonment event (not per session): early abandonments suggest the first "
        "answers missed; read it with abandonment_rate.",
    ),
    *CHAT_METRICS,
    *FUNNEL_METRICS,
)

# High percentiles where the tail is the question: long dwells, long copies, late stops.
_TAILS = tuple(
    q
    for m in _ALL
    if m.name
    in (
        "copy_span_length_median",
        "dwell_time_median",
        "stop_time_median",
        "time_to_abandonment_median",
    )
    for q in tail_quantiles(m)
)

# Totals where the amount itself is the question: attention spent, text reused.
_MEANS = {m.name: m for m in _ALL if m.kind == "mean"}
_TOTALS = (
    bounded_total(
        _MEANS["dwell_time"],
        "dwell time in milliseconds",
        "How long responses were looked at, in all. It grows with traffic as much as with "
        "attention: read it beside event_count and the mean dwell_time. A weak signal: "
        "read it at cohort level.",
    ),
    bounded_total(
        _MEANS["copy_span_length"],
        "copied span length in characters",
        "How much response text was copied, in all. It grows with the number of copies as "
        "much as with their length: read it beside the mean copy_span_length and "
        "long_copy_rate.",
    ),
)

METRICS: Mapping[str, Metric] = MappingProxyType({m.name: m for m in (*_ALL, *_TAILS, *_TOTALS)})
"""Every metric of the catalogue by name, before any policy restriction."""
