"""Shared fixtures: a movable clock, settings on a temp dir, an app with one token per role."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pg
import pytest
from fastapi.testclient import TestClient
from pg import pg_cluster, pg_server, postgres_url  # noqa: F401  (PostgreSQL fixtures)
from spark_cluster import spark_runtime  # noqa: F401  (the Spark session of a module)

from privacy.keyring import MasterKey
from service.api.app import create_app
from service.ops.tokens import create_token
from service.settings import DEFAULT_POLICY, Settings
from service.store.base import Role
from service.store.sqlite import SQLiteStore

REPO = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


class Clock:
    """A clock tests move by hand; injected wherever the service reads time."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> None:
        self.now += timedelta(**kwargs)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def master_key_b64() -> str:
    return MasterKey.generate_base64()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SQLiteStore]:
    """A migrated SQLite store in the test's temp dir (tacit.db), closed afterwards."""
    store = SQLiteStore(tmp_path / "tacit.db")
    store.migrate()
    yield store
    store.close()


def make_settings(
    tmp_path: Path, master_key_b64: str, policy: Path = DEFAULT_POLICY, **kw: object
) -> Settings:
    # In-process apps seal only when a test says so (Sealer(...).seal(), or a short
    # interval): a seal in the background would move rows a test counts in the store.
    kw.setdefault("seal_interval_s", 86_400.0)
    return Settings(
        data_dir=tmp_path,
        policy=policy,
        master_key=master_key_b64,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def api_backends() -> list[str]:
    """SQLite always; PostgreSQL too when a test server is configured (or required)."""
    if os.environ.get(pg.ENV_URL) or os.environ.get(pg.ENV_REQUIRE) == "1":
        return ["sqlite", "postgres"]
    return ["sqlite"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only: reads SQLite internals; runs on the SQLite backend only"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked sqlite_only do not run on the PostgreSQL backend (deselected)."""
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_pg = callspec is not None and callspec.params.get("database_url") == "postgres"
        (drop if on_pg and item.get_closest_marker("sqlite_only") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(params=api_backends())
def database_url(request: pytest.FixtureRequest) -> str | None:
    """The backend of the `settings`/`api` fixtures: None is SQLite in the data dir."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def settings(tmp_path: Path, master_key_b64: str, database_url: str | None) -> Settings:
    if database_url is None:
        return make_settings(tmp_path, master_key_b64)
    return make_settings(tmp_path, master_key_b64, database_url=database_url)


@dataclass
class Api:
    client: TestClient
    tokens: dict[str, str]
    clock: Clock

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    @property
    def state(self):  # type: ignore[no-untyped-def]
        return self.client.app.state.tacit  # type: ignore[attr-defined]

    def rows(self, query: str, *params: object) -> list[tuple[Any, ...]]:
        """Rows straight from the database, on either backend (``?`` placeholders)."""
        return pg.store_rows(self.state.store, query, *params)


@pytest.fixture
def api(settings: Settings, clock: Clock) -> Iterator[Api]:
    app = create_app(settings, clock=clock)
    store = app.state.tacit.store
    tokens = {
        role.value: create_token(
            store, f"test-{role.value}", role, "app" if role is Role.INGEST else None
        )
        for role in Role
    }
    with TestClient(app) as client:
        yield Api(client, tokens, clock)
