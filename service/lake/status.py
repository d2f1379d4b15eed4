"""`tacit lake status`: what the lake holds and how far behind the sealer is.

Counts are exact: ``rows_sealed`` counts the rows of the current snapshot's files (from
their Parquet footers), ``rows_hot`` the store's rows the lake does not hold yet.
``seal_lag_seconds`` is 0 when nothing waits, else the time since the last seal (or, if
nothing was ever sealed, since the first event was stored): how old the oldest unsealed
row may be.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import duckdb

from service.lake.engine import lake_view_sql
from service.lake.table import Lake
from service.store.base import Store


def _iso(ms: int | None) -> str | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def lake_status(store: Store, lake: Lake, now: datetime) -> dict[str, Any]:
    snapshot = lake.snapshot()
    rows_sealed = 0
    partitions: set[str] = set()
    if not snapshot.empty:
        con = duckdb.connect()
        try:
            con.execute(f"CREATE TEMP VIEW events AS {lake_view_sql(snapshot, False)}")
            ((rows_sealed,),) = con.execute("SELECT count(*) FROM events").fetchall()
        finally:
            con.close()
        partitions = {f.split("epoch=")[1].split("/")[0] for f in snapshot.files}
    hot = store.hot.unsealed(snapshot.sealed_batch)
    notes = store.hot.notes()
    lag = 0.0
    if hot:
        since = notes.get("seal")
        if since is None:
            first = store.events.first_event_at()
            since = None if first is None else int(first.timestamp() * 1000)
        lag = 0.0 if since is None else max(0.0, now.timestamp() - since / 1000)
    return {
        "lake": lake.uri,
        "version": snapshot.version,
        "sealed_through_batch": snapshot.sealed_batch,
        "partitions": len(partitions),
        "files": len(snapshot.files),
        "rows_sealed": int(rows_sealed),
        "rows_hot": int(hot),
        "seal_lag_seconds": round(lag, 3),
        "last_seal": _iso(notes.get("seal")),
        "last_compaction": _iso(notes.get("compaction")),
        "last_vacuum": _iso(notes.get("vacuum")),
    }
