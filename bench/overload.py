"""Overload: drive `tacit serve` at 5x its measured capacity; print what it answered.

    .venv/bin/python bench/overload.py [--factor 5] [--duration 8] [--batch 100]

1. Starts the real server (one worker, default limits) on a fresh data dir.
2. Capacity: a closed loop of 16 keep-alive connections posting batches for
   ``--capacity-duration`` seconds; capacity = batches answered 200 per second.
3. Overload: an open loop that starts ``--factor`` x capacity batches per second, on
   new or idle connections (at most ``--max-connections``), for ``--duration`` seconds,
   while an analyst (GET /v1/budget) and a health check (GET /healthz) each ask 20
   times per second. Every request has a deadline of 10 s.
4. Prints the status mix, the p50/p99 latency of the batches that were served (200),
   the analyst's and health check's p99 during the overload against the same probes on
   the idle server (the ratio), the same inside the server (its request log), and
   whether every acknowledged event is stored.

The load generator, the probes (a process of their own) and the server share the
machine: on 2 cores the client takes one, so "capacity" is the server's on what is left.

Bounded: at most (capacity + overload) seconds of load and ``--max-bodies`` prebuilt
bodies (cycled when the overload needs more; a repeat is answered as duplicates).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(BENCH), str(REPO / "tests")]

import loadgen  # noqa: E402
from rss import Sampler, tree_pids  # noqa: E402
from server import Server, create_token_in_process  # noqa: E402

from privacy.keyring import MasterKey  # noqa: E402

DEADLINE_S = 10.0


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    served_ms: list[float] = field(default_factory=list)
    acked_events: int = 0


def request_bytes(method: str, path: str, token: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes
) -> tuple[int, bytes, bool]:
    """Send one request, read one response: (status, body, keep the connection)."""
    writer.write(raw)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    keep = True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
        elif name.lower() == b"connection" and value.strip().lower() == b"close":
            keep = False
    return status, await reader.readexactly(length), keep


class Pool:
    """Idle keep-alive connections to the server, opened on demand up to a cap."""

    def __init__(self, port: int, cap: int) -> None:
        self.port = port
        self.cap = cap
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open = 0

    async def call(self, raw: bytes) -> tuple[str, bytes]:
        if self.idle:
            reader, writer = self.idle.pop()
        elif self.open < self.cap:
            self.open += 1
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                self.open -= 1
                return "connect-error", b""
        else:
            return "client-saturated", b""
        try:
            status, body, keep = await asyncio.wait_for(exchange(reader, writer, raw), DEADLINE_S)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            keep, status, body = False, 0, b""
        except TimeoutError:
            keep, status, body = False, -1, b""
        if keep:
            self.idle.append((reader, writer))
        else:
            self.open -= 1
            writer.close()
        label = {0: "connection-error", -1: "timeout"}.get(status, str(status))
        return label, body


async def post_batch(pool: Pool, token: str, body: bytes, tally: Tally) -> None:
    start = time.perf_counter()
    status, answer = await pool.call(request_bytes("POST", "/v1/events", token, body))
    tally.statuses[status] += 1
    if status == "200":
        tally.served_ms.append((time.perf_counter() - start) * 1000)
        accepted = loadgen._ACCEPTED.search(answer)  # newly stored; repeats are duplicates
        tally.acked_events += int(accepted.group(1)) if accepted else 0


async def closed_loop(
    port: int, token: str, bodies: list[bytes], seconds: float
) -> tuple[float, int]:
    """(batches answered 200 per second, events accepted) by 16 connections that each
    wait for their answer."""
    pool = Pool(port, 16)
    tally = Tally()
    stop = time.perf_counter() + seconds
    counter = iter(range(len(bodies)))

    async def one_connection() -> None:
        while time.perf_counter() < stop:
            index = next(counter, None)
            if index is None:
                return
            await post_batch(pool, token, bodies[index], tally)

    began = time.perf_counter()
    await asyncio.gather(*(one_connection() for _ in range(16)))
    return tally.statuses["200"] / (time.perf_counter() - began), tally.acked_events


async def probe(pool: Pool, raw: bytes, per_s: float, stop: float, out: Tally) -> None:
    tasks = []
    while time.perf_counter() < stop:
        tasks.append(asyncio.create_task(_timed(pool, raw, out)))
        await asyncio.sleep(1 / per_s)
    await asyncio.gather(*tasks)


async def _timed(pool: Pool, raw: bytes, out: Tally) -> None:
    start = time.perf_counter()
    status, _ = await pool.call(raw)
    out.statuses[status] += 1
    if status == "200":
        out.served_ms.append((time.perf_counter() - start) * 1000)


async def probes(port: int, analyst: str, seconds: float) -> tuple[Tally, Tally]:
    stop = time.perf_counter() + seconds
    budget, health = Tally(), Tally()
    await asyncio.gather(
        probe(Pool(port, 32), request_bytes("GET", "/v1/budget", analyst), 20, stop, budget),
        probe(Pool(port, 32), request_bytes("GET", "/healthz", analyst), 20, stop, health),
    )
    return budget, health


def probes_in_process(port: int, analyst: str, seconds: float) -> tuple[Tally, Tally]:
    """The probes in their own process, so that the load's client does not delay them."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_run_probes, port, analyst, seconds).result()


def _run_probes(port: int, analyst: str, seconds: float) -> tuple[Tally, Tally]:
    return asyncio.run(probes(port, analyst, seconds))


async def open_loop(
    port: int, tokens: dict[str, str], bodies: list[bytes], rate: float, seconds: float, cap: int
) -> tuple[Tally, Tally, Tally]:
    pool = Pool(port, cap)
    tally = Tally()
    loop = asyncio.get_running_loop()
    watching = loop.run_in_executor(None, probes_in_process, port, tokens["analyst"], seconds + 1.0)
    await asyncio.sleep(1.0)  # the probe process starts (spawn) before the load does
    began = time.perf_counter()
    tasks = []
    n = 0
    while (now := time.perf_counter()) < began + seconds:
        due = int((now - began) * rate)  # start every batch whose time has come
        while n < due:
            body = bodies[n % len(bodies)]
            tasks.append(asyncio.create_task(post_batch(pool, tokens["ingest"], body, tally)))
            n += 1
        await asyncio.sleep(0.002)
    await asyncio.gather(*tasks)
    budget, health = await watching
    return tally, budget, health


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def server_side_ms(log: str) -> dict[str, list[float]]:
    """Latency of 200 answers by route template, from the server's JSON request log."""
    out: dict[str, list[float]] = {}
    for line in log.splitlines():
        if line.startswith("{") and '"tacit.request"' in line:
            entry = json.loads(line)
            if entry["status"] == 200:
                out.setdefault(entry["route"], []).append(entry["ms"])
    return out


def stored_events(data_dir: Path) -> int:
    conn = sqlite3.connect(data_dir / "tacit.db")
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factor", type=float, default=5.0, help="overload / capacity")
    parser.add_argument("--duration", type=float, default=8.0, help="overload seconds")
    parser.add_argument("--capacity-duration", type=float, default=5.0)
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--max-connections", type=int, default=512)
    parser.add_argument("--max-bodies", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--set", action="append", default=[], metavar="TACIT_NAME=VALUE",
        help="a server setting, e.g. --set TACIT_MAX_IN_FLIGHT_INGEST=8 (repeatable)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    bodies = loadgen.bodies(rng, args.max_bodies, args.batch, now_ms)
    with tempfile.TemporaryDirectory(prefix="tacit-overload-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        tokens = {
            "ingest": create_token_in_process(data_dir, "ingest", "bench", "bench"),
            "analyst": create_token_in_process(data_dir, "analyst", "bench-analyst"),
        }
        # The request log gives the latency inside the server (it costs a little CPU).
        settings = {"TACIT_ACCESS_LOG": "1", **dict(item.split("=", 1) for item in args.set)}
        with Server(data_dir, MasterKey.generate_base64(), env=settings) as server:
            idle_budget, idle_health = probes_in_process(server.port, tokens["analyst"], 2.0)
            capacity, capacity_acked = asyncio.run(
                closed_loop(server.port, tokens["ingest"], bodies, args.capacity_duration)
            )
            offered = capacity * args.factor
            fresh = bodies[int(capacity * args.capacity_duration) + 16 :] or bodies
            assert server.process is not None
            root = server.process.pid
            with Sampler(lambda: tree_pids(root), interval_s=0.05) as memory:
                tally, budget, health = asyncio.run(
                    open_loop(
                        server.port, tokens, fresh, offered, args.duration, args.max_connections
                    )
                )
            log = server.log_text()
        stored = stored_events(data_dir)

    total = sum(tally.statuses.values())
    print(f"capacity: {capacity:.0f} batches/s of {args.batch} events "
          f"({capacity * args.batch:.0f} events/s), 16 connections, closed loop")  # fmt: skip
    print(f"offered: {offered:.0f} batches/s ({args.factor:g}x) for {args.duration:g} s, "
          f"{total} batches")  # fmt: skip
    print("status mix:")
    for status, count in sorted(tally.statuses.items()):
        print(f"  {status:>18}: {count:7d}  {100 * count / total:5.1f} %")
    print(f"served (200): {len(tally.served_ms) / args.duration:.0f} batches/s; latency "
          f"p50 {percentile(tally.served_ms, 0.5):.1f} ms, "
          f"p99 {percentile(tally.served_ms, 0.99):.1f} ms")  # fmt: skip
    for name, idle, loaded in (("analyst GET /v1/budget", idle_budget, budget),
                               ("GET /healthz", idle_health, health)):  # fmt: skip
        p99_idle, p99_loaded = percentile(idle.served_ms, 0.99), percentile(loaded.served_ms, 0.99)
        print(f"{name}: {dict(loaded.statuses)}; p99 {p99_loaded:.1f} ms under overload, "
              f"{p99_idle:.1f} ms idle (x{p99_loaded / p99_idle:.1f})")  # fmt: skip
    server_errors = sum(c for s, c in tally.statuses.items() if s.isdigit() and s[0] == "5")
    print(f"5xx other than 503: {server_errors - tally.statuses['503']}")
    print(f"server memory under overload (all its processes, peak): anon "
          f"{memory.peak.anon_mb:.0f} MB, mapped files {memory.peak.mapped_mb:.0f} MB")  # fmt: skip
    print("inside the server (from its request log: after the request was read and routed):")
    for route, ms in server_side_ms(log).items():
        print(f"  {route}: p50 {percentile(ms, 0.5):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms")
    acked = capacity_acked + tally.acked_events
    verdict = "every acknowledged event is stored" if stored >= acked else "EVENTS LOST"
    print(f"events acknowledged as stored: {acked}; stored: {stored} ({verdict})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
