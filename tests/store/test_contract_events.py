"""Events: idempotent, all-or-nothing batch writes; a retry is a duplicate on any node."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from store.contract import DAY, T0_TS, batch, quarantine_row

from privacy.events import EVENT_TYPE_CODES
from service.store.base import Store, WriteBatch


def test_new_events_are_stored(store: Store) -> None:
    assert store.events.write([batch([1, 2, 3])]) == [[True, True, True]]
    assert store.events.count() == 3


def test_a_resent_batch_is_all_duplicates(store: Store) -> None:
    store.events.write([batch([1, 2, 3])])
    assert store.events.write([batch([1, 2, 3])]) == [[False, False, False]]
    assert store.events.count() == 3


def test_a_repeat_inside_one_batch_is_stored_once(store: Store) -> None:
    assert store.events.write([batch([7, 7, 8])]) == [[True, False, True]]
    assert store.events.count() == 2


def test_a_repeat_in_a_later_batch_of_the_same_group_is_a_duplicate(store: Store) -> None:
    assert store.events.write([batch([1, 2]), batch([2, 3])]) == [[True, True], [False, True]]
    assert store.events.count() == 3


def test_a_group_mixing_stored_new_and_repeated_keys_stores_exactly_the_first_copies(
    store: Store,
) -> None:
    store.events.write([batch([5])])
    first, second = batch([1, 5, 2]), batch([2, 3, 1])
    assert store.events.write([first, second]) == [[True, False, True], [False, True, False]]
    assert store.events.count() == 4  # 5 (before), then 1 and 2 of the first, 3 of the second
    assert store.events.write([batch([1, 2, 3, 5])]) == [[False, False, False, False]]


def test_the_same_event_id_from_two_sources_is_two_events(store: Store) -> None:
    flags = store.events.write([batch([1], source_id=1), batch([1], source_id=2)])
    assert flags == [[True], [True]]


def test_the_same_event_id_at_another_client_time_is_another_event(store: Store) -> None:
    assert store.events.write([batch([1], ts=T0_TS), batch([1], ts=T0_TS + 60)]) == [
        [True],
        [True],
    ]


def test_a_retry_landing_on_another_node_is_a_duplicate(open_node: Callable[[], Store]) -> None:
    first, second = open_node(), open_node()
    first.events.write([batch([1, 2])])
    assert second.events.write([batch([2, 3])]) == [[False, True]]
    assert first.events.count() == 3


def test_nodes_writing_overlapping_batches_at_once_store_each_event_once(
    open_node: Callable[[], Store],
) -> None:
    nodes = [open_node() for _ in range(3)]
    # 12 writers, each sending 40 events of which 30 are also sent by other writers.
    plans = [list(range(i * 10, i * 10 + 40)) for i in range(12)]

    def send(i: int) -> list[bool]:
        return nodes[i % len(nodes)].events.write([batch(plans[i])])[0]

    with ThreadPoolExecutor(6) as pool:
        flags = list(pool.map(send, range(len(plans))))
    unique = {eid for plan in plans for eid in plan}
    stored = sum(f.count(True) for f in flags)
    assert stored == len(unique)
    assert nodes[0].events.count() == len(unique)


def test_events_of_every_type_on_many_days_are_stored(store: Store) -> None:
    ids = itertools.count()
    batches = [
        batch([next(ids)], ts=T0_TS - day * DAY, event_type=code)
        for code in EVENT_TYPE_CODES.values()
        for day in range(0, 40, 7)
    ]
    flags = store.events.write(batches)
    assert all(f == [True] for f in flags)
    assert store.events.count() == len(batches)


def test_quarantined_rejects_are_written_with_the_batch(store: Store) -> None:
    b = WriteBatch(1)
    b.quarantine += [quarantine_row(T0_TS * 1000), quarantine_row(T0_TS * 1000 - DAY * 1000)]
    assert store.events.write([b]) == [[]]
    assert store.events.quarantine_count() == 2  # type: ignore[attr-defined]


def test_the_first_ingestion_time_is_recorded_once_by_whoever_is_first(
    open_node: Callable[[], Store],
) -> None:
    first, second = open_node(), open_node()
    at = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    assert first.events.first_event_at() is None
    assert first.events.mark_first_event(at) == at
    assert second.events.mark_first_event(at + timedelta(days=1)) == at
    assert second.events.first_event_at() == at
