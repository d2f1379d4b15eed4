"""Stored events for query tests, written through the store (no HTTP, no pipeline).

Rows are built directly in the stored layout (service.store.base.EVENT_COLUMNS), with
pseudonyms chosen by the test, so a test states exactly which privacy unit contributed
what.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from conftest import REPO

from privacy.events import EVENT_TYPE_CODES, EventType
from privacy.policy import Policy, load_policy
from service.store.base import EVENT_COLUMNS, Store, WriteBatch
from service.store.sqlite import SQLiteStore

TODAY = date(2026, 11, 20)
DAY_SECONDS = 86_400

_eids = itertools.count(1)


def policy(name: str = "default", **privacy: Any) -> Policy:
    """A shipped policy, with `privacy` keys (and `sampling`/`context`) overridden."""
    loaded = load_policy(REPO / "policies" / f"{name}.yaml").policy
    data = loaded.model_dump(mode="json", by_alias=True)
    for key in ("sampling", "context", "identifiers", "retention"):
        if key in privacy:
            data[key] = privacy.pop(key)
    data["privacy"].update(privacy)
    return Policy.model_validate(data)


def unix_day(d: date) -> int:
    return (d - date(1970, 1, 1)).days


def event_row(
    event_type: str,
    *,
    day: date = TODAY,
    user: int = 1,
    session: int | None = 1,
    second: int = 0,
    inclusion_prob: float = 1.0,
    **fields: Any,
) -> tuple[Any, ...]:
    """One stored event of `event_type` by user pseudonym `user` on `day` (daily epochs)."""
    ts = unix_day(day) * DAY_SECONDS + second
    values: dict[str, Any] = {c: None for c in EVENT_COLUMNS}
    values.update(
        epoch=unix_day(day),
        ts=ts,
        event_type=EVENT_TYPE_CODES[EventType(event_type)],
        source_id=1,
        user_ps=user,
        session_ps=session,
        inclusion_prob=inclusion_prob,
    )
    unknown = set(fields) - set(EVENT_COLUMNS)
    if unknown:
        raise ValueError(f"not stored columns: {sorted(unknown)}")
    values.update(fields)
    return tuple(values[c] for c in EVENT_COLUMNS)


def write(store: Store, rows: Iterable[tuple[Any, ...]]) -> int:
    """Write rows through the store's event repository, in batches; return how many."""
    ts_index = EVENT_COLUMNS.index("ts")
    total = 0
    batch = WriteBatch(1)
    for row in rows:
        batch.keys.append((row[ts_index] * 1000, next(_eids)))
        batch.rows.append(row)
        if len(batch.rows) >= 5000:
            total += sum(store.events.write([batch])[0])
            batch = WriteBatch(1)
    if batch.rows:
        total += sum(store.events.write([batch])[0])
    return total


def open_store(path: Path) -> SQLiteStore:
    store = SQLiteStore(path / "tacit.db", "normal")
    store.migrate()
    return store


def noon(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, 12, tzinfo=UTC)
