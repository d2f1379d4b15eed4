"""The budget ledger: exact amounts, all-or-nothing charges, never overspent across nodes."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from store.contract import POLICY_SHA

from service.store.base import Charge, OverBudget, Store

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NANOS = 1_000_000_000
TENTH = NANOS // 10


def charge(
    analyst: str = "alice",
    epochs: tuple[int, ...] = (100,),
    cost: int = TENTH,
    request: str = "{}",
    analyst_cap: int = NANOS,
    global_cap: int = 2 * NANOS,
    at: datetime = NOW,
) -> Charge:
    return Charge(
        release_id="rel_" + uuid.uuid4().hex,
        analyst=analyst,
        at=at,
        request_json=request,
        request_hash=hashlib.sha256(request.encode()).hexdigest(),
        metric="event_count",
        unit="epsilon",
        cost_nanos=cost,
        epochs=epochs,
        analyst_cap_nanos=analyst_cap,
        global_cap_nanos=global_cap,
        policy_sha256=POLICY_SHA,
        audit_detail={"metric": "event_count"},
    )


def test_ten_charges_of_a_tenth_fill_a_cap_of_one_exactly(store: Store) -> None:
    for _ in range(10):
        assert store.ledger.charge(charge()) is None
    assert store.ledger.spent("alice", [100]) == {100: NANOS}
    with pytest.raises(OverBudget):
        store.ledger.charge(charge())


def test_a_refused_charge_charges_no_epoch_and_records_nothing(store: Store) -> None:
    store.ledger.charge(charge(epochs=(101,), cost=9 * TENTH))
    audit_before = len(store.audit.page(0, 1000))
    with pytest.raises(OverBudget) as refused:
        store.ledger.charge(charge(epochs=(100, 101, 102), cost=2 * TENTH))
    assert [s.epoch for s in refused.value.shortfalls] == [101]
    assert refused.value.shortfalls[0].analyst_left_nanos == TENTH
    assert store.ledger.spent("alice", [100, 101, 102]) == {100: 0, 101: 9 * TENTH, 102: 0}
    assert len(store.audit.page(0, 1000)) == audit_before


def test_the_global_cap_holds_across_analysts(store: Store) -> None:
    store.ledger.charge(charge(analyst="alice", cost=NANOS, global_cap=NANOS + TENTH))
    with pytest.raises(OverBudget):
        store.ledger.charge(charge(analyst="bob", cost=2 * TENTH, global_cap=NANOS + TENTH))
    assert store.ledger.global_spent([100]) == {100: NANOS}


def test_a_charge_records_its_release_and_audit_entry(store: Store) -> None:
    c = charge(epochs=(100, 101))
    store.ledger.charge(c)
    record = store.ledger.release(c.release_id)
    assert record is not None
    assert (record.epochs, record.cost_nanos, record.rows) == ((100, 101), TENTH, None)
    assert [e.kind for e in store.audit.page(0, 10)] == ["release"]


def test_a_repeat_with_stored_values_is_answered_free(store: Store) -> None:
    first = charge(request='{"q": 1}')
    store.ledger.charge(first)
    store.ledger.store_values(first.release_id, [{"value": 3}], ["note"])
    again = store.ledger.charge(charge(request='{"q": 1}'), repeat_since=NOW - timedelta(hours=1))
    assert again is not None and again.release_id == first.release_id
    assert again.rows == [{"value": 3}]
    assert store.ledger.spent("alice", [100]) == {100: TENTH}


def test_concurrent_charges_on_several_nodes_never_overspend(
    open_node: Callable[[], Store],
) -> None:
    nodes = [open_node() for _ in range(2)]

    def try_charge(i: int) -> bool:
        try:
            nodes[i % 2].ledger.charge(charge(cost=3 * TENTH))
        except OverBudget:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        granted = list(pool.map(try_charge, range(24)))
    assert granted.count(True) == 3  # 3 x 0.3 <= 1.0 < 4 x 0.3
    assert nodes[1].ledger.spent("alice", [100]) == {100: 9 * TENTH}
    assert [e.kind for e in nodes[0].audit.page(0, 100)] == ["release"] * 3


def test_forgetting_old_epochs_removes_their_budgets_and_releases(store: Store) -> None:
    old, mixed = charge(epochs=(98, 99)), charge(epochs=(99, 100))
    store.ledger.charge(old)
    store.ledger.charge(mixed)
    assert store.ledger.forget_before(100) == [98, 99]
    assert store.ledger.spent("alice", [98, 99, 100]) == {98: 0, 99: 0, 100: TENTH}
    assert store.ledger.release(old.release_id) is None
    assert store.ledger.release(mixed.release_id) is not None
