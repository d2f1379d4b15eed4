"""Shared fixtures: a movable clock, settings on a temp dir, an app with one token per role."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from privacy.keyring import MasterKey
from service.app import create_app
from service.cli.tokens import create_token
from service.settings import DEFAULT_POLICY, Settings
from service.store.base import Role

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


def make_settings(
    tmp_path: Path, master_key_b64: str, policy: Path = DEFAULT_POLICY, **kw: object
) -> Settings:
    return Settings(
        data_dir=tmp_path,
        policy=policy,
        master_key=master_key_b64,  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def settings(tmp_path: Path, master_key_b64: str) -> Settings:
    return make_settings(tmp_path, master_key_b64)


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
