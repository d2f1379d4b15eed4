"""Simulated traffic over HTTP: `tacit simulate`, and `tacit serve --dev --demo`, which seeds
it once, in the background, through the client; `--dev` alone never seeds anything. Real
server subprocesses on SQLite."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from factories import event
from server import Server, ServerError, create_token_in_process, tacit_executable

from privacy.policy import load_policy
from service.cli.simulate import dev_token
from service.dev import demo
from service.dev.send import run
from service.dev.simulate import Simulation, World
from service.settings import DEFAULT_POLICY, Settings


def events_in(data_dir: Path) -> int:
    conn = sqlite3.connect(data_dir / "tacit.db")
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def marker(data_dir: Path) -> dict[str, object] | None:
    path = data_dir / demo.MARKER
    return json.loads(path.read_text()) if path.exists() else None


def wait_until_seeded(data_dir: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while (marker(data_dir) or {}).get("status") != "done":
        assert time.monotonic() < deadline, "the demo seeding did not finish"
        time.sleep(0.1)


def settings_of(server: Server, master_key_b64: str) -> Settings:
    return Settings(data_dir=server.data_dir, master_key=master_key_b64, dev=True)  # type: ignore[arg-type]


def test_dev_alone_never_seeds(tmp_path: Path, master_key_b64: str) -> None:
    with Server(tmp_path / "data", master_key_b64, args=["--dev"]) as server:
        assert dev_token(server.data_dir) is not None  # dev mode did bootstrap its tokens
        assert marker(server.data_dir) is None
        assert events_in(server.data_dir) == 0


def test_the_demo_seeds_in_the_background_once(tmp_path: Path, master_key_b64: str) -> None:
    loaded = load_policy(DEFAULT_POLICY)
    with Server(tmp_path / "data", master_key_b64, args=["--dev"]) as server:
        settings = settings_of(server, master_key_b64)
        seeding = demo.start(settings, loaded, server.url, days=3, users=40)
        assert seeding is not None
        seeding.thread.join(timeout=120)
        assert (marker(server.data_dir) or {})["status"] == "done"
        seeded = events_in(server.data_dir)
        assert seeded > 100
        assert demo.start(settings, loaded, server.url, days=3, users=40) is None
        assert events_in(server.data_dir) == seeded


def test_a_data_dir_that_holds_events_is_not_seeded(tmp_path: Path, master_key_b64: str) -> None:
    with Server(tmp_path / "data", master_key_b64, args=["--dev"]) as server:
        token = dev_token(server.data_dir)
        assert token is not None
        response = server.post_events([event(at=datetime.now(UTC))], token)
        assert response.json()["accepted"] == 1
        settings = settings_of(server, master_key_b64)
        assert demo.start(settings, load_policy(DEFAULT_POLICY), server.url) is None
        assert marker(server.data_dir) is None and events_in(server.data_dir) == 1


def test_serve_demo_resumes_an_interrupted_seeding_and_then_never_seeds_again(
    tmp_path: Path, master_key_b64: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # A seeding that was stopped before it finished (a small one, to keep the test short).
    plan = {
        "status": "seeding",
        "now": datetime.now(UTC).isoformat(),
        "days": 2,
        "users": 30,
        "seed": 7,
    }
    (data / demo.MARKER).write_text(json.dumps(plan))
    with Server(data, master_key_b64, args=["--dev", "--demo"]) as server:
        wait_until_seeded(data)
        seeded = events_in(data)
        assert seeded > 50
        assert "demo: seeding 2 days of simulated traffic" in server.log_text()
        server.restart()
        assert (marker(data) or {})["status"] == "done" and events_in(data) == seeded
        assert server.log_text().count("demo: seeding") == 1


@pytest.mark.slow  # ~5 s each: a real server seeding two weeks of traffic, stopped mid-way
# Started from a terminal (SIGINT as default) or in the background of a script or a CI
# runner, which starts it with SIGINT ignored: a Ctrl-C ends it by the signal either way.
@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["terminal", "background"])
def test_ctrl_c_during_the_seeding_abandons_it_at_once_to_resume_next_start(
    tmp_path: Path, master_key_b64: str, sigint_ignored: bool
) -> None:
    data = tmp_path / "data"
    server = Server(
        data, master_key_b64, args=["--dev", "--demo"], new_session=True,
        sigint_ignored=sigint_ignored,
    ).start()  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while events_in(data) == 0:  # the seeding is delivering
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.1)
        os.killpg(server.pid, signal.SIGINT)  # what Ctrl-C on `make run` sends
        assert server.process is not None
        # Ended by the signal, as Ctrl-C ends any program: no KeyboardInterrupt.
        assert server.process.wait(30) == -signal.SIGINT
    finally:
        server.stop()
    log = server.log_text()
    # The client stopped at once instead of retrying against the stopped server until
    # its exit-time flush gave up, and no event was "dropped" on the way out.
    assert "demo: seeding stopped with the server; it resumes on the next start" in log, log
    assert "buffer is full" not in log and "dropped" not in log, log
    assert "Traceback" not in log, log
    assert (marker(data) or {})["status"] == "seeding"  # resumed by the next start


def test_demo_without_dev_is_refused(tmp_path: Path, master_key_b64: str) -> None:
    server = Server(tmp_path / "data", master_key_b64, args=["--demo"], startup_timeout=10)
    with pytest.raises(ServerError, match="did not become healthy"):
        server.start()
    assert "--demo seeds a development data dir: use it with --dev" in server.log_text()


def test_tacit_simulate_posts_through_the_client_and_sums_up(
    tmp_path: Path, master_key_b64: str
) -> None:
    with Server(tmp_path / "data", master_key_b64) as server:
        token = create_token_in_process(server.data_dir, "ingest", "sim")
        done = subprocess.run(
            [str(tacit_executable()), "simulate", "--days", "2", "--users", "30", "--url",
             server.url, "--token", token],
            capture_output=True, text=True, timeout=120, check=False, env=server.env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        stored = events_in(server.data_dir)
        assert stored > 50
        assert f"{stored:,} stored, 0 already stored" in done.stdout
        assert token not in done.stdout + done.stderr


def test_a_refused_token_stops_a_simulation_at_once(tmp_path: Path, master_key_b64: str) -> None:
    world = World.from_policy(load_policy(DEFAULT_POLICY).policy)
    simulation = Simulation(world, days=14, users=2000, seed=1, now=datetime.now(UTC))
    with Server(tmp_path / "data", master_key_b64) as server:
        stats = run(simulation, server.url, "tct_" + "x" * 43, batch_size=100)
    assert stats.failed > 0 and stats.accepted == 0
    # The first refusal stops the run: before it, at most a full buffer (10 000) and one
    # batch in flight were tracked, of the ~90 000 events the run would have sent.
    assert stats.tracked <= 10_000 + 100 + 1
