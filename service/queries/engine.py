"""The query engine: bounded aggregation in the database, then OpenDP noise.

`aggregate` runs the plan's SQL (service/queries/sql.py) and returns the true bounded
aggregates, one integer per cell (per bin for medians), with every public cell present
even when no event fell into it. Those numbers never leave the process: `release` noises
them through `privacy.mechanisms` and post-processes the noisy vectors into values with
95 % intervals (service/queries/release.py). `preview` states the cost and the expected
half-widths without touching any data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from privacy.events import OTHER
from privacy.mechanisms import NoisyVector, halfwidth_for, release
from privacy.policy import Policy
from privacy.policy.open import declared_values
from privacy.query import QueryPlan
from service.queries.funnel_sql import funnel_sql
from service.queries.release import notes_for, release_rows
from service.queries.selection import selection_sql
from service.queries.sql import DUCKDB, POSTGRES, SPARK, SQLITE, Dialect, aggregate_sql
from service.store.base import QueryRepository, Store

__all__ = ["Aggregates", "QueryEngine", "Release"]

_DIALECTS = {d.name: d for d in (SQLITE, POSTGRES, DUCKDB, SPARK)}


@dataclass(frozen=True)
class Aggregates:
    """True bounded aggregates per component: they never leave the process un-noised."""

    values: Mapping[str, list[int]]
    # What data was read (service/lake/engine.py's Coverage.as_dict()); None: the row store.
    coverage: Mapping[str, Any] | None = None
    coverage_note: str | None = None

    def __repr__(self) -> str:  # keep true values out of logs and tracebacks
        return f"Aggregates({', '.join(f'{k}[{len(v)}]' for k, v in self.values.items())})"


@dataclass(frozen=True)
class Release:
    """What an analyst sees: one row per public cell, and notes that qualify them."""

    rows: list[dict[str, Any]]
    notes: list[str]


class QueryEngine:
    """Runs planned queries against one store under one policy.

    ``queries`` is where the aggregation SQL runs: the store's own repository (the
    row-store engine) by default, or the lake's (service/lake/engine.py, the ``duckdb``
    engine; service/lake/spark.py, the ``spark`` engine).
    """

    def __init__(
        self, store: Store, policy: Policy, queries: QueryRepository | None = None
    ) -> None:
        self.store = store
        self.queries = queries if queries is not None else store.queries
        self.policy = policy
        self._declared: dict[str, tuple[str, ...]] = {
            str(dim): declared_values(policy, dim) for dim in policy.context
        }

    @property
    def dialect(self) -> Dialect:
        """The SQL flavour of the store's backend."""
        name = self.queries.dialect
        if name not in _DIALECTS:
            raise ValueError(f"no aggregation SQL for the {name!r} backend: this is a bug")
        return _DIALECTS[name]

    def ready(self) -> None:
        """Raise EngineUnavailable when the engine cannot run a query now (a cluster's
        engine checks its runtime and cluster; called before a query is charged)."""
        check = getattr(self.queries, "ready", None)
        if check is not None:
            check()

    def close(self) -> None:
        """Release what the engine holds (a Spark session); the row store needs nothing."""
        close = getattr(self.queries, "close", None)
        if close is not None:
            close()

    def aggregate(self, plan: QueryPlan) -> Aggregates:
        """The bounded per-cell aggregates of `plan` (heavy work in SQL)."""
        build = funnel_sql if plan.metric.kind == "funnel" else aggregate_sql
        statement = build(plan, self._keys(plan), self.dialect)
        n_cells = len(plan.cells)
        vectors = {p.name: [0] * p.length for p in plan.parts}
        columns = statement.columns
        histogram = plan.metric.kind in ("median", "funnel")  # one vector, bins per cell
        coverage = note = None
        covered = getattr(self.queries, "aggregate_covered", None)
        if covered is not None:
            result, seen = covered(statement.sql)
            coverage, note = seen.as_dict(), seen.note()
        else:
            result = self.queries.aggregate(statement.sql)
        for row in result:
            cell = int(row[0])
            if not 0 <= cell < n_cells:
                raise RuntimeError(f"the aggregation returned cell {cell} of {n_cells}: a bug")
            if histogram:
                bins = len(columns)
                vector = vectors[plan.parts[0].name]
                vector[cell * bins : (cell + 1) * bins] = [int(v) for v in row[1:]]
            else:
                for name, value in zip(columns, row[1:], strict=True):
                    vectors[name][cell] = int(value)
        return Aggregates(vectors, coverage, note)

    def _keys(self, plan: QueryPlan) -> dict[str, tuple[str, ...]]:
        """The labels each dimension keeps: declared, or for an open one those selected."""
        opened = dict(plan.open)
        selected = {
            d: tuple(str(k) for k in keys if k != OTHER)
            for d, keys in plan.dimensions
            if d in opened
        }
        return {**self._declared, **selected}

    def selection_counts(self, plan: QueryPlan) -> dict[str, dict[str, int]]:
        """Distinct units per stored value of each open dimension of `plan` (true counts)."""
        counts: dict[str, dict[str, int]] = {}
        for dim, sel in plan.open:
            sql = selection_sql(plan, dim, sel, self._declared, self.dialect)
            covered = getattr(self.queries, "aggregate_covered", None)
            rows = covered(sql)[0] if covered is not None else self.queries.aggregate(sql)
            counts[dim] = {str(value): int(n) for value, n in rows}
        return counts

    def release(self, plan: QueryPlan, aggregates: Aggregates) -> Release:
        """Noise the aggregates with OpenDP under the plan's cost; post-process the rows."""
        return self.rows(plan, self.noise(plan, aggregates))

    def noise(self, plan: QueryPlan, aggregates: Aggregates) -> dict[str, NoisyVector]:
        """The noisy vectors: the only step whose duration could depend on the noise."""
        return release(plan.components, plan.cost, aggregates.values, plan.shares)

    def rows(self, plan: QueryPlan, noisy: Mapping[str, NoisyVector]) -> Release:
        """The released rows and notes: post-processing of the noisy vectors alone."""
        rows, notes = release_rows(plan, noisy)
        return Release(rows, notes)

    def preview(self, plan: QueryPlan) -> dict[str, Any]:
        """The cost and each vector's expected 95 % half-width per cell; no data touched."""
        widths = halfwidth_for(plan.components, plan.cost, plan.shares)
        parts = {p.name: p for p in plan.parts}
        return {
            "cost": {"unit": plan.cost.unit, "value": plan.cost.value},
            "ci95_halfwidth": {name: width / parts[name].divisor for name, width in widths.items()},
            "cells": len(plan.cells),
            "notes": [
                *notes_for(plan),
                _preview_note(plan),
            ],
        }


def _preview_note(plan: QueryPlan) -> str:
    kind = plan.metric.kind
    if kind in ("count", "distinct"):
        return "ci95_halfwidth is the expected 95 % half-width of each cell's value."
    if kind == "rate":
        return (
            "ci95_halfwidth is in events (sessions for abandonment) for the numerator and the "
            "denominator of each cell: a rate r over n events is within about "
            "±(numerator + r x denominator half-width) / n."
        )
    if kind == "mean":
        return (
            f"ci95_halfwidth is for each cell's sum ({plan.metric.unit} x events) and count "
            "(events): a mean m over n events is within about ±(sum + m x count half-width) / n."
        )
    if kind == "sum":
        return (
            f"ci95_halfwidth is the expected 95 % half-width of each cell's total "
            f"({plan.metric.unit})."
        )
    if kind == "funnel":
        return (
            "ci95_halfwidth is for each of a cell's session counts by steps reached "
            "(exactly 0, 1, ... steps); a step's count sums the bins from it on."
        )
    return "ci95_halfwidth is for each histogram bin's count (events) of each cell."
