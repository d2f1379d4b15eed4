"""The audit log is a hash chain: `tacit audit verify` passes on an intact log and exits
non-zero, naming the first broken entry, when any row is edited, removed or re-hashed
behind the service's back (with SQLite, or by editing the file's bytes)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from service.cli import main
from service.ops.audit import GENESIS, canonical, chain_hash
from service.ops.tokens import create_token
from service.store.base import Role
from service.store.sqlite import SQLiteStore
from service.store.sqlite.db import to_ms

NAMES = ["tok-alpha", "tok-bravo", "tok-charlie", "tok-delta"]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """A store whose audit log holds four token_created entries (seq 1 to 4)."""
    store = SQLiteStore(tmp_path / "tacit.db")
    store.migrate()
    for name in NAMES:
        create_token(store, name, Role.ANALYST, None)
    store.close()
    return tmp_path / "tacit.db"


def verify(db: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["audit", "verify", "--data-dir", str(db.parent)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def edit(db: Path, sql: str, *params: object) -> None:
    """Change the database directly, bypassing the service."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute(sql, params)
    conn.close()


def test_intact_log_verifies(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(db, capsys) == (0, "audit log intact: 4 entries, chain intact\n")


def test_an_edited_row_breaks_verify_at_that_entry(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(db, "UPDATE audit_log SET detail = replace(detail, 'analyst', 'admin') WHERE seq = 2")
    code, out = verify(db, capsys)
    assert code == 1 and "BROKEN at seq 2" in out


def test_a_deleted_row_breaks_verify_where_it_is_missing(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(db, "DELETE FROM audit_log WHERE seq = 3")
    code, out = verify(db, capsys)
    assert code == 1 and "BROKEN at seq 4" in out and "entry 3 is missing" in out


def test_a_row_rewritten_with_a_fresh_hash_breaks_the_next_entry(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conn = sqlite3.connect(db)
    seq, at, kind, actor, sha, prev = conn.execute(
        "SELECT seq, at, kind, actor, policy_sha256, prev_hash FROM audit_log WHERE seq = 2"
    ).fetchone()
    forged = {"name": "tok-bravo", "role": "admin", "source": None}
    digest = chain_hash(prev, canonical(seq, at, kind, actor, sha, forged))
    with conn:
        conn.execute(
            "UPDATE audit_log SET detail = ?, hash = ? WHERE seq = 2",
            (json.dumps(forged, sort_keys=True), digest),
        )
    conn.close()
    code, out = verify(db, capsys)
    assert code == 1 and "BROKEN at seq 3" in out


def test_editing_the_file_bytes_makes_the_real_command_exit_non_zero(db: Path) -> None:
    data = db.read_bytes()
    assert not Path(f"{db}-wal").exists() or Path(f"{db}-wal").stat().st_size == 0
    original = b'"name": "tok-bravo"'
    assert data.count(original) == 1  # the audit detail; the tokens table has the bare name
    db.write_bytes(data.replace(original, b'"name": "tok-bravX"'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TACIT_")}
    tacit = Path(sys.executable).with_name("tacit")
    done = subprocess.run(
        [str(tacit), "audit", "verify", "--data-dir", str(db.parent)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "BROKEN at seq 2" in done.stderr


def test_genesis_entry_chains_from_zeros(db: Path) -> None:
    store = SQLiteStore(db)
    first = store.audit.page(0, 1)[0]
    store.close()
    body = canonical(
        first.seq, to_ms(first.at), first.kind, first.actor, first.policy_sha256, first.detail
    )
    assert first.prev_hash == GENESIS and first.hash == chain_hash(GENESIS, body)


def test_show_prints_entries_after_a_seq_as_json_lines(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["audit", "show", "--after", "1", "--limit", "2", "--json"]
    assert main([*args, "--data-dir", str(db.parent)]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["seq"], e["kind"], e["detail"]["name"]) for e in lines] == [
        (2, "token_created", "tok-bravo"),
        (3, "token_created", "tok-charlie"),
    ]
