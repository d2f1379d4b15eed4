"""Spend recorded before the ledger kept its unit gets one when the store is migrated.

A store of schema version 3 (either backend) holds ``budget_spend`` rows of nanos only;
its releases do record their unit. Migrating gives each row the unit of the releases that
charged it, and a row whose unit cannot be known for sure the most conservative reading.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pg
import pytest
from store.contract import NANOS, TENTH, charge, store_at_version

from service.store.base import Charge, Store, UnitSpend
from service.store.rows import RELEASE_INSERT_COLUMNS, release_row

BEFORE_UNITS = 3  # the schema version (both backends) whose budget_spend had no unit


@pytest.fixture(params=["sqlite", "postgres"])
def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A store whose schema is at the version before budget_spend kept its unit."""
    store = store_at_version(request, tmp_path, BEFORE_UNITS)
    yield store
    store.close()


def record_old_charge(store: Store, c: Charge) -> None:
    """A charge as the old ledger recorded it: nanos per (analyst, epoch), and the release."""
    for epoch in c.epochs:
        found = pg.store_rows(
            store,
            "SELECT nanos FROM budget_spend WHERE analyst = ? AND epoch = ?",
            c.analyst,
            epoch,
        )
        if found:
            pg.store_rows(
                store,
                "UPDATE budget_spend SET nanos = nanos + ? WHERE analyst = ? AND epoch = ?",
                c.cost_nanos,
                c.analyst,
                epoch,
            )
        else:
            pg.store_rows(
                store,
                "INSERT INTO budget_spend (analyst, epoch, nanos) VALUES (?, ?, ?)",
                c.analyst,
                epoch,
                c.cost_nanos,
            )
    placeholders = ", ".join("?" * len(RELEASE_INSERT_COLUMNS.split(",")))
    pg.store_rows(
        store,
        f"INSERT INTO releases ({RELEASE_INSERT_COLUMNS}) VALUES ({placeholders})",
        *release_row(c),
    )


def test_old_spend_gets_the_unit_of_the_releases_that_charged_it(old_store: Store) -> None:
    for _ in range(2):
        record_old_charge(
            old_store, charge(unit="rho", epochs=(100, 101), request=uuid.uuid4().hex)
        )
    record_old_charge(old_store, charge(analyst="bob", unit="epsilon", epochs=(102,)))
    old_store.migrate()
    assert old_store.ledger.units() == [
        UnitSpend("epsilon", epochs=1, last_epoch=102),
        UnitSpend("rho", epochs=2, last_epoch=101),
    ]
    assert old_store.ledger.spent("alice", [100, 101]) == {100: 2 * TENTH, 101: 2 * TENTH}
    assert old_store.ledger.spent("bob", [102]) == {102: TENTH}


def test_old_spend_of_mixed_units_counts_as_rho_and_never_less(old_store: Store) -> None:
    # One analyst-epoch charged in both units (the accounting changed between runs): its
    # sum is neither epsilon nor rho. Each epsilon-DP release is (epsilon^2 / 2)-zCDP, so
    # the sum, read as rho, bounds the true rho when no release passes epsilon = 2.
    record_old_charge(old_store, charge(unit="epsilon", cost=5 * TENTH, request="{}"))
    record_old_charge(old_store, charge(unit="rho", cost=TENTH, request='{"q": 2}'))
    old_store.migrate()
    assert old_store.ledger.units() == [UnitSpend("rho", epochs=1, last_epoch=100)]
    assert old_store.ledger.spent("alice", [100]) == {100: 6 * TENTH}


def test_old_spend_of_unknown_unit_counts_as_rho_of_the_worst_epsilon(old_store: Store) -> None:
    # No release left to say what 3.0 was: as epsilon (one release at worst) it is
    # 3.0^2 / 2 = 4.5 in rho, more than 3.0 read as rho; the larger is kept, rounded up.
    pg.store_rows(
        old_store,
        "INSERT INTO budget_spend (analyst, epoch, nanos) VALUES (?, ?, ?)",
        "alice",
        101,
        3 * NANOS,
    )
    old_store.migrate()
    assert old_store.ledger.units() == [UnitSpend("rho", epochs=1, last_epoch=101)]
    spent = old_store.ledger.spent("alice", [101])[101]
    assert 4_500_000_000 <= spent <= 4_500_000_001
