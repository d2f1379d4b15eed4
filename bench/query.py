"""Query benchmark: Tacit's DP query against a plain GROUP BY and OpenDP's Polars context.

    .venv/bin/python bench/query.py [--sizes 1000000,10000000] [--repeat 3] [--no-peer]
                                    [--database-url postgresql://...]

1. Builds synthetic events (7 days, 10 events per user-day on average, realistic labels:
   a user keeps a cohort and one or two surfaces; a session keeps a task type and a model)
   THROUGH THE STORE (`store.events.write`, the ingestion hot path's repository), not
   over HTTP. Files are cached as bench/out/query-N.db and reused. With
   ``--database-url postgresql://...`` each size goes to a database of its own on that
   server, ``tacit_query_N`` (created when missing, reused when filled), and every
   contender reads from PostgreSQL instead.
2. Times, in the same run and each in its own process (so peak memory is its own):
   - ``plain``: the plain SQL GROUP BY of the same metric (the floor: no bounding, no
     noise, no intervals);
   - ``tacit``: `plan_query` + `QueryEngine.aggregate` + `QueryEngine.release`, i.e. the
     whole DP query except HTTP and the ledger transaction;
   - ``opendp``: OpenDP's own Polars context (opendp[polars], the bench extra) on the
     same rows: loading them from SQLite into Polars, then the DP query with the same
     bounds (identifier = user pseudonym, <= C rows per cell, <= K cells).
3. Prints wall and CPU seconds (median of --repeat), the peak anonymous memory (RssAnon)
   of each process and, apart, its peak mapped file pages (the SQLite file's mmap, which
   the kernel can drop; bench/rss.py), and the ratios to the plain GROUP BY. Goal: tacit
   <= 2 x plain and <= 300 MB anonymous.

The metric is task_completion_rate by day x surface x task_type over 7 days: 7 x 5 x 6 =
210 cells (every declared value plus "other").
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO)]

from rss import Sampler  # noqa: E402

from privacy.events import EVENT_TYPE_CODES, EventType  # noqa: E402
from privacy.policy import load_policy  # noqa: E402
from service.settings import DEFAULT_POLICY  # noqa: E402
from service.store.base import EVENT_COLUMNS, EventRepository, WriteBatch  # noqa: E402
from service.store.sqlite import SQLiteStore  # noqa: E402

OUT = BENCH / "out"
TODAY = date(2026, 11, 20)
DAYS = 7
FIRST = TODAY - timedelta(days=DAYS - 1)
METRIC = "task_completion_rate"
GROUP_BY = ["day", "surface", "task_type"]
SURFACES = ["chat", "search", "ide", "docs"]
TASKS = ["coding", "writing", "qa", "summarization", "analysis"]
COHORTS = ["control", "treatment"]
MODELS = ["model-a", "model-b"]
EVENTS_PER_USER_DAY = 10
_CODE = {t: EVENT_TYPE_CODES[t] for t in EventType}


def _unix_day(d: date) -> int:
    return (d - date(1970, 1, 1)).days


# --- data -----------------------------------------------------------------------------


_COLUMN = {c: i for i, c in enumerate(EVENT_COLUMNS)}


def _row(
    rng: random.Random, base: dict[str, Any], kind: EventType, ts: int, **payload: Any
) -> tuple[Any, ...]:
    """One stored row: the session's labels in `base`, then this event's own fields."""
    row: list[Any] = [None] * len(EVENT_COLUMNS)
    for key, value in (*base.items(), *payload.items()):
        row[_COLUMN[key]] = value
    row[_COLUMN["ts"]] = ts
    row[_COLUMN["event_type"]] = _CODE[kind]
    row[_COLUMN["query_ps"]] = rng.getrandbits(62)
    row[_COLUMN["response_ps"]] = rng.getrandbits(62)
    return tuple(row)


def _session(rng: random.Random, base: dict[str, Any], day: int) -> list[tuple[Any, ...]]:
    """The events of one session: 1-3 queries, each shown, maybe clicked, copied, read."""
    start = day * 86_400 + rng.randrange(86_000)
    rows = []
    for q in range(rng.randint(1, 3)):
        t = start + 60 * q
        candidates = rng.randint(1, 3)
        for position in range(1, candidates + 1):
            rows.append(
                _row(
                    rng, base, EventType.RESPONSE_SHOWN, t, position=position, candidates=candidates
                )
            )
        if rng.random() < 0.4:
            rows.append(
                _row(
                    rng,
                    base,
                    EventType.CLICK_THROUGH,
                    t + 5,
                    position=rng.randint(1, candidates),
                    candidates=candidates,
                )
            )
        if rng.random() < 0.2:
            rows.append(
                _row(rng, base, EventType.REFORMULATION, t + 30, similarity=round(rng.random(), 3))
            )
        if rng.random() < 0.2:
            n = int(rng.expovariate(1 / 300)) + 1
            rows.append(
                _row(
                    rng,
                    base,
                    EventType.COPY_PASTE,
                    t + 20,
                    span_start=0,
                    span_end=n,
                    span_length=n,
                    destination="external",
                )
            )
        if rng.random() < 0.3:
            rows.append(
                _row(
                    rng,
                    base,
                    EventType.DWELL,
                    t + 40,
                    dwell_ms=int(rng.expovariate(1 / 20_000)),
                    scroll_depth=round(rng.random(), 3),
                )
            )
    if rng.random() < 0.15:
        rows.append(
            _row(rng, base, EventType.ABANDONMENT, start + 200, after_ms=rng.randrange(100_000))
        )
    if rng.random() < 0.5:
        outcome = "success" if rng.random() < 0.6 else "failure"
        rows.append(_row(rng, base, EventType.TASK_COMPLETION, start + 300, outcome=outcome))
    return rows


def synthetic_rows(n_events: int, seed: int = 7) -> Iterator[tuple[Any, ...]]:
    """About n_events stored rows, day by day in time order (as ingestion writes them)."""
    rng = random.Random(seed)
    users = int(max(n_events // (DAYS * EVENTS_PER_USER_DAY * 0.8), 10))
    profile = {
        u: (rng.choice(COHORTS), rng.sample([*SURFACES, "beta"], rng.choice((1, 1, 2))))
        for u in range(users)
    }
    per_day = n_events // DAYS
    for offset in range(DAYS):
        day = _unix_day(FIRST) + offset
        rows: list[tuple[Any, ...]] = []
        while len(rows) < per_day:
            cohort, surfaces = profile[rng.randrange(users)]
            user_ps = rng.getrandbits(63) - (1 << 62)  # one pseudonym per (user, epoch)
            for _ in range(rng.randint(1, 3)):
                base = {
                    "epoch": day,
                    "source_id": 1,
                    "user_ps": user_ps,
                    "session_ps": rng.getrandbits(62),
                    "surface": rng.choice(surfaces),
                    "task_type": rng.choice(TASKS) if rng.random() < 0.95 else None,
                    "cohort": cohort,
                    "model": rng.choice(MODELS),
                    "inclusion_prob": 1.0,
                }
                rows += _session(rng, base, day)
        rows.sort(key=lambda r: r[_COLUMN["ts"]])
        yield from rows[:per_day]


def _write_synthetic(events: EventRepository, n_events: int) -> None:
    """The synthetic events through the store's ingestion write, 5,000 per transaction."""
    batch = WriteBatch(1)
    for key, row in enumerate(synthetic_rows(n_events), start=1):
        batch.keys.append((row[_COLUMN["ts"]] * 1000, key))
        batch.rows.append(row)
        if len(batch.rows) == 5000:
            events.write([batch])
            batch = WriteBatch(1)
    if batch.rows:
        events.write([batch])


def build(path: Path, n_events: int) -> float:
    """Write the synthetic events through the store; seconds taken (0 when cached)."""
    if path.exists():
        return 0.0
    tmp = path.with_suffix(".building")
    for leftover in tmp.parent.glob(tmp.name + "*"):
        leftover.unlink()
    store = SQLiteStore(tmp, "normal")
    store.migrate()
    started = time.perf_counter()
    _write_synthetic(store.events, n_events)
    store.db.checkpoint()
    store.close()
    seconds = time.perf_counter() - started
    for suffix in ("", "-wal", "-shm"):
        side = Path(str(tmp) + suffix)
        if side.exists():
            side.rename(Path(str(path) + suffix))
    return seconds


# --- the three contenders (each runs in its own process) --------------------------------


def _epochs() -> tuple[int, int]:
    return _unix_day(FIRST), _unix_day(TODAY)


def _is_url(db: str) -> bool:
    return db.startswith(("postgresql://", "postgres://"))


def _connect(db: str) -> Any:
    """A DB-API connection to the benchmark's events: a SQLite file or a PostgreSQL URL."""
    if _is_url(db):
        import psycopg

        return psycopg.connect(db, autocommit=True)
    import sqlite3

    return sqlite3.connect(db)


def _size_url(url: str, size: int) -> str:
    """The URL of the size's own database on the server ``url`` names (created if missing)."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"tacit_query_{size}"
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{name}"')
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def build_postgres(url: str, n_events: int) -> float:
    """Write the synthetic events through the PostgreSQL store; seconds taken (0 if filled)."""
    from service.store import open_store

    store = open_store(url)
    try:
        if store.events.count() > 0:
            return 0.0
        started = time.perf_counter()
        _write_synthetic(store.events, n_events)
    finally:
        store.close()
    # What autovacuum would have done by the time anyone queries a week of events:
    # statistics for the planner and a visibility map for index-only scans.
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return time.perf_counter() - started


def measure_plain(db: str) -> dict[str, Any]:
    """The floor: the same rate per cell, with no bounding, no noise, no intervals."""
    first, last = _epochs()
    success, shown = _CODE[EventType.TASK_COMPLETION], _CODE[EventType.RESPONSE_SHOWN]
    sql = (
        "SELECT ts / 86400 AS day, surface, task_type, "
        f"SUM(CASE WHEN event_type = {success} AND outcome = 'success' "
        "THEN 1.0 / inclusion_prob ELSE 0 END), "
        f"SUM(CASE WHEN event_type = {shown} THEN 1.0 / inclusion_prob ELSE 0 END) "
        f"FROM events WHERE epoch BETWEEN {first} AND {last} "
        f"AND event_type IN ({shown}, {success}) GROUP BY 1, 2, 3"
    )
    conn = _connect(db)

    def run() -> int:
        return len(conn.execute(sql).fetchall())

    return _timed(run)


def measure_tacit(db: str) -> dict[str, Any]:
    from privacy.mechanisms import plan_scales
    from privacy.query import QueryRequest, plan_query
    from service.queries.engine import QueryEngine

    policy = load_policy(DEFAULT_POLICY).policy
    if _is_url(db):
        from service.store import open_store

        store: Any = open_store(db)
    else:
        store = SQLiteStore(Path(db), "normal")
    engine = QueryEngine(store, policy)
    body = {
        "metric": METRIC,
        "start": FIRST.isoformat(),
        "end": TODAY.isoformat(),
        "group_by": GROUP_BY,
        "epsilon": 1.0,
    }
    detail: dict[str, Any] = {}

    def run() -> int:
        plan = plan_query(QueryRequest.from_json(body), policy, "bench", TODAY)
        started = time.perf_counter()
        aggregates = engine.aggregate(plan)
        detail["aggregate_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        released = engine.release(plan, aggregates)
        detail["release_s"] = round(time.perf_counter() - started, 3)
        detail["scales"] = {
            name: round(scale, 1)
            for name, scale in plan_scales(plan.components, plan.cost, plan.shares).items()
        }
        return len(released.rows)

    result = _timed(run)
    result["detail"] = detail
    return result


def measure_opendp(db: str) -> dict[str, Any]:
    """OpenDP's Polars context on the same rows (identifier = pseudonym within an epoch)."""
    import opendp.prelude as dp
    import polars as pl

    dp.enable_features("contrib")
    policy = load_policy(DEFAULT_POLICY).policy
    bounds = policy.privacy.contribution
    first, last = _epochs()
    success, shown = _CODE[EventType.TASK_COMPLETION], _CODE[EventType.RESPONSE_SHOWN]
    detail: dict[str, Any] = {}
    surface_keys = {s: i for i, s in enumerate(SURFACES)}
    task_keys = {t: i for i, t in enumerate(TASKS)}
    keys = pl.DataFrame({"cell": list(range(DAYS * 5 * 6))}).lazy()

    def run() -> int:
        started = time.perf_counter()
        conn = _connect(db)
        frame = pl.read_database(
            "SELECT user_ps, ts / 86400 AS day, surface, task_type, event_type, outcome "
            f"FROM events WHERE epoch BETWEEN {first} AND {last} "
            f"AND event_type IN ({shown}, {success})",
            connection=conn,
            schema_overrides={"outcome": pl.String, "surface": pl.String, "task_type": pl.String},
        )
        conn.close()
        detail["load_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        frame = frame.with_columns(
            cell=(pl.col("day") - first) * 30
            + pl.col("surface").replace_strict(surface_keys, default=4, return_dtype=pl.Int64) * 6
            + pl.col("task_type").replace_strict(task_keys, default=5, return_dtype=pl.Int64),
            num=((pl.col("event_type") == success) & (pl.col("outcome") == "success")).cast(
                pl.Int64
            ),
            den=(pl.col("event_type") == shown).cast(pl.Int64),
        ).select("user_ps", "cell", "num", "den")
        context = dp.Context.compositor(
            data=frame.lazy(),
            # Pseudonyms differ per epoch, so the pseudonym alone is the privacy unit.
            privacy_unit=dp.unit_of(contributions=1, identifier="user_ps"),
            privacy_loss=dp.loss_of(epsilon=1.0),
            split_evenly_over=1,
            margins=[dp.polars.Margin(by=["cell"], max_length=100_000_000)],
        )
        query = (
            context.query()
            .truncate_per_group(bounds.max_rows_per_group, by=["cell"])
            # keep="sample" fails in OpenDP 0.16 with Polars 1.36 (a duplicate struct
            # field); "first" keeps the K smallest cell keys instead.
            .truncate_num_groups(bounds.max_groups_per_user, by=["cell"], keep="first")
            .group_by(["cell"])
            .agg(pl.col("num").dp.sum((0, 1)), pl.col("den").dp.sum((0, 1)))
            .with_keys(keys)
        )
        detail["scales"] = {
            r["column"]: r["scale"] for r in query.summarize().iter_rows(named=True)
        }
        out = query.release().collect()
        detail["query_s"] = round(time.perf_counter() - started, 3)
        return out.height

    result = _timed(run)
    result["detail"] = detail
    return result


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(run: Callable[[], int]) -> dict[str, Any]:
    # Peak anonymous memory apart from mapped file pages (bench/rss.py): VmHWM would count
    # the SQLite file's mmap, which the kernel can drop and other processes share.
    with Sampler() as memory:
        started, cpu = time.perf_counter(), _cpu()
        rows = run()
        seconds, cpu_seconds = time.perf_counter() - started, _cpu() - cpu
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "rows": rows,
        "anon_mb": memory.peak.anon_mb,
        "mapped_mb": memory.peak.mapped_mb,
    }


MEASURES = {"plain": measure_plain, "tacit": measure_tacit, "opendp": measure_opendp}


# --- orchestration ------------------------------------------------------------------------


def _child(kind: str, db: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", kind, "--db", str(db)],
        check=True,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender (median)")
    parser.add_argument("--no-peer", action="store_true", help="skip OpenDP's Polars context")
    parser.add_argument("--measure", choices=sorted(MEASURES), help=argparse.SUPPRESS)
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL server to use (one database per size); default: SQLite files",
    )
    parser.add_argument("--db", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(MEASURES[args.measure](args.db)))
        return
    OUT.mkdir(exist_ok=True)
    kinds = ["plain", "tacit"] + ([] if args.no_peer else ["opendp"])
    report: dict[str, Any] = {
        "metric": METRIC,
        "group_by": GROUP_BY,
        "cells": 210,
        "backend": "postgresql" if args.database_url else "sqlite",
        "runs": {},
    }
    for size in (int(float(s)) for s in args.sizes.split(",")):
        if args.database_url:
            db = _size_url(args.database_url, size)
            built = build_postgres(db, size)
            where = f"PostgreSQL database tacit_query_{size}"
        else:
            path = OUT / f"query-{size}.db"
            built, db, where = build(path, size), str(path), path.name
        print(f"\n{size:,} events in {where}" + (f" (built in {built:.0f} s)" if built else ""))
        runs: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
        for _ in range(args.repeat):
            for kind in kinds:  # interleaved, so load from other processes hits all alike
                runs[kind].append(_child(kind, db))
        floor = statistics.median(r["seconds"] for r in runs["plain"])
        floor_cpu = statistics.median(r["cpu_seconds"] for r in runs["plain"])
        summary = {}
        print(
            f"{'':8} {'wall s':>8} {'cpu s':>8} {'anon MB':>8} {'mapped MB':>9} "
            f"{'x plain':>8} {'x plain cpu':>11}"
        )
        for kind in kinds:
            wall = statistics.median(r["seconds"] for r in runs[kind])
            cpu = statistics.median(r["cpu_seconds"] for r in runs[kind])
            anon = max(r["anon_mb"] for r in runs[kind])
            mapped = max(r["mapped_mb"] for r in runs[kind])
            summary[kind] = {
                "seconds": round(wall, 3),
                "cpu_seconds": round(cpu, 3),
                "anon_mb": round(anon, 1),
                "mapped_mb": round(mapped, 1),
                "ratio": round(wall / floor, 2),
                "ratio_cpu": round(cpu / floor_cpu, 2),
                "detail": runs[kind][-1].get("detail", {}),
            }
            print(
                f"{kind:8} {wall:8.2f} {cpu:8.2f} {anon:8.0f} {mapped:9.0f} {wall / floor:8.2f} "
                f"{cpu / floor_cpu:11.2f}"
            )
        for kind in kinds:
            if summary[kind]["detail"]:
                print(f"  {kind}: {summary[kind]['detail']}")
        report["runs"][size] = summary
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    (OUT / f"query-{stamp}.json").write_text(json.dumps(report, indent=2))
    print(f"\nwritten to bench/out/query-{stamp}.json")


if __name__ == "__main__":
    main()
