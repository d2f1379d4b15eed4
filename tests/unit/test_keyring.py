"""Pseudonyms and salts: stable within an epoch, unlinkable across epochs and fields,
sealed at rest, made once per epoch, refused past retention."""

from __future__ import annotations

import hashlib
import hmac
import sqlite3
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import T0

from privacy.keyring import EpochExpired, Keyring, MasterKey, MasterKeyMismatch
from privacy.policy import Identifiers
from privacy.pseudonym import derive_field_key
from service.store.sqlite import SQLiteStore

IDS = Identifiers()


@pytest.fixture
def keyring(store: SQLiteStore) -> Keyring:
    return Keyring(MasterKey.from_base64(MasterKey.generate_base64()), store.salts, IDS)


def test_pseudonym_is_stable_within_an_epoch(keyring: Keyring) -> None:
    epoch = IDS.epoch_of(T0)
    a = keyring.keys(epoch, T0).pseudonym("user_id", "alice")
    keyring.forget()  # a fresh process: the salt comes back from the store
    b = keyring.keys(epoch, T0).pseudonym("user_id", "alice")
    assert a == b


def test_pseudonym_differs_across_epochs(keyring: Keyring) -> None:
    epoch = IDS.epoch_of(T0)
    today = keyring.keys(epoch, T0).pseudonym("user_id", "alice")
    yesterday = keyring.keys(epoch - 1, T0).pseudonym("user_id", "alice")
    assert today != yesterday


def test_same_value_in_two_fields_gives_unrelated_pseudonyms(keyring: Keyring) -> None:
    keys = keyring.keys(IDS.epoch_of(T0), T0)
    assert keys.pseudonym("user_id", "x-1") != keys.pseudonym("session_id", "x-1")


def test_a_bound_hasher_gives_the_fields_pseudonym_and_is_an_hmac_sha256(
    keyring: Keyring,
) -> None:
    keys = keyring.keys(IDS.epoch_of(T0), T0)
    for field in ("user_id", "session_id", "query_id", "response_id", "event_id"):
        hasher = keys.hasher(field)
        assert [hasher(v) for v in ("a", "b", "é-1")] == [
            keys.pseudonym(field, v) for v in ("a", "b", "é-1")
        ]
    salt = keyring._salt(IDS.epoch_of(T0))
    for field in ("user_id", "session_id", "query_id", "response_id", "event_id"):
        expected = hmac.new(derive_field_key(salt, field), b"alice", hashlib.sha256).digest()
        # Each field under its own key: HKDF of the salt with the field name.
        assert keys.hasher(field)("alice") == int.from_bytes(expected[:8], "big", signed=True)


def test_distinct_values_give_distinct_pseudonyms(keyring: Keyring) -> None:
    keys = keyring.keys(IDS.epoch_of(T0), T0)
    values = {keys.pseudonym("user_id", f"user-{i}") for i in range(10_000)}
    assert len(values) == 10_000


def test_salt_is_stored_only_sealed(store: SQLiteStore, keyring: Keyring) -> None:
    epoch = IDS.epoch_of(T0)
    keyring.keys(epoch, T0)
    conn = sqlite3.connect(store.path)
    (ciphertext,) = conn.execute("SELECT ciphertext FROM salts").fetchone()
    assert len(ciphertext) == 32 + 16  # AES-GCM: salt plus tag, never the bare salt
    salt = keyring._master.open(store.salts.sealed_salt(epoch))  # type: ignore[arg-type]
    assert salt not in Path(store.path).read_bytes()
    assert salt != ciphertext[:32]


def test_wrong_master_key_cannot_open_a_salt(store: SQLiteStore, keyring: Keyring) -> None:
    epoch = IDS.epoch_of(T0)
    keyring.keys(epoch, T0)
    other = Keyring(MasterKey.from_base64(MasterKey.generate_base64()), store.salts, IDS)
    with pytest.raises(MasterKeyMismatch):
        other.keys(epoch, T0)


def test_epoch_past_salt_retention_is_refused(keyring: Keyring) -> None:
    old = IDS.epoch_of(T0 - IDS.salt_retention - timedelta(days=1))
    with pytest.raises(EpochExpired):
        keyring.keys(old, T0)


def test_destroyed_salt_is_never_made_again(store: SQLiteStore, keyring: Keyring) -> None:
    epoch = IDS.epoch_of(T0)
    keyring.keys(epoch, T0)
    assert store.salts.destroy_before(epoch + 1, T0) == [epoch]
    keyring.forget()
    with pytest.raises(EpochExpired):
        keyring.keys(epoch, T0)


def test_racing_workers_create_exactly_one_salt(tmp_path: Path) -> None:
    master = MasterKey.from_base64(MasterKey.generate_base64())
    epoch = IDS.epoch_of(T0)
    results: list[int] = []

    def worker() -> None:
        store = SQLiteStore(tmp_path / "race.db")  # one connection set per "process"
        store.migrate()
        results.append(Keyring(master, store.salts, IDS).keys(epoch, T0).pseudonym("user_id", "u"))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    count = (
        sqlite3.connect(tmp_path / "race.db").execute("SELECT count(*) FROM salts").fetchone()[0]
    )
    assert count == 1
