"""The traffic simulator: valid, reproducible events with the behaviours metrics look for.

Every test uses a fixed seed, so each figure below is exact for that seed (no false
failures); the thresholds are far from the simulated effects, so a change of the model's
details that keeps its behaviour keeps them passing."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from privacy.events import EVENT_LIST_ADAPTER
from privacy.policy import load_policy
from service.dev.simulate import Simulation, World
from service.settings import DEFAULT_POLICY

NOW = datetime(2026, 11, 26, 15, 30, tzinfo=UTC)
POLICY = load_policy(DEFAULT_POLICY).policy
WORLD = World.from_policy(POLICY)
THRESHOLD = POLICY.privacy.metrics.reformulation_similarity_threshold


def simulate(
    seed: int = 3, days: int = 4, users: int = 400, world: World = WORLD
) -> list[dict[str, Any]]:
    return list(Simulation(world, days=days, users=users, seed=seed, now=NOW).events())


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return simulate()


def of_type(events: list[dict[str, Any]], event_type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["event_type"] == event_type]


def test_the_same_seed_gives_the_same_events_ids_included(events: list[dict[str, Any]]) -> None:
    assert simulate() == events
    assert simulate(seed=4) != events


def test_every_event_passes_the_event_model(events: list[dict[str, Any]]) -> None:
    EVENT_LIST_ADAPTER.validate_python(events, strict=False)
    assert len({e["event_id"] for e in events}) == len(events)


def test_context_labels_are_the_policys_declared_values(events: list[dict[str, Any]]) -> None:
    for dim, declared in POLICY.context.items():
        used = {e["context"][dim] for e in events}
        assert used == set(declared), dim  # every declared value, and nothing else


def test_timestamps_spread_over_the_requested_days_and_stop_at_now(
    events: list[dict[str, Any]],
) -> None:
    times = [datetime.fromisoformat(e["timestamp"]) for e in events]
    assert max(times) <= NOW
    days = Counter(t.date() for t in times)
    first = NOW.date() - timedelta(days=3)
    assert set(days) >= {first + timedelta(days=i) for i in range(4)}
    assert min(days[first + timedelta(days=i)] for i in range(3)) > 500


def test_event_types_the_policy_does_not_collect_are_never_sent() -> None:
    world = replace(WORLD, event_types=frozenset({"response_shown", "task_completion"}))
    kinds = {e["event_type"] for e in simulate(world=world, users=100, days=2)}
    assert kinds == {"response_shown", "task_completion"}


def test_responses_are_shown_alone_or_among_several_candidates(
    events: list[dict[str, Any]],
) -> None:
    candidates = Counter(e["payload"]["candidates"] for e in of_type(events, "response_shown"))
    assert candidates[1] > 0 and sum(n for k, n in candidates.items() if k > 1) > 0


def test_clicks_are_position_biased(events: list[dict[str, Any]]) -> None:
    shown = Counter(
        e["payload"]["position"]
        for e in of_type(events, "response_shown")
        if e["payload"]["candidates"] > 1
    )
    clicks = Counter(e["payload"]["position"] for e in of_type(events, "click_through"))
    rates = [clicks[p] / shown[p] for p in (1, 2, 3)]
    assert rates[0] > 2 * rates[1] > 0 and rates[1] > rates[2] > 0


def test_some_follow_ups_are_clarifications_below_the_threshold(
    events: list[dict[str, Any]],
) -> None:
    similarity = [e["payload"]["similarity"] for e in of_type(events, "reformulation")]
    below = sum(s < THRESHOLD for s in similarity)
    assert 0.1 < below / len(similarity) < 0.6


def test_copied_spans_are_both_short_and_long(events: list[dict[str, Any]]) -> None:
    spans = [e["payload"]["span_length"] for e in of_type(events, "copy_paste")]
    long_share = sum(s >= POLICY.privacy.metrics.long_copy_min_span for s in spans) / len(spans)
    assert 0.15 < long_share < 0.7
    destinations = {e["payload"]["destination"] for e in of_type(events, "copy_paste")}
    assert destinations == {"internal", "external"}


def test_edit_ratios_depend_on_the_task_type(events: list[dict[str, Any]]) -> None:
    by_task: dict[str, list[float]] = defaultdict(list)
    for e in of_type(events, "edit"):
        by_task[e["context"]["task_type"]].append(e["payload"]["edit_ratio"])
    assert statistics.mean(by_task["writing"]) > 1.3 * statistics.mean(by_task["qa"])


def test_sessions_end_in_completion_or_abandonment(events: list[dict[str, Any]]) -> None:
    sessions = {e["session_id"] for e in events}
    ended = {
        e["session_id"] for e in events if e["event_type"] in ("task_completion", "abandonment")
    }
    # Sessions still going at `now` have not ended yet.
    assert len(ended) > 0.97 * len(sessions)
    outcomes = Counter(e["payload"]["outcome"] for e in of_type(events, "task_completion"))
    assert outcomes["success"] > 0 and outcomes["failure"] > 0


def test_the_treatment_cohort_completes_more_tasks() -> None:
    events = simulate(users=1500, days=5)
    success: dict[str, list[bool]] = defaultdict(list)
    for e in of_type(events, "task_completion"):
        success[e["context"]["cohort"]].append(e["payload"]["outcome"] == "success")
    control, treatment = (statistics.mean(success[c]) for c in ("control", "treatment"))
    assert treatment - control > 0.05


def test_dwell_and_scroll_are_within_the_models_bounds(events: list[dict[str, Any]]) -> None:
    dwell = of_type(events, "dwell")
    assert dwell and all(0 <= e["payload"]["scroll_depth"] <= 1 for e in dwell)
    assert len({e["payload"]["dwell_ms"] // 1000 for e in dwell}) > 30  # varied


def test_a_later_run_on_the_same_day_repeats_the_earlier_runs_events(
    events: list[dict[str, Any]],
) -> None:
    later = list(
        Simulation(WORLD, days=4, users=400, seed=3, now=NOW + timedelta(hours=3)).events()
    )
    assert len(later) > len(events)
    assert [e for e in later if datetime.fromisoformat(e["timestamp"]) <= NOW] == events


def test_the_chat_signals_are_simulated_with_bad_answers_drawing_more_of_them(
    events: list[dict[str, Any]],
) -> None:
    shown = len(of_type(events, "response_shown"))
    regenerations = of_type(events, "regenerate")
    stops = of_type(events, "stop_generation")
    ratings = of_type(events, "feedback")
    assert 0.02 < len(regenerations) / shown < 0.3
    assert 0.01 < len(stops) / shown < 0.2
    # Few people rate, and more of them after a bad answer than a good answer's share.
    assert 0.01 < len(ratings) / shown < 0.1
    thumbs = Counter(e["payload"]["thumbs"] for e in ratings)
    assert thumbs["up"] > 0 and thumbs["down"] > 0
    stars = [e["payload"]["rating"] for e in ratings if "rating" in e["payload"]]
    assert stars and set(stars) <= {1, 2, 3, 4, 5} and len(stars) < len(ratings)
    assert {e["context"]["surface"] for e in stops} <= {"chat", "ide"}  # streaming surfaces
    assert max(e["payload"]["attempt"] for e in regenerations) >= 2


def test_a_policy_without_the_chat_signals_is_sent_none_of_them() -> None:
    world = replace(WORLD, event_types=WORLD.event_types - {"regenerate", "feedback"})
    sent = {e["event_type"] for e in simulate(world=world)}
    assert "regenerate" not in sent and "feedback" not in sent and "stop_generation" in sent
