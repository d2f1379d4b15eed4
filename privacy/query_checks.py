"""The checks of a query's "compare" and "totals" options against its metric and keys
(privacy.query plans the rest)."""

from __future__ import annotations

from datetime import date

from privacy.metric_model import Metric
from privacy.request import QueryError, QueryRequest

__all__ = ["check_compare", "check_totals"]

DAY = "day"


def check_compare(
    request: QueryRequest,
    metric: Metric,
    dims: tuple[tuple[str, tuple[str | int, ...]], ...],
    days: tuple[date, ...],
) -> None:
    """A comparison needs a rate or a mean, grouped by its dimension, and a known baseline."""
    if request.compare is None:
        return
    dim, baseline = request.compare
    if metric.kind == "sum":
        # A difference of two totals mostly measures how many events each key had (the
        # traffic split), not how people behaved: the per-event mean is the comparison.
        raise QueryError(
            f'"compare" works on rates and means; {metric.name} is a total, which grows with '
            f"each key's traffic: compare the mean {metric.family} instead"
        )
    if metric.kind not in ("rate", "mean"):
        raise QueryError(f'"compare" works on rates and means; {metric.name} is a {metric.kind}')
    keys: tuple[str | int, ...] = tuple(d.isoformat() for d in days) if dim == DAY else ()
    keys = keys or dict(dims).get(dim, ())
    if not keys:
        raise QueryError(f'"compare.dimension" {dim!r} is not grouped by: add it to "group_by"')
    if baseline not in {str(k) for k in keys}:
        raise QueryError(
            f'"compare.baseline" {baseline!r} is not a key of {dim}; '
            f"keys: {', '.join(map(str, keys))}"
        )
    if len(keys) < 2:
        raise QueryError(f'"compare": {dim} has only one key here, nothing to compare with')


def check_totals(
    request: QueryRequest, metric: Metric, dims: tuple[tuple[str, tuple[str | int, ...]], ...]
) -> None:
    """Totals add up the breakdown of additive counts and sums: a dimension to add over is
    needed."""
    if not request.totals:
        return
    if metric.kind == "distinct":
        raise QueryError(
            f'"totals": {metric.name} of each value do not add up to the day\'s (a person '
            "active under two values counts under each): ask without the breakdown"
        )
    if metric.kind not in ("count", "rate", "sum", "funnel"):
        raise QueryError(
            f'"totals" works on counts, rates, sums and funnels; {metric.name} is a {metric.kind}: '
            "ask without the breakdown for its total"
        )
    if not dims:
        raise QueryError('"totals" adds up a breakdown: group by a dimension besides "day"')
    if request.compare is not None:
        raise QueryError('"totals" and "compare" cannot be asked together: ask one at a time')
