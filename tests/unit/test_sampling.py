"""Sampling: per event type at the policy's rate, decided per session by a keyed hash
(a session is kept or dropped whole, the same way on every worker and retry), with the
inclusion probability stored; everything is kept during the calibration period.

The salts are random (os.urandom), so the kept share cannot be seeded: the rate tests
use Hoeffding's bound, P(|kept/N - rate| >= t) <= 2 exp(-2 N t^2), with t chosen so
that this false-failure probability is 1e-6.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest
from conftest import T0, Clock
from factories import event

from privacy.events import EventType
from privacy.keyring import Keyring, MasterKey
from privacy.policy import Policy, Sampling, load_policy
from service.ingest.parse import parse_batch
from service.ingest.pipeline import Ingestor, Prepared
from service.settings import DEFAULT_POLICY
from service.store.base import EVENT_COLUMNS
from service.store.sqlite import SQLiteStore

CALIBRATION = timedelta(days=10)
RATES = {EventType.EDIT: 0.3, EventType.DWELL: 0.5}
POLICY: Policy = load_policy(DEFAULT_POLICY).policy.model_copy(
    update={"sampling": Sampling(calibration_period=CALIBRATION, rates=RATES)}
)
FALSE_FAILURE = 1e-6
PROB = EVENT_COLUMNS.index("inclusion_prob")


def hoeffding_halfwidth(n: int) -> float:
    return math.sqrt(math.log(2 / FALSE_FAILURE) / (2 * n))


class Pipeline:
    def __init__(self, store: SQLiteStore, master: MasterKey, clock: Clock) -> None:
        self.keyring = Keyring(master, store.salts, POLICY.identifiers)
        self.ingestor = Ingestor(POLICY, self.keyring, store, clock, timedelta(hours=23))

    def prepare(self, events: list[dict[str, Any]]) -> Prepared:
        body = json.dumps({"events": events}).encode()
        return self.ingestor.prepare(parse_batch(body, len(events)), 1)


@pytest.fixture
def master() -> MasterKey:
    return MasterKey.from_base64(MasterKey.generate_base64())


@pytest.fixture
def pipeline(store: SQLiteStore, master: MasterKey, clock: Clock) -> Pipeline:
    """A pipeline past its calibration period (the first event was ingested at T0)."""
    p = Pipeline(store, master, clock)
    p.prepare([event("response_shown", at=T0)])
    clock.advance(days=CALIBRATION.days, hours=1)
    return p


def sessions(kind: str, n: int, clock: Clock, per_session: int = 1) -> list[dict[str, Any]]:
    now = clock()
    return [
        event(kind, at=now - timedelta(seconds=j), user=f"u{i}", session=f"s{i}")
        for i in range(n)
        for j in range(per_session)
    ]


@pytest.mark.parametrize("kind", [EventType.EDIT, EventType.DWELL])
def test_kept_share_is_within_binomial_bounds_of_the_rate(
    pipeline: Pipeline, clock: Clock, kind: EventType
) -> None:
    n = 10_000
    kept = len(pipeline.prepare(sessions(kind.value, n, clock)).batch.rows)
    assert abs(kept / n - RATES[kind]) < hoeffding_halfwidth(n)  # halfwidth ~0.027


def test_types_the_policy_does_not_sample_are_all_kept(pipeline: Pipeline, clock: Clock) -> None:
    prepared = pipeline.prepare(sessions("task_completion", 500, clock))
    assert len(prepared.batch.rows) == 500
    assert {row[PROB] for row in prepared.batch.rows} == {1.0}


def test_a_session_is_kept_or_dropped_whole(pipeline: Pipeline, clock: Clock) -> None:
    events = sessions("edit", 1000, clock, per_session=6)
    kept: dict[str, int] = defaultdict(int)
    for index in pipeline.prepare(events).row_indexes:
        kept[events[index]["session_id"]] += 1
    assert set(kept.values()) == {6}  # every kept session has all of its 6 events
    assert 0 < len(kept) < 1000  # and some sessions were dropped (whole)


def test_the_same_session_is_decided_alike_on_another_worker_and_on_retry(
    pipeline: Pipeline, store: SQLiteStore, master: MasterKey, clock: Clock
) -> None:
    events = sessions("dwell", 400, clock)
    first = set(pipeline.prepare(events).row_indexes)
    other_worker = Pipeline(store, master, clock)  # its own keyring, salts from the store
    assert set(other_worker.prepare(events).row_indexes) == first
    assert set(pipeline.prepare(events).row_indexes) == first


def test_kept_events_carry_their_inclusion_probability(pipeline: Pipeline, clock: Clock) -> None:
    prepared = pipeline.prepare(sessions("edit", 300, clock) + sessions("dwell", 300, clock))
    probabilities = {row[PROB] for row in prepared.batch.rows}
    assert probabilities == {RATES[EventType.EDIT], RATES[EventType.DWELL]}


def test_sampled_out_events_are_counted_in_the_batch_report(
    pipeline: Pipeline, clock: Clock
) -> None:
    prepared = pipeline.prepare(sessions("edit", 500, clock))
    report = pipeline.ingestor.report(prepared, [True] * len(prepared.batch.rows))
    assert report.sampled_out == 500 - len(prepared.batch.rows) > 0
    assert sum(r.status == "sampled_out" for r in report.results) == report.sampled_out


def test_calibration_period_keeps_every_event(
    store: SQLiteStore, master: MasterKey, clock: Clock
) -> None:
    p = Pipeline(store, master, clock)
    p.prepare([event("response_shown", at=T0)])  # the first event starts the calibration
    clock.advance(days=CALIBRATION.days - 1)
    prepared = p.prepare(sessions("edit", 2000, clock))
    assert len(prepared.batch.rows) == 2000
    assert {row[PROB] for row in prepared.batch.rows} == {1.0}


def test_calibration_counts_from_the_first_event_not_from_the_first_start(
    store: SQLiteStore, master: MasterKey, clock: Clock
) -> None:
    p = Pipeline(store, master, clock)
    clock.advance(days=CALIBRATION.days * 3)  # the service ran a month with no traffic
    p.prepare([event("response_shown", at=clock())])
    clock.advance(days=1)
    assert len(p.prepare(sessions("edit", 1000, clock)).batch.rows) == 1000


def test_sampling_starts_when_the_calibration_period_ends(
    store: SQLiteStore, master: MasterKey, clock: Clock
) -> None:
    p = Pipeline(store, master, clock)
    p.prepare([event("response_shown", at=T0)])
    clock.now = T0 + CALIBRATION
    assert len(p.prepare(sessions("edit", 1000, clock)).batch.rows) < 1000
