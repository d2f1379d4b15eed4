"""Master-key rotation keeps every pseudonym and leaves the old key nothing to open;
`tacit keys status` shows epochs by id and state only."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from conftest import T0

from privacy.keyring import Keyring, MasterKey, MasterKeyMismatch
from privacy.policy import load_policy
from service.cli import main
from service.ops.salts import KeyRotationError, rotate_master, salt_status
from service.settings import DEFAULT_POLICY
from service.store.sqlite import SQLiteStore

IDS = load_policy(DEFAULT_POLICY).policy.identifiers
EPOCH = IDS.epoch_of(T0)
EPOCHS = range(EPOCH - 3, EPOCH + 1)
USERS = [f"user-{i}" for i in range(20)]


@pytest.fixture
def old() -> MasterKey:
    return MasterKey.from_base64(MasterKey.generate_base64())


@pytest.fixture
def new() -> MasterKey:
    return MasterKey.from_base64(MasterKey.generate_base64())


def pseudonyms(keyring: Keyring) -> dict[tuple[int, str], int]:
    return {(e, u): keyring.keys(e, T0).pseudonym("user_id", u) for e in EPOCHS for u in USERS}


def files_bytes(db: Path) -> bytes:
    return b"".join(p.read_bytes() for p in (db, Path(f"{db}-wal")) if p.exists())


def test_rotation_keeps_every_pseudonym(store: SQLiteStore, old: MasterKey, new: MasterKey) -> None:
    before = pseudonyms(Keyring(old, store.salts, IDS))
    rotation = rotate_master(store, old, new, T0)
    assert rotation.salts == len(EPOCHS)
    assert pseudonyms(Keyring(new, store.salts, IDS)) == before


def test_after_rotation_the_old_key_opens_no_salt(
    store: SQLiteStore, old: MasterKey, new: MasterKey
) -> None:
    pseudonyms(Keyring(old, store.salts, IDS))
    previous = store.salts.all_sealed()
    rotate_master(store, old, new, T0)
    stored = store.salts.all_sealed()
    assert {s.key_id for s in stored} == {new.key_id}
    for sealed in stored:
        with pytest.raises(MasterKeyMismatch):
            old.open(sealed)
    # Nor is any old ciphertext (which the old key would open) left in the files.
    data = files_bytes(store.path)
    assert [s.epoch for s in previous if s.ciphertext in data] == []


def test_rotation_with_the_wrong_current_key_changes_nothing(
    store: SQLiteStore, old: MasterKey, new: MasterKey
) -> None:
    pseudonyms(Keyring(old, store.salts, IDS))
    before = store.salts.all_sealed()
    stranger = MasterKey.from_base64(MasterKey.generate_base64())
    with pytest.raises(KeyRotationError, match="Nothing was changed"):
        rotate_master(store, stranger, new, T0)
    assert store.salts.all_sealed() == before


def test_rotation_leaves_destroyed_salts_destroyed(
    store: SQLiteStore, old: MasterKey, new: MasterKey
) -> None:
    pseudonyms(Keyring(old, store.salts, IDS))
    store.salts.destroy_before(EPOCH - 1, T0)
    assert rotate_master(store, old, new, T0).salts == 2
    assert store.salts.sealed_salt(EPOCH - 2) is None


def test_rotation_is_audited_with_key_fingerprints_only(
    store: SQLiteStore, old: MasterKey, new: MasterKey
) -> None:
    pseudonyms(Keyring(old, store.salts, IDS))
    rotate_master(store, old, new, T0)
    (entry,) = [e for e in store.audit.page(0, 100) if e.kind == "master_key_rotated"]
    assert entry.detail == {"old_key_id": old.key_id, "new_key_id": new.key_id, "salts": 4}


def test_rotating_to_the_same_key_is_refused(store: SQLiteStore, old: MasterKey) -> None:
    with pytest.raises(KeyRotationError, match="generate a new key"):
        rotate_master(store, old, old, T0)


def test_status_names_alive_expired_and_destroyed_epochs(
    store: SQLiteStore, old: MasterKey
) -> None:
    pseudonyms(Keyring(old, store.salts, IDS))
    store.salts.destroy_before(EPOCH - 2, T0)
    later = IDS.epoch_start(EPOCH - 2) + IDS.salt_retention + timedelta(hours=1)
    states = [(s.epoch, s.state) for s in salt_status(store, IDS, later)]
    assert states == [
        (EPOCH - 3, "destroyed"),
        (EPOCH - 2, "expired"),
        (EPOCH - 1, "alive"),
        (EPOCH, "alive"),
    ]


def test_cli_rotates_the_master_key_and_status_shows_the_new_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    old_file, new_file = tmp_path / "old.key", tmp_path / "new.key"
    old_b64, new_b64 = MasterKey.generate_base64(), MasterKey.generate_base64()
    old_file.write_text(old_b64)
    new_file.write_text(new_b64)
    old, new = MasterKey.from_base64(old_b64), MasterKey.from_base64(new_b64)
    store = SQLiteStore(tmp_path / "tacit.db")
    store.migrate()
    before = pseudonyms(Keyring(old, store.salts, IDS))
    store.close()
    monkeypatch.setenv("TACIT_MASTER_KEY_FILE", str(old_file))
    args = ["--data-dir", str(tmp_path)]
    assert main(["keys", "rotate-master", "--new-key-file", str(new_file), *args]) == 0
    assert f"{old.key_id} -> {new.key_id}" in capsys.readouterr().out
    assert main(["keys", "status", *args]) == 0
    out = capsys.readouterr().out
    assert out.count(new.key_id) == len(EPOCHS) and old.key_id not in out
    assert old_b64 not in out and new_b64 not in out
    store = SQLiteStore(tmp_path / "tacit.db")
    assert pseudonyms(Keyring(new, store.salts, IDS)) == before
    store.close()
