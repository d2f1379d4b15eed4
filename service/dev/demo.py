"""Demo data for `tacit serve --dev --demo`: two weeks of simulated traffic, seeded once.

The seeding runs in a background thread of the serving process, so the server answers at
once; it waits for /healthz, then posts the simulation through the Python client with the
dev ingest token, like any app would. A marker file in the data dir records the
simulation's seed and end time: a seeding interrupted by a stop resumes on the next start
with the same events (same ids, so what was stored is not stored twice), and a finished one
never runs again. A data dir that already holds events, demo or not, is never seeded.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from privacy.policy import LoadedPolicy
from service.settings import Settings
from service.store import open_store

log = logging.getLogger("tacit.demo")

MARKER = "demo.json"
DAYS, USERS, SEED = 14, 3000, 7
STOP_WAIT_S = 5.0  # how long a stop waits for the seeding thread to wind up


class Seeding:
    """A seeding under way in a background thread of the serving process."""

    def __init__(
        self, loaded: LoadedPolicy, url: str, token: str, marker: Path, plan: dict[str, Any]
    ) -> None:
        from service.dev.send import Sender

        self._loaded, self._url, self._marker, self._plan = loaded, url, marker, plan
        self._sender = Sender(url, token)
        self._stopped = threading.Event()
        self.thread = threading.Thread(target=self._seed, name="tacit-demo", daemon=True)

    def stop(self) -> None:
        """The server has stopped: abandon what is unsent at once (the next start resumes
        it) rather than retry against a server that is gone."""
        self._stopped.set()
        self._sender.stop()
        # Let the thread say so before the process ends: after a signal the process is
        # ended by that signal, which neither waits for daemon threads nor flushes stdout.
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(STOP_WAIT_S)

    def _seed(self) -> None:
        from service.dev.simulate import Simulation, World

        if not _wait_healthy(self._url, self._stopped):
            self._sender.stop()  # nothing was sent: its client has nothing to deliver
            if not self._stopped.is_set():
                print("demo: the server did not come up; demo data not seeded", flush=True)
            return
        plan = self._plan
        now = datetime.fromisoformat(plan["now"])
        simulation = Simulation(
            World.from_policy(self._loaded.policy),
            days=int(plan["days"]),
            users=int(plan["users"]),
            seed=int(plan["seed"]),
            now=now,
        )
        print(
            f"demo: seeding {simulation.days} days of simulated traffic "
            f"({simulation.users:,} users) in the background; the API is already up",
            flush=True,
        )
        started = time.monotonic()
        try:
            stats = self._sender.run(simulation)
        except Exception as exc:  # a demo must never take the server down
            print(
                f"demo: seeding stopped ({type(exc).__name__}); it resumes on the next start",
                flush=True,
            )
            return
        if self._stopped.is_set():
            print("demo: seeding stopped with the server; it resumes on the next start", flush=True)
            return
        undelivered = stats.failed + stats.dropped_overflow + stats.abandoned
        if undelivered:
            print(
                f"demo: {undelivered:,} events were not delivered; seeding resumes next start",
                flush=True,
            )
            return
        _write(self._marker, {**plan, "status": "done", "events": stats.acknowledged})
        print(
            f"demo: {stats.accepted:,} events stored in {time.monotonic() - started:.0f} s. "
            f"Try:\n  {try_query(self._url, simulation.first_day, now.date())}",
            flush=True,
        )


def start(
    settings: Settings,
    loaded: LoadedPolicy,
    url: str,
    *,
    days: int = DAYS,
    users: int = USERS,
    seed: int = SEED,
) -> Seeding | None:
    """Start seeding in the background unless this data dir was seeded or holds data; the
    seeding, or None when there is nothing to do."""
    from service.cli.simulate import dev_token

    marker = settings.data_dir / MARKER
    plan = _read(marker)
    if plan is not None and plan.get("status") == "done":
        return None
    token = dev_token(settings.data_dir)
    if token is None:
        print("demo: no dev ingest token in the data dir; not seeding demo data", flush=True)
        return None
    if plan is None:
        if _has_events(settings):
            print("demo: the data dir already holds events; not seeding demo data", flush=True)
            return None
        now = datetime.now(UTC).isoformat()
        plan = {"status": "seeding", "now": now, "days": days, "users": users, "seed": seed}
        _write(marker, plan)
    seeding = Seeding(loaded, url, token, marker, plan)
    seeding.thread.start()
    return seeding


def local_url(host: str, port: int) -> str:
    """The server's URL from this machine: loopback when it listens on every address."""
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 (compared, not bound)
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def try_query(url: str, first: date, last: date) -> str:
    """The `tacit query` a newcomer can paste once the demo data is in."""
    start = max(first, last - timedelta(days=6))
    return (
        f"source var/dev-tokens.env && .venv/bin/tacit query task_completion_rate "
        f"--start {start} --end {last} --group-by cohort --epsilon 0.5 "
        f"--url {url} --token $TACIT_ANALYST_TOKEN"
    )


def _wait_healthy(url: str, stopped: threading.Event, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            try:
                if client.get("/healthz").status_code == 200:
                    return True
            except httpx.TransportError:
                pass
            if stopped.wait(0.2):
                return False
    return False


def _has_events(settings: Settings) -> bool:
    store = open_store(settings.resolved_database_url)
    try:
        return store.events.first_event_at() is not None
    finally:
        store.close()


def _read(path: Path) -> dict[str, Any] | None:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write(path: Path, value: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=2) + "\n")
    tmp.replace(path)


BROWSER_KEYS = "demo-keys.json"  # page origin -> the demo page's publishable key
BROWSER_SOURCE = "dev-browser"


def demo_origins(host: str, port: int) -> list[str]:
    """The origins the demo page may be opened from: the server's, and localhost's twin."""
    origins = [local_url(host, port)]
    if host in ("", "0.0.0.0", "::", "127.0.0.1", "localhost"):  # noqa: S104 (compared)
        origins = [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
    return origins


def browser_key(settings: Settings, origins: list[str]) -> str:
    """The publishable key the /demo page posts with, made once per origin set and kept in
    the data dir (a publishable key may ship in a page: it can only post events)."""
    from service.ops.tokens import create_token
    from service.store.base import Role

    path = settings.data_dir / BROWSER_KEYS
    keys = _read(path) or {}
    known = {keys.get(o) for o in origins}
    if len(known) == 1 and None not in known:
        return str(known.pop())
    store = open_store(settings.resolved_database_url)
    try:
        name = f"dev-browser-{len(keys) + 1}-{origins[0].rsplit(':', 1)[-1]}"
        key = create_token(store, name, Role.INGEST, BROWSER_SOURCE, "dev-demo", origins=origins)
    finally:
        store.close()
    _write(path, {**keys, **dict.fromkeys(origins, key)})
    print(f"demo: the chat page at {origins[0]}/demo posts with publishable key {name}", flush=True)
    return key


def browser_config(data_dir: Path, origin: str) -> dict[str, str] | None:
    """What the /demo page needs (endpoint and key) for a page on ``origin``, or None."""
    key = (_read(data_dir / BROWSER_KEYS) or {}).get(origin)
    return None if key is None else {"endpoint": origin, "key": str(key)}
