"""What a catalogue metric is: its kind, its bounded value and its plain-words definition.

The catalogue itself is `privacy.metrics` (and `privacy.chat_metrics` for the chat
signals); this module holds only the shapes they are written in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from privacy.events import EventType

__all__ = ["Kind", "Metric", "Scale", "bounded_total", "mean_and_median", "tail_quantiles"]

Kind = Literal["count", "rate", "mean", "median", "sum", "distinct", "funnel"]


@dataclass(frozen=True)
class Scale:
    """How a per-event value becomes a bounded integer before it is summed.

    The stored value is multiplied by `factor`, rounded, and clamped to `[low, high]`
    (integers, in `1 / factor` of the metric's unit). Medians read `edges`: the public bin
    boundaries (in the same integer units) of the histogram the median is read from; bin
    `j` holds values in `[edges[j], edges[j + 1])`, the last bin also holds `high`.
    """

    column: str
    factor: int
    low: int
    high: int
    edges: tuple[int, ...] = ()

    @property
    def bins(self) -> int:
        """Number of histogram bins (0 for a mean)."""
        return max(len(self.edges) - 1, 0)


@dataclass(frozen=True)
class Metric:
    """One named signal statistic of the catalogue."""

    name: str
    title: str
    description: str  # plain words: what it is and how to read it
    kind: Kind
    numerator: str
    denominator: str | None
    dimensions: tuple[str, ...]  # allowed group-bys besides "day"
    unit: str
    # The family groups the mean, median and total of one signal (e.g. dwell_time,
    # dwell_time_median, dwell_time_total); policy lists (cohort_level_only,
    # analyst_metrics) may name any of them, or the family.
    family: str = ""
    event_types: tuple[EventType, ...] = ()  # the stored event types it reads
    value: Scale | None = None  # means, medians and sums: the bounded per-event value
    needs: tuple[str, ...] = ()  # identifier fields the policy must keep (pseudonymize)
    quantile: float = 0.5  # kind "median": which quantile of the histogram is read

    @property
    def positional(self) -> bool:
        """Whether the metric reads only positions 1..P (P declared by the policy)."""
        return "position" in self.dimensions


def mean_and_median(
    name: str,
    title: str,
    what: str,
    event_type: EventType,
    scale: Scale,
    unit: str,
    dims: tuple[str, ...],
    reading: str,
) -> tuple[Metric, Metric]:
    """The mean and the median of one bounded per-event value."""
    low, high = scale.low / scale.factor, scale.high / scale.factor
    bounds = f"each value clamped to [{low:g}, {high:g}] {unit}"
    mean = Metric(
        name=name,
        title=f"{title} (mean)",
        description=f"Mean {what} ({bounds}). {reading}",
        kind="mean",
        numerator=f"sum of {what} over {event_type.value} events ({bounds})",
        denominator=f"number of {event_type.value} events",
        dimensions=dims,
        unit=unit,
        family=name,
        event_types=(event_type,),
        value=scale,
    )
    median = replace(
        mean,
        name=f"{name}_median",
        title=f"{title} (median)",
        description=(
            f"Median {what} ({bounds}), read from a noisy histogram over "
            f"{scale.bins} public bins. {reading}"
        ),
        kind="median",
        numerator=f"histogram of {what} over {event_type.value} events ({scale.bins} bins)",
        denominator=None,
    )
    return mean, median


def tail_quantiles(median: Metric, quantiles: tuple[int, ...] = (90, 99)) -> tuple[Metric, ...]:
    """The p90, p99 (...) of a median's histogram: same bins, same bounds, same cost."""
    out = []
    for p in quantiles:
        out.append(
            replace(
                median,
                name=f"{median.family}_p{p}",
                title=median.title.replace("(median)", f"(p{p})"),
                description=median.description.replace("Median", f"{p}th percentile of", 1)
                + (
                    " The tail bins are wide: a high percentile's interval is widened to "
                    "their edges."
                ),
                quantile=p / 100,
            )
        )
    return tuple(out)


def bounded_total(mean: Metric, what: str, reading: str) -> Metric:
    """The total of a mean's bounded per-event value per cell: same value, same family.

    Sampled events count 1 / their inclusion probability, as in counts, so the total
    estimates what happened. Values must not be negative (`low >= 0`): the bounding SQL
    scales a person's total down by C / n with non-negative integer division, and totals
    that add up project their parts onto non-negative numbers.
    """
    scale = mean.value
    if mean.kind != "mean" or scale is None:
        raise ValueError(f"{mean.name} is a {mean.kind}: a total is made from a mean")
    if scale.low < 0:
        raise ValueError(f"{mean.name} can be negative (low {scale.low}): no total of it")
    low, high = scale.low / scale.factor, scale.high / scale.factor
    bounds = f"each value clamped to [{low:g}, {high:g}] {mean.unit}"
    (event_type,) = mean.event_types
    return replace(
        mean,
        name=f"{mean.family}_total",
        title=mean.title.replace("(mean)", "(total)"),
        description=(
            f"Total {what} per cell ({bounds}; a sampled event counts 1 / its inclusion "
            f"probability). {reading}"
        ),
        kind="sum",
        numerator=(
            f"sum of {what} over {event_type.value} events ({bounds}, each weighted by "
            "1 / inclusion probability)"
        ),
        denominator=None,
    )
