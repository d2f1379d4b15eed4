"""Totals that equal the sum of their released breakdown (`"totals": true`).

Post-processing of the noisy vectors the release already drew, nothing more read or
charged: the cells of each day (of the whole range when not grouped by day) are the
parts of one total. Per vector and day, the parts are made whole numbers of the
metric's unit and projected onto the closest non-negative ones with the same sum
(privacy/consistency.py); the total is their sum, exactly. Counts and sums (of clamped
values that are never negative, so the projection applies) add their values;
rates their numerators and denominators (the rows gain both); funnels each of their
bins, so the total's sessions and each step's sessions are the sums of the parts'.

Each part keeps its own interval (computed from its noisy vectors, as without totals);
a total's interval bounds the sum of its parts' noise (95 %).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from privacy.bounds import Part
from privacy.consistency import consistent_parts, ratio_of_sums_interval, sum_interval
from privacy.funnel import funnel_estimate
from privacy.mechanisms import NoisyVector
from privacy.query import QueryPlan
from service.queries.funnel import funnel_row

__all__ = ["TOTAL", "add_totals", "split_totals", "totals_notes"]

TOTAL = "total"
"""The marker of a total row among a stored release's rows."""


def _groups(plan: QueryPlan) -> dict[Any, list[int]]:
    """The cell indexes of each total: by day, or all cells."""
    groups: dict[Any, list[int]] = {}
    for i, cell in enumerate(plan.cells):
        groups.setdefault(cell.get("day"), []).append(i)
    return groups


def _whole(
    vector: NoisyVector, part: Part, idx: Sequence[int], stride: int = 1, j: int = 0
) -> tuple[list[int], list[int]]:
    """The parts' noisy values in natural units, rounded, then made consistent."""
    raw = [vector.values[i * stride + j] for i in idx]
    return raw, consistent_parts([round(v / part.divisor) for v in raw])


def add_totals(
    plan: QueryPlan,
    noisy: Mapping[str, NoisyVector],
    rows: list[dict[str, Any]],
    ratio_range: tuple[float, float],
) -> list[dict[str, Any]]:
    """Make the parts consistent (in place) and return one total row per day."""
    parts = {p.name: p for p in plan.parts}
    kind = plan.metric.kind
    totals = []
    for day, idx in _groups(plan).items():
        keys: dict[str, Any] = {} if day is None else {"day": day}
        k = len(idx)
        if kind in ("count", "sum"):
            (name,) = parts
            raw, whole = _whole(noisy[name], parts[name], idx)
            for i, value in zip(idx, whole, strict=True):
                rows[i]["value"] = value
            lo, hi = sum_interval(sum(raw), plan.accounting, noisy[name].scale, k)
            total: dict[str, Any] = {"value": sum(whole)}
            total["ci95"] = [lo / parts[name].divisor, hi / parts[name].divisor]
        elif kind == "rate":
            total = _rate_total(plan, noisy, parts, rows, idx, ratio_range)
        else:
            total = _funnel_total(plan, noisy["levels"], parts["levels"], rows, idx)
        totals.append({**keys, **total, TOTAL: True})
    return totals


def _ratio(top: int, bottom: int, low: float, high: float) -> float | None:
    return None if bottom <= 0 else min(max(top / bottom, low), high)


def _rate_total(
    plan: QueryPlan,
    noisy: Mapping[str, NoisyVector],
    parts: Mapping[str, Part],
    rows: list[dict[str, Any]],
    idx: Sequence[int],
    ratio_range: tuple[float, float],
) -> dict[str, Any]:
    low, high = ratio_range
    top, bottom = parts["numerator"], parts["denominator"]
    raw_a, whole_a = _whole(noisy["numerator"], top, idx)
    raw_d, whole_d = _whole(noisy["denominator"], bottom, idx)
    for i, a, d in zip(idx, whole_a, whole_d, strict=True):
        rows[i].update(numerator=a, denominator=d, value=_ratio(a, d, low, high))
    a, d = sum(whole_a), sum(whole_d)
    interval = ratio_of_sums_interval(
        (sum(raw_a), noisy["numerator"].scale, len(idx)),
        (sum(raw_d), noisy["denominator"].scale, len(idx)),
        plan.accounting,
        top.divisor / bottom.divisor,
        low,
        high,
    )
    return {
        "value": _ratio(a, d, low, high),
        "ci95": list(interval),
        "numerator": a,
        "denominator": d,
    }


def _funnel_total(
    plan: QueryPlan,
    levels: NoisyVector,
    part: Part,
    rows: list[dict[str, Any]],
    idx: Sequence[int],
) -> dict[str, Any]:
    bins = len(plan.funnel_steps) + 1
    raw_bins, whole_bins = zip(
        *(_whole(levels, part, idx, bins, j) for j in range(bins)), strict=True
    )
    div = part.divisor
    for n, i in enumerate(idx):
        raw = [raw_bins[j][n] for j in range(bins)]
        whole = [whole_bins[j][n] * div for j in range(bins)]
        estimate = funnel_estimate(raw, whole, plan.accounting, levels.scale, 1, div)
        rows[i].update(funnel_row(plan.funnel_steps, estimate))
    estimate = funnel_estimate(
        [sum(b) for b in raw_bins],
        [sum(b) * div for b in whole_bins],
        plan.accounting,
        levels.scale,
        len(idx),
        div,
    )
    return funnel_row(plan.funnel_steps, estimate)


def split_totals(
    rows: Sequence[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A stored release's rows: (the cells, the totals without their marker)."""
    cells = [r for r in rows if not r.get(TOTAL)]
    totals = [{k: v for k, v in r.items() if k != TOTAL} for r in rows if r.get(TOTAL)]
    return cells, totals


def totals_notes(plan: QueryPlan) -> list[str]:
    """What the totals are and what their intervals cover, in plain words."""
    if not plan.request.totals:
        return []
    per = "each day" if plan.days else "the range"
    added = {
        "count": "values",
        "sum": "values",
        "rate": "numerators and denominators (each row shows them)",
        "funnel": "sessions, at every step",
    }[plan.metric.kind]
    return [
        f"Totals: the total of {per} is the sum of its rows' {added}, exactly, at no extra "
        "cost (nothing more was noised or read). To add up, the rows are whole numbers, and "
        "where noise made some negative they were moved to the closest non-negative whole "
        "numbers with the same sum (least squares); a row's interval is still its own. A "
        "total's interval bounds the sum of its rows' noise, at 95 %."
    ]
