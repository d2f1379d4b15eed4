"""The released rows of `session_funnel`: each cell's steps with their 95 % intervals.

Post-processing of the one noisy histogram the release drew (bins per cell: sessions
that reached exactly 0, 1, ..., N steps); the maths is privacy/funnel.py. A row reads::

    {"day": ..., "surface": ..., "value": share reaching the last step, "ci95": [lo, hi],
     "sessions": n, "sessions_ci95": [lo, hi],
     "steps": [{"step": "click_through", "value": share, "ci95": [lo, hi],
                "sessions": sessions reaching it}, ...]}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from privacy.funnel import FunnelEstimate, clip_levels, funnel_estimate
from privacy.mechanisms import NoisyVector
from privacy.query import QueryPlan

__all__ = ["FUNNEL_FIELDS", "funnel_notes", "funnel_row", "funnel_rows"]

FUNNEL_FIELDS = ("value", "ci95", "sessions", "sessions_ci95", "steps")
"""The fields of a funnel row besides its cell keys."""


def funnel_row(steps: Sequence[str], estimate: FunnelEstimate) -> dict[str, Any]:
    """The value fields of one funnel (a cell's, or a total's)."""
    listed = [
        {"step": name, "value": share, "ci95": list(interval), "sessions": reached}
        for name, share, interval, reached in zip(
            steps, estimate.shares, estimate.intervals, estimate.reached, strict=True
        )
    ]
    last = listed[-1]
    return {
        "value": last["value"],
        "ci95": last["ci95"],
        "sessions": estimate.sessions,
        "sessions_ci95": list(estimate.sessions_ci95),
        "steps": listed,
    }


def funnel_rows(plan: QueryPlan, noisy: NoisyVector) -> list[dict[str, Any]]:
    """One row per public cell, every funnel monotone (privacy/funnel.py)."""
    bins = len(plan.funnel_steps) + 1
    divisor = plan.parts[0].divisor
    rows = []
    for i, cell in enumerate(plan.cells):
        levels = noisy.values[i * bins : (i + 1) * bins]
        estimate = funnel_estimate(
            levels, clip_levels(levels), plan.accounting, noisy.scale, 1, divisor
        )
        rows.append({**cell, **funnel_row(plan.funnel_steps, estimate)})
    return rows


def funnel_notes(plan: QueryPlan) -> list[str]:
    """What a funnel's numbers are and what their intervals cover, in plain words."""
    steps = " → ".join(("response_shown", *plan.funnel_steps))
    return [
        f"Funnel {steps}: each step counts the sessions with a response shown that "
        "reached it after every earlier step (same minute counts as in order), per "
        "epoch-session. The sessions are counted in one noisy histogram by how many steps "
        "they reached (the whole budget, nothing split between steps); negative bins are "
        "set to 0, so every step is at most the one before.",
        "Each step's interval holds its noiseless bounded share with at least 95 % "
        "probability on its own (not all steps at once); it is computed from the unclipped "
        "noisy sums, so it is conservative. A cell with no session left after noise has "
        "no values (null) and intervals [0, 1].",
    ]
