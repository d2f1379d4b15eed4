"""The SQLite writer process: `tacit serve` writes every batch through one child process.

If that process dies, batches it did not answer are refused with 503 and Retry-After
(never acknowledged), the server starts a new writer and ingestion goes on; stopping the
server stops the writer and leaves no socket behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from factories import event
from server import Server
from store.contract import batch

from service.ingest.writer_process import RemoteWriter, WriterUnavailable, serve
from service.store.sqlite import SQLiteStore


def stored(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "tacit.db") as conn:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])


@pytest.mark.slow  # ~4 s: a real server, a killed and restarted writer
def test_a_killed_writer_refuses_batches_with_503_then_a_new_one_takes_over(
    tmp_path: Path, master_key_b64: str
) -> None:
    data_dir = tmp_path / "data"
    with Server(data_dir, master_key_b64) as server:
        token = server.create_token("ingest", "app", "web")
        acked = 0
        assert server.post_events([event(at=datetime.now(UTC))], token).status_code == 200
        acked += 1
        (writer,) = server.writer_pids()
        os.kill(writer, signal.SIGKILL)

        statuses = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            response = server.post_events([event(at=datetime.now(UTC))], token)
            statuses.append(response.status_code)
            if response.status_code == 200:
                acked += 1
                break
            assert response.status_code == 503, response.text
            assert response.headers["Retry-After"] == "1"
            assert "retry" in response.json()["error"]["message"]
            time.sleep(0.05)
        assert statuses[-1] == 200, statuses
        (replacement,) = server.writer_pids()
        assert replacement != writer
        assert "exited with code -9: starting a new one" in server.log_text()
    assert stored(data_dir) == acked  # every acknowledged event, and no refused one


def test_stopping_the_server_stops_its_writer_and_removes_the_socket(
    tmp_path: Path, master_key_b64: str
) -> None:
    server = Server(tmp_path / "data", master_key_b64).start()
    (writer,) = server.writer_pids()
    socket_path = server.writer_socket(writer)
    assert socket_path is not None
    socket_dir = socket_path.parent
    assert socket_dir.is_dir()
    server.stop()
    assert not Path(f"/proc/{writer}").exists()
    assert not socket_dir.exists()


@pytest.mark.slow  # ~5 s: a real server under load, stopped by a group signal
def test_a_signal_to_the_whole_process_group_stops_the_writer_after_the_workers(
    tmp_path: Path, master_key_b64: str
) -> None:
    # Ctrl-C in a terminal, or a service manager stopping a unit, signals every process
    # of the group at once: the workers then finish their requests, which need the writer.
    data_dir = tmp_path / "data"
    server = Server(data_dir, master_key_b64, args=["--workers", "2"], new_session=True).start()
    token = server.create_token("ingest", "app", "web")
    statuses: list[int] = []
    answered = threading.Event()

    def post_until_refused() -> None:
        while True:
            events = [event(at=datetime.now(UTC)) for _ in range(50)]
            try:
                statuses.append(server.post_events(events, token).status_code)
            except httpx.TransportError:
                return  # the server stopped taking requests: nothing more was acknowledged
            if len(statuses) >= 20:
                answered.set()

    posters = [threading.Thread(target=post_until_refused) for _ in range(4)]
    for poster in posters:
        poster.start()
    assert answered.wait(30), "the server answered fewer than 20 batches in 30 s"
    os.killpg(server.pid, signal.SIGINT)
    for poster in posters:
        poster.join(30)
    server.stop()

    assert 503 not in statuses, statuses
    assert set(statuses) == {200}
    log = server.log_text()
    assert "starting a new one" not in log and "Traceback" not in log, log
    assert stored(data_dir) >= 50 * len(statuses)


def test_the_writer_never_imports_code_from_the_working_directory(
    tmp_path: Path, master_key_b64: str
) -> None:
    # The server runs in its data dir; a `service` package lying there must not replace
    # the installed one in the writer (python -m would put the directory on sys.path).
    data_dir = tmp_path / "data"
    planted = data_dir / "service"
    planted.mkdir(parents=True)
    (planted / "__init__.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n")
    with Server(data_dir, master_key_b64) as server:
        token = server.create_token("ingest", "app", "web")
        assert server.post_events([event(at=datetime.now(UTC))], token).status_code == 200
    assert not (tmp_path / "imported").exists()
    assert stored(data_dir) == 1


def nice(pid: int) -> int:
    stat = (Path("/proc") / str(pid) / "stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[16])


def test_workers_yield_to_the_writer_by_the_niceness_the_operator_sets(
    tmp_path: Path, master_key_b64: str
) -> None:
    env = {"TACIT_WORKER_NICE": "7"}
    with Server(tmp_path / "data", master_key_b64, env=env) as server:
        assert server.process is not None
        (writer,) = server.writer_pids()
        base = nice(os.getpid())
        assert nice(server.process.pid) == base + 7  # one worker: the serving process
        assert nice(writer) == base


def test_the_writer_answers_each_batch_with_its_flags_and_workers_see_it_go(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "tacit.db", "normal")
    store.migrate()
    path = str(tmp_path / "w.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    control, stop_end = os.pipe()
    stop = os.fdopen(stop_end, "wb")  # closing it (once or twice) stops the writer
    thread = threading.Thread(target=serve, args=(listener, store.events, control))
    thread.start()

    async def scenario() -> None:
        writer = RemoteWriter(path)
        first, second = await asyncio.gather(
            writer.write(batch([1, 2, 3])), writer.write(batch([3, 4]))
        )
        # Sent in this order on one connection: the first holds the new copy of key 3.
        assert (first, second) == ([True, True, True], [False, True])
        assert await writer.write(batch([1, 5])) == [False, True]
        stop.close()
        thread.join()
        listener.close()
        with pytest.raises(WriterUnavailable):
            await writer.write(batch([6]))
        writer.close()

    try:
        asyncio.run(scenario())
    finally:
        stop.close()
        thread.join()
        os.close(control)
    assert store.events.count() == 5
    store.close()
