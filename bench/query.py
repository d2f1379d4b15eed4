"""Query benchmark: the DP query on every engine, in one run, on the same events.

    .venv/bin/python bench/query.py [--sizes 10000000,100000000] [--repeat 3]
                                    [--engines duckdb,floor,rowstore,opendp,spark-local,...]

1. Builds the events of each size with bench/lakegen.py (numpy, in chunks): straight into
   a Delta lake in the service's own schema and layout (resumable: a re-run continues
   after the last chunk committed), and, up to --rowstore-max events (10M by default:
   100M rows through SQLite would take hours), the same chunks into a SQLite row store
   through ``store.events.write``. Cached under bench/out/.
2. Times, each run in a process of its own (so one engine's memory is not another's):
   - ``duckdb``: the service's default engine: `plan_query`, then `QueryEngine.aggregate`
     on service/lake/engine.py's LakeQueries over the lake (and its empty hot store),
     then `QueryEngine.release` (OpenDP noise, 95 % intervals): the whole DP query except
     HTTP and the ledger transaction, under the service's default
     TACIT_DUCKDB_MEMORY_LIMIT (what does not fit spills to its private directory);
     ``duckdb-unlimited`` the same without a limit;
   - ``rowstore``: the same through the SQLite row store's own repository;
   - ``floor``: the plain DuckDB GROUP BY of the metric over the lake's files (no bounding,
     no noise);
   - ``opendp``: OpenDP's Polars context (opendp[polars], the bench extra) on the same
     rows read from the lake's files, with the same bounds (<= C rows per cell, <= K cells
     per pseudonym);
   - ``spark-local``, ``spark-1``, ``spark-2``: the ``spark`` engine (service/lake/spark.py,
     SparkQueries) with master local[2], then a standalone cluster on 127.0.0.1 with one
     and with two workers (1 core, 1 GB each) that this script starts and stops with
     pyspark's own launcher. A Spark process times its session start and a cold query,
     then --repeat warm queries in that session (the median is its figure).
   Others run --repeat times, interleaved, so load from other processes hits all alike.
3. Prints seconds (median), the ratio to DuckDB over the lake, CPU seconds, the peak
   anonymous memory (RssAnon, bench/rss.py; for Spark the driver's JVM and the cluster's
   executors included), and whether the integer aggregates before noise are identical to
   DuckDB's (a digest of every vector). Goals: DuckDB <= 1.5 s at 10M and <= 15 s at
   100M, >= 10 x the row store at 10M, RssAnon <= 1 GB at 100M.

The metric is task_completion_rate by day x surface x task_type over 7 days: 7 x 5 x 6 =
210 cells (every declared value plus "other"), epsilon 1, the default policy (K = 24,
C = 10: a person can touch 30 cells of a day, so the K-cells cut runs).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(BENCH)]

import lakegen  # noqa: E402
from lakegen import DAYS, FIRST, SURFACES, TASKS, TODAY, unix_day  # noqa: E402
from rss import Sampler, tree_pids  # noqa: E402

from privacy.events import EVENT_TYPE_CODES, EventType  # noqa: E402
from privacy.policy import load_policy  # noqa: E402
from service.lake.table import Lake  # noqa: E402
from service.settings import DEFAULT_POLICY, Settings  # noqa: E402
from service.store.sqlite import SQLiteStore  # noqa: E402

OUT = BENCH / "out"
# The service's default DuckDB memory limit (TACIT_DUCKDB_MEMORY_LIMIT).
SERVICE_LIMIT = str(Settings.model_fields["duckdb_memory_limit"].default)
METRIC = "task_completion_rate"
GROUP_BY = ["day", "surface", "task_type"]
SUCCESS = EVENT_TYPE_CODES[EventType.TASK_COMPLETION]
SHOWN = EVENT_TYPE_CODES[EventType.RESPONSE_SHOWN]
ENGINES = [
    "duckdb",
    "duckdb-unlimited",
    "floor",
    "rowstore",
    "opendp",
    "spark-local",
    "spark-1",
    "spark-2",
]
# The duckdb engine under the service's TACIT_DUCKDB_MEMORY_LIMIT (what it spills, it
# spills privately), and without a limit (DuckDB's own default, 80 % of the machine).
DUCKDB_LIMITS = {"duckdb": SERVICE_LIMIT, "duckdb-unlimited": ""}
SPARK_MASTERS = {"spark-local": "local[2]"}


# --- the contenders (each runs in a process of its own) ---------------------------------


def _plan() -> Any:
    from privacy.query import QueryRequest, plan_query

    policy = load_policy(DEFAULT_POLICY).policy
    body = {
        "metric": METRIC,
        "start": FIRST.isoformat(),
        "end": TODAY.isoformat(),
        "group_by": GROUP_BY,
        "epsilon": 1.0,
    }
    return policy, plan_query(QueryRequest.from_json(body), policy, "bench", TODAY)


def _digest(values: Any) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def _dp_query(engine: Any, detail: dict[str, Any]) -> Callable[[], int]:
    """One whole DP query on ``engine``: plan, aggregate, noise and intervals."""

    def run() -> int:
        _, plan = _plan()
        started = time.perf_counter()
        aggregates = engine.aggregate(plan)
        detail["aggregate_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        released = engine.release(plan, aggregates)
        detail["release_s"] = round(time.perf_counter() - started, 3)
        detail["digest"] = _digest(dict(aggregates.values))
        return len(released.rows)

    return run


def measure_duckdb(size: int, memory_limit: str) -> dict[str, Any]:
    from service.lake.engine import LakeQueries
    from service.queries.engine import QueryEngine

    policy, _ = _plan()
    store = SQLiteStore(lakegen.hot_store_path(OUT, size), "normal")
    lake = Lake(lakegen.lake_path(OUT, size))
    engine = QueryEngine(store, policy, LakeQueries(store, lake, None, memory_limit or None))
    detail: dict[str, Any] = {}
    return _timed(_dp_query(engine, detail), detail)


def measure_rowstore(size: int, _arg: str) -> dict[str, Any]:
    from service.queries.engine import QueryEngine

    policy, _ = _plan()
    store = SQLiteStore(OUT / f"rowstore-{size}.db", "normal")
    detail: dict[str, Any] = {}
    return _timed(_dp_query(QueryEngine(store, policy), detail), detail)


def measure_floor(size: int, _arg: str) -> dict[str, Any]:
    """The floor: the same rate per cell as a plain GROUP BY, no bounding, no noise."""
    import duckdb

    from service.lake.engine import parquet_sql

    files = Lake(lakegen.lake_path(OUT, size)).snapshot().files
    first, last = unix_day(FIRST), unix_day(TODAY)
    sql = (
        "SELECT ts // 86400 AS day, surface, task_type, "
        f"SUM(CASE WHEN event_type = {SUCCESS} AND outcome = 'success' "
        "THEN 1.0 / inclusion_prob ELSE 0 END), "
        f"SUM(CASE WHEN event_type = {SHOWN} THEN 1.0 / inclusion_prob ELSE 0 END) "
        f"FROM {parquet_sql(files)} WHERE epoch BETWEEN {first} AND {last} "
        f"AND event_type IN ({SHOWN}, {SUCCESS}) GROUP BY 1, 2, 3"
    )

    def run() -> int:
        con = duckdb.connect()
        try:
            return len(con.execute(sql).fetchall())
        finally:
            con.close()

    return _timed(run, {})


def measure_opendp(size: int, _arg: str) -> dict[str, Any]:
    """OpenDP's Polars context on the lake's rows (identifier = pseudonym within an epoch)."""
    import opendp.prelude as dp
    import polars as pl

    dp.enable_features("contrib")
    bounds = load_policy(DEFAULT_POLICY).policy.privacy.contribution
    files = list(Lake(lakegen.lake_path(OUT, size)).snapshot().files)
    first = unix_day(FIRST)
    detail: dict[str, Any] = {}
    surface_keys = {s: i for i, s in enumerate(SURFACES)}
    task_keys = {t: i for i, t in enumerate(TASKS)}
    keys = pl.DataFrame({"cell": list(range(DAYS * 5 * 6))}).lazy()

    def run() -> int:
        started = time.perf_counter()
        frame = (
            pl.scan_parquet(files, hive_partitioning=False)
            .filter(pl.col("event_type").is_in([SHOWN, SUCCESS]))
            .select("user_ps", "ts", "surface", "task_type", "event_type", "outcome")
            .collect()
        )
        detail["load_s"] = round(time.perf_counter() - started, 3)
        started = time.perf_counter()
        frame = frame.with_columns(
            cell=(pl.col("ts") // 86_400 - first) * 30
            + pl.col("surface").replace_strict(surface_keys, default=4, return_dtype=pl.Int64) * 6
            + pl.col("task_type").replace_strict(task_keys, default=5, return_dtype=pl.Int64),
            num=((pl.col("event_type") == SUCCESS) & (pl.col("outcome") == "success")).cast(
                pl.Int64
            ),
            den=(pl.col("event_type") == SHOWN).cast(pl.Int64),
        ).select("user_ps", "cell", "num", "den")
        context = dp.Context.compositor(
            data=frame.lazy(),
            # Pseudonyms differ per epoch, so the pseudonym alone is the privacy unit.
            privacy_unit=dp.unit_of(contributions=1, identifier="user_ps"),
            privacy_loss=dp.loss_of(epsilon=1.0),
            split_evenly_over=1,
            margins=[dp.polars.Margin(by=["cell"], max_length=1_000_000_000)],
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
        out = query.release().collect()
        detail["query_s"] = round(time.perf_counter() - started, 3)
        return out.height

    return _timed(run, detail)


def measure_spark(size: int, arg: str) -> dict[str, Any]:
    """The spark engine: session start, a cold query, then --repeat warm ones."""
    from service.lake.spark import SparkQueries
    from service.queries.engine import QueryEngine

    master, _, rest = arg.partition("|")
    repeat, _, worker_pids = rest.partition("|")
    workers = [int(p) for p in worker_pids.split(",") if p]
    policy, _ = _plan()
    store = SQLiteStore(lakegen.hot_store_path(OUT, size), "normal")
    queries = SparkQueries(store, Lake(lakegen.lake_path(OUT, size)), master)
    engine = QueryEngine(store, policy, queries)

    def pids() -> list[int]:  # this process, its JVM, and the executors of the workers
        return tree_pids(os.getpid()) + [p for w in workers for p in tree_pids(w)[1:]]

    detail: dict[str, Any] = {}
    try:
        with Sampler(pids, interval_s=0.05) as memory:
            started = time.perf_counter()
            queries.ready()
            detail["start_s"] = round(time.perf_counter() - started, 2)
            cold = _timed(_dp_query(engine, detail), {})
            warm = [_timed(_dp_query(engine, detail), {}) for _ in range(int(repeat))]
    finally:
        queries.close()
    detail["cold_s"] = round(cold["seconds"], 2)
    detail["warm_s"] = [round(w["seconds"], 2) for w in warm]
    return {
        "seconds": statistics.median(w["seconds"] for w in warm),
        "cpu_seconds": statistics.median(w["cpu_seconds"] for w in warm),
        "rows": warm[-1]["rows"],
        "anon_mb": memory.peak.anon_mb,
        "mapped_mb": memory.peak.mapped_mb,
        "detail": detail,
    }


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _timed(run: Callable[[], int], detail: dict[str, Any]) -> dict[str, Any]:
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
        "detail": dict(detail),
    }


MEASURES: dict[str, Callable[[int, str], dict[str, Any]]] = {
    "duckdb": measure_duckdb,
    "rowstore": measure_rowstore,
    "floor": measure_floor,
    "opendp": measure_opendp,
    "spark": measure_spark,
}


# --- a standalone Spark cluster on 127.0.0.1 ---------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def spark_cluster(workers: int) -> Iterator[tuple[str, list[int]]]:
    """A master and ``workers`` workers (1 core, 1 GB each) from pyspark's launcher; yields
    the master URL and the workers' pids once every worker has registered."""
    import pyspark

    launcher = str(Path(sys.executable).parent / "spark-class")
    port, ui = _free_port(), _free_port()
    scratch = tempfile.mkdtemp(prefix="tacit-bench-spark-")
    env = {
        **os.environ,
        "SPARK_HOME": str(Path(pyspark.__file__).parent),  # spark-class finds its jars there
        "SPARK_WORKER_DIR": scratch,
        "SPARK_LOCAL_DIRS": scratch,
        # No REST submission server: its fixed port (6066) may be another cluster's.
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",
    }
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    deploy = "org.apache.spark.deploy"
    procs = [
        subprocess.Popen(
            [
                launcher,
                f"{deploy}.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--webui-port",
                str(ui),
            ],
            **quiet,  # type: ignore[call-overload]
        )
    ]
    url = f"spark://127.0.0.1:{port}"
    try:
        for _ in range(workers):
            procs.append(
                subprocess.Popen(
                    [
                        launcher,
                        f"{deploy}.worker.Worker",
                        url,
                        "--cores",
                        "1",
                        "--memory",
                        "1g",
                        "--host",
                        "127.0.0.1",
                        "--webui-port",
                        str(_free_port()),
                    ],
                    **quiet,  # type: ignore[call-overload]
                )
            )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = f"http://127.0.0.1:{ui}/json/"
            with contextlib.suppress(OSError, ValueError), urllib.request.urlopen(status) as r:
                if json.load(r).get("aliveworkers", 0) == workers:
                    break
            time.sleep(0.5)
        else:
            raise RuntimeError(f"the Spark cluster at {url} did not get {workers} workers")
        yield url, [p.pid for p in procs[1:]]
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        subprocess.run(["rm", "-rf", scratch], check=False)


# --- orchestration ------------------------------------------------------------------------


def _child(kind: str, size: int, arg: str = "") -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--measure", kind, "--size", str(size), "--arg", arg],
        check=True,
        capture_output=True,
        text=True,
        timeout=7200,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _run_size(size: int, engines: list[str], args: argparse.Namespace) -> dict[str, Any]:
    built = lakegen.build_lake(OUT, size)
    engines = list(engines)
    if "rowstore" in engines and size > args.rowstore_max:
        engines.remove("rowstore")
        print(f"  rowstore skipped above {args.rowstore_max:,} events (--rowstore-max)")
    elif "rowstore" in engines:
        built += lakegen.build_rowstore(OUT / f"rowstore-{size}.db", size)
    if "opendp" in engines and size > args.opendp_max:
        engines.remove("opendp")
        print(f"  opendp skipped above {args.opendp_max:,} events (--opendp-max: memory)")
    print(f"\n{size:,} events" + (f" (built in {built:.0f} s)" if built else ""))
    print(f"  load average before: {_load()}")
    runs: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
    single = [e for e in engines if not e.startswith("spark")]
    for _ in range(args.repeat):
        for kind in single:
            if kind in DUCKDB_LIMITS:
                runs[kind].append(_child("duckdb", size, DUCKDB_LIMITS[kind]))
            else:
                runs[kind].append(_child(kind, size))
            print(f"  {kind}: {runs[kind][-1]['seconds']:.2f} s", flush=True)
    for kind in (e for e in engines if e.startswith("spark")):
        if kind in SPARK_MASTERS:
            arg = f"{SPARK_MASTERS[kind]}|{args.repeat}|"
            runs[kind].append(_child("spark", size, arg))
        else:
            with spark_cluster(int(kind.removeprefix("spark-"))) as (url, pids):
                arg = f"{url}|{args.repeat}|{','.join(map(str, pids))}"
                runs[kind].append(_child("spark", size, arg))
        print(f"  {kind}: {runs[kind][-1]['detail']}", flush=True)
    print(f"  load average after: {_load()}")
    return _summarise(runs)


def _summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    duck = statistics.median(r["seconds"] for r in runs["duckdb"]) if "duckdb" in runs else None
    reference = runs["duckdb"][0]["detail"].get("digest") if "duckdb" in runs else None
    summary: dict[str, Any] = {}
    print(f"{'':17} {'s':>8} {'x duckdb':>9} {'cpu s':>8} {'anon MB':>8} {'same aggregates':>16}")
    for kind, results in runs.items():
        wall = statistics.median(r["seconds"] for r in results)
        cpu = statistics.median(r["cpu_seconds"] for r in results)
        anon = max(r["anon_mb"] for r in results)
        digests = {r["detail"].get("digest") for r in results} - {None}
        same = "-" if not digests or reference is None else str(digests == {reference})
        ratio = wall / duck if duck else float("nan")
        summary[kind] = {
            "seconds": round(wall, 3),
            "all_seconds": [round(r["seconds"], 3) for r in results],
            "x_duckdb": round(ratio, 2),
            "cpu_seconds": round(cpu, 3),
            "anon_mb": round(anon, 1),
            "same_aggregates": same,
            "detail": results[-1].get("detail", {}),
        }
        print(f"{kind:17} {wall:8.2f} {ratio:9.2f} {cpu:8.2f} {anon:8.0f} {same:>16}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000000,100000000")
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine (median)")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--rowstore-max", type=int, default=10_000_000)
    parser.add_argument("--opendp-max", type=int, default=10_000_000)
    parser.add_argument("--measure", choices=sorted(MEASURES), help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--arg", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(MEASURES[args.measure](args.size, args.arg)))
        return
    engines = [e for e in args.engines.split(",") if e]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        parser.error(f"unknown engines {unknown}: choose from {', '.join(ENGINES)}")
    OUT.mkdir(exist_ok=True)
    report: dict[str, Any] = {"metric": METRIC, "group_by": GROUP_BY, "cells": 210, "runs": {}}
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    for size in (int(float(s)) for s in args.sizes.split(",")):
        report["runs"][size] = _run_size(size, engines, args)
        (OUT / f"query-{stamp}.json").write_text(json.dumps(report, indent=2))  # per size
    print(f"\nwritten to bench/out/query-{stamp}.json")


if __name__ == "__main__":
    main()
