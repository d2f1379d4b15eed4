"""Session funnels: the catalogue entry and the post-processing of its noisy histogram.

`session_funnel` counts epoch-sessions with a ``response_shown`` by how far they went
through the policy's ordered steps (privacy/policy/funnel.py): bin j holds the sessions
that reached exactly j steps in order (step k reached at or after step k - 1, ties in
the stored, coarsened time counting as in order). Each session lies in exactly one bin,
so one person's bounded contribution to a cell is spread over its bins and the N + 1
counts of a cell are noised as one histogram with the whole budget, like a median's
(privacy/bounds.py): nothing is split between steps.

Post-processing (nothing here sees a true count):

- **monotone by construction**: the noisy bins are clipped at 0 (the least-squares
  projection of the noisy histogram onto histograms that can be true), and the count
  reaching step k is the sum of the clipped bins j >= k, so each step is at most the
  one before and at most the sessions;
- **intervals**: the share reaching step k is A / (A + R), A the sessions in bins >= k
  and R those in bins < k, whose noises are sums of disjoint, independent draws. Each
  sum is bounded with probability 1 - alpha / 2 (`sum_noise_halfwidth`, a proven tail
  bound), and the share is increasing in A and decreasing in R, so
  [A_lo / (A_lo + R_hi), A_hi / (A_hi + R_lo)] holds the noiseless bounded share with
  probability >= 95 % (a union bound; conservative). Each step's interval is its own
  95 % interval, not a simultaneous one, and is computed from the unclipped sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from privacy.events import CONTEXT_DIMENSIONS, EventType
from privacy.intervals import ALPHA, sum_noise_halfwidth
from privacy.metric_model import Metric

__all__ = ["FUNNEL_METRICS", "FunnelEstimate", "clip_levels", "funnel_estimate"]

FUNNEL_METRICS: tuple[Metric, ...] = (
    Metric(
        name="session_funnel",
        title="Session funnel",
        description=(
            "Of the sessions with a response shown, the share that went on to each of the "
            "policy's funnel steps, in order (a step counts when it happened at or after "
            "the step before it). Each row carries the steps with a 95 % interval each; "
            "its value is the share reaching the last step. Counted per epoch-session, "
            "like abandonment_rate."
        ),
        kind="funnel",
        numerator="epoch-sessions reaching each funnel step, in order",
        denominator="epoch-sessions with at least one response_shown event",
        dimensions=CONTEXT_DIMENSIONS,
        unit="ratio",
        event_types=(EventType.RESPONSE_SHOWN,),  # the policy's steps are added to it
        needs=("session_id",),
    ),
)


@dataclass(frozen=True)
class FunnelEstimate:
    """One released funnel: the sessions and each step's share, with 95 % intervals."""

    sessions: float
    sessions_ci95: tuple[float, float]
    shares: tuple[float | None, ...]  # None: no session left after noise
    intervals: tuple[tuple[float, float], ...]
    reached: tuple[float, ...] = ()  # sessions reaching each step (post-processed counts)


def clip_levels(levels: Sequence[int]) -> list[int]:
    """The noisy histogram projected onto non-negative histograms (least squares)."""
    return [max(v, 0) for v in levels]


def _bounds(
    total: int, accounting: str, scale: float, terms: int, alpha: float
) -> tuple[float, float]:
    """[lo, hi] holding a non-negative true sum of `terms` noisy integers, at 1 - alpha."""
    t = sum_noise_halfwidth(accounting, scale, terms, alpha)
    return max(total - t, 0), max(total + t, 0)


def funnel_estimate(
    noisy: Sequence[int],
    adjusted: Sequence[int],
    accounting: str,
    scale: float,
    draws: int = 1,
    divisor: int = 1,
) -> FunnelEstimate:
    """The funnel of one cell (or of a total of cells) from its noisy histogram.

    `noisy` are the bins as released (each the true bin plus `draws` independent draws
    of noise of `scale`: 1 for a cell, k for the sum of k cells); `adjusted` the
    non-negative bins the values are read from (`clip_levels`, or a consistent
    breakdown's). `divisor` turns a bin into sessions (fixed-point sampling weights).
    """
    bins = len(noisy)
    sessions = sum(adjusted)
    reached = [sum(adjusted[k:]) for k in range(bins)]
    lo, hi = _bounds(sum(noisy), accounting, scale, draws * bins, ALPHA)
    shares: list[float | None] = []
    intervals: list[tuple[float, float]] = []
    for k in range(1, bins):
        shares.append(reached[k] / sessions if sessions > 0 else None)
        a_lo, a_hi = _bounds(sum(noisy[k:]), accounting, scale, draws * (bins - k), ALPHA / 2)
        r_lo, r_hi = _bounds(sum(noisy[:k]), accounting, scale, draws * k, ALPHA / 2)
        low = a_lo / (a_lo + r_hi) if a_lo + r_hi > 0 else 0.0
        high = a_hi / (a_hi + r_lo) if a_hi + r_lo > 0 else 1.0
        intervals.append((min(max(low, 0.0), 1.0), min(max(high, 0.0), 1.0)))
    return FunnelEstimate(
        sessions / divisor,
        (lo / divisor, hi / divisor),
        tuple(shares),
        tuple(intervals),
        tuple(r / divisor for r in reached[1:]),
    )
