"""The real server for tests that are about the server: `tacit serve` as a subprocess.

    with Server(tmp_path / "data", master_key_b64) as server:
        token = server.create_token("ingest", "app")
        server.post_events([event(at=now)], token)
        server.kill(signal.SIGKILL)
        server.restart()

The server binds 127.0.0.1 on a free port and gets its configuration only from TACIT_*
variables (the parent's own TACIT_* variables are not inherited). Its stdout and stderr
go to ``server.log`` inside the data dir, so scans of the data dir cover the logs too.
Tokens are made with the real CLI (`tacit token create ... --data-dir`), or in-process
with :func:`create_token_in_process`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

from service.settings import DEFAULT_POLICY
from service.store import open_store
from service.store.base import Role

REPO = Path(__file__).resolve().parent.parent
LOG_NAME = "server.log"


def tacit_executable() -> Path:
    """The `tacit` console script of the interpreter running the tests (the project's .venv)."""
    beside = Path(sys.executable).with_name("tacit")
    return beside if beside.exists() else REPO / ".venv" / "bin" / "tacit"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ignore_sigint() -> None:  # in the child, between fork and exec
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class ServerError(RuntimeError):
    """The server did not start, or a CLI call failed; the message holds the log's tail."""


class Server:
    """One `tacit serve` process at a time on one data dir; restartable."""

    def __init__(
        self,
        data_dir: Path,
        master_key_b64: str,
        *,
        policy: Path = DEFAULT_POLICY,
        database_url: str | None = None,
        env: Mapping[str, str] | None = None,
        args: Iterable[str] = (),
        startup_timeout: float = 30.0,
        new_session: bool = False,
        sigint_ignored: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.new_session = new_session  # its own process group, as a terminal's job is
        # Started as a background job of a non-interactive shell is: SIGINT ignored.
        self.sigint_ignored = sigint_ignored
        self.policy = policy
        self.database_url = database_url
        self.args = list(args)
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.log_path = data_dir / LOG_NAME
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("TACIT_") and k not in {"HOST", "PORT"}
        }
        self.env.update(
            TACIT_DATA_DIR=str(data_dir),
            TACIT_MASTER_KEY=master_key_b64,
            TACIT_POLICY=str(policy),
            # The sealer moves rows out of the store a test may count: it runs only in
            # the tests that set a short interval (tests/system/test_lake_crash.py).
            TACIT_SEAL_INTERVAL_S="86400",
        )
        if database_url is not None:
            self.env["TACIT_DATABASE_URL"] = database_url
        self.env.update(env or {})

    # --- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None, "the server was never started"
        return self.process.pid

    def start(self) -> Self:
        """Start the server and wait until /healthz answers; retries on a taken port."""
        if self.running:
            raise ServerError("the server is already running; stop or kill it first")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(3):
            if attempt:
                self.port = free_port()  # someone took ours between probe and bind
            self._spawn()
            if self._wait_healthy():
                return self
            if "address already in use" not in self.log_tail().lower():
                break
        raise ServerError(f"the server did not become healthy; log tail:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> int:
        """Graceful stop (SIGTERM); SIGKILL if it has not exited within ``timeout``."""
        if not self.running:
            return self._reap()
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
        return self._reap()

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 15.0) -> int:
        """Send ``sig`` to the server process and wait for it to exit; its exit code."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(sig)
            self.process.wait(timeout)
        return self._reap()

    def writer_pids(self) -> list[int]:
        """The SQLite writer processes this server started (service/ingest/writer_process)."""
        if self.process is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            if ppid == self.process.pid and b"service.ingest.writer_process" in cmdline:
                found.append(int(entry.name))
        return found

    def crash(self) -> int:
        """SIGKILL the whole service at once: the server, then at once its writer process
        (the server first, so no request is answered in between)."""
        writers = self.writer_pids()
        sockets = [self.writer_socket(pid) for pid in writers]
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
        for pid in writers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        code = self.kill(signal.SIGKILL)
        for socket_path in sockets:  # nobody is left to remove the writer's private dir
            if socket_path is not None:
                shutil.rmtree(socket_path.parent, ignore_errors=True)
        return code

    @staticmethod
    def writer_socket(pid: int) -> Path | None:
        """The Unix socket a writer process listens on (the last argument it was given)."""
        try:
            argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        return Path(argv[-2].decode()) if len(argv) >= 2 else None

    def restart(self, sig: int = signal.SIGTERM) -> Self:
        """Stop (with ``sig``) if still running, then start again on the same data dir."""
        if self.running:
            if sig == signal.SIGTERM:
                self.stop()
            else:
                self.kill(sig)
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def log_text(self) -> str:
        if not self.log_path.exists():
            return ""
        return self.log_path.read_bytes().decode("utf-8", "replace")

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _spawn(self) -> None:
        self._log = self.log_path.open("ab")
        tacit = str(tacit_executable())
        self.process = subprocess.Popen(
            [tacit, "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.args],
            env=self.env,
            cwd=self.data_dir,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=self.new_session,
            preexec_fn=_ignore_sigint if self.sigint_ignored else None,
        )

    def _wait_healthy(self) -> bool:
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(base_url=self.url, timeout=1.0) as client:
            while time.monotonic() < deadline:
                if not self.running:
                    self._reap()
                    return False
                try:
                    if client.get("/healthz").status_code == 200:
                        return True
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.kill()
        return False

    def _reap(self) -> int:
        code = 0
        if self.process is not None:
            code = self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    # --- requests -------------------------------------------------------------------

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        """An HTTP client on the server, sending ``token`` as bearer when given."""
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        kwargs.setdefault("timeout", 30.0)
        return httpx.Client(base_url=self.url, headers=headers, **kwargs)

    def post_events(self, events: list[dict[str, Any]], token: str) -> httpx.Response:
        """One POST /v1/events on a fresh connection."""
        with self.client(token) as client:
            return client.post("/v1/events", json={"events": events})

    # --- tokens through the real CLI ----------------------------------------------------

    def cli(self, *args: str) -> str:
        """Run `tacit ARGS --data-dir ... --policy ...`; its stdout (raises on failure)."""
        command = [str(tacit_executable()), *args, "--data-dir", str(self.data_dir)]
        command += ["--policy", str(self.policy)]
        if self.database_url is not None:
            command += ["--database-url", self.database_url]
        done = subprocess.run(
            command, env=self.env, capture_output=True, timeout=60, check=False, cwd=self.data_dir
        )
        if done.returncode != 0:
            raise ServerError(
                f"`tacit {' '.join(args)}` exited {done.returncode}: {done.stderr.decode()}"
            )
        return done.stdout.decode()

    def create_token(self, role: str, name: str, source: str | None = None) -> str:
        """A new token made by `tacit token create` (its last line of output)."""
        args = ["token", "create", "--role", role, "--name", name]
        if source is not None:
            args += ["--source", source]
        return self.cli(*args).strip().splitlines()[-1]

    def revoke_token(self, name: str) -> None:
        self.cli("token", "revoke", name)


def create_token_in_process(
    data_dir: Path, role: str, name: str, source: str | None = None, database_url: str | None = None
) -> str:
    """A new token made through the library on the server's store (no subprocess)."""
    from service.ops.tokens import create_token

    store = open_store(database_url or f"sqlite:///{data_dir / 'tacit.db'}")
    try:
        return create_token(store, name, Role(role), source)
    finally:
        store.close()
