"""Where the floor is: ingestion's CPU per event in one process, with no HTTP server.

    .venv/bin/python bench/floor.py [--batches 300] [--rounds 3]

bench/ingest.py measures what the served stack takes: worker processes, the writer
process, the load generator, all on two cores. This runs the same work in one thread,
on a copy of the same cached 5M-event store (run bench/ingest.py once first to build
it), so that nothing is lost to processes sharing cores. Each round prints the CPU time
per event of:

- ``validate``: ``parse_batch`` alone, which is all the baseline app of bench/ingest.py
  does besides HTTP;
- ``steps``: ``Ingestor.prepare`` (clock, policy, pseudonyms, sampling, rows);
- ``write``: ``events.write`` in groups of three batches (the served writer's average
  group), with the recent-keys fold where it falls due (``maintain()``, as served);
- ``app``: the whole ASGI app called in-process with batches of 100 (middlewares,
  authentication, validation, steps, the write through the group writer thread, the
  report), 16 requests in flight.

Beside them: the app's ratio to validation alone, and the events/s two fully busy cores
would take if an event cost only validate + steps + write (no HTTP, no middlewares, no
load generator, nothing lost to processes sharing the cores): a bound that no process
layout of this code can pass on this machine. The in-process app also pays for its
group writer thread sharing the interpreter lock with the event loop, which the served
workers do not (they hand batches to the writer process), so compare its figure with
bench/ingest.py's only loosely.

The host's speed moves these figures by up to 2 x within a minute (docs/benchmarks.md):
read a round's columns together, and compare code changes with bench/ingest_ab.py.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import loadgen
from ingest import KEY_FILE, OUT, _ingest_source, store_copy
from serving import host_loop_s

from privacy.keyring import Keyring, MasterKey
from privacy.policy import load_policy
from service.api.app import create_app
from service.ingest.parse import parse_batch
from service.ingest.pipeline import Ingestor
from service.runtime import settle_heap
from service.settings import DEFAULT_POLICY, Settings
from service.store import open_store

PER_REQUEST = 100
IN_FLIGHT = 16
GROUP = 3  # batches per write: the served writer's average group (docs/benchmarks.md)


def _per_event(work: Callable[[], object], events: int) -> float:
    """CPU µs per event of ``work``, with the collector off: a stage keeps every result
    of its batches alive for the next, which served requests do not (they free theirs)."""
    gc.collect()
    gc.disable()
    try:
        start = time.process_time()
        work()
        return (time.process_time() - start) / events * 1e6
    finally:
        gc.enable()


def _stages(run: Path, bodies: list[bytes]) -> tuple[float, float, float]:
    loaded = load_policy(DEFAULT_POLICY)
    store = open_store(f"sqlite:///{run / 'tacit.db'}", policy_sha256=loaded.sha256)
    try:
        keyring = Keyring(
            MasterKey.from_base64(KEY_FILE.read_text()), store.salts, loaded.policy.identifiers
        )
        ingestor = Ingestor(
            loaded.policy, keyring, store, lambda: datetime.now(UTC), timedelta(hours=23)
        )
        _, source = _ingest_source(store, f"bench-floor-{time.time_ns()}")
        events = len(bodies) * PER_REQUEST
        parsed: list[Any] = []
        prepared: list[Any] = []
        validate = _per_event(lambda: parsed.extend(parse_batch(b, 1000) for b in bodies), events)
        steps = _per_event(
            lambda: prepared.extend(ingestor.prepare(p, source) for p in parsed), events
        )

        def write() -> None:
            for at in range(0, len(prepared), GROUP):
                store.events.write([p.batch for p in prepared[at : at + GROUP]])
                store.events.maintain()

        return validate, steps, _per_event(write, events)
    finally:
        store.close()


def _app(run: Path, bodies: list[bytes]) -> float:
    settings = Settings(
        data_dir=run,
        master_key_file=KEY_FILE,
        rate_limit_requests_per_s=1e9,
        rate_limit_events_per_s=1e9,
    )
    app = create_app(settings)
    store = app.state.tacit.store
    token, _ = _ingest_source(store, f"bench-floor-app-{time.time_ns()}")
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"authorization", f"Bearer {token}".encode()),
    ]

    async def post(body: bytes) -> None:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/v1/events",
            "raw_path": b"/v1/events",
            "query_string": b"",
            "root_path": "",
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1),
            "server": ("127.0.0.1", 8000),
            "state": {},
        }
        messages: list[dict[str, Any]] = []
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # the client never disconnects
            raise AssertionError("unreachable")

        async def send(message: dict[str, Any]) -> None:
            messages.append(message)

        await app(scope, receive, send)
        if messages[0]["status"] != 200:
            raise SystemExit(f"the app answered {messages[0]['status']}: {messages[1:]}")

    async def main() -> float:
        async with app.router.lifespan_context(app):
            settle_heap()  # as the served workers do
            slots = asyncio.Semaphore(IN_FLIGHT)

            async def one(body: bytes) -> None:
                async with slots:
                    await post(body)

            start = time.process_time()
            await asyncio.gather(*(one(b) for b in bodies))
            return (time.process_time() - start) / (len(bodies) * PER_REQUEST) * 1e6

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=300, help="batches of 100 per stage")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    run = store_copy("floor")
    print(f"store: a copy of {OUT / 'prefill.db'}; batches of {PER_REQUEST}, one thread")
    print(f"host speed before: {host_loop_s():.2f} s for the fixed loop (lower is faster)")
    rng = random.Random(20261126)
    print("round  validate    steps    write      app   app/validate   2 cores, pipeline alone")
    for round_ in range(1, args.rounds + 1):
        now_ms = int(time.time() * 1000)
        stage_bodies, app_bodies = (
            loadgen.bodies(rng, args.batches, PER_REQUEST, now_ms) for _ in range(2)
        )
        validate, steps, write = _stages(run, stage_bodies)
        app = _app(run, app_bodies)
        pipeline = validate + steps + write
        print(
            f"{round_:5}  {validate:8.1f} {steps:8.1f} {write:8.1f} {app:8.1f}"
            f"   {app / validate:12.2f}   {2e6 / pipeline:10,.0f} events/s"
        )
    print(f"host speed after: {host_loop_s():.2f} s; figures in µs of CPU per event")


if __name__ == "__main__":
    main()
