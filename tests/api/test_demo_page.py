"""The /demo chat page of `make run`: its files, the SDK bundle, and the publishable key
`tacit serve --dev --demo` makes for the server's own origin. Real server subprocess on
SQLite; the page itself is driven in Chromium by clients/js's end-to-end tests' harness."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from factories import event
from server import Server

from service.api.routes.demo import BUNDLE
from service.dev import demo
from service.settings import Settings
from service.store import open_store


def settings_of(server: Server, master_key_b64: str) -> Settings:
    return Settings(data_dir=server.data_dir, master_key=master_key_b64, dev=True)  # type: ignore[arg-type]


def test_the_page_and_its_script_are_served_under_a_strict_csp(
    tmp_path: Path, master_key_b64: str
) -> None:
    with Server(tmp_path / "data", master_key_b64) as server, server.client() as client:
        page = client.get("/demo")
        assert page.status_code == 200
        assert 'src="/demo/tacit.min.js"' in page.text
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert client.get("/demo/demo.js").status_code == 200
        bundle = client.get("/demo/tacit.min.js")
        if BUNDLE.exists():
            assert bundle.status_code == 200 and "Tacit" in bundle.text
        else:
            assert bundle.status_code == 404 and "make run" in bundle.text
        missing = client.get("/demo/secrets.txt")
        assert missing.status_code == 404 and "open /demo" in missing.text


def test_without_a_demo_key_the_config_says_how_to_get_one(
    tmp_path: Path, master_key_b64: str
) -> None:
    with Server(tmp_path / "data", master_key_b64) as server, server.client() as client:
        answer = client.get("/demo/config.json")
        assert answer.status_code == 404
        assert "make run" in answer.json()["error"]["message"]


def test_the_demo_key_is_made_once_and_posts_from_the_page_origin(
    tmp_path: Path, master_key_b64: str
) -> None:
    with Server(tmp_path / "data", master_key_b64) as server:
        settings = settings_of(server, master_key_b64)
        origins = demo.demo_origins("127.0.0.1", server.port)
        key = demo.browser_key(settings, origins)
        assert key.startswith("tpk_")
        assert demo.browser_key(settings, origins) == key  # a restart reuses it
        with server.client() as client:
            config = client.get("/demo/config.json").json()
            assert config == {"endpoint": server.url, "key": key}
            body = json.dumps({"events": [event(at=datetime.now(UTC))]})
            posted = client.post(
                "/v1/events",
                params={"key": key},
                content=body,
                headers={"Content-Type": "text/plain", "Origin": server.url},
            )
        assert posted.status_code == 200 and posted.json()["accepted"] == 1
        store = open_store(f"sqlite:///{server.data_dir / 'tacit.db'}")
        try:
            assert store.events.count() == 1
        finally:
            store.close()
