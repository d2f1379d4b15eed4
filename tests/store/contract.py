"""Rows, batches and charges for the store contract tests (plain values, as the service
makes them)."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pg
import pytest

from privacy.budget import Accounting, Budget, Cost
from privacy.delta import DeltaCaps
from service.store.base import EVENT_COLUMNS, QUARANTINE_COLUMNS, Charge, Store, WriteBatch

DAY = 86_400
T0_TS = int(datetime(2026, 11, 20, 12, 0, tzinfo=UTC).timestamp())
T0_DAY = T0_TS // DAY  # also the epoch of T0 (one epoch per UTC day)
POLICY_SHA = "c0ffee" * 10 + "c0ff"


def event_row(ts: int, *, event_type: int = 1, user_ps: int = 11, **fields: Any) -> tuple[Any, ...]:
    """A stored event row (EVENT_COLUMNS order); the epoch is the UTC day of ``ts``."""
    values: dict[str, Any] = dict.fromkeys(EVENT_COLUMNS)
    values.update(
        epoch=ts // DAY,
        ts=ts,
        event_type=event_type,
        source_id=1,
        user_ps=user_ps,
        session_ps=user_ps + 1,
        surface="chat",
        position=1,
        candidates=3,
        inclusion_prob=1.0,
    )
    values.update(fields)
    return tuple(values[c] for c in EVENT_COLUMNS)


def quarantine_row(
    received_ms: int, *, user_ps: int | None = 11, source_id: int = 1
) -> tuple[Any, ...]:
    values: dict[str, Any] = {
        "received_at": received_ms,
        "source_id": source_id,
        "epoch": received_ms // (DAY * 1000),
        "user_ps": user_ps,
        "reason": "invalid",
        "errors": "[]",
        "event": "{}",
    }
    return tuple(values[c] for c in QUARANTINE_COLUMNS)


def batch(
    eids: list[int], *, source_id: int = 1, ts: int = T0_TS, event_type: int = 1, user_ps: int = 11
) -> WriteBatch:
    """One request's rows: event ``eid`` has idempotency key (client ts ms, eid)."""
    b = WriteBatch(source_id)
    for eid in eids:
        b.keys.append((ts * 1000, eid))
        b.rows.append(event_row(ts, event_type=event_type, user_ps=user_ps, source_id=source_id))
    return b


NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
NANOS = 1_000_000_000
TENTH = NANOS // 10
GIGA = 10**9  # δ units: one GIGA is δ = 1e-9


def charge(
    analyst: str = "alice",
    epochs: tuple[int, ...] = (100,),
    cost: int = TENTH,
    request: str = "{}",
    analyst_cap: int = NANOS,
    global_cap: int = 2 * NANOS,
    at: datetime = NOW,
    unit: str = "epsilon",
    delta: int = 0,
    delta_caps: tuple[int, int] = (10 * GIGA, 20 * GIGA),
) -> Charge:
    """A charge as the query service makes one: ``cost`` nanos on every epoch of ``epochs``,
    and ``delta`` units (1e-18) of δ under ``delta_caps`` (analyst, global) when not 0."""
    accounting: Accounting = "pure" if unit == "epsilon" else "zcdp"
    return Charge(
        release_id="rel_" + uuid.uuid4().hex,
        analyst=analyst,
        at=at,
        request_json=request,
        request_hash=hashlib.sha256(request.encode()).hexdigest(),
        metric="event_count",
        unit=unit,
        cost_nanos=cost,
        epochs=epochs,
        budget=Budget(Cost(analyst_cap, accounting), Cost(global_cap, accounting)),
        policy_sha256=POLICY_SHA,
        audit_detail={"metric": "event_count"},
        delta_units=delta,
        delta_caps=DeltaCaps(*delta_caps) if delta else None,
    )


def store_at_version(
    request: pytest.FixtureRequest, tmp_path: Path, version: int | None = None
) -> Store:
    """A store of the fixture's backend (``request.param``: "sqlite" or "postgres") whose
    schema is migrated to ``version`` only (None: the one before the newest), for the
    migration tests; a PostgreSQL database is dropped when the test ends."""
    if request.param == "sqlite":
        from service.store.sqlite import SQLiteStore
        from service.store.sqlite.schema import MIGRATIONS

        store: Store = SQLiteStore(tmp_path / "old.db", policy_sha256=POLICY_SHA)
    else:
        server: pg.PgServer = request.getfixturevalue("pg_server")  # or skip
        from service.store.postgres import PostgresStore
        from service.store.postgres.schema import MIGRATIONS

        url = server.create_database(migrated=False)
        request.addfinalizer(lambda: server.drop_database(url))
        store = PostgresStore(url, POLICY_SHA)
    store.db.migrate(len(MIGRATIONS) - 1 if version is None else version)  # type: ignore[attr-defined]
    return store
