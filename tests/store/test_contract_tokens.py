"""Tokens: stored as digests, resolved to principals, revoked at once, audited."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from service.store.base import Conflict, NotFound, Role, Store

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def test_a_token_resolves_to_its_principal(store: Store) -> None:
    store.tokens.create("app", Role.INGEST, digest("t1"), "app-source", NOW, "cli")
    principal = store.tokens.principal(digest("t1"))
    assert principal is not None
    assert (principal.name, principal.role) == ("app", Role.INGEST)
    assert principal.source_id is not None


def test_two_ingest_tokens_of_one_source_share_its_id(store: Store) -> None:
    store.tokens.create("a", Role.INGEST, digest("t1"), "shared", NOW, "cli")
    store.tokens.create("b", Role.INGEST, digest("t2"), "shared", NOW, "cli")
    first, second = store.tokens.principal(digest("t1")), store.tokens.principal(digest("t2"))
    assert first is not None and second is not None
    assert first.source_id == second.source_id


def test_an_unknown_token_resolves_to_nobody(store: Store) -> None:
    assert store.tokens.principal(digest("nope")) is None


def test_a_revoked_token_resolves_to_nobody(store: Store) -> None:
    store.tokens.create("analyst", Role.ANALYST, digest("t1"), None, NOW, "cli")
    store.tokens.revoke("analyst", NOW, "cli")
    assert store.tokens.principal(digest("t1")) is None
    [info] = store.tokens.list()
    assert info.revoked_at is not None


def test_a_token_revoked_on_one_node_stops_resolving_at_once_on_another(
    open_node: Callable[[], Store],
) -> None:
    revoker, server = open_node(), open_node()
    revoker.tokens.create("analyst", Role.ANALYST, digest("t1"), None, NOW, "cli")
    for _ in range(3):  # resolved on every request: whatever a node keeps, it has it now
        assert server.tokens.principal(digest("t1")) is not None
    revoker.tokens.revoke("analyst", NOW, "cli")
    assert server.tokens.principal(digest("t1")) is None


def test_revoking_an_unknown_token_says_so(store: Store) -> None:
    with pytest.raises(NotFound):
        store.tokens.revoke("ghost", NOW, "cli")


def test_a_token_name_is_taken_once(store: Store) -> None:
    store.tokens.create("x", Role.ADMIN, digest("t1"), None, NOW, "cli")
    with pytest.raises(Conflict):
        store.tokens.create("x", Role.ADMIN, digest("t2"), None, NOW, "cli")


def test_two_nodes_creating_one_name_at_once_make_one_token(
    open_node: Callable[[], Store],
) -> None:
    nodes = [open_node() for _ in range(4)]

    def create(i: int) -> bool:
        try:
            nodes[i].tokens.create("same", Role.ADMIN, digest(f"t{i}"), None, NOW, "cli")
        except Conflict:
            return False
        return True

    with ThreadPoolExecutor(len(nodes)) as pool:
        created = list(pool.map(create, range(len(nodes))))
    assert created.count(True) == 1
    assert [t.name for t in nodes[0].tokens.list()] == ["same"]


def test_token_changes_are_audited_without_the_token(store: Store) -> None:
    store.tokens.create("app", Role.INGEST, digest("secret"), "app", NOW, "admin-1")
    store.tokens.revoke("app", NOW, "admin-1")
    entries = store.audit.page(0, 10)
    assert [(e.kind, e.actor) for e in entries] == [
        ("token_created", "admin-1"),
        ("token_revoked", "admin-1"),
    ]
    assert digest("secret").hex() not in repr(entries)


# --- publishable keys ------------------------------------------------------------------

PAGES = ["https://app.example.com", "http://localhost:5173"]


def test_a_publishable_key_resolves_with_its_origins_and_source(store: Store) -> None:
    store.tokens.create("web", Role.INGEST, digest("k1"), "web", NOW, "cli", origins=PAGES)
    principal = store.tokens.principal(digest("k1"))
    assert principal is not None and principal.publishable
    assert principal.origins == frozenset(PAGES)
    assert principal.role is Role.INGEST and principal.source_id is not None


def test_a_secret_token_resolves_without_origins(store: Store) -> None:
    store.tokens.create("app", Role.INGEST, digest("t1"), "web", NOW, "cli")
    principal = store.tokens.principal(digest("t1"))
    assert principal is not None and not principal.publishable and principal.origins is None


def test_the_listing_shows_kind_and_origins_never_the_key(store: Store) -> None:
    store.tokens.create("web", Role.INGEST, digest("k1"), "web", NOW, "cli", origins=PAGES)
    store.tokens.create("app", Role.INGEST, digest("t1"), "web", NOW, "cli")
    listed = {t.name: t for t in store.tokens.list()}
    assert listed["web"].publishable and listed["web"].origins == tuple(sorted(PAGES))
    assert not listed["app"].publishable and listed["app"].origins is None
    assert digest("k1").hex() not in repr(listed)


def test_listed_origins_are_those_of_active_publishable_keys_only(store: Store) -> None:
    assert store.tokens.publishable_origins() == frozenset()
    store.tokens.create("web", Role.INGEST, digest("k1"), "web", NOW, "cli", origins=PAGES[:1])
    store.tokens.create("dev", Role.INGEST, digest("k2"), "web", NOW, "cli", origins=PAGES[1:])
    store.tokens.create("app", Role.INGEST, digest("t1"), "web", NOW, "cli")
    assert store.tokens.publishable_origins() == frozenset(PAGES)
    store.tokens.revoke("dev", NOW, "cli")
    assert store.tokens.publishable_origins() == frozenset(PAGES[:1])
    assert store.tokens.principal(digest("k2")) is None


def test_a_publishable_key_creation_is_audited_with_its_origins(store: Store) -> None:
    store.tokens.create("web", Role.INGEST, digest("k1"), "web", NOW, "cli", origins=PAGES)
    [entry] = store.audit.page(0, 10)
    assert entry.kind == "token_created"
    assert entry.detail["origins"] == sorted(PAGES)
    assert digest("k1").hex() not in repr(entry)
