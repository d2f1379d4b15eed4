"""A store made before publishable keys existed keeps its tokens working once migrated."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pg
import pytest
from store.contract import store_at_version

from service.store.base import Role, Store

BEFORE_ORIGINS = 4  # the schema version (both backends) whose tokens had no origins
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@pytest.fixture(params=["sqlite", "postgres"])
def old_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    store = store_at_version(request, tmp_path, BEFORE_ORIGINS)
    yield store
    store.close()


def test_tokens_made_before_publishable_keys_stay_secret_and_keep_working(
    old_store: Store,
) -> None:
    pg.store_rows(
        old_store,
        "INSERT INTO tokens (name, role, source_id, digest, created_at) VALUES (?, ?, ?, ?, ?)",
        "old-admin",
        "admin",
        None,
        digest("t-old"),
        0,
    )
    old_store.migrate()
    principal = old_store.tokens.principal(digest("t-old"))
    assert principal is not None and principal.role is Role.ADMIN
    assert not principal.publishable
    [info] = old_store.tokens.list()
    assert info.origins is None
    assert old_store.tokens.publishable_origins() == frozenset()
    old_store.tokens.create(
        "web", Role.INGEST, digest("k"), "web", NOW, "cli", origins=["https://a.example"]
    )
    assert old_store.tokens.publishable_origins() == frozenset({"https://a.example"})
