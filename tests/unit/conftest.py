"""Unit tests that need a store get the SQLite one (the contract suites in tests/store
run on every backend)."""

from __future__ import annotations

import pytest

from service.store.sqlite import SQLiteStore


@pytest.fixture
def store(sqlite_store: SQLiteStore) -> SQLiteStore:
    return sqlite_store
