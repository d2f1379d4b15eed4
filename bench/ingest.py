"""Ingestion benchmark: `tacit serve` under a bounded load, beside a validate-only baseline.

    .venv/bin/python bench/ingest.py [--workers 2] [--duration 10] [--prefill 5000000]
                                     [--database-url URL]

1. Fills a store with ``--prefill`` events first, in-process through the product's own
   pipeline and store (parse -> steps -> events.write), with the same workload the load
   generator sends, spread over the past week. For SQLite the filled database is cached
   under bench/out/ and copied afresh for every run, so runs start from the same state.
   With ``--database-url`` (e.g. PostgreSQL) that database is filled up to ``--prefill``
   and used as it is.
2. Starts the real server (`tacit serve --workers N`) and drives it from a separate
   process (bench/loadgen.py) over 127.0.0.1: (a) batches of 100 events, (b) single
   events; every event has a new random UUIDv4 id.
3. Starts bench/baseline_app.py (same web stack, same validation, nothing stored) with
   the same uvicorn options and drives it with the same load generator.
4. Prints events/s, requests/s, p50/p99 latency of each, the ratio to the baseline, and the
   server's peak anonymous memory (RssAnon of all its processes) apart from its mapped
   file pages (bench/rss.py).

Each phase is bounded by ``--duration`` seconds and by the number of prebuilt bodies.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(BENCH)]

import loadgen  # noqa: E402
from rss import Sampler, session_pids  # noqa: E402
from serving import free_port, host_loop_s, wait_healthy  # noqa: E402

from privacy.keyring import Keyring, MasterKey  # noqa: E402
from privacy.policy import load_policy  # noqa: E402
from service.api.auth import digest  # noqa: E402
from service.cli.tokens import create_token  # noqa: E402
from service.ingest.parse import parse_batch  # noqa: E402
from service.ingest.pipeline import Ingestor  # noqa: E402
from service.lake.sealer import Sealer  # noqa: E402
from service.lake.table import Lake  # noqa: E402
from service.settings import DEFAULT_POLICY, create_key_file  # noqa: E402
from service.store import open_store  # noqa: E402
from service.store.base import Role, Store  # noqa: E402

OUT = BENCH / "out"
KEY_FILE = OUT / "bench-master.key"  # a throwaway key for benchmark data only
PREFILL_SPAN = timedelta(days=7)
PREFILL_BATCH = 1000  # events per prefill request (the API's maximum)
PREFILL_GROUP = 10  # prefill requests per transaction


@dataclass
class Phase:
    name: str
    events_per_request: int
    connections: int
    max_rate: int  # events/s the prebuilt bodies can sustain for the whole duration


# ------------------------------------------------------------------------- prefill


class _SimClock:
    """The prefill's clock: it walks through the past week with the events."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def _ingest_source(store: Store, name: str) -> tuple[str, int]:
    token = create_token(store, name, Role.INGEST, "bench", actor="bench")
    principal = store.tokens.principal(digest(token))
    assert principal is not None and principal.source_id is not None
    return token, principal.source_id


def prefill(url: str, target: int) -> int:
    """Fill the store at ``url`` up to ``target`` events; return how many it holds."""
    loaded = load_policy(DEFAULT_POLICY)
    store = open_store(url, policy_sha256=loaded.sha256)
    try:
        have = store.events.count() + _sealed(url)
        if have >= target:
            return have
        master = MasterKey.from_base64(KEY_FILE.read_text())
        keyring = Keyring(master, store.salts, loaded.policy.identifiers)
        end = datetime.now(UTC) - timedelta(hours=1)
        step = PREFILL_SPAN / ((target - have) / PREFILL_BATCH)
        clock = _SimClock(end - PREFILL_SPAN)
        ingestor = Ingestor(loaded.policy, keyring, store, clock, timedelta(hours=23))
        _, source_id = _ingest_source(store, f"bench-prefill-{int(time.time())}")
        rng = random.Random(20261120)
        started = time.perf_counter()
        written = 0
        print(f"prefill: {have:,} events stored, adding {target - have:,} (cached for next runs)")
        while have + written < target:
            group = []
            for _ in range(PREFILL_GROUP):
                clock.now += step
                now_ms = int(clock.now.timestamp() * 1000)
                body = loadgen.bodies(rng, 1, PREFILL_BATCH, now_ms)[0]
                group.append(ingestor.prepare(parse_batch(body, PREFILL_BATCH), source_id).batch)
            flags = store.events.write(group)
            written += sum(sum(f) for f in flags)
            if written % 500_000 < PREFILL_BATCH * PREFILL_GROUP:
                rate = written / (time.perf_counter() - started)
                print(f"prefill: {have + written:,} events ({rate:,.0f} events/s)", flush=True)
        seal_prefill(store, url)
        checkpoint = getattr(getattr(store, "db", None), "checkpoint", None)
        if checkpoint is not None:
            checkpoint()  # one self-contained file to copy
        return have + written
    finally:
        store.close()


def seal_prefill(store: Store, url: str) -> None:
    """Seal the prefill into its lake, as a running service would have long since (the
    hot table then holds only the seal interval's events; only the idempotency keys of
    all 5M stay in the transactional store). SQLite only: the lake sits beside the file."""
    if not url.startswith("sqlite:///"):
        return
    started = time.perf_counter()
    report = Sealer(store, Lake(OUT / "prefill-lake")).seal()
    print(f"prefill: sealed into the lake in {time.perf_counter() - started:.0f} s ({report})")


def _sealed(url: str) -> int:
    table = Lake(OUT / "prefill-lake").table() if url.startswith("sqlite:///") else None
    return 0 if table is None else int(table.to_pyarrow_dataset().count_rows())


def store_copy(name: str) -> Path:
    """A fresh copy of the cached SQLite store (``prefill.db``) in ``bench/out/NAME/``,
    so that every run starts from the same state; the folder."""
    cache = OUT / "prefill.db"
    if not cache.exists() or not KEY_FILE.exists():
        raise SystemExit("no cached store: run bench/ingest.py once first (it builds it)")
    run = OUT / name
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir()
    shutil.copyfile(cache, run / "tacit.db")
    if (OUT / "prefill-lake").exists():
        shutil.copytree(OUT / "prefill-lake", run / "lake")
    return run


# ------------------------------------------------------------------------- servers


def cpu_seconds(session: int) -> float:
    """User + system CPU of every live process in a session (a server and its workers)."""
    ticks = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[3]) == session:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextmanager
def running(command: list[str], port: int, env: dict[str, str], cwd: Path = REPO) -> Iterator[int]:
    log = (OUT / f"server-{port}.log").open("wb")
    proc = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_healthy(port, proc)
        yield proc.pid  # also its session id: the workers share it
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def drive(
    port: int, token: str, phase: Phase, duration: float, cycle: bool, server: int
) -> dict[str, Any]:
    requests = max(64, int(phase.max_rate * duration / phase.events_per_request))
    command = [
        sys.executable,
        str(BENCH / "loadgen.py"),
        f"--port={port}",
        f"--token={token}",
        f"--events-per-request={phase.events_per_request}",
        f"--requests={requests}",
        f"--connections={phase.connections}",
        f"--duration={duration}",
        *(["--cycle"] if cycle else []),
    ]
    loadgen_proc = subprocess.Popen(command, stdout=subprocess.PIPE)
    cpu_before = None
    assert loadgen_proc.stdout is not None
    for line in loadgen_proc.stdout:  # "timing" when the measured part starts
        if line.strip() == b"timing":
            cpu_before = cpu_seconds(server)
            break
    with Sampler(lambda: session_pids(server), interval_s=0.05) as memory:
        out, _ = loadgen_proc.communicate(timeout=duration + 600)
    cpu = cpu_seconds(server) - (cpu_before or 0.0)
    if loadgen_proc.returncode != 0 or cpu_before is None:
        raise SystemExit(f"the load generator failed (exit code {loadgen_proc.returncode})")
    result: dict[str, Any] = json.loads(out)
    result["server_cpu_s"] = cpu
    result["server_anon_mb"] = memory.peak.anon_mb  # all its processes, summed
    result["server_mapped_mb"] = memory.peak.mapped_mb
    return result


# ------------------------------------------------------------------------- report


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _row(label: str, r: dict[str, Any]) -> str:
    events = max(r["accepted_events"], 1)
    return (
        f"  {label:<10} {r['events_per_s']:>11,.0f} {r['requests_per_s']:>10,.0f} "
        f"{r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
        f"{r['server_cpu_s'] / events * 1e6:>10.1f} {r['loadgen_cpu_s'] / events * 1e6:>10.1f}"
        f" {r['server_anon_mb']:>9.0f} {r['server_mapped_mb']:>9.0f}"
        f"   {r['statuses']}" + ("  (ran out of prebuilt bodies)" if r["ran_out_of_bodies"] else "")
    )


def report(phases: list[Phase], results: dict[str, dict[str, Any]]) -> None:
    print()
    print(
        f"  {'':<10} {'events/s':>11} {'req/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'server':>10} {'loadgen':>10} {'anon MB':>9} {'mapped MB':>9}   statuses"
    )
    print(f"  {'':<10} {'':>11} {'':>10} {'':>8} {'':>8} {'CPU us/event':>21} {'server':>19}")
    for phase in phases:
        tacit, base = results[f"tacit/{phase.name}"], results[f"baseline/{phase.name}"]
        print(f"{phase.name} ({phase.events_per_request} per request, {phase.connections} conns)")
        print(_row("tacit", tacit))
        print(_row("baseline", base))
        ratio = tacit["events_per_s"] / base["events_per_s"] if base["events_per_s"] else 0
        print(f"  {'ratio':<10} {ratio:>11.2f}")
        for label, r in (("tacit", tacit), ("baseline", base)):
            if r["sample_error"]:
                print(f"  {label} error sample: {r['sample_error']}")


# ------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2, help="server worker processes")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    parser.add_argument("--prefill", type=int, default=5_000_000, help="events stored first")
    parser.add_argument(
        "--database-url", default=None, help="store to use (default: cached SQLite in bench/out)"
    )
    parser.add_argument("--batch-connections", type=int, default=16)
    parser.add_argument("--single-connections", type=int, default=32)
    parser.add_argument(
        "--only", choices=["batch", "single"], default=None, help="run one phase only"
    )
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    if not KEY_FILE.exists():
        create_key_file(KEY_FILE)
    phases = [
        Phase("batch", 100, args.batch_connections, 100_000),
        Phase("single", 1, args.single_connections, 8_000),
    ]
    if args.only:
        phases = [p for p in phases if p.name == args.only]

    if args.database_url is None:
        stored = prefill(f"sqlite:///{OUT / 'prefill.db'}", args.prefill)
        run_dir = store_copy("run")
        url = f"sqlite:///{run_dir / 'tacit.db'}"
    else:
        stored = prefill(args.database_url, args.prefill)
        run_dir = OUT / "run"
        run_dir.mkdir(exist_ok=True)
        url = args.database_url
    store = open_store(url, policy_sha256=load_policy(DEFAULT_POLICY).sha256)
    try:
        token, _ = _ingest_source(store, f"bench-{int(time.time())}")
    finally:
        store.close()

    print(f"store: {url.split('://')[0]} holding {stored:,} events; workers {args.workers}")
    load_before = _load()
    print(f"load average before: {load_before} ({os.cpu_count()} cores, shared with the load)")
    loop_before = host_loop_s()
    print(f"host speed before: {loop_before:.2f} s for the fixed loop (lower is faster)")
    env = {
        **os.environ,
        "TACIT_MASTER_KEY_FILE": str(KEY_FILE),
        "TACIT_LOG_LEVEL": "warning",
        # One token drives all the load here, where production has many apps: lift the
        # per-token rates far above the load (the limiter still runs on every request).
        "TACIT_RATE_LIMIT_REQUESTS_PER_S": "1e9",
        "TACIT_RATE_LIMIT_EVENTS_PER_S": "1e9",
    }
    results: dict[str, dict[str, Any]] = {}
    port = free_port()
    serve = [
        str(Path(sys.executable).parent / "tacit"),
        "serve",
        f"--port={port}",
        f"--workers={args.workers}",
        f"--data-dir={run_dir}",
        f"--database-url={url}",
    ]
    with running(serve, port, env) as session:
        for phase in phases:
            results[f"tacit/{phase.name}"] = drive(
                port, token, phase, args.duration, False, session
            )
    port = free_port()
    baseline = [
        sys.executable,
        "-m",
        "uvicorn",
        "bench.baseline_app:app",
        f"--port={port}",
        f"--workers={args.workers}",
        "--no-access-log",
        "--log-level=warning",
    ]
    with running(baseline, port, env) as session:
        for phase in phases:
            results[f"baseline/{phase.name}"] = drive(
                port, "tct_none", phase, args.duration, True, session
            )
    load_after = _load()
    loop_after = host_loop_s()
    print(f"load average after: {load_after}; host speed after: {loop_after:.2f} s")
    report(phases, results)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (OUT / f"ingest-{stamp}.json").write_text(
        json.dumps(
            {
                "args": vars(args),
                "stored_before": stored,
                "load_average": {"before": load_before, "after": load_after},
                "host_loop_s": {"before": round(loop_before, 2), "after": round(loop_after, 2)},
                "results": results,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
