"""SQLite keeps resolved principals in each process while the tokens' change counter
stays put (service/store/sqlite/tokens.py, generation.py)."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from service.store.base import Role
from service.store.sqlite import SQLiteStore
from service.store.sqlite.generation import Generation

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "tacit.db"


@pytest.fixture
def nodes(db: Path) -> Iterator[tuple[SQLiteStore, SQLiteStore]]:
    """Two stores on one file, as two processes of one service would open it."""
    admin, server = SQLiteStore(db), SQLiteStore(db)
    admin.migrate()
    for name in ("t1", "t2", "t3"):
        admin.tokens.create(name, Role.ANALYST, digest(name), None, NOW, "cli")
    yield admin, server
    admin.close()
    server.close()


def revoke_behind_tacits_back(db: Path, name: str) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE tokens SET revoked_at = 1 WHERE name = ?", (name,))


def test_a_resolved_principal_is_kept_until_a_token_changes(
    db: Path, nodes: tuple[SQLiteStore, SQLiteStore]
) -> None:
    admin, server = nodes
    assert server.tokens.principal(digest("t1")) is not None
    # Proof that the second lookup reads nothing: an edit that bypasses Tacit goes unseen.
    revoke_behind_tacits_back(db, "t1")
    assert server.tokens.principal(digest("t1")) is not None
    admin.tokens.revoke("t2", NOW, "cli")  # any change through Tacit invalidates all kept
    assert server.tokens.principal(digest("t1")) is None


def test_a_change_that_died_half_way_stops_all_keeping_until_the_next_change(
    db: Path, nodes: tuple[SQLiteStore, SQLiteStore]
) -> None:
    counter = f"{db}.tokens-generation"
    die_inside_a_change = (
        "import os, signal\n"
        "from pathlib import Path\n"
        "from service.store.sqlite.generation import Generation\n"
        f"with Generation(Path({counter!r})).change():\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    died = subprocess.run([sys.executable, "-c", die_inside_a_change], check=False)
    assert died.returncode == -9

    admin, server = nodes
    assert server.tokens.principal(digest("t1")) is not None
    revoke_behind_tacits_back(db, "t1")  # what the dead change may have committed
    assert server.tokens.principal(digest("t1")) is None

    admin.tokens.revoke("t2", NOW, "cli")  # a whole change: keeping resumes
    assert server.tokens.principal(digest("t3")) is not None
    revoke_behind_tacits_back(db, "t3")
    assert server.tokens.principal(digest("t3")) is not None


def test_the_counter_is_odd_exactly_while_a_change_is_under_way(tmp_path: Path) -> None:
    one, other = Generation(tmp_path / "g"), Generation(tmp_path / "g")
    assert one.read() == 0
    with one.change():
        assert other.read() == 1
    assert other.read() == 2
    with pytest.raises(RuntimeError), one.change():
        raise RuntimeError("the change failed")
    assert other.read() == 4  # a failed change still ends: readers resume keeping
    one.close()
    other.close()
