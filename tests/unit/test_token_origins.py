"""A publishable key's origins are normalised as a browser's Origin header gives them."""

from __future__ import annotations

import pytest

from service.ops.tokens import TokenRefused, create_token, normalise_origin
from service.store.base import Role
from service.store.sqlite import SQLiteStore


@pytest.mark.parametrize(
    ("given", "origin"),
    [
        ("https://app.example.com", "https://app.example.com"),
        ("HTTPS://App.Example.COM", "https://app.example.com"),
        ("https://app.example.com:443", "https://app.example.com"),
        ("http://localhost:5173", "http://localhost:5173"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://[::1]:3000", "http://[::1]:3000"),
    ],
)
def test_an_origin_is_kept_as_a_browser_sends_it(given: str, origin: str) -> None:
    assert normalise_origin(given) == origin


@pytest.mark.parametrize(
    "given",
    [
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://*.example.com",
        "app.example.com",
        "ftp://app.example.com",
        "null",
        "https://user@app.example.com",
        "https://app.example.com?x=1",
        "https://app.example.com:99999",
        "",
    ],
)
def test_anything_but_scheme_host_port_is_refused_with_an_example(given: str) -> None:
    with pytest.raises(TokenRefused, match="scheme://host"):
        normalise_origin(given)


def test_only_ingest_keys_can_be_publishable_and_need_an_origin(sqlite_store: SQLiteStore) -> None:
    with pytest.raises(TokenRefused, match="only ingest"):
        create_token(sqlite_store, "x", Role.ANALYST, None, origins=["https://a.example"])
    with pytest.raises(TokenRefused, match="at least one --origin"):
        create_token(sqlite_store, "y", Role.INGEST, None, origins=[])
    key = create_token(sqlite_store, "z", Role.INGEST, None, origins=["https://a.example"])
    assert key.startswith("tpk_")
    assert create_token(sqlite_store, "w", Role.INGEST, None).startswith("tct_")
