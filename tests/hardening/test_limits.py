"""Size and shape limits: token buckets, JSON nesting and string length, and the memory
of the real server under 100 concurrent 10 MB uploads."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from factories import event
from server import Server, create_token_in_process

from service.api.limits import LimitConfig, Limiter, RouteClass, TokenBucket, route_class
from service.ingest.parse import MAX_DEPTH, MAX_STRING_CHARS, BadBatch, parse_batch

MB = 1 << 20
# Idle, the server holds ~95 MB. Its body buffers are bounded by the running ingest
# requests times twice the body limit (chunks, then their join): 8 x 2 x 1 MB with the
# defaults, plus what uvicorn buffers of the waiting ones before it pauses reading.
# What 100 concurrent 10 MB uploads (1 GB) may add to the server's anonymous memory: a
# server that buffered even a sixteenth of them would pass it.
MEMORY_GROWTH_BOUND_KB = 64 * 1024


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- token buckets -------------------------------------------------------------------


def test_a_bucket_spends_its_burst_then_says_how_long_to_wait() -> None:
    bucket = TokenBucket(rate=10.0, burst=3.0, now=0.0)
    assert [bucket.take(1, 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(1, 0.0) == pytest.approx(0.1)
    assert bucket.take(1, 0.1) == 0.0  # refilled by rate x elapsed


def test_a_bucket_never_saves_more_than_its_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=3.0, now=0.0)
    assert bucket.refill(3600.0) == 3.0


def test_an_event_bucket_admits_while_solvent_and_makes_the_debtor_wait() -> None:
    bucket = TokenBucket(rate=100.0, burst=1000.0, now=0.0)
    assert bucket.wait_until_solvent(0.0) == 0.0
    bucket.charge(1500)  # one large batch drives it into debt
    assert bucket.wait_until_solvent(0.0) == pytest.approx(5.0)
    assert bucket.wait_until_solvent(5.01) == 0.0


def test_a_limiter_keeps_one_request_bucket_per_token() -> None:
    clock = FakeClock()
    limiter = Limiter(LimitConfig(requests_per_s=1.0, burst_s=2.0), clock)
    assert [limiter.admit_rate(b"a", RouteClass.QUERY)[0] for _ in range(3)] == [0.0, 0.0, 1.0]
    assert limiter.admit_rate(b"b", RouteClass.QUERY)[0] == 0.0


def test_a_full_batch_always_fits_an_event_bucket_however_low_the_rate() -> None:
    limiter = Limiter(LimitConfig(events_per_s=1.0, max_batch_events=1000), FakeClock())
    wait, (bucket,) = limiter.admit_rate(b"a", RouteClass.INGEST)
    assert wait == 0.0 and bucket.level == 1000.0


def test_a_publishable_key_draws_on_its_own_rate_and_on_its_address() -> None:
    config = LimitConfig(
        requests_per_s=1000.0,
        publishable_requests_per_s=3.0,
        address_requests_per_s=1.0,
        burst_s=1.0,
    )
    limiter = Limiter(config, FakeClock())
    # One address: refused after its one request, though the key has two more to give.
    first, second = (limiter.admit_rate(b"k", RouteClass.INGEST, b"10.0.0.1") for _ in range(2))
    assert first[0] == 0.0 and second[0] == pytest.approx(1.0)
    # Other addresses: the key's own rate (3 per second, the refused request included)
    # is what refuses them from the fourth request on.
    waits = [
        limiter.admit_rate(b"k", RouteClass.INGEST, f"10.0.1.{i}".encode())[0] for i in range(3)
    ]
    assert [w > 0 for w in waits] == [False, True, True]
    # A secret token of the same digest space is untouched by either.
    assert limiter.admit_rate(b"t", RouteClass.INGEST)[0] == 0.0


def test_a_publishable_batch_is_charged_to_the_key_and_to_the_address() -> None:
    config = LimitConfig(publishable_events_per_s=100.0, address_events_per_s=10.0, burst_s=1.0)
    limiter = Limiter(config, FakeClock())
    wait, buckets = limiter.admit_rate(b"k", RouteClass.INGEST, b"10.0.0.1")
    assert wait == 0.0 and len(buckets) == 2
    for bucket in buckets:
        bucket.charge(1000)  # one full batch
    assert limiter.admit_rate(b"k", RouteClass.INGEST, b"10.0.0.1")[0] > 0  # address in debt
    assert limiter.admit_rate(b"k", RouteClass.INGEST, b"10.0.0.2")[0] > 0  # key in debt too


def test_each_route_class_has_its_own_pool_of_running_slots() -> None:
    async def scenario() -> None:
        limiter = Limiter(LimitConfig(running_ingest=2, running_query=1, wait_s=0))
        assert await limiter.acquire(RouteClass.INGEST)
        assert await limiter.acquire(RouteClass.INGEST)
        assert not await limiter.acquire(RouteClass.INGEST)  # ingest's pool is full ...
        assert await limiter.acquire(RouteClass.QUERY)  # ... the analysts' is not
        limiter.release(RouteClass.INGEST)
        assert await limiter.acquire(RouteClass.INGEST)

    asyncio.run(scenario())


def test_a_waiter_gets_the_slot_a_finished_request_hands_over_first_come_first_served() -> None:
    async def scenario() -> None:
        limiter = Limiter(LimitConfig(running_query=1, wait_s=5.0))
        assert await limiter.acquire(RouteClass.QUERY)
        order: list[int] = []

        async def wait(n: int) -> None:
            assert await limiter.acquire(RouteClass.QUERY)
            order.append(n)
            limiter.release(RouteClass.QUERY)

        waiters = [asyncio.create_task(wait(n)) for n in range(3)]
        await asyncio.sleep(0)
        assert order == [] and limiter.held == 4
        limiter.release(RouteClass.QUERY)
        await asyncio.gather(*waiters)
        assert order == [0, 1, 2]
        assert limiter.held == 0 and limiter.pools[RouteClass.QUERY].running == 0

    asyncio.run(scenario())


def test_a_waiter_gives_up_after_the_wait_and_leaves_no_trace() -> None:
    async def scenario() -> None:
        limiter = Limiter(LimitConfig(running_other=1, wait_s=0.01))
        assert await limiter.acquire(RouteClass.OTHER)
        assert not await limiter.acquire(RouteClass.OTHER)
        limiter.release(RouteClass.OTHER)
        assert limiter.held == 0 and limiter.pools[RouteClass.OTHER].running == 0
        assert await limiter.acquire(RouteClass.OTHER)

    asyncio.run(scenario())


def test_beyond_the_global_cap_a_request_is_refused_without_waiting() -> None:
    async def scenario() -> None:
        limiter = Limiter(LimitConfig(in_flight=2, running_query=1, wait_s=5.0))
        assert await limiter.acquire(RouteClass.QUERY)
        waiter = asyncio.create_task(limiter.acquire(RouteClass.QUERY))
        await asyncio.sleep(0)
        assert not await limiter.acquire(RouteClass.INGEST)  # two held: one runs, one waits
        limiter.release(RouteClass.QUERY)
        assert await waiter

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("path", "cls"),
    [
        ("/healthz", RouteClass.HEALTH),
        ("/metrics", RouteClass.HEALTH),
        ("/v1/events", RouteClass.INGEST),
        ("/v1/queries", RouteClass.QUERY),
        ("/v1/queries/preview", RouteClass.QUERY),
        ("/v1/metrics", RouteClass.QUERY),
        ("/v1/budget", RouteClass.QUERY),
        ("/v1/audit", RouteClass.OTHER),
        ("/v1/events/../healthz", RouteClass.OTHER),
    ],
)
def test_a_request_draws_from_the_pool_of_its_path(path: str, cls: RouteClass) -> None:
    assert route_class(path) is cls


# --- JSON shape ----------------------------------------------------------------------


def _body_with(payload_json: str) -> bytes:
    valid = json.dumps(event(at=datetime(2026, 11, 20, tzinfo=UTC)))
    return ('{"events": [' + valid[:-1] + ', "payload": ' + payload_json + "}]}").encode()


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 999, 100_000])
def test_a_body_nested_too_deep_is_refused_whole_with_the_limit_named(depth: int) -> None:
    with pytest.raises(BadBatch, match=f"deeper than {MAX_DEPTH} levels"):
        parse_batch(_body_with("[" * depth + "]" * depth), 1000)


def test_nesting_within_the_limit_is_an_event_error_not_a_batch_error() -> None:
    parsed = parse_batch(_body_with("[[[[]]]]"), 1000)
    assert parsed.events == [] and len(parsed.invalid) == 1


@pytest.mark.parametrize("where", ["value", "key"])
def test_a_string_longer_than_the_limit_is_refused_whole(where: str) -> None:
    long = "x" * (MAX_STRING_CHARS + 1)
    payload = {"x": long} if where == "value" else {long: 1}
    with pytest.raises(BadBatch, match=f"longer than {MAX_STRING_CHARS} characters"):
        parse_batch(_body_with(json.dumps(payload)), 1000)


# --- memory of the real server -------------------------------------------------------


def rss_anon_kb(pid: int) -> int:
    """The anonymous resident memory of process ``pid`` (RssAnon), in kB: what the process
    allocated, not the shared libraries it maps (those are the same whatever it does)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    raise AssertionError(f"no RssAnon for pid {pid}")


class AnonPeak:
    """The highest RssAnon of a process, sampled every millisecond while in the block."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, rss_anon_kb(pid)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._done.wait(0.001):
            self.peak = max(self.peak, rss_anon_kb(self.pid))

    def __enter__(self) -> AnonPeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, rss_anon_kb(self.pid))


def upload(server: Server, token: str, chunked: bool, start: threading.Barrier) -> str:
    """POST 10 MB of JSON-typed bytes; the status, or the transport error's name."""
    chunk = b" " * (64 * 1024)

    def body():  # type: ignore[no-untyped-def]
        for _ in range(160):
            yield chunk

    headers = {"Content-Type": "application/json"}
    content = body() if chunked else chunk * 160
    start.wait()
    try:
        with server.client(token, timeout=120.0) as client:
            response = client.post("/v1/events", content=content, headers=headers)
    except httpx.TransportError as exc:  # the server may close while we still send
        return type(exc).__name__
    if response.status_code == 503:
        assert response.headers["Retry-After"] == "1"
    return str(response.status_code)


@pytest.mark.slow  # ~6-10 s: 1 GB over the loopback
def test_a_hundred_concurrent_10_mb_uploads_keep_the_server_under_a_fixed_memory_bound(
    tmp_path: Path, master_key_b64: str
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    token = create_token_in_process(data_dir, "ingest", "app", "app")
    with Server(data_dir, master_key_b64) as server:
        idle = rss_anon_kb(server.pid)
        start = threading.Barrier(100)
        outcomes: list[str] = []
        threads = [
            threading.Thread(
                target=lambda c=i % 2 == 0: outcomes.append(upload(server, token, c, start))
            )
            for i in range(100)
        ]
        with AnonPeak(server.pid) as sampled:
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
        peak = sampled.peak
        with server.client() as client:
            assert client.get("/healthz").status_code == 200  # alive, not crashed
        mix = Counter(outcomes)
        print(f"RssAnon: idle {idle // 1024} MB, peak {peak // 1024} MB; outcomes {dict(mix)}")

    assert len(outcomes) == 100
    assert set(mix) <= {"413", "503", "WriteError", "ReadError", "RemoteProtocolError"}
    assert mix["413"] > 0
    assert peak - idle < MEMORY_GROWTH_BOUND_KB


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize("path", ["/v1/subjects/erase", "/v1/queries", "/v1/queries/preview"])
def test_a_large_body_is_refused_before_anyone_is_authenticated_or_it_is_buffered(
    tmp_path: Path, master_key_b64: str, path: str, chunked: bool
) -> None:
    # FastAPI reads a route's whole body before its dependencies check the caller: every
    # body but a batch of events is read first, with a limit (max_request_bytes, 64 KiB).
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    chunk = b" " * (64 << 10)

    def body() -> Any:
        for _ in range(32):  # 2 MB, in pieces: no Content-Length to refuse it by
            yield chunk

    with Server(data_dir, master_key_b64) as server, server.client() as client:
        content = body() if chunked else chunk * 32
        response = client.post(path, content=content, headers={"Content-Type": "application/json"})
        assert response.status_code == 413, response.text
        assert response.json()["error"]["code"] == "payload_too_large"
        assert "65536 bytes" in response.json()["error"]["message"]
        small = client.post(path, json={"user_id": "x"})  # within the limit: auth decides
        assert small.status_code == 401
