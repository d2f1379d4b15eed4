"""Concurrent DP queries on DuckDB over the lake: one shared pool of threads against one
pool per query.

    .venv/bin/python bench/concurrent_queries.py [--size 10000000] [--queries 4] [--rounds 2]

Runs ``--queries`` DP queries at once, from threads of one process (as the service's
request threads do), through one QueryEngine over LakeQueries (bench/query.py's lake,
built with bench/lakegen.py), in two modes, each in a fresh process, alternated:

- ``shared``: the engine as it is: one DuckDB database per repository, a cursor per
  query, so every query shares one pool of threads (one per core);
- ``per-query``: as it was before: every query opens its own in-memory database, whose
  pool has one thread per core of its own (N queries: N x cores threads).

Prints the wall time until the last query ends, each query's median latency, and the
peak anonymous memory (RssAnon) of the process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import duckdb  # noqa: E402
import lakegen  # noqa: E402
import query  # noqa: E402
from rss import Sampler  # noqa: E402

from service.lake.engine import Cut, LakeQueries, parquet_sql  # noqa: E402
from service.lake.table import Lake, to_arrow  # noqa: E402
from service.queries.engine import QueryEngine  # noqa: E402
from service.store.sqlite import SQLiteStore  # noqa: E402


class PerQueryDatabase(LakeQueries):
    """The engine before: a new in-memory database (and pool of threads) per query."""

    def _run(self, sql: str, cut: Cut) -> list[tuple[int, ...]]:
        con = duckdb.connect()
        try:
            con.register("hot", to_arrow(cut.hot_rows))
            files = parquet_sql(cut.snapshot.files) if cut.snapshot.files else None
            con.execute(f"CREATE TEMP VIEW events AS {cut.events_sql(files)}")
            return [tuple(int(v) for v in row) for row in con.execute(sql).fetchall()]
        finally:
            con.close()


def measure(mode: str, size: int, n: int) -> dict[str, Any]:
    policy, plan = query._plan()
    store = SQLiteStore(lakegen.hot_store_path(query.OUT, size), "normal")
    lake = Lake(lakegen.lake_path(query.OUT, size))
    kind = LakeQueries if mode == "shared" else PerQueryDatabase
    engine = QueryEngine(store, policy, kind(store, lake))
    latencies: list[float] = []

    def one() -> None:
        started = time.perf_counter()
        engine.release(plan, engine.aggregate(plan))
        latencies.append(time.perf_counter() - started)

    threads = [threading.Thread(target=one) for _ in range(n)]
    with Sampler() as memory:
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - started
    return {
        "wall_s": wall,
        "median_latency_s": statistics.median(latencies),
        "anon_mb": memory.peak.anon_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000_000)
    parser.add_argument("--queries", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--measure", choices=["shared", "per-query"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.size, args.queries)))
        return
    lakegen.build_lake(query.OUT, args.size)
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"{args.queries} concurrent queries, {args.size:,} events; load average {load}")
    results: dict[str, list[dict[str, Any]]] = {"shared": [], "per-query": []}
    for _ in range(args.rounds):
        for mode in results:
            cmd = [sys.executable, __file__, "--measure", mode, "--size", str(args.size)]
            cmd += ["--queries", str(args.queries)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True)
            results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = results[mode][-1]
            print(
                f"  {mode:9} all done in {r['wall_s']:6.2f} s, median latency "
                f"{r['median_latency_s']:6.2f} s, anon {r['anon_mb']:5.0f} MB",
                flush=True,
            )
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    print(f"load average after: {load}")


if __name__ == "__main__":
    main()
