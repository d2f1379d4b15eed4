"""Post-processing of noisy vectors: counts, rates, means and medians with 95 % intervals.

Nothing here sees the true aggregates: it reads only the noisy integer vectors that
`privacy.mechanisms.release` returned and the public plan (scales, bounds, bins). Every
released number carries an interval meant to hold the noiseless bounded aggregate with
95 % probability; how each is derived is written next to it and in docs/guarantees.md.

- Counts and sums: the noisy count (or total of clamped, non-negative values) ± OpenDP's
  95 % accuracy of the discrete noise, in the metric's unit; negative ones are shown as 0
  (the interval is clipped to 0 too, which never loses coverage).
- Rates and means (ratio r = A / D of two noisy sums): every r whose observed a - r·d is
  a plausible draw of the discrete noise X - r·Y, by privacy/intervals.py (exact for the
  discrete law at small scales, a proven upper bound of its tail above). Rates are
  clipped to [0, 1], means to the metric's value bounds; the position-debiased click
  rate's range is [0, the largest inverse propensity], since its bounded ratio may
  exceed 1, and a note says when any released cell does.
- Medians (and the p90, p99 of the same histograms): read from the noisy CDF of a public
  histogram (for a quantile q, D_j weighs the two sides 1 - q and q; see _median_row).
  With D_j = (mass up to bin j) - (mass after it), the true median lies in the first
  bin with D_j >= 0. Each D_j carries
  the sum of all B bins' noise (signs flipped), bounded with probability 95 % by `t`
  (a Chernoff bound for discrete Laplace, a sub-Gaussian bound for discrete Gaussian).
  The interval runs from the first bin whose noisy D_j + t >= 0 to the bin after the
  last whose noisy D_j - t < 0, widened to bin edges; it covers the median with >= 95 %.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from privacy.bounds import IPW_UNIT, Part
from privacy.intervals import Noise, ratio_interval, sum_noise_halfwidth
from privacy.mechanisms import NoisyVector
from privacy.metrics import Metric
from privacy.query import QueryPlan
from service.queries.compare import annotate, compare_notes
from service.queries.funnel import funnel_notes, funnel_rows
from service.queries.totals import add_totals, totals_notes

__all__ = ["release_rows"]


# --- rows -------------------------------------------------------------------------------


def _count_row(v: int, noisy: NoisyVector, part: Part) -> tuple[float, list[float]]:
    value = v / part.divisor
    half = noisy.ci95 / part.divisor
    return max(value, 0.0), [max(value - half, 0.0), max(value + half, 0.0)]


def _ratio_row(
    plan: QueryPlan,
    top: tuple[int, NoisyVector, Part],
    bottom: tuple[int, NoisyVector, Part],
    low: float,
    high: float,
) -> tuple[float | None, list[float], bool]:
    """(value, interval, whether the noisy ratio fell outside [low, high] and was clipped)."""
    (a, a_noisy, a_part), (d, d_noisy, d_part) = top, bottom
    if d <= 0:  # no events to speak of: say nothing rather than something arbitrary
        return None, [low, high], False
    raw = (a / a_part.divisor) / (d / d_part.divisor)
    value = min(max(raw, low), high)
    lo, hi = ratio_interval(
        a,
        d,
        Noise(plan.accounting, a_noisy.scale),
        Noise(plan.accounting, d_noisy.scale),
        a_part.divisor / d_part.divisor,
        low,
        high,
    )
    return value, [lo, hi], value != raw


def _median_row(metric: Metric, bins: Sequence[int], t: float) -> tuple[float | None, list[float]]:
    """A quantile q (0.5: the median) read from a noisy histogram, with its 95 % interval."""
    scale = metric.value
    assert scale is not None
    q = metric.quantile
    edges = [e / scale.factor for e in scale.edges]
    full = [edges[0], edges[-1]]
    clipped = [max(b, 0) for b in bins]
    total = sum(clipped)
    value: float | None = None
    if total > 0:
        wanted, seen = total * q, 0.0
        for j, mass in enumerate(clipped):
            if mass > 0 and seen + mass >= wanted:
                value = edges[j] + (wanted - seen) / mass * (edges[j + 1] - edges[j])
                break
            seen += mass
    # D_j = ((1 - q)·(noisy mass up to j) - q·(noisy mass after j)) / max(q, 1 - q), on
    # the unclipped counts: each bin's noise enters with a coefficient of at most 1 in
    # size, so the bound t on the sum of all B noises holds for it (for the median it is
    # (mass up to j) - (mass after j)). The quantile lies in the first bin with D_j >= 0.
    whole = sum(bins)
    norm = max(q, 1 - q)
    below, d = 0, []
    for b in bins:
        below += b
        d.append(((1 - q) * below - q * (whole - below)) / norm)
    if value is None:  # nothing left after noise: the median could be anywhere
        return None, full
    first = next((j for j, dj in enumerate(d) if dj + t >= 0), len(bins) - 1)
    last_below = max((j for j, dj in enumerate(d) if dj - t < 0), default=-1)
    upper_bin = min(last_below + 1, len(bins) - 1)
    if first > upper_bin:  # only an outlier draw gets here: say nothing rather than wrong
        return value, full
    return value, [edges[first], edges[upper_bin + 1]]


def release_rows(
    plan: QueryPlan, noisy: Mapping[str, NoisyVector]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The released rows (cell keys + "value" + "ci95") and the notes that qualify them."""
    metric = plan.metric
    parts = {p.name: p for p in plan.parts}
    values: list[tuple[float | None, list[float]]] = []
    clipped = 0
    n = len(plan.cells)
    if metric.kind == "funnel":
        rows = funnel_rows(plan, noisy["levels"])
        return _with_totals(plan, noisy, rows, notes_for(plan) + funnel_notes(plan))
    if metric.kind in ("count", "distinct", "sum"):
        (name,) = parts
        vector = noisy[name]
        values = [_count_row(vector.values[i], vector, parts[name]) for i in range(n)]
    elif metric.kind in ("rate", "mean"):
        top, bottom = ("numerator", "denominator") if metric.kind == "rate" else ("sum", "count")
        low, high = ratio_range(plan)
        for i in range(n):
            value, interval, was_clipped = _ratio_row(
                plan,
                (noisy[top].values[i], noisy[top], parts[top]),
                (noisy[bottom].values[i], noisy[bottom], parts[bottom]),
                low,
                high,
            )
            values.append((value, interval))
            clipped += was_clipped
    else:
        assert metric.value is not None
        bins = metric.value.bins
        vector = noisy["histogram"]
        t = sum_noise_halfwidth(plan.accounting, vector.scale, bins)
        values = [
            _median_row(metric, vector.values[i * bins : (i + 1) * bins], t) for i in range(n)
        ]
    rows = [
        {**cell, "value": value, "ci95": interval}
        for cell, (value, interval) in zip(plan.cells, values, strict=True)
    ]
    if metric.kind in ("rate", "mean"):
        annotate(plan, noisy, rows, ratio_range(plan))
    notes = notes_for(plan) + compare_notes(plan)
    if clipped:
        notes.append(
            f"{clipped} cell(s) had a noisy ratio outside [{low:g}, {high:g}]: their value "
            "is clipped to the range; their interval is computed from the noisy sums, not "
            "from the clipped value."
        )
    if metric.name == "click_through_rate_debiased" and any(
        v is not None and v > 1 for v, _ in values
    ):
        notes.append(
            "Some cells exceed 1: at their positions the clicks outnumber what the "
            "declared examination propensities predict; the propensities there are "
            "probably too low."
        )
    return _with_totals(plan, noisy, rows, notes)


def _with_totals(
    plan: QueryPlan,
    noisy: Mapping[str, NoisyVector],
    rows: list[dict[str, Any]],
    notes: list[str],
) -> tuple[list[dict[str, Any]], list[str]]:
    """The rows and, when asked, the consistent totals after them (service/queries/totals.py)."""
    if not plan.request.totals:
        return rows, notes
    totals = add_totals(plan, noisy, rows, ratio_range(plan))
    return rows + totals, notes + totals_notes(plan)


def ratio_range(plan: QueryPlan) -> tuple[float, float]:
    """Where a rate's or a mean's bounded ratio lies, whatever the data."""
    metric = plan.metric
    if metric.kind == "mean" and metric.value is not None:
        return metric.value.low / metric.value.factor, metric.value.high / metric.value.factor
    if metric.name == "click_through_rate_debiased":
        # Each bounded click weighs at most the largest inverse propensity.
        return 0.0, max(plan.propensity_units) / IPW_UNIT
    return 0.0, 1.0


def notes_for(plan: QueryPlan) -> list[str]:
    """Plain-words qualifications of a release: bounding, clipping, sampling."""
    metric = plan.metric
    if metric.kind == "distinct":
        per_cell = "counting once in each"
    else:
        sessions = metric.name == "abandonment_rate" or metric.kind == "funnel"
        what = "session(s)" if sessions else "event(s)"
        per_cell = (
            f"and {plan.rows_per_group} {what} per cell (a person above that counts as the "
            "limit, with their own average)"
        )
    notes = [
        f"Before noise, each person's contribution within one epoch was limited to "
        f"{plan.groups_per_unit} cell(s) {per_cell}; the intervals cover the noise around "
        "these bounded aggregates, not the effect of the bounds."
    ]
    if metric.kind in ("count", "distinct"):
        notes.append("Negative noisy counts are shown as 0.")
    if metric.kind == "sum":
        notes.append(
            f"Totals are in {metric.unit}; a negative noisy total is shown as 0 (no value is "
            "below 0), and so is the low end of its interval."
        )
    if metric.name == "click_through_rate_debiased":
        notes.append(
            "Clicks are weighted by 1 / the policy's examination propensity of their "
            "position; the estimate is only as good as those propensities."
        )
    if metric.kind == "rate":
        low, high = ratio_range(plan)
        notes.append(
            f"Rates are clipped to [{low:g}, {high:g}]; a cell whose noisy denominator is "
            f"not positive has no value (null) and the interval [{low:g}, {high:g}]."
        )
    if metric.kind in ("mean", "median", "sum") and metric.value is not None:
        v = metric.value
        empty = (
            ""
            if metric.kind == "sum"
            else "; a cell with no events left after noise has no value (null) and the "
            "whole range as its interval"
        )
        notes.append(
            f"Values were clamped to [{v.low / v.factor:g}, {v.high / v.factor:g}] "
            f"{metric.unit} before aggregation{empty}."
        )
    if metric.kind == "median":
        notes.append(
            "Medians and percentiles are read from a noisy histogram over public bins; the "
            "interval is widened to bin edges."
        )
    sampled = sorted({f"{t} at {r:g}" for p in plan.parts for t, r in p.sampled})
    if sampled:
        notes.append(
            "Sampled event types (" + ", ".join(sampled) + ") are reweighted by "
            "1 / inclusion probability; the intervals include the DP noise only, not the "
            "sampling error."
        )
    return notes
