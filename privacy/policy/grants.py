"""What a policy makes of the metric catalogue: which metrics exist, in what shape, for whom.

A metric is unavailable to everyone when the policy does not collect the events it reads
or drops an identifier it needs; a ``cohort_level_only`` metric loses every dimension but
the cohort; and ``analyst_metrics`` grants each listed analyst token only the metrics it
names, by name or by family (``dwell_time`` grants ``dwell_time`` and
``dwell_time_median``). An analyst the policy does not list may use every metric.
"""

from __future__ import annotations

from dataclasses import replace

from privacy.metrics import METRICS, Metric
from privacy.policy.model import Policy
from privacy.policy.sections import IdentifierAction

__all__ = ["granted", "metric_unavailable", "metrics_for", "restricted"]


def _family(metric: Metric) -> str:
    return metric.family or metric.name


def metric_unavailable(metric: Metric, policy: Policy) -> str | None:
    """Why `policy` makes `metric` unusable for everyone, or None when it is available."""
    missing = [t.value for t in metric.event_types if t not in policy.event_types]
    # event_count and active_users read whatever is collected; the others need every type.
    if missing and metric.name not in ("event_count", "active_users"):
        return (
            f"{metric.name} needs {', '.join(missing)} events, which this policy does not collect"
        )
    if metric.kind == "funnel" and not policy.privacy.metrics.funnel.steps:
        return f"{metric.name} needs the policy to declare privacy.metrics.funnel.steps"
    for field in metric.needs:
        if policy.identifiers.action(field) is not IdentifierAction.PSEUDONYMIZE:
            return f"{metric.name} needs {field} pseudonyms, which this policy drops"
    return None


def restricted(metric: Metric, policy: Policy) -> Metric:
    """`metric` with the policy's restrictions applied (cohort-level-only dimensions).

    A funnel also reads the event types of the policy's steps.
    """
    if metric.kind == "funnel":
        steps = tuple(s.event_type for s in policy.privacy.metrics.funnel.parsed())
        metric = replace(metric, event_types=tuple(dict.fromkeys((*metric.event_types, *steps))))
    levels = policy.privacy.metrics.cohort_level_only
    if metric.name in levels or _family(metric) in levels:
        return replace(metric, dimensions=tuple(d for d in metric.dimensions if d == "cohort"))
    return metric


def granted(metric: Metric, policy: Policy, analyst: str) -> bool:
    """Whether the analyst token `analyst` may query `metric` (by its name or its family)."""
    allowed = policy.privacy.analyst_metrics.get(analyst)
    return allowed is None or metric.name in allowed or _family(metric) in allowed


def metrics_for(policy: Policy) -> list[Metric]:
    """The catalogue as `policy` allows it: unavailable metrics left out, restrictions applied.

    Which analyst may use which metric is a separate question (`granted`).
    """
    return [
        restricted(m, policy) for m in METRICS.values() if metric_unavailable(m, policy) is None
    ]
