"""The audit log: append-only, hash-chained, one chain however many nodes append."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from store.contract import POLICY_SHA

from service.ops.audit import verify
from service.store.base import Store

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def test_entries_come_back_in_order_with_their_details(store: Store) -> None:
    store.audit.append("policy_loaded", "service", {"name": "default"}, NOW)
    store.audit.append("release", "alice", {"metric": "m", "epsilon": 0.5}, NOW)
    first, second = store.audit.page(0, 10)
    assert (first.seq, first.kind, first.detail) == (1, "policy_loaded", {"name": "default"})
    assert (second.seq, second.actor, second.detail["epsilon"]) == (2, "alice", 0.5)
    assert second.prev_hash == first.hash
    assert first.policy_sha256 == POLICY_SHA


def test_pages_continue_after_the_given_seq(store: Store) -> None:
    for i in range(5):
        store.audit.append("k", "a", {"i": i}, NOW + timedelta(seconds=i))
    assert [e.seq for e in store.audit.page(2, 2)] == [3, 4]
    assert store.audit.page(5, 10) == []


def test_the_chain_verifies(store: Store) -> None:
    for i in range(20):
        store.audit.append("k", "a", {"i": i}, NOW + timedelta(milliseconds=i))
    assert verify(store.audit.page(0, 100)).ok


def test_nodes_appending_at_once_never_fork_the_chain(open_node: Callable[[], Store]) -> None:
    nodes = [open_node() for _ in range(3)]
    per_thread = 15

    def append_many(i: int) -> None:
        node = nodes[i % len(nodes)]
        for j in range(per_thread):
            node.audit.append("k", f"worker-{i}", {"j": j}, NOW)

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(append_many, range(6)))
    entries = nodes[0].audit.page(0, 1000)
    assert [e.seq for e in entries] == list(range(1, 6 * per_thread + 1))
    report = verify(entries)
    assert report.ok, report.message
