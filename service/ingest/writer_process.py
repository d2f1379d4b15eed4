"""The SQLite writer process: under `tacit serve`, one process makes every ingestion write.

SQLite has one writer at a time. With each worker writing from a thread of its own
(:class:`service.ingest.writer.GroupWriter`), the workers took turns on the file's write
lock, each commit made the other worker drop its page cache, and the writer thread
shared its process's GIL with the event loop: a write cost three times what it costs
alone, and the event loop ran slower beside it (bench/ingest.py, docs/benchmarks.md).
So `tacit serve` on SQLite starts this process (:class:`WriterSupervisor`) and workers
hand their prepared batches to it (:class:`RemoteWriter`) over a Unix socket in a
private directory.

The process folds whatever batches are waiting, from every worker, into one transaction,
commits it durably, and only then answers each batch with its flags; a worker answers
its client only after that. If the process dies, every batch it had not answered is
refused with 503 (nothing of it was acknowledged, so the client retries safely) and the
supervisor starts a new one. It ignores SIGINT and SIGTERM, which reach it with the rest of
its process group (Ctrl-C, a service manager's stop) while the workers still finish their
requests through it: it stops when the supervisor closes its stdin, after the workers, or
when the supervisor dies.

Frames are a 4-byte big-endian length and a :mod:`marshal` payload (ints, floats,
strings, None; no code runs on loading): a request is ``(id, source_id, keys, rows,
quarantine)``, an answer ``(id, flags)`` or ``(id, error type name)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import marshal
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from service.ingest.writer import maintain
from service.runtime import settle_heap
from service.store.base import EventRepository, WriteBatch

log = logging.getLogger("tacit.writer")

MAX_GROUP = 256  # batches folded into one transaction at most
_HEADER = 4
_READ_BYTES = 1 << 20
_START_TIMEOUT_S = 30.0
_RESTART_DELAY_S = 0.5


class WriterUnavailable(RuntimeError):
    """The writer process is gone or failed the write: the batch was not acknowledged."""


def _frame(payload: Any) -> bytes:
    data = marshal.dumps(payload)
    return len(data).to_bytes(_HEADER, "big") + data


# ------------------------------------------------------------------ in the writer process


class _Peer:
    """One worker's connection: bytes received and not yet a whole frame."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def frames(self) -> list[Any]:
        out = []
        buffer = self.buffer
        while len(buffer) >= _HEADER:
            size = int.from_bytes(buffer[:_HEADER], "big")
            if len(buffer) < _HEADER + size:
                break
            frame = bytes(buffer[_HEADER : _HEADER + size])
            out.append(marshal.loads(frame))  # noqa: S302 (from our workers; runs no code)
            del buffer[: _HEADER + size]
        return out


def serve(listener: socket.socket, events: EventRepository, control: int) -> None:
    """Answer write requests until the ``control`` pipe (the read end of one the
    supervisor holds) reaches its end: the supervisor closed it, or died."""
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(control, selectors.EVENT_READ)
    try:
        _serve(listener, events, selector, control)
    finally:  # workers learn at once that their unanswered batches were not written
        for key in list(selector.get_map().values()):
            if isinstance(key.data, _Peer):
                key.data.sock.close()
        selector.close()


def _serve(
    listener: socket.socket,
    events: EventRepository,
    selector: selectors.BaseSelector,
    control: int,
) -> None:
    pending: list[tuple[_Peer, int, WriteBatch]] = []
    while True:
        ended = False
        for key, _ in selector.select(timeout=0 if pending else None):
            if key.fileobj == control:
                ended = not os.read(control, 64)  # nothing is ever written to it
                continue
            if key.fileobj is listener:
                conn, _ = listener.accept()
                selector.register(conn, selectors.EVENT_READ, _Peer(conn))
                continue
            peer: _Peer = key.data
            try:
                data = peer.sock.recv(_READ_BYTES)
            except OSError:
                data = b""
            if not data:  # the worker is gone; its unanswered batches die with it
                selector.unregister(peer.sock)
                peer.sock.close()
                pending = [p for p in pending if p[0] is not peer]
                continue
            peer.buffer += data
            for request_id, source_id, keys, rows, quarantine in peer.frames():
                pending.append((peer, request_id, WriteBatch(source_id, keys, rows, quarantine)))
        if ended:  # write what has arrived, then stop
            for start in range(0, len(pending), MAX_GROUP):
                _commit(events, pending[start : start + MAX_GROUP])
            return
        if pending:
            group, pending = pending[:MAX_GROUP], pending[MAX_GROUP:]
            _commit(events, group)
            if not pending:
                maintain(events)


def _commit(events: EventRepository, group: list[tuple[_Peer, int, WriteBatch]]) -> None:
    outcomes: list[Any]
    try:
        outcomes = list(events.write([batch for _, _, batch in group]))
    except Exception as exc:  # the transaction rolled back: nothing of the group is stored
        log.error("a group of %d batches could not be written: %s", len(group), type(exc).__name__)
        outcomes = [type(exc).__name__] * len(group)
    for (peer, request_id, _), outcome in zip(group, outcomes, strict=True):
        with contextlib.suppress(OSError):  # a worker that went away needs no answer
            peer.sock.sendall(_frame((request_id, outcome)))


def main(argv: list[str] | None = None) -> int:
    """``python -m service.ingest.writer_process SOCKET``: settings come from TACIT_*."""
    from service.logging import configure
    from service.settings import Settings
    from service.store import open_store

    (socket_path,) = argv if argv is not None else sys.argv[1:]
    settings = Settings()
    configure(settings.log_level)
    # Ctrl-C in a terminal and a service manager's stop signal every process of the group
    # at once, but the workers, which get them too, finish their requests through this
    # process: it stops only when the supervisor closes its stdin (or dies).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    store = open_store(
        settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    settle_heap()  # every write unpacks thousands of objects (rows, keys)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(socket_path)
        os.chmod(socket_path, 0o600)
        listener.listen(128)
        serve(listener, store.events, control=sys.stdin.fileno())
    finally:
        listener.close()
        store.close()
        # The directory is the supervisor's, made for this socket alone; if the supervisor
        # was killed, nobody else is left to remove it.
        with contextlib.suppress(OSError):
            os.unlink(socket_path)
            os.rmdir(os.path.dirname(socket_path))
    return 0


# --------------------------------------------------------------------- in `tacit serve`


class WriterSupervisor:
    """Starts the writer process, starts it again if it dies, stops it at shutdown."""

    def __init__(self) -> None:
        self._dir = Path(tempfile.mkdtemp(prefix="tacit-writer-"))  # mode 0700
        self.socket_path = str(self._dir / "writer.sock")
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._monitor = threading.Thread(target=self._watch, name="tacit-writer-watch", daemon=True)

    def start(self) -> None:
        """Start the process and return once it accepts connections."""
        self._spawn()
        self._monitor.start()

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the process (after the workers: it writes what it has received first)."""
        self._stopping.set()
        process = self._process
        if process is not None and process.poll() is None:
            _close(process)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self._dir, ignore_errors=True)

    def _spawn(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        # -P: without the working directory on sys.path, so the writer imports the same
        # code as the workers and never a `service` package that happens to lie there.
        command = [sys.executable, "-P", "-m", "service.ingest.writer_process", self.socket_path]
        # Its stdin is its lifeline: closed by stop(), or by the kernel if this process dies.
        process = subprocess.Popen(command, stdin=subprocess.PIPE)  # noqa: S603 (our module)
        self._process = process
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise WriterUnavailable(f"the writer process exited with code {process.returncode}")
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(self.socket_path)
                    return
                except OSError:
                    pass
            time.sleep(0.02)
        raise WriterUnavailable(f"the writer process did not start in {_START_TIMEOUT_S:.0f} s")

    def _watch(self) -> None:
        while not self._stopping.is_set():
            process = self._process
            assert process is not None
            code = process.wait()
            _close(process)
            if self._stopping.is_set():
                return
            log.error("the writer process exited with code %s: starting a new one", code)
            time.sleep(_RESTART_DELAY_S)
            try:
                self._spawn()
            except WriterUnavailable as exc:
                log.error("%s; trying again", exc)


def _close(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()


# ---------------------------------------------------------------------- in each worker


class _Connection:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.waiting: dict[int, asyncio.Future[list[bool]]] = {}


class RemoteWriter:
    """A worker's side: sends batches to the writer process and awaits their answers."""

    def __init__(self, socket_path: str) -> None:
        self._path = socket_path
        self._ids = itertools.count()
        self._connection: _Connection | None = None
        self._connecting: asyncio.Lock | None = None
        self._readers: set[asyncio.Task[None]] = set()

    async def write(self, batch: WriteBatch) -> list[bool]:
        """Write one batch; returns a flag per row (True stored, False duplicate)."""
        connection = await self._connect()
        request_id = next(self._ids)
        future: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        connection.waiting[request_id] = future
        try:
            try:
                connection.writer.write(
                    _frame((request_id, batch.source_id, batch.keys, batch.rows, batch.quarantine))
                )
                await connection.writer.drain()
            except OSError as exc:
                raise WriterUnavailable("the writer process went away") from exc
            return await future
        finally:
            connection.waiting.pop(request_id, None)
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # retrieved: the caller has its own error already

    def close(self) -> None:
        if self._connection is not None:
            self._connection.writer.close()
            self._connection = None
        for task in self._readers:
            task.cancel()

    async def _connect(self) -> _Connection:
        if self._connection is not None:
            return self._connection
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._connection is None:
                try:
                    reader, writer = await asyncio.open_unix_connection(self._path)
                except OSError as exc:
                    raise WriterUnavailable("the writer process is not reachable") from exc
                connection = self._connection = _Connection(writer)
                task = asyncio.create_task(self._read(reader, connection))
                self._readers.add(task)
                task.add_done_callback(self._readers.discard)
            return self._connection

    async def _read(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        try:
            while True:
                header = await reader.readexactly(_HEADER)
                payload = await reader.readexactly(int.from_bytes(header, "big"))
                request_id, outcome = marshal.loads(payload)  # noqa: S302 (our writer's answer)
                future = connection.waiting.get(request_id)
                if future is None or future.done():
                    continue
                if isinstance(outcome, str):
                    future.set_exception(WriterUnavailable(f"the write failed ({outcome})"))
                else:
                    future.set_result(outcome)
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            if self._connection is connection:
                self._connection = None
            connection.writer.close()
            for future in connection.waiting.values():
                if not future.done():
                    future.set_exception(WriterUnavailable("the writer process went away"))


if __name__ == "__main__":
    raise SystemExit(main())
