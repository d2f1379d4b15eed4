"""The budget ledger: exact amounts, all-or-nothing charges, never overspent across nodes."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from store.contract import NANOS, NOW, TENTH, charge

from service.store.base import OverBudget, Store, UnitMismatch, UnitSpend


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


def test_every_charge_keeps_its_unit_beside_its_amount(store: Store) -> None:
    assert store.ledger.units() == []
    store.ledger.charge(charge(unit="rho", epochs=(100, 101)))
    store.ledger.charge(charge(analyst="bob", unit="rho", epochs=(101,)))
    assert store.ledger.units() == [UnitSpend("rho", epochs=2, last_epoch=101)]
    assert store.ledger.spent("alice", [100, 101]) == {100: TENTH, 101: TENTH}


def test_the_unit_of_the_spend_is_what_another_node_or_a_restart_reads(
    open_node: Callable[[], Store],
) -> None:
    open_node().ledger.charge(charge(unit="rho", epochs=(100,)))
    assert open_node().ledger.units() == [UnitSpend("rho", epochs=1, last_epoch=100)]


def test_a_charge_in_another_unit_than_its_epochs_hold_is_refused_whole(store: Store) -> None:
    store.ledger.charge(charge(analyst="alice", unit="rho", epochs=(100,)))
    audit_before = len(store.audit.page(0, 1000))
    refused = charge(analyst="bob", unit="epsilon", epochs=(99, 100))
    with pytest.raises(UnitMismatch) as mismatch:
        store.ledger.charge(refused)
    # Bob has no spend of his own there: the epoch's global sum must not mix units either.
    assert (mismatch.value.recorded, mismatch.value.charged) == ("rho", "epsilon")
    assert store.ledger.spent("bob", [99, 100]) == {99: 0, 100: 0}
    assert store.ledger.global_spent([99, 100]) == {99: 0, 100: TENTH}
    assert store.ledger.release(refused.release_id) is None
    assert len(store.audit.page(0, 1000)) == audit_before
