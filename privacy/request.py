"""The query request: what an analyst asks, as an immutable, validated description.

`QueryRequest.from_json` reads a request body and refuses, naming the field, anything that
is not a well-formed question; whether the policy and the catalogue allow it is decided
when `privacy.query.plan_query` compiles it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

__all__ = ["NotGranted", "QueryError", "QueryRequest"]

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FIELDS = (
    "metric",
    "start",
    "end",
    "group_by",
    "filters",
    "compare",
    "totals",
    "epsilon",
    "rho",
    "target_ci95",
)


class QueryError(ValueError):
    """The analyst's request cannot be answered as asked; the message says what is allowed."""


class NotGranted(QueryError):
    """The request is well formed, but the policy does not grant this analyst the metric."""


@dataclass(frozen=True)
class QueryRequest:
    """What an analyst asks: a metric over inclusive UTC days, grouped and filtered."""

    metric: str
    start: date
    end: date
    group_by: tuple[str, ...] = ()
    filters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    epsilon: float | None = None
    rho: float | None = None
    target_ci95: float | None = None
    # (dimension, baseline key): compare every other key of a grouped dimension with it.
    compare: tuple[str, str] | None = None
    # Per-day totals of the breakdown that equal the sum of its released parts.
    totals: bool = False

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> QueryRequest:
        """Read a JSON body; raise `QueryError` naming the field that is wrong."""
        if not isinstance(body, Mapping):
            raise QueryError("the query must be a JSON object with " + ", ".join(_FIELDS))
        unknown = sorted(str(k) for k in body if k not in _FIELDS)
        if unknown:
            raise QueryError(
                f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_FIELDS)}"
            )
        metric = body.get("metric")
        if not isinstance(metric, str) or not metric:
            raise QueryError('"metric" is required: a metric name (GET /v1/metrics lists them)')
        start, end = _day(body, "start"), _day(body, "end")
        group_by = body.get("group_by", [])
        if not isinstance(group_by, list) or not all(isinstance(g, str) for g in group_by):
            raise QueryError(
                '"group_by" must be a list of dimension names, e.g. ["day", "surface"]'
            )
        if len(set(group_by)) != len(group_by):
            raise QueryError('"group_by" names a dimension twice')
        filters = body.get("filters", {})
        if not isinstance(filters, Mapping):
            raise QueryError('"filters" must be an object: {dimension: [values]}')
        parsed: list[tuple[str, tuple[str, ...]]] = []
        for dim, values in filters.items():
            if not isinstance(values, list) or not values:
                raise QueryError(f'"filters.{dim}" must be a non-empty list of values')
            if not all(isinstance(v, str | int) and not isinstance(v, bool) for v in values):
                raise QueryError(
                    f'"filters.{dim}" values must be strings (positions may be numbers)'
                )
            parsed.append((str(dim), tuple(str(v) for v in values)))
        amounts = {k: _amount(body, k) for k in ("epsilon", "rho", "target_ci95")}
        if sum(v is not None for v in amounts.values()) > 1:
            raise QueryError('give only one of "epsilon", "rho" and "target_ci95"')
        totals = body.get("totals", False)
        if not isinstance(totals, bool):
            raise QueryError('"totals" must be true or false')
        return cls(
            compare=_compare(body),
            totals=totals,
            metric=metric,
            start=start,
            end=end,
            group_by=tuple(group_by),
            filters=tuple(parsed),
            epsilon=amounts["epsilon"],
            rho=amounts["rho"],
            target_ci95=amounts["target_ci95"],
        )

    def normalized(self) -> str:
        """Canonical JSON of the request: equal for requests that ask the same thing."""
        body: dict[str, Any] = {
            "metric": self.metric,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "group_by": sorted(set(self.group_by)),
            "filters": {d: sorted(set(v)) for d, v in sorted(self.filters)},
        }
        for key in ("epsilon", "rho", "target_ci95"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        if self.totals:
            body["totals"] = True
        if self.compare is not None:
            body["compare"] = {"dimension": self.compare[0], "baseline": self.compare[1]}
        return json.dumps(body, sort_keys=True, separators=(",", ":"))


def _compare(body: Mapping[str, Any]) -> tuple[str, str] | None:
    value = body.get("compare")
    if value is None:
        return None
    shape = '"compare" must be {"dimension": "cohort", "baseline": "control"}'
    if not isinstance(value, Mapping) or set(value) != {"dimension", "baseline"}:
        raise QueryError(shape)
    dim, baseline = value["dimension"], value["baseline"]
    if (
        not isinstance(dim, str)
        or not isinstance(baseline, str | int)
        or isinstance(baseline, bool)
    ):
        raise QueryError(shape + " (a dimension name and one of its keys)")
    return dim, str(baseline)


def _day(body: Mapping[str, Any], key: str) -> date:
    value = body.get(key)
    if not isinstance(value, str) or not _DATE_RE.match(value):
        raise QueryError(f'"{key}" is required: a day written YYYY-MM-DD (UTC)')
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise QueryError(f'"{key}" is not a calendar day: {value!r}') from None


def _amount(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise QueryError(f'"{key}" must be a number')
    if not math.isfinite(value) or value <= 0:
        raise QueryError(f'"{key}" must be a finite number > 0, got {value!r}')
    return float(value)
