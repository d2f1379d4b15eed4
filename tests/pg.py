"""PostgreSQL for tests: a fresh database per test on the server TACIT_TEST_POSTGRES_URL names.

    TACIT_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres
    TACIT_REQUIRE_POSTGRES=1   # CI: a missing server is a failure, not a skip

``bash .ci/run`` starts a throwaway server and sets both. Each test gets its own database,
copied from a template that was migrated once per test process (fast: no migration per
test), and dropped after the test with every connection still open to it.

A test that must stop the database under a running service gets a cluster of its own
instead (:class:`PgCluster`, fixture ``pg_cluster``), made from the installed server
binaries; without them it skips, or fails when TACIT_REQUIRE_POSTGRES=1.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

import pytest

ENV_URL = "TACIT_TEST_POSTGRES_URL"
ENV_REQUIRE = "TACIT_REQUIRE_POSTGRES"
HOW = f"set {ENV_URL}=postgresql://USER@HOST:PORT/postgres, or run `bash .ci/run`"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip with ``reason``; fail instead when TACIT_REQUIRE_POSTGRES=1 (CI)."""
    if os.environ.get(ENV_REQUIRE) == "1":
        pytest.fail(f"{reason} ({ENV_REQUIRE}=1 makes this a failure)", pytrace=False)
    pytest.skip(reason)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


class PgServer:
    """The test server: makes and drops per-test databases from one migrated template."""

    def __init__(self, url: str) -> None:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ValueError(f"{ENV_URL} must be a postgresql:// URL")
        self.url = url
        self._template: str | None = None

    def _admin(self) -> Any:
        import psycopg

        return psycopg.connect(self.url, autocommit=True, connect_timeout=10)

    def _template_name(self) -> str:
        if self._template is None:
            from service.store.postgres import PostgresStore

            name = f"tacit_tmpl_{uuid.uuid4().hex[:12]}"
            with self._admin() as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            store = PostgresStore(with_database(self.url, name))
            try:
                store.migrate()
            finally:
                store.close()
            self._template = name
        return self._template

    def create_database(self, *, migrated: bool = True) -> str:
        """A new database with the current schema (or, not ``migrated``, none); its URL."""
        template = self._template_name() if migrated else "template0"
        name = f"tacit_test_{uuid.uuid4().hex[:16]}"
        with self._admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return with_database(self.url, name)

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        with self._admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        if self._template is not None:
            with self._admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self._template}" WITH (FORCE)')
            self._template = None


def connect_server() -> PgServer:
    """The configured server, or skip (fail in CI) saying how to configure one."""
    url = os.environ.get(ENV_URL)
    if not url:
        skip_or_fail(f"no PostgreSQL server for the PostgreSQL tests: {HOW}")
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        skip_or_fail("psycopg is not installed: pip install -e '.[postgres]'")
    return PgServer(url)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The PostgreSQL test server (skips, or fails in CI, when there is none)."""
    server = connect_server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def postgres_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, migrated database of its own for this test; dropped afterwards."""
    url = pg_server.create_database()
    try:
        yield url
    finally:
        pg_server.drop_database(url)


def store_rows(store: Any, query: str, *params: object) -> list[tuple[Any, ...]]:
    """Run one statement straight on a store's database, on either backend, on a connection
    of its own (as another process would); its rows, if it returns any. Writes commit.

    Write the query with ``?`` placeholders (SQLite style); on PostgreSQL they become ``%s``.
    """
    if hasattr(store, "path"):  # SQLite
        import sqlite3

        conn = sqlite3.connect(store.path)
        try:
            rows = conn.execute(query, params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()
    import psycopg

    with psycopg.connect(store.url, autocommit=True) as pg_conn:
        cursor = pg_conn.execute(query.replace("?", "%s"), params)  # type: ignore[arg-type]
        return cursor.fetchall() if cursor.description is not None else []


def store_dump(store: Any) -> bytes:
    """Everything the database holds, as bytes to search for what must never be stored.

    SQLite: the database file and its WAL. PostgreSQL: every row of every table, as text.
    """
    if hasattr(store, "path"):
        path = Path(store.path)
        return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal")) if p.exists())
    import psycopg

    with psycopg.connect(store.url, autocommit=True) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT c.oid::regclass::text FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'r' AND n.nspname = current_schema()"
            )
        ]
        chunks = [
            str(
                conn.execute(
                    f"SELECT coalesce(string_agg(t::text, E'\\n'), '') FROM {t} t"
                ).fetchone()[0]
            )  # type: ignore[index]
            for t in tables
        ]
    return "\n".join(chunks).encode()


# --- a private cluster a test may stop and start ------------------------------------------

PG_PACKAGE = "postgresql-15"  # what .ci/run installs


def server_binaries() -> Path | None:
    """The directory of the installed PostgreSQL server's initdb and pg_ctl, if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=_major, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        found.append(Path(on_path))
    for initdb in found:
        if os.access(initdb, os.X_OK) and (initdb.parent / "pg_ctl").exists():
            return initdb.parent
    return None


def _major(initdb: Path) -> int:
    version = initdb.parent.parent.name
    return int(version) if version.isdigit() else 0


class PgCluster:
    """A PostgreSQL cluster of the test's own, in a temp dir, on a free 127.0.0.1 port:
    unlike the shared test server, it may be stopped and started again under a running
    service (``stop()`` is ``pg_ctl stop -m immediate``: a crash, as a failover is seen).

    As root it runs as the ``postgres`` user (the server refuses root), as .ci/run does.
    Its directory is made with :func:`tempfile.mkdtemp`, not in pytest's tmp_path, whose
    parents only root may enter. Commits are synchronous (unlike .ci/run's cluster): each
    is written to the OS before it is acknowledged, so an immediate stop loses none of
    them; ``fsync=off`` only risks what a machine crash would lose.
    """

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="tacit-pg-outage."))
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self.port = 0
        self.running = False
        self._as_pg: list[str] = []
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                skip_or_fail("running as root, and there is no postgres user to run a cluster")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
            self._as_pg = ["runuser", "-u", "postgres", "--"]

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> PgCluster:
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
            "--no-locale", "--no-sync",
        )  # fmt: skip
        return self

    def start(self) -> PgCluster:
        """Start the cluster: on a free port the first time, on the same port after."""
        from server import free_port

        fresh = not self.port
        for _ in range(3 if fresh else 1):
            if fresh:
                self.port = free_port()
            try:
                self._run(
                    "pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                    "-o", f"-h 127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off",
                    "start",
                )  # fmt: skip
            except RuntimeError:
                if not fresh or "already in use" not in self.log_text():
                    raise
                continue  # someone took the port between probe and bind
            self.running = True
            return self
        raise RuntimeError(f"the cluster did not start; log:\n{self.log_text()}")

    def stop(self, mode: str = "immediate") -> None:
        if self.running:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
            self.running = False

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as_pg, str(self.bindir / tool), *args],
            capture_output=True,
            timeout=120,
            check=False,
            cwd=self.dir,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} exited {done.returncode}: {done.stdout.decode()}{done.stderr.decode()}"
            )


@pytest.fixture(scope="module")
def pg_cluster() -> Iterator[PgCluster]:
    """A running private cluster for this test module (skips, or fails in CI, without
    PostgreSQL's server binaries); tests may stop it, and find it running again after."""
    bindir = server_binaries()
    if bindir is None:
        skip_or_fail(f"no PostgreSQL server binaries (initdb, pg_ctl): install {PG_PACKAGE}")
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        skip_or_fail("psycopg is not installed: pip install -e '.[postgres]'")
    cluster = PgCluster(bindir)
    try:
        yield cluster.init().start()
    finally:
        cluster.remove()
