"""The store contract suite runs every test against each backend: SQLite and PostgreSQL.

``store`` is one node's store; ``open_node()`` opens another store on the same database,
as a second API node (or process) would, to test what must hold across nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from store.contract import POLICY_SHA

from service.store import open_store
from service.store.base import Store

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def backend(store_url: str) -> str:
    return "sqlite" if store_url.startswith("sqlite") else "postgres"


@pytest.fixture
def open_node(store_url: str) -> Iterator[Callable[[], Store]]:
    opened: list[Store] = []

    def open_one() -> Store:
        store = open_store(store_url, policy_sha256=POLICY_SHA)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


@pytest.fixture
def store(open_node: Callable[[], Store]) -> Store:
    return open_node()
