"""The ledger's δ: exact units, two caps per epoch, all-or-nothing with the rho charge.

A release that selects an open dimension's values charges its δ (units of 1e-18) on every
epoch it reads, beside its rho; the store contract holds on both backends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pg
import pytest
from store.contract import GIGA, NANOS, TENTH, charge, store_at_version

from service.store.base import OverBudget, OverDeltaBudget, Store


def test_ten_charges_of_a_tenth_of_the_delta_cap_fill_it_exactly(store: Store) -> None:
    for _ in range(10):
        store.ledger.charge(
            charge(unit="rho", cost=1, delta=GIGA, delta_caps=(10 * GIGA, 10 * GIGA))
        )
    assert store.ledger.delta_spent("alice", [100]) == {100: 10 * GIGA}
    assert store.ledger.global_delta_spent([100]) == {100: 10 * GIGA}
    with pytest.raises(OverDeltaBudget) as refused:
        store.ledger.charge(charge(unit="rho", cost=1, delta=1, delta_caps=(10 * GIGA, 10 * GIGA)))
    assert refused.value.shortfalls[0].analyst_left_units == 0


def test_a_charge_over_the_analyst_delta_cap_charges_neither_rho_nor_delta(store: Store) -> None:
    store.ledger.charge(charge(unit="rho", epochs=(101,), delta=8 * GIGA))
    audit_before = len(store.audit.page(0, 1000))
    refused = charge(unit="rho", epochs=(100, 101, 102), delta=3 * GIGA)
    with pytest.raises(OverDeltaBudget) as over:
        store.ledger.charge(refused)
    short = over.value.shortfalls
    assert [s.epoch for s in short] == [101]
    assert (short[0].analyst_left_units, short[0].global_left_units) == (2 * GIGA, 12 * GIGA)
    assert store.ledger.spent("alice", [100, 101, 102]) == {100: 0, 101: TENTH, 102: 0}
    assert store.ledger.delta_spent("alice", [100, 101, 102]) == {100: 0, 101: 8 * GIGA, 102: 0}
    assert store.ledger.release(refused.release_id) is None
    assert len(store.audit.page(0, 1000)) == audit_before


def test_the_global_delta_cap_holds_across_analysts(store: Store) -> None:
    caps = (10 * GIGA, 15 * GIGA)
    store.ledger.charge(charge(analyst="alice", unit="rho", delta=10 * GIGA, delta_caps=caps))
    with pytest.raises(OverDeltaBudget) as over:
        store.ledger.charge(charge(analyst="bob", unit="rho", delta=6 * GIGA, delta_caps=caps))
    assert over.value.shortfalls[0].global_left_units == 5 * GIGA
    assert store.ledger.delta_spent("bob", [100]) == {100: 0}
    assert store.ledger.spent("bob", [100]) == {100: 0}
    assert store.ledger.global_delta_spent([100]) == {100: 10 * GIGA}


def test_a_charge_over_the_rho_cap_charges_no_delta(store: Store) -> None:
    with pytest.raises(OverBudget):
        store.ledger.charge(charge(unit="rho", cost=2 * NANOS, delta=GIGA))
    assert store.ledger.delta_spent("alice", [100]) == {100: 0}


def test_a_charge_without_delta_leaves_the_delta_spend_alone(store: Store) -> None:
    store.ledger.charge(charge(unit="rho", delta=GIGA))
    store.ledger.charge(charge(unit="rho", request='{"q": 2}'))
    assert store.ledger.spent("alice", [100]) == {100: 2 * TENTH}
    assert store.ledger.delta_spent("alice", [100]) == {100: GIGA}


def test_forgetting_old_epochs_removes_their_delta_spend(store: Store) -> None:
    store.ledger.charge(charge(unit="rho", epochs=(99, 100), delta=GIGA))
    store.ledger.forget_before(100)
    assert store.ledger.delta_spent("alice", [99, 100]) == {99: 0, 100: GIGA}


def test_concurrent_delta_charges_on_several_nodes_never_pass_the_delta_cap(
    open_node: Callable[[], Store],
) -> None:
    nodes = [open_node() for _ in range(2)]

    def try_charge(i: int) -> bool:
        # rho is plentiful (24 x 1 nano); only the δ cap (10 units) can bind: 3 x 3 fit.
        c = charge(unit="rho", cost=1, delta=3, delta_caps=(10, 10), request=str(i))
        try:
            nodes[i % 2].ledger.charge(c)
        except OverDeltaBudget:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        granted = list(pool.map(try_charge, range(24)))
    assert granted.count(True) == 3
    assert nodes[1].ledger.delta_spent("alice", [100]) == {100: 9}
    assert nodes[0].ledger.spent("alice", [100]) == {100: 3}
    assert [e.kind for e in nodes[0].audit.page(0, 100)] == ["release"] * 3


# --- migration from the schema before δ was kept -----------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def store_before_delta(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store at the schema version before budget_spend kept δ (the one before the last)."""
    store = store_at_version(request, tmp_path, None)
    yield store
    store.close()


def test_migrating_keeps_old_rho_spend_and_starts_delta_at_zero(
    store_before_delta: Store,
) -> None:
    for analyst, epoch, nanos in [("alice", 100, 3 * TENTH), ("bob", 100, TENTH)]:
        pg.store_rows(
            store_before_delta,
            "INSERT INTO budget_spend (analyst, epoch, nanos, unit) VALUES (?, ?, ?, ?)",
            analyst,
            epoch,
            nanos,
            "rho",
        )
    store_before_delta.migrate()
    ledger = store_before_delta.ledger
    assert ledger.spent("alice", [100]) == {100: 3 * TENTH}
    assert ledger.global_spent([100]) == {100: 4 * TENTH}
    assert ledger.delta_spent("alice", [100]) == {100: 0}
    # The old spend still counts against the rho cap after the migration: 0.3 + 0.8 > 1.
    with pytest.raises(OverBudget):
        ledger.charge(charge(unit="rho", cost=8 * TENTH, delta=GIGA))
    ledger.charge(charge(unit="rho", cost=7 * TENTH, delta=GIGA))
    assert ledger.spent("alice", [100]) == {100: NANOS}
    assert ledger.delta_spent("alice", [100]) == {100: GIGA}
