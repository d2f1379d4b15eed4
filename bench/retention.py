"""Retention benchmark: sweep 1M expired events while the real server ingests steadily.

    .venv/bin/python bench/retention.py [--expired 1000000] [--live 200000]
        [--rate 40] [--events-per-request 50] [--baseline 15] [--sweeper server|cli]

1. Fills a SQLite store directly with ``--expired`` events 100-105 days old (past every
   retention of the default policy) and their idempotency keys, plus ``--live`` recent
   events that must stay. The filled file is cached under bench/out/ and copied afresh
   for every run.
2. Starts `tacit serve` (one worker, 127.0.0.1) and a load process that posts batches at
   a fixed rate (open loop: each request's latency counts from when it was due, so a
   stall is not hidden by the client waiting), with new random UUIDv4 event ids.
3. Measures ingestion latency for ``--baseline`` seconds with no sweep, then runs one
   sweep while the load goes on:
   - ``--sweeper server`` (default): the server's own schedule (the first scheduled run
     is due after TACIT_RETENTION_INTERVAL_S); the bench learns when it ran from the
     ``retention_run`` audit entry (GET /v1/audit);
   - ``--sweeper cli``: the library call behind `tacit retention run`, from this
     process (another process on the same database file).
4. Prints the sweep time and rows/s, and ingestion p50/p99/max during the sweep against
   the baseline (goal: p99 during the sweep < 250 ms).

Bounded: the load stops at ``--max-seconds``; every phase has a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(BENCH)]

import httpx  # noqa: E402
import loadgen  # noqa: E402
from rss import Sampler, session_pids  # noqa: E402
from serving import free_port, wait_healthy  # noqa: E402

from privacy.events import EVENT_TYPE_CODES  # noqa: E402
from privacy.keyring import MasterKey  # noqa: E402
from privacy.policy import load_policy  # noqa: E402
from service.cli.tokens import create_token  # noqa: E402
from service.ops.retention import BATCH_ROWS, Sweeper  # noqa: E402
from service.settings import DEFAULT_POLICY  # noqa: E402
from service.store.base import EVENT_COLUMNS, Role  # noqa: E402
from service.store.sqlite import SQLiteStore  # noqa: E402

OUT = BENCH / "out"
POLICY = load_policy(DEFAULT_POLICY)
GOAL_P99_MS = 250.0
FILL_CHUNK = 50_000

# ----------------------------------------------------------------------------- fill


def _rows(rng: random.Random, n: int, start: datetime, span: timedelta) -> list[tuple[Any, ...]]:
    ids = POLICY.policy.identifiers
    codes = list(EVENT_TYPE_CODES.values())
    out = []
    base, width = start.timestamp(), span.total_seconds()
    for _ in range(n):
        ts = int(base + rng.random() * width)
        ts -= ts % 60
        epoch = ids.epoch_of(datetime.fromtimestamp(ts, UTC))
        ps = [rng.getrandbits(64) - (1 << 63) for _ in range(4)]
        labels = ("chat", "coding", "control", "model-a")
        payload = (2, 5, None, None, None, None, None, 0.25, None, None, None, None)
        out.append((epoch, ts, rng.choice(codes), 1, *ps, *labels, *payload, 1.0))
    return out


def fill(path: Path, expired: int, live: int) -> None:
    """A store with ``expired`` events past retention (and their keys) and ``live`` recent."""
    store = SQLiteStore(path)
    store.migrate()
    rng = random.Random(20261120)
    now = datetime.now(UTC)
    insert = (
        f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
    )
    started = time.perf_counter()
    for label, total, start in (
        ("expired", expired, now - timedelta(days=105)),
        ("live", live, now - timedelta(days=5)),
    ):
        done = 0
        while done < total:
            n = min(FILL_CHUNK, total - done)
            rows = _rows(rng, n, start, timedelta(days=5))
            keys = [(r[1] * 1000 + rng.randrange(1000), 1, rng.getrandbits(63)) for r in rows]
            keys.sort()
            with store.db.write() as conn:
                conn.executemany(insert, rows)
                conn.executemany(
                    "INSERT OR IGNORE INTO event_keys (ts_ms, source_id, eid) VALUES (?, ?, ?)",
                    keys,
                )
            done += n
        print(f"fill: {total:,} {label} events ({time.perf_counter() - started:.0f} s)")
    store.db.checkpoint()
    store.close()


# ----------------------------------------------------------------------------- load


async def _load(port: int, token: str, rate: float, per_request: int, seconds: float) -> None:
    """Post at ``rate`` requests/s for ``seconds``; print one JSON line per request."""
    rng = random.Random()
    interval = 1.0 / rate
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=30.0
    ) as client:
        results: list[tuple[float, float, int]] = []

        async def one(due: float, body: bytes) -> None:
            try:
                status = (
                    await client.post("/v1/events", content=body, headers=headers)
                ).status_code
            except httpx.HTTPError:
                status = 0
            results.append((due, (time.time() - due) * 1000, status))

        stop = asyncio.Event()  # SIGTERM: stop sending, wait for the answers, report
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        tasks = []
        start = time.time()
        i = 0
        while (due := start + i * interval) < start + seconds and not stop.is_set():
            await asyncio.sleep(max(0.0, due - time.time()))
            now_ms = int(time.time() * 1000)
            events = ",".join(loadgen.events(rng, per_request, now_ms, late_share=0.0))
            tasks.append(asyncio.create_task(one(due, f'{{"events":[{events}]}}'.encode())))
            i += 1
        await asyncio.gather(*tasks)
    json.dump(results, sys.stdout)


# ----------------------------------------------------------------------------- report


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _window(results: list[list[float]], start: float, end: float) -> dict[str, Any]:
    inside = [r for r in results if start <= r[0] < end]
    latencies = [r[1] for r in inside]
    return {
        "requests": len(inside),
        "errors": sum(1 for r in inside if r[2] != 200),
        "p50_ms": _pct(latencies, 0.50),
        "p99_ms": _pct(latencies, 0.99),
        "max_ms": max(latencies, default=float("nan")),
    }


def _retention_entry(port: int, token: str) -> dict[str, Any] | None:
    body = httpx.get(
        f"http://127.0.0.1:{port}/v1/audit",
        params={"limit": 1000},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()
    runs = [e for e in body["entries"] if e["kind"] == "retention_run"]
    return runs[0] if runs else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--expired", type=int, default=1_000_000)
    parser.add_argument("--live", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second")
    parser.add_argument("--events-per-request", type=int, default=50)
    parser.add_argument("--baseline", type=float, default=15.0, help="seconds without a sweep")
    parser.add_argument("--sweeper", choices=["server", "cli"], default="server")
    parser.add_argument(
        "--batch-rows", type=int, default=BATCH_ROWS, help="rows per transaction (cli sweeper)"
    )
    parser.add_argument("--max-seconds", type=float, default=240.0, help="load duration cap")
    parser.add_argument("--load", nargs=4, help=argparse.SUPPRESS)  # the load process
    args = parser.parse_args()
    if args.load:
        port, token, rate, seconds = args.load
        asyncio.run(_load(int(port), token, float(rate), args.events_per_request, float(seconds)))
        return 0

    OUT.mkdir(exist_ok=True)
    cache = OUT / f"retention-{args.expired}-{args.live}.db"
    if not cache.exists():
        fill(cache, args.expired, args.live)
    run_dir = OUT / "retention-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir()
    db = run_dir / "tacit.db"
    shutil.copyfile(cache, db)
    key_file = run_dir / "master.key"
    key_file.write_text(MasterKey.generate_base64())
    store = SQLiteStore(db)
    store.migrate()
    ingest = create_token(store, "bench-app", Role.INGEST, "bench", actor="bench")
    admin = create_token(store, "bench-admin", Role.ADMIN, None, actor="bench")
    if args.sweeper == "cli":  # the server's own schedule must not sweep meanwhile
        store.retention.claim_run(datetime.now(UTC), timedelta(0))
    store.close()

    # The first scheduled sweep is due one interval after start: after the baseline.
    interval = args.baseline + 5.0 if args.sweeper == "server" else 86_400.0
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TACIT_")}
    env |= {
        "TACIT_DATA_DIR": str(run_dir),
        "TACIT_MASTER_KEY_FILE": str(key_file),
        "TACIT_POLICY": str(DEFAULT_POLICY),
        "TACIT_RETENTION_INTERVAL_S": str(interval),
        "TACIT_LOG_LEVEL": "warning",
    }
    tacit = Path(sys.executable).with_name("tacit")
    with (run_dir / "server.log").open("wb") as log:
        server = subprocess.Popen(
            [str(tacit), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    load: subprocess.Popen[bytes] | None = None
    server_memory = Sampler(lambda: session_pids(server.pid), interval_s=0.05)
    sweep_memory = Sampler()  # this process, while it sweeps (--sweeper cli)
    try:
        wait_healthy(port, server, log="bench/out/retention-run")
        with server_memory:
            served_at = time.time()
            load = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--events-per-request",
                    str(args.events_per_request),
                    "--load",
                    str(port),
                    ingest,
                    str(args.rate),
                    str(args.max_seconds),
                ],
                stdout=subprocess.PIPE,
            )
            loaded_at = time.time()
            print(f"load: {args.rate:g} requests/s x {args.events_per_request} events, open loop")
            if args.sweeper == "cli":
                time.sleep(args.baseline + 2)
                cli_store = SQLiteStore(db)
                sweep_start = time.time()
                sweeper = Sweeper(
                    cli_store, POLICY.policy, batch_rows=args.batch_rows, actor="bench"
                )
                with sweep_memory:
                    report = sweeper.run(datetime.now(UTC))
                sweep_end = time.time()
                cli_store.close()
                counts = report.audit_detail()
            else:
                deadline = served_at + interval + args.max_seconds
                while (entry := _retention_entry(port, admin)) is None:
                    if time.time() > deadline:
                        raise SystemExit("no scheduled sweep ran before the deadline")
                    time.sleep(0.25)
                sweep_end = time.time()  # within 0.25 s of the entry being written
                sweep_start = datetime.fromisoformat(entry["at"]).timestamp()
                counts = entry["detail"]
            time.sleep(3)
            assert load is not None
            load.send_signal(signal.SIGTERM)  # it stops sending and prints its figures
            out, _ = load.communicate(timeout=120)
    finally:
        if load is not None and load.poll() is None:
            load.kill()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    results = json.loads(out)

    baseline = _window(results, loaded_at + 2.0, sweep_start)
    during = _window(results, sweep_start, sweep_end)
    seconds = sweep_end - sweep_start
    deleted = sum(counts["events"].values())
    print(
        f"sweep ({args.sweeper}): {deleted:,} events, {counts['event_keys']:,} keys deleted "
        f"in {seconds:.1f} s ({deleted / seconds:,.0f} events/s)"
    )
    server_peak = server_memory.peak
    print(
        f"server memory (all its processes, peak): anon {server_peak.anon_mb:.0f} MB, "
        f"mapped files {server_peak.mapped_mb:.0f} MB"
        + (
            f"; the CLI sweep's own: anon {sweep_memory.peak.anon_mb:.0f} MB, "
            f"mapped files {sweep_memory.peak.mapped_mb:.0f} MB"
            if args.sweeper == "cli"
            else ""
        )
    )
    head = ("requests", "errors", "p50 ms", "p99 ms", "max ms")
    print(f"  {'ingestion':<16} " + " ".join(f"{h:>8}" for h in head))
    for label, w in (("without sweep", baseline), ("during sweep", during)):
        print(
            f"  {label:<16} {w['requests']:>8} {w['errors']:>8} {w['p50_ms']:>8.1f} "
            f"{w['p99_ms']:>8.1f} {w['max_ms']:>8.1f}"
        )
    ratio = during["p99_ms"] / baseline["p99_ms"]
    verdict = "met" if during["p99_ms"] < GOAL_P99_MS else "NOT met"
    print(f"  p99 ratio during/without: {ratio:.2f}; goal p99 < {GOAL_P99_MS:g} ms: {verdict}")
    print(f"  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())} (2 cores, shared)")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (OUT / f"retention-{stamp}.json").write_text(
        json.dumps(
            {
                "args": {k: v for k, v in vars(args).items() if k != "load"},
                "sweep_s": seconds,
                "counts": counts,
                "baseline": baseline,
                "during": during,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
