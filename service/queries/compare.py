"""A/B comparisons within one release: each key of a grouped dimension against a baseline.

Pure post-processing of the noisy vectors the release already drew (no extra budget,
nothing more read): for every cell whose key is not the baseline, the difference of its
ratio and the baseline cell's (same other keys), and the relative lift, each with its 95 %
interval from privacy/intervals.py. The figures are written into the compared rows, so
the stored release keeps them for repeats, and `comparison` lists them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from privacy.intervals import (
    Noise,
    RatioEstimate,
    difference_interval,
    lift_interval,
    ratio_error,
)
from privacy.mechanisms import NoisyVector
from privacy.query import QueryPlan

__all__ = ["COMPARED", "annotate", "compare_notes", "comparison"]

COMPARED = ("difference", "difference_ci95", "lift", "lift_ci95")
"""The fields a compared row gains."""


def annotate(
    plan: QueryPlan,
    noisy: Mapping[str, NoisyVector],
    rows: list[dict[str, Any]],
    ratio_range: tuple[float, float],
) -> None:
    """Add the comparison fields to every non-baseline row of a compare request."""
    if plan.request.compare is None:
        return
    dim, baseline = plan.request.compare
    top, bottom = ("numerator", "denominator") if plan.metric.kind == "rate" else ("sum", "count")
    parts = {p.name: p for p in plan.parts}
    a, d = noisy[top], noisy[bottom]
    noise_a, noise_d = Noise(plan.accounting, a.scale), Noise(plan.accounting, d.scale)
    estimates = [
        ratio_error(
            a.values[i], d.values[i], noise_a, noise_d, parts[top].divisor, parts[bottom].divisor
        )
        for i in range(len(plan.cells))
    ]
    by_rest = {
        _rest(cell, dim): i for i, cell in enumerate(plan.cells) if str(cell[dim]) == baseline
    }
    low, high = ratio_range
    for i, cell in enumerate(plan.cells):
        if str(cell[dim]) == baseline:
            continue
        rows[i].update(_compared(estimates[i], estimates[by_rest[_rest(cell, dim)]], low, high))


def _rest(cell: Mapping[str, str | int], dim: str) -> tuple[tuple[str, str | int], ...]:
    return tuple((k, v) for k, v in cell.items() if k != dim)


def _compared(
    treated: RatioEstimate | None, base: RatioEstimate | None, low: float, high: float
) -> dict[str, Any]:
    span = high - low
    # A denominator with nothing in it, or mostly noise: nothing is known.
    if treated is None or base is None or not (treated.comparable and base.comparable):
        return {
            "difference": None,
            "difference_ci95": [-span, span],
            "lift": None,
            "lift_ci95": [None, None],
        }
    diff, (lo, hi) = difference_interval(treated, base, low, high)
    lift, (lift_lo, lift_hi) = lift_interval(treated, base)
    return {
        "difference": diff,
        "difference_ci95": [lo, hi],
        "lift": lift,
        "lift_ci95": [lift_lo, lift_hi],
    }


def comparison(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The compared rows' keys and comparison fields, in row order."""
    return [
        {k: v for k, v in row.items() if k not in ("value", "ci95")}
        for row in rows
        if "difference" in row
    ]


def compare_notes(plan: QueryPlan) -> list[str]:
    """What a comparison's intervals cover, in plain words."""
    if plan.request.compare is None:
        return []
    dim, baseline = plan.request.compare
    return [
        f"Each {dim} is compared with {baseline} (same other keys) from this release's own "
        "noisy cells, at no extra cost. The difference and lift intervals cover the DP "
        "noise (a normal approximation with a correction for Laplace tails, measured to "
        "cover 93-97 %); like every interval here, not the effect of the contribution "
        "bounds, nor sampling. A cell whose denominator is mostly noise is not compared: "
        "its difference and lift are null, the difference interval the whole range."
    ]
