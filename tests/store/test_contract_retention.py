"""Retention SQL: exactly the expired rows go, counted as the dry run counted them."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from store.contract import DAY, T0_DAY, T0_TS, batch, quarantine_row

from privacy.keyring import SealedSalt
from service.store.base import Store, WriteBatch

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
A, B = 1, 2  # two event type codes
FAR_EPOCH = T0_DAY + 10


def fill(store: Store) -> None:
    """Type A and B events at T0 - d days - h * 6 hours, for d in 0..5 and h in 0..3."""
    batches = [
        batch(
            [code * 100_000 + day * 1000 + h],
            ts=T0_TS - day * DAY - h * 6 * 3600,
            event_type=code,
        )
        for code in (A, B)
        for day in range(6)
        for h in range(4)
    ]
    store.events.write(batches)


def test_expired_events_of_a_type_go_and_the_rest_stay(store: Store) -> None:
    fill(store)
    cutoff = T0_TS - 2 * DAY - 1  # inside day -2, between two of its events
    expected = store.retention.count_events(A, cutoff, FAR_EPOCH)
    deleted = sum(store.retention.delete_events(A, cutoff, FAR_EPOCH, 3))
    assert deleted == expected == 4 * 4 - 1  # days -5..-3 whole, 3 of day -2's 4
    assert store.retention.count_events(A, cutoff, FAR_EPOCH) == 0
    assert store.retention.count_events(B, cutoff, FAR_EPOCH) == expected
    assert store.events.count() == 48 - deleted


def test_deleting_with_nothing_expired_deletes_nothing(store: Store) -> None:
    fill(store)
    assert sum(store.retention.delete_events(A, T0_TS - 30 * DAY, FAR_EPOCH, 100)) == 0
    assert store.events.count() == 48


def test_deleting_a_type_never_stored_deletes_nothing(store: Store) -> None:
    assert store.retention.count_events(7, T0_TS, FAR_EPOCH) == 0
    assert sum(store.retention.delete_events(7, T0_TS, FAR_EPOCH, 100)) == 0


def test_expired_quarantine_and_keys_go(store: Store) -> None:
    fill(store)
    b = WriteBatch(1)
    b.quarantine += [quarantine_row((T0_TS - d * DAY) * 1000) for d in range(5)]
    store.events.write([b])
    before_ms = (T0_TS - 2 * DAY) * 1000
    assert store.retention.count_quarantine(before_ms) == 2
    assert sum(store.retention.delete_quarantine(before_ms, 1)) == 2
    assert store.retention.count_quarantine(before_ms) == 0
    keys = store.retention.count_event_keys(before_ms)
    assert keys == 2 * (3 * 4 + 3)  # days -5..-3, and day -2's but the one at the cutoff
    assert sum(store.retention.delete_event_keys(before_ms, 5)) == keys
    assert store.retention.count_event_keys(before_ms) == 0


def test_a_deleted_key_no_longer_deduplicates(store: Store) -> None:
    store.events.write([batch([1], ts=T0_TS - 10 * DAY)])
    sum(store.retention.delete_event_keys((T0_TS - 5 * DAY) * 1000, 100))
    assert store.events.write([batch([1], ts=T0_TS - 10 * DAY)]) == [[True]]


def salts(store: Store, epochs: range) -> None:
    for epoch in epochs:
        store.salts.add_sealed_salt(SealedSalt(epoch, b"n" * 12, b"c" * 48, "k"))


def test_salts_are_destroyed_once_each_with_one_audit_entry(
    open_node: Callable[[], Store],
) -> None:
    nodes = [open_node() for _ in range(3)]
    salts(nodes[0], range(T0_DAY - 5, T0_DAY + 1))
    assert nodes[0].retention.live_salts_before(T0_DAY - 2) == [T0_DAY - 5, T0_DAY - 4, T0_DAY - 3]
    with ThreadPoolExecutor(3) as pool:
        results = list(
            pool.map(lambda n: n.retention.destroy_salts(T0_DAY - 2, NOW, "retention"), nodes)
        )
    assert sorted(e for r in results for e in r) == [T0_DAY - 5, T0_DAY - 4, T0_DAY - 3]
    entries = [e for e in nodes[0].audit.page(0, 100) if e.kind == "salt_destroyed"]
    assert sorted(e.detail["epoch"] for e in entries) == [T0_DAY - 5, T0_DAY - 4, T0_DAY - 3]
    assert nodes[1].retention.live_salts_before(T0_DAY - 2) == []


def test_a_run_is_claimed_by_one_node_per_gap(open_node: Callable[[], Store]) -> None:
    first, second = open_node(), open_node()
    gap = timedelta(minutes=30)
    assert first.retention.claim_run(NOW, gap) is True
    assert second.retention.claim_run(NOW + timedelta(minutes=10), gap) is False
    assert second.retention.claim_run(NOW + timedelta(minutes=31), gap) is True


def test_racing_claims_grant_one(open_node: Callable[[], Store]) -> None:
    nodes = [open_node() for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        claims = list(pool.map(lambda n: n.retention.claim_run(NOW, timedelta(hours=1)), nodes))
    assert claims.count(True) == 1


def test_purging_after_deletes_succeeds(store: Store) -> None:
    fill(store)
    sum(store.retention.delete_events(A, T0_TS - DAY - 1, FAR_EPOCH, 2))
    assert store.retention.purge_deleted() is True


@pytest.mark.parametrize("batch_rows", [1, 1000])
def test_batch_size_changes_nothing_but_the_pace(store: Store, batch_rows: int) -> None:
    fill(store)
    cutoff = T0_TS - 3 * DAY + 1
    assert sum(store.retention.delete_events(B, cutoff, FAR_EPOCH, batch_rows)) == 3 * 4
