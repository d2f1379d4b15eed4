"""Which metrics a policy grants to which analyst token (`analyst_metrics`): a listed analyst
gets the metrics its list names, by name or by family; an analyst not listed gets them all."""

from __future__ import annotations

from conftest import REPO

from privacy.metrics import METRICS
from privacy.policy import Policy, granted, load_policy, parse_policy


def granting(*names: str) -> Policy:
    """A policy whose only listed analyst, bob, may use ``names``."""
    text = (
        "version: 1\nname: test\nprivacy:\n  max_per_query: 1.0\n  per_analyst: 2.0\n"
        f"  global: 4.0\n  analyst_metrics:\n    bob: [{', '.join(names)}]\n"
    )
    return parse_policy(text).policy


def granted_to_bob(policy: Policy) -> set[str]:
    return {name for name, metric in METRICS.items() if granted(metric, policy, "bob")}


def test_strict_policy_restricts_one_named_analyst() -> None:
    p = load_policy(REPO / "policies" / "strict.yaml").policy
    assert not granted(METRICS["dwell_time"], p, "contractor")
    assert granted(METRICS["task_completion_rate"], p, "contractor")
    assert granted(METRICS["dwell_time"], p, "anyone-else")


def test_an_analyst_not_listed_may_use_every_metric() -> None:
    p = granting("event_count")
    assert all(granted(metric, p, "alice") for metric in METRICS.values())


def test_a_listed_analyst_may_use_only_the_metrics_named() -> None:
    assert granted_to_bob(granting("event_count", "task_completion_rate")) == {
        "event_count",
        "task_completion_rate",
    }


def test_naming_a_family_grants_its_mean_median_percentiles_and_total() -> None:
    assert granted_to_bob(granting("dwell_time")) == {
        "dwell_time",
        "dwell_time_median",
        "dwell_time_p90",
        "dwell_time_p99",
        "dwell_time_total",
    }


def test_naming_a_total_grants_the_total_but_not_the_mean() -> None:
    assert granted_to_bob(granting("copy_span_length_total")) == {"copy_span_length_total"}


def test_naming_a_median_grants_the_median_but_not_the_mean() -> None:
    assert granted_to_bob(granting("edit_ratio_median")) == {"edit_ratio_median"}


def test_an_empty_list_grants_no_metric() -> None:
    assert granted_to_bob(granting()) == set()
