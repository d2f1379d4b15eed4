"""Synthetic events for bench/query.py, generated with numpy in chunks of ~2M rows.

The same chunks fill every store a size is measured on, so the engines read the same
events and their integer aggregates must be identical:

- a Delta lake written straight with ``write_deltalake`` in the lake's own schema, layout
  and configuration (service/lake/table.py), one commit per chunk. Each commit carries
  the sealer's application transaction (chunk number) and its rows carry it as their
  ``seal_batch``, exactly as the sealer leaves them, so re-running continues after the
  last chunk committed (resumable) and LakeQueries reads the table as a sealed one;
- beside it, an empty SQLite store for the hot rows (none) whose claimed-batch counter
  says every chunk was sealed;
- optionally a SQLite row store (``rowstore-N.db``) written through
  ``store.events.write`` (the ingestion write), for the row-store path.

The distribution is the earlier per-row generator's: 7 days; users keep a cohort and one
or two surfaces (a fifth of them on the undeclared "beta"); a pick of a user makes 1-3
sessions under one pseudonym of that day; a session keeps a surface, a task type (5 %
none) and a model; 1-3 queries per session, each shown 1-3 times and maybe clicked (40 %),
reformulated (20 %), copied (20 %), read (30 %); 15 % of sessions abandoned, half with a
task completion (60 % success). About 10 events per user-day. numpy.random is fine here:
this is the bench's data, not the release path.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import TableNotFoundError

from privacy.events import EVENT_TYPE_CODES, EventType
from service.lake.table import CONFIGURATION, SCHEMA, SEALER_APP_ID, TARGET_FILE_BYTES
from service.store.base import EVENT_COLUMNS, EventRepository, WriteBatch
from service.store.sqlite import SQLiteStore

TODAY = date(2026, 11, 20)
DAYS = 7
FIRST = TODAY - timedelta(days=DAYS - 1)
SURFACES = ["chat", "search", "ide", "docs"]
TASKS = ["coding", "writing", "qa", "summarization", "analysis"]
COHORTS = ["control", "treatment"]
MODELS = ["model-a", "model-b"]
EVENTS_PER_USER_DAY = 10
CHUNK_EVENTS = 2_000_000
EVENTS_PER_PICK = 13.7  # 2 sessions x (2 queries x 3.1 events + 0.65): sizes the overshoot
_CODE = {t: EVENT_TYPE_CODES[t] for t in EventType}
_WRITER = WriterProperties(compression="ZSTD")


def unix_day(d: date) -> int:
    return (d - date(1970, 1, 1)).days


def chunks_for(n_events: int) -> int:
    """Chunks of one size: a whole number per day, each at most CHUNK_EVENTS rows."""
    return DAYS * max(1, math.ceil(n_events / (DAYS * CHUNK_EVENTS)))


def _within(counts: np.ndarray) -> np.ndarray:
    """For groups of ``counts`` rows, each row's index inside its group."""
    starts = np.cumsum(counts) - counts
    return np.arange(int(counts.sum())) - np.repeat(starts, counts)


def _strings(values: list[str], index: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    indices = pa.array(index.astype(np.int8), mask=null)
    return pa.DictionaryArray.from_arrays(indices, pa.array(values)).cast(pa.string())


def chunk(n_events: int, number: int, seed: int = 7) -> pa.Table:
    """Chunk ``number`` (1-based) of a size: its rows in the lake's schema, ts order."""
    n_chunks = chunks_for(n_events)
    per_chunk = n_events // n_chunks + (1 if number <= n_events % n_chunks else 0)
    day = unix_day(FIRST) + (number - 1) * DAYS // n_chunks
    rng = np.random.default_rng([seed, n_events, number])
    users = int(max(n_events // (DAYS * EVENTS_PER_USER_DAY * 0.8), 10))
    # User profiles: the same for every chunk of a size (their own generator).
    profiles = np.random.default_rng([seed, n_events])
    cohort = profiles.integers(0, 2, users)
    first_surface = profiles.integers(0, 5, users)  # 4 = "beta", undeclared
    second_surface = np.where(
        profiles.random(users) < 1 / 3, profiles.integers(0, 5, users), first_surface
    )

    picks = int(per_chunk / EVENTS_PER_PICK * 1.1) + 10
    user = rng.integers(0, users, picks)
    user_ps = rng.integers(-(1 << 62), 1 << 62, picks, dtype=np.int64)
    per_pick = rng.integers(1, 4, picks)
    s_user = np.repeat(user, per_pick)
    n_sessions = len(s_user)
    session = {
        "user_ps": np.repeat(user_ps, per_pick),
        "session_ps": rng.integers(0, 1 << 62, n_sessions, dtype=np.int64),
        "surface": np.where(
            rng.random(n_sessions) < 0.5, first_surface[s_user], second_surface[s_user]
        ),
        "task_type": rng.integers(0, 5, n_sessions),
        "no_task": rng.random(n_sessions) >= 0.95,
        "cohort": cohort[s_user],
        "model": rng.integers(0, 2, n_sessions),
        "start": day * 86_400 + rng.integers(0, 86_000, n_sessions),
    }
    queries = rng.integers(1, 4, n_sessions)
    q_session = np.repeat(np.arange(n_sessions), queries)
    q_ts = session["start"][q_session] + 60 * _within(queries)
    n_queries = len(q_session)
    candidates = rng.integers(1, 4, n_queries)

    parts: list[tuple[EventType, np.ndarray, np.ndarray, dict[str, Any]]] = []
    shown = np.repeat(np.arange(n_queries), candidates)
    parts.append(
        (
            EventType.RESPONSE_SHOWN,
            q_session[shown],
            q_ts[shown],
            {
                "position": (_within(candidates) + 1).astype(np.int16),
                "candidates": candidates[shown].astype(np.int16),
            },
        )
    )
    click = np.flatnonzero(rng.random(n_queries) < 0.4)
    parts.append(
        (
            EventType.CLICK_THROUGH,
            q_session[click],
            q_ts[click] + 5,
            {
                "position": (rng.random(len(click)) * candidates[click] + 1).astype(np.int16),
                "candidates": candidates[click].astype(np.int16),
            },
        )
    )
    reform = np.flatnonzero(rng.random(n_queries) < 0.2)
    parts.append(
        (
            EventType.REFORMULATION,
            q_session[reform],
            q_ts[reform] + 30,
            {"similarity": np.round(rng.random(len(reform)), 3)},
        )
    )
    copy = np.flatnonzero(rng.random(n_queries) < 0.2)
    span = (rng.exponential(300, len(copy)) + 1).astype(np.int32)
    parts.append(
        (
            EventType.COPY_PASTE,
            q_session[copy],
            q_ts[copy] + 20,
            {
                "span_start": np.zeros(len(copy), np.int32),
                "span_end": span,
                "span_length": span,
                "destination": pa.array(["external"] * len(copy), pa.string()),
            },
        )
    )
    dwell = np.flatnonzero(rng.random(n_queries) < 0.3)
    parts.append(
        (
            EventType.DWELL,
            q_session[dwell],
            q_ts[dwell] + 40,
            {
                "dwell_ms": rng.exponential(20_000, len(dwell)).astype(np.int32),
                "scroll_depth": np.round(rng.random(len(dwell)), 3),
            },
        )
    )
    left = np.flatnonzero(rng.random(n_sessions) < 0.15)
    parts.append(
        (
            EventType.ABANDONMENT,
            left,
            session["start"][left] + 200,
            {"after_ms": rng.integers(0, 100_000, len(left)).astype(np.int32)},
        )
    )
    done = np.flatnonzero(rng.random(n_sessions) < 0.5)
    success = rng.random(len(done)) < 0.6
    parts.append(
        (
            EventType.TASK_COMPLETION,
            done,
            session["start"][done] + 300,
            {"outcome": _strings(["failure", "success"], success.astype(np.int8))},
        )
    )
    table = pa.concat_tables(
        [_part(kind, idx, ts, own, session, number, rng) for kind, idx, ts, own in parts]
    ).combine_chunks()
    keep = np.sort(rng.permutation(table.num_rows)[:per_chunk])
    if len(keep) < per_chunk:
        raise AssertionError("the chunk's overshoot was too small: a bug in the generator")
    in_time_order = keep[np.argsort(table["ts"].to_numpy()[keep], kind="stable")]
    return table.take(pa.array(in_time_order))


def _part(
    kind: EventType,
    idx: np.ndarray,
    ts: np.ndarray,
    own: dict[str, Any],
    session: dict[str, np.ndarray],
    number: int,
    rng: np.random.Generator,
) -> pa.Table:
    """The rows of one event type, in the lake's schema (other payload columns null)."""
    n = len(idx)
    day = int(session["start"][0] // 86_400) if len(session["start"]) else 0
    columns: dict[str, Any] = {
        "epoch": np.full(n, day, np.int32),
        "ts": ts.astype(np.int64),
        "event_type": np.full(n, _CODE[kind], np.int8),
        "source_id": np.ones(n, np.int32),
        "user_ps": session["user_ps"][idx],
        "session_ps": session["session_ps"][idx],
        "query_ps": rng.integers(0, 1 << 62, n, dtype=np.int64),
        "response_ps": rng.integers(0, 1 << 62, n, dtype=np.int64),
        "surface": _strings([*SURFACES, "beta"], session["surface"][idx]),
        "task_type": _strings(TASKS, session["task_type"][idx], session["no_task"][idx]),
        "cohort": _strings(COHORTS, session["cohort"][idx]),
        "model": _strings(MODELS, session["model"][idx]),
        "inclusion_prob": np.ones(n),
        "seal_batch": np.full(n, number, np.int64),
        **own,
    }
    return pa.Table.from_arrays(
        [
            pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n, f.type)
            for f in SCHEMA
        ],
        schema=SCHEMA,
    )


# --- the stores ---------------------------------------------------------------------------


def lake_path(out: Path, n_events: int) -> Path:
    return out / f"lake-{n_events}"


def hot_store_path(out: Path, n_events: int) -> Path:
    return out / f"lake-{n_events}-hot.db"


def sealed_chunks(uri: Path) -> int:
    try:
        return DeltaTable(str(uri)).transaction_version(SEALER_APP_ID) or 0
    except TableNotFoundError:
        return 0


def build_lake(out: Path, n_events: int, progress: bool = True) -> float:
    """Write the size's chunks into its Delta lake, continuing after the last committed
    one; seconds taken (0 when it was complete). Then the empty hot store beside it."""
    uri = lake_path(out, n_events)
    n_chunks = chunks_for(n_events)
    done = sealed_chunks(uri)
    started = time.perf_counter()
    for number in range(done + 1, n_chunks + 1):
        table = chunk(n_events, number)
        try:
            target: Any = DeltaTable(str(uri))
        except TableNotFoundError:
            target = str(uri)
        write_deltalake(
            target,
            table,
            partition_by=["epoch"],
            mode="append",
            configuration=CONFIGURATION,
            writer_properties=_WRITER,
            target_file_size=TARGET_FILE_BYTES,
            commit_properties=CommitProperties(
                app_transactions=[Transaction(SEALER_APP_ID, number)],
                custom_metadata={"tacit": "bench", "rows": str(table.num_rows)},
            ),
        )
        if progress:
            elapsed = time.perf_counter() - started
            print(f"  lake {n_events:,}: chunk {number}/{n_chunks} ({elapsed:.0f} s)", flush=True)
    hot = hot_store_path(out, n_events)
    if not hot.exists():
        store = SQLiteStore(hot, "normal")
        store.migrate()
        store.hot.claim(n_chunks, 0)  # the sealer claimed (and sealed) every chunk
        store.close()
    return time.perf_counter() - started if done < n_chunks else 0.0


def rows_of(table: pa.Table) -> Iterator[tuple[Any, ...]]:
    """A chunk's rows as the store writes them (EVENT_COLUMNS order, no seal_batch)."""
    yield from zip(*(table[c].to_pylist() for c in EVENT_COLUMNS), strict=True)


def write_rows(events: EventRepository, n_events: int, per_transaction: int = 5000) -> None:
    """Every chunk of the size through the store's ingestion write."""
    key = 0
    ts_at = EVENT_COLUMNS.index("ts")
    for number in range(1, chunks_for(n_events) + 1):
        batch = WriteBatch(1)
        for row in rows_of(chunk(n_events, number)):
            key += 1
            batch.keys.append((row[ts_at] * 1000, key))
            batch.rows.append(row)
            if len(batch.rows) == per_transaction:
                events.write([batch])
                batch = WriteBatch(1)
        if batch.rows:
            events.write([batch])


def build_rowstore(path: Path, n_events: int) -> float:
    """The size's events in a SQLite row store; seconds taken (0 when cached)."""
    if path.exists():
        return 0.0
    tmp = path.with_suffix(".building")
    for leftover in tmp.parent.glob(tmp.name + "*"):
        leftover.unlink()
    store = SQLiteStore(tmp, "normal")
    store.migrate()
    started = time.perf_counter()
    write_rows(store.events, n_events)
    store.db.checkpoint()
    store.close()
    for suffix in ("", "-wal", "-shm"):
        side = Path(str(tmp) + suffix)
        if side.exists():
            side.rename(Path(str(path) + suffix))
    return time.perf_counter() - started
