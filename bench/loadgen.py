"""A cheap, bounded HTTP/1.1 load generator for POST /v1/events, and the event workload.

Run as its own process (``python bench/loadgen.py ...``) so that its CPU is not the
server's. Every request body is built before the clock starts; while timing, each
connection keeps one request in flight (closed loop) over a keep-alive socket, and the
response is parsed only as far as the status line, Content-Length and the ``accepted``
count. The run stops at ``--duration`` seconds or when the prebuilt bodies run out,
whichever comes first, and prints one JSON object with the figures.

The workload is what an SDK sends: random UUIDv4 event ids made by the client, a
realistic mix of event types and context labels, client timestamps a moment old (a few
are hours late, as from clients that were offline), and ``sent_at`` on most events.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import random
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import cast

# Share of each event type in the traffic (an exposure behind most signals).
TYPE_MIX: dict[str, int] = {
    "response_shown": 34,
    "click_through": 14,
    "dwell": 14,
    "reformulation": 8,
    "copy_paste": 8,
    "edit": 8,
    "task_completion": 8,
    "abandonment": 6,
}
SURFACES = ["chat", "chat", "chat", "search", "ide", "ide", "docs", "mobile"]  # mobile -> other
TASKS = ["coding", "writing", "qa", "summarization", "analysis", "translation"]
COHORTS = ["control", "treatment"]
MODELS = ["model-a", "model-b", "model-c"]
LATE_SHARE = 0.02  # events that arrive hours after they happened
USERS = 200_000


def _payload(kind: str, rng: random.Random) -> str:
    if kind in ("response_shown", "click_through"):
        candidates = rng.randint(1, 5)
        return f'{{"position":{rng.randint(1, candidates)},"candidates":{candidates}}}'
    if kind == "reformulation":
        return f'{{"similarity":{rng.random():.3f}}}'
    if kind == "copy_paste":
        start = rng.randint(0, 2000)
        length = rng.randint(1, 1500)
        dest = "external" if rng.random() < 0.6 else "internal"
        return (
            f'{{"span_start":{start},"span_end":{start + length},'
            f'"span_length":{length},"destination":"{dest}"}}'
        )
    if kind == "edit":
        return f'{{"edit_ratio":{rng.random():.3f}}}'
    if kind == "dwell":
        return f'{{"dwell_ms":{rng.randint(200, 600_000)},"scroll_depth":{rng.random():.2f}}}'
    if kind == "abandonment":
        return f'{{"after_ms":{rng.randint(1000, 1_800_000)}}}'
    return f'{{"outcome":"{"success" if rng.random() < 0.7 else "failure"}"}}'


@functools.lru_cache(maxsize=1 << 16)
def _second(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _iso(ms: int) -> str:
    return f"{_second(ms // 1000)}.{ms % 1000:03d}Z"


def _uuid4(rng: random.Random) -> str:
    """A random (version 4) UUID, as SDKs make them; drawn from ``rng`` for speed."""
    h = f"{rng.getrandbits(128) & _UUID4_CLEAR | _UUID4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def events(
    rng: random.Random, count: int, now_ms: int, late_share: float = LATE_SHARE
) -> Iterator[str]:
    """``count`` events as JSON texts, happening just before ``now_ms`` (Unix ms)."""
    kinds = rng.choices(list(TYPE_MIX), weights=list(TYPE_MIX.values()), k=count)
    for kind in kinds:
        user = rng.randrange(USERS)
        if rng.random() < late_share:
            ts = now_ms - rng.randint(60_000, 6 * 3_600_000)
        else:
            ts = now_ms - rng.randint(0, 5_000)
        sent = f',"sent_at":"{_iso(ts + rng.randint(5, 900))}"' if rng.random() < 0.8 else ""
        yield (
            f'{{"event_id":"{_uuid4(rng)}","user_id":"u-{user:06x}",'
            f'"session_id":"s-{user:06x}-{rng.randrange(8)}",'
            f'"query_id":"{rng.getrandbits(128):032x}",'
            f'"response_id":"{rng.getrandbits(128):032x}","timestamp":"{_iso(ts)}"{sent},'
            f'"event_type":"{kind}","payload":{_payload(kind, rng)},'
            f'"context":{{"surface":"{rng.choice(SURFACES)}","task_type":"{rng.choice(TASKS)}",'
            f'"cohort":"{rng.choice(COHORTS)}","model":"{rng.choice(MODELS)}"}}}}'
        )


def bodies(rng: random.Random, requests: int, per_request: int, now_ms: int) -> list[bytes]:
    """``requests`` JSON bodies of ``per_request`` events each."""
    stream = events(rng, requests * per_request, now_ms)
    return [
        ('{"events":[' + ",".join(next(stream) for _ in range(per_request)) + "]}").encode()
        for _ in range(requests)
    ]


_ACCEPTED = re.compile(rb'"accepted":\s*(\d+)')


class _Connection(asyncio.Protocol):
    """One keep-alive connection that sends the next request as soon as a response ends."""

    def __init__(self, run: _Run) -> None:
        self._run = run
        self._buffer = bytearray()
        self._need = -1  # bytes of the whole response once its head is parsed
        self._status = 0
        self._body_at = 0
        self._sent_at = 0
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._send()

    def _send(self) -> None:
        request = self._run.next_request()
        if request is None:
            assert self.transport is not None
            self.transport.close()
            return
        self._sent_at = time.perf_counter_ns()
        assert self.transport is not None
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._need < 0:
            head_end = self._buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(self._buffer[:head_end]).lower()
            self._status = int(head[9:12])
            at = head.find(b"content-length:")
            if at < 0:
                raise RuntimeError("the server sent a response without Content-Length")
            line_end = head.find(b"\r\n", at)
            length = int(head[at + 15 : line_end if line_end > 0 else None])
            self._body_at = head_end + 4
            self._need = self._body_at + length
        if len(self._buffer) < self._need:
            return
        body = bytes(self._buffer[self._body_at : self._need])
        del self._buffer[: self._need]
        self._need = -1
        self._run.record(time.perf_counter_ns() - self._sent_at, self._status, body)
        self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class _Run:
    def __init__(self, requests: list[bytes], duration: float, cycle: bool) -> None:
        self._requests = requests
        self._cycle = cycle
        self._next = 0
        self._deadline = time.perf_counter() + duration
        self.latencies_ns: list[int] = []
        self.statuses: dict[int, int] = {}
        self.accepted = 0
        self.sample_error: str | None = None

    def next_request(self) -> bytes | None:
        if self._next >= len(self._requests):
            if not self._cycle:
                return None
            self._next = 0
        if time.perf_counter() >= self._deadline:
            return None
        request = self._requests[self._next]
        self._next += 1
        return request

    def record(self, latency_ns: int, status: int, body: bytes) -> None:
        self.latencies_ns.append(latency_ns)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status == 200:
            match = _ACCEPTED.search(body, 0, 64)
            if match:
                self.accepted += int(match[1])
        elif self.sample_error is None:
            self.sample_error = body[:300].decode(errors="replace")


async def _drive(
    host: str, port: int, requests: list[bytes], connections: int, duration: float, cycle: bool
) -> tuple[_Run, float]:
    loop = asyncio.get_running_loop()
    run = _Run(requests, duration, cycle)
    start = time.perf_counter()
    conns = []
    for _ in range(connections):
        _, protocol = await loop.create_connection(lambda: _Connection(run), host, port)
        conns.append(protocol)
    await asyncio.gather(*(c.done for c in conns))
    return run, time.perf_counter() - start


def _request(host: str, port: int, token: str, body: bytes) -> bytes:
    return (
        f"POST /v1/events HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _percentile(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return float("nan")
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token", default="tct_none", help="ingest token (bearer)")
    parser.add_argument("--events-per-request", type=int, default=100)
    parser.add_argument("--requests", type=int, required=True, help="prebuilt bodies (a cap)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds (a cap)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds, not measured")
    parser.add_argument(
        "--cycle", action="store_true", help="reuse bodies (only for servers that store nothing)"
    )
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    rng = random.Random(args.seed)
    now_ms = int(time.time() * 1000)
    warm_count = max(args.connections * 4, int(args.requests * args.warmup / max(args.duration, 1)))
    built = bodies(rng, args.requests + warm_count, args.events_per_request, now_ms)
    wire = [_request(args.host, args.port, args.token, b) for b in built]
    del built
    warm, timed = wire[:warm_count], wire[warm_count:]
    if args.warmup > 0:
        asyncio.run(_drive(args.host, args.port, warm, args.connections, args.warmup, args.cycle))
    print("timing", flush=True)  # tells a supervisor that the measured part starts
    cpu = time.process_time()
    run, elapsed = asyncio.run(
        _drive(args.host, args.port, timed, args.connections, args.duration, args.cycle)
    )
    cpu = time.process_time() - cpu
    ordered = sorted(run.latencies_ns)
    ok = run.statuses.get(200, 0)
    result = {
        "requests": len(ordered),
        "ok": ok,
        "statuses": {str(k): v for k, v in sorted(run.statuses.items())},
        "accepted_events": run.accepted,
        "elapsed_s": elapsed,
        "requests_per_s": ok / elapsed,
        "events_per_s": run.accepted / elapsed,
        "p50_ms": _percentile(ordered, 0.50),
        "p99_ms": _percentile(ordered, 0.99),
        "ran_out_of_bodies": not args.cycle and len(ordered) >= len(timed),
        "loadgen_cpu_s": cpu,
        "sample_error": run.sample_error,
    }
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
