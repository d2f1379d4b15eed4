"""Retention: each kind of row leaves when the policy says, for real (no byte left in
the database files), in batches, once even when sweeps race, and on a schedule."""

from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import T0, Clock, make_settings
from factories import event
from fastapi.testclient import TestClient

from privacy.budget import Budget, Cost
from privacy.events import EVENT_TYPE_CODES, EventType
from privacy.keyring import EpochExpired, Keyring, MasterKey
from privacy.policy import load_policy
from service.api.app import create_app
from service.cli import main
from service.ingest.parse import parse_batch
from service.ingest.pipeline import Ingestor, Report
from service.ops.audit import verify
from service.ops.retention import RetentionReport, RetentionSchedule, Sweeper
from service.ops.tokens import create_token
from service.settings import DEFAULT_POLICY
from service.store.base import EVENT_COLUMNS, Charge, Role
from service.store.sqlite import SQLiteStore

POLICY = load_policy(DEFAULT_POLICY).policy  # events 90 d, dwell 30 d, quarantine 7 d, salts 30 d
IDS = POLICY.identifiers
SOURCE = 1


@dataclass
class World:
    """A real store, keyring and ingestion pipeline on a temp file, under a movable clock."""

    store: SQLiteStore
    keyring: Keyring
    master: MasterKey
    clock: Clock

    def ingest(self, events: list[dict[str, Any]]) -> Report:
        ingestor = Ingestor(POLICY, self.keyring, self.store, self.clock, timedelta(hours=23))
        prepared = ingestor.prepare(parse_batch(json.dumps({"events": events}).encode(), 10**5), 1)
        flags = self.store.events.write([prepared.batch])[0]
        return ingestor.report(prepared, flags)

    def sweep(self, dry_run: bool = False, **kw: Any) -> RetentionReport:
        kw.setdefault("batch_pause_s", 0.0)
        sweeper = Sweeper(self.store, POLICY, keyring=self.keyring, **kw)
        return sweeper.run(self.clock(), dry_run=dry_run)

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.store.db.read() as conn:
            return conn.execute(query, params).fetchall()

    def count(self, table: str) -> int:
        return int(self.sql(f"SELECT count(*) FROM {table}")[0][0])

    def audit(self, kind: str) -> list[dict[str, Any]]:
        return [e.detail for e in self.store.audit.page(0, 10_000) if e.kind == kind]


@pytest.fixture
def world(tmp_path: Path, clock: Clock) -> Iterator[World]:
    store = SQLiteStore(tmp_path / "tacit.db")
    store.migrate()
    master = MasterKey.from_base64(MasterKey.generate_base64())
    yield World(store, Keyring(master, store.salts, IDS), master, clock)
    store.close()


def invalid(at: datetime, user: str) -> dict[str, Any]:
    """An event that fails validation (position 0), so it is quarantined."""
    return event("click_through", at=at, user=user, payload={"position": 0, "candidates": 3})


def files_bytes(db: Path) -> bytes:
    """Every byte SQLite keeps for ``db``: the file, its WAL and its shared-memory index."""
    return b"".join(
        p.read_bytes() for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()
    )


def sqlite_record_int(value: int) -> bytes:
    """How a SQLite record stores an integer: big-endian two's complement in the fewest of
    1, 2, 3, 4, 6 or 8 bytes (serial types 1-6) that hold it."""
    for width in (1, 2, 3, 4, 6, 8):
        if -(1 << (8 * width - 1)) <= value < 1 << (8 * width - 1):
            return value.to_bytes(width, "big", signed=True)
    raise AssertionError("not an int64")


def encodings(pseudonym: int) -> list[bytes]:
    """Every form a pseudonym could take in the files: int64 either byte order, SQLite's
    record integer, the quarantine's ``ps:`` hex text, decimal text."""
    return [
        struct.pack(">q", pseudonym),
        struct.pack("<q", pseudonym),
        sqlite_record_int(pseudonym),
        f"{pseudonym & 0xFFFFFFFFFFFFFFFF:016x}".encode(),
        str(pseudonym).encode(),
    ]


# --- what goes, when ---------------------------------------------------------------------


def test_events_past_their_type_retention_are_deleted_and_younger_ones_kept(world: World) -> None:
    world.ingest([event("dwell", at=T0), event("response_shown", at=T0)])
    world.clock.advance(days=31)  # dwell is kept 30 days, everything else 90
    report = world.sweep()
    assert report.events["dwell"] == 1 and report.events_total == 1
    assert world.count("events") == 1
    world.clock.advance(days=60)
    assert world.sweep().events["response_shown"] == 1
    assert world.count("events") == 0


def test_an_event_just_inside_its_retention_is_kept(world: World) -> None:
    world.ingest([event("dwell", at=T0)])
    world.clock.now = T0 + POLICY.retention.for_type("dwell") - timedelta(minutes=1)
    assert world.sweep().events_total == 0
    assert world.count("events") == 1


def test_dry_run_counts_per_type_and_deletes_nothing(world: World) -> None:
    world.ingest([event("dwell", at=T0), event("dwell", at=T0), event("edit", at=T0)])
    world.ingest([invalid(T0, "user-1")])
    world.clock.advance(days=100)
    audit_before = world.count("audit_log")
    report = world.sweep(dry_run=True)
    assert report.dry_run and report.events["dwell"] == 2 and report.events["edit"] == 1
    assert report.quarantine == 1 and report.event_keys == 3
    assert report.salts_destroyed == [IDS.epoch_of(T0)]
    assert world.count("events") == 3 and world.count("quarantine") == 1
    assert world.store.salts.sealed_salt(IDS.epoch_of(T0)) is not None
    assert world.count("audit_log") == audit_before


def test_quarantined_rejects_past_their_retention_are_deleted(world: World) -> None:
    world.ingest([invalid(T0, "user-1")])
    world.clock.advance(days=3)
    world.ingest([invalid(world.clock(), "user-2")])
    world.clock.advance(days=5)  # the first is 8 days old, the second 5; quarantine keeps 7
    assert world.sweep().quarantine == 1
    assert world.count("quarantine") == 1


def test_idempotency_keys_stay_while_any_event_type_may_keep_events(world: World) -> None:
    first = event("response_shown", at=T0)
    world.ingest([first])
    world.clock.advance(days=29)
    world.sweep()
    assert world.ingest([first]).duplicates == 1  # a retry is still recognised
    world.clock.now = T0 + timedelta(days=91)
    assert world.sweep().event_keys == 1
    assert world.count("event_keys") == 0


def test_sweep_deletes_in_batches_of_at_most_the_batch_size(world: World) -> None:
    world.ingest([event("edit", at=T0, user=f"u{i}") for i in range(23)])
    world.clock.advance(days=91)
    now = world.clock()
    code = EVENT_TYPE_CODES[EventType.EDIT]
    batches = list(
        world.store.retention.delete_events(code, int(now.timestamp()), IDS.epoch_of(now), 5)
    )
    assert sum(batches) == 23 and max(batches) <= 5 and len(batches) >= 5


def test_sweep_writes_one_audit_entry_with_per_type_counts(world: World) -> None:
    world.ingest([event("dwell", at=T0), event("edit", at=T0), event("edit", at=T0)])
    world.clock.advance(days=91)
    world.sweep()
    (detail,) = world.audit("retention_run")
    assert detail["events"]["edit"] == 2 and detail["events"]["dwell"] == 1
    assert detail["event_keys"] == 3


# --- deleted means gone --------------------------------------------------------------------


def test_canary_pseudonym_is_in_no_byte_of_the_database_files_after_the_sweep(
    world: World,
) -> None:
    keys = world.keyring.keys(IDS.epoch_of(T0), T0)
    # A canary whose pseudonym takes all 8 bytes in a SQLite record (true of a random
    # int64 with probability 1 - 2^-16), so a match can only be the canary itself.
    user = next(
        f"canary-{i}"
        for i in range(100)
        if len(sqlite_record_int(keys.pseudonym("user_id", f"canary-{i}"))) == 8
    )
    canary_events = [event(t, at=T0, user=user, session="canary-s") for t in ("dwell", "edit")]
    world.ingest([*canary_events, invalid(T0, user)])
    pseudonyms = [keys.pseudonym("user_id", user), keys.pseudonym("session_id", "canary-s")]
    pseudonyms += [
        keys.pseudonym(f, e[f]) for e in canary_events for f in ("query_id", "response_id")
    ]
    # Others' data stays and keeps being written, so freed pages get reused.
    world.clock.advance(days=85)
    world.ingest([event("edit", at=world.clock(), user=f"other-{i}") for i in range(200)])
    db = world.store.path
    before = files_bytes(db)
    assert all(sqlite_record_int(p) in before for p in pseudonyms)  # the search finds them
    assert f"ps:{pseudonyms[0] & 0xFFFFFFFFFFFFFFFF:016x}".encode() in before  # quarantined

    world.clock.advance(days=6)  # the canary's rows are 91 days old
    report = world.sweep()

    assert report.purged and report.events_total == 2 and report.quarantine == 1
    after = files_bytes(db)
    found = [(p, enc) for p in pseudonyms for enc in encodings(p) if enc in after]
    assert found == []
    assert world.count("events") == 200


def test_destroyed_salt_ciphertext_leaves_the_database_files(world: World) -> None:
    epoch = IDS.epoch_of(T0)
    world.keyring.keys(epoch, T0)
    sealed = world.store.salts.sealed_salt(epoch)
    assert sealed is not None and sealed.ciphertext in files_bytes(world.store.path)
    world.clock.advance(days=31)
    assert world.sweep().salts_destroyed == [epoch]
    assert sealed.ciphertext not in files_bytes(world.store.path)
    assert sealed.nonce not in files_bytes(world.store.path)


# --- salt lifecycle ------------------------------------------------------------------------


def test_salts_past_salt_retention_are_destroyed_with_one_audit_entry_each(world: World) -> None:
    epoch = IDS.epoch_of(T0)
    for e in range(epoch - 2, epoch + 1):
        world.keyring.keys(e, T0)
    world.clock.now = IDS.epoch_start(epoch) + POLICY.identifiers.salt_retention
    report = world.sweep()  # `epoch` just turned 30 days old: past the salt retention
    assert report.salts_destroyed == [epoch - 2, epoch - 1, epoch]
    assert world.audit("salt_destroyed") == [{"epoch": e} for e in report.salts_destroyed]
    assert world.sweep().salts_destroyed == []


def test_destroyed_epoch_cannot_be_pseudonymized_even_with_the_master_key(world: World) -> None:
    epoch = IDS.epoch_of(T0)
    world.keyring.keys(epoch, T0)
    world.clock.advance(days=31)
    world.sweep()
    # A fresh process holding the master key, even one whose clock says the epoch is
    # young, cannot get the salt back nor make a new one for that epoch.
    fresh = Keyring(world.master, world.store.salts, IDS)
    with pytest.raises(EpochExpired):
        fresh.keys(epoch, T0)
    assert world.store.salts.sealed_salt(epoch) is None


def test_late_event_for_a_destroyed_epoch_is_rejected_as_too_old(world: World) -> None:
    world.ingest([event("edit", at=T0)])
    world.clock.advance(days=31)
    world.sweep()
    late = world.ingest([event("edit", at=T0 + timedelta(hours=1))])
    assert late.accepted == 0
    assert [(r.status, r.reason) for r in late.results] == [("rejected", "too_old")]


# --- concurrency and schedule -------------------------------------------------------------------


def test_racing_sweeps_delete_each_row_and_destroy_each_salt_once(
    world: World, tmp_path: Path
) -> None:
    epoch = IDS.epoch_of(T0)
    for e in range(epoch - 3, epoch + 1):
        world.keyring.keys(e, T0)
    world.ingest([event("edit", at=T0, user=f"u{i}") for i in range(600)])
    world.clock.advance(days=91)
    reports: list[RetentionReport] = []

    def sweep_in_another_process() -> None:
        store = SQLiteStore(world.store.path)  # its own connections, as another worker
        reports.append(Sweeper(store, POLICY, batch_rows=25, batch_pause_s=0).run(world.clock()))
        store.close()

    threads = [threading.Thread(target=sweep_in_another_process) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.events_total for r in reports) == 600
    assert sorted(e for r in reports for e in r.salts_destroyed) == list(
        range(epoch - 3, epoch + 1)
    )
    assert len(world.audit("salt_destroyed")) == 4
    assert verify(world.store.audit.page(0, 10_000)).ok


def test_only_one_scheduled_sweep_is_claimed_per_interval_across_processes(world: World) -> None:
    other = SQLiteStore(world.store.path)
    gap = timedelta(minutes=30)
    assert world.store.retention.claim_run(T0, gap)
    assert not other.retention.claim_run(T0 + timedelta(minutes=10), gap)
    assert other.retention.claim_run(T0 + gap, gap)
    other.close()


def test_epoch_expiry_hook_gets_the_first_epoch_that_may_still_hold_events(world: World) -> None:
    calls: list[int] = []

    def forget_before(epoch: int) -> list[int]:
        calls.append(epoch)
        return [epoch - 1]

    world.clock.advance(days=100)
    report = Sweeper(world.store, POLICY, hooks={"budgets": forget_before}).run(world.clock())
    assert calls == [IDS.epoch_of(world.clock() - timedelta(days=90))]
    assert report.epochs_forgotten == {"budgets": 1}
    assert world.audit("retention_run")[0]["epochs_forgotten"] == {"budgets": 1}


def wait_for_ticks(schedule: RetentionSchedule, count: int, timeout: float) -> None:
    """Until the schedule has woken ``count`` times (whether or not it swept)."""
    deadline = time.monotonic() + timeout
    while schedule.ticks < count:
        assert time.monotonic() < deadline, f"{count} ticks not reached in {timeout} s"
        time.sleep(0.01)


def test_scheduled_sweep_leaves_no_row_older_than_retention_plus_one_interval(
    tmp_path: Path, master_key_b64: str, clock: Clock
) -> None:
    interval = 0.05
    settings = make_settings(tmp_path, master_key_b64, retention_interval_s=interval)
    app = create_app(settings, clock=clock)
    store = app.state.tacit.store
    token = create_token(store, "app", Role.INGEST, "app")
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {token}"}
        old = [event("dwell", at=T0), event("edit", at=T0)]
        young = [event("edit", at=T0 + timedelta(days=2))]
        clock.advance(days=2)
        for batch in (old, young):
            assert client.post("/v1/events", json={"events": batch}, headers=headers).json()[
                "accepted"
            ] == len(batch)
        clock.now = T0 + timedelta(days=90, seconds=interval, milliseconds=1)
        schedule = app.state.tacit.retention
        wait_for_ticks(schedule, schedule.ticks + 2, timeout=30)
        horizon = int((clock() - timedelta(days=90, seconds=interval)).timestamp())
        with store.db.read() as conn:
            too_old = conn.execute(
                "SELECT count(*) FROM events WHERE ts < ?", (horizon,)
            ).fetchone()
            kept = conn.execute("SELECT count(*) FROM events").fetchone()
    assert too_old == (0,) and kept == (1,)


def store_an_ancient_dwell_event(db: Path) -> None:
    """A dwell event from 1970 (the CLI reads the real clock, so it is long expired)."""
    store = SQLiteStore(db)
    store.migrate()
    with store.db.write() as conn:
        conn.execute(
            f"INSERT INTO events ({', '.join(EVENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(EVENT_COLUMNS))})",
            (1, 0, EVENT_TYPE_CODES[EventType.DWELL], SOURCE, 1, 2, None, None, *[None] * 16, 1.0),
        )
    store.close()


def test_cli_retention_run_dry_run_prints_what_would_go_per_type(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_an_ancient_dwell_event(tmp_path / "tacit.db")
    assert main(["retention", "run", "--dry-run", "--data-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "dry run" in out and "would delete" in out
    dwell = [line.split() for line in out.splitlines() if line.strip().startswith("dwell")]
    assert dwell == [["dwell", "1"]]
    store = SQLiteStore(tmp_path / "tacit.db")
    assert store.events.count() == 1
    store.close()


def test_cli_retention_run_deletes_and_reports_as_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store_an_ancient_dwell_event(tmp_path / "tacit.db")
    assert main(["retention", "run", "--json", "--data-dir", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dry_run"] is False and report["events"]["dwell"] == 1 and report["purged"]
    store = SQLiteStore(tmp_path / "tacit.db")
    assert store.events.count() == 0
    assert [e.actor for e in store.audit.page(0, 100) if e.kind == "retention_run"] == ["cli"]
    store.close()


def test_whole_expired_epochs_go_in_batches_counted_per_type(world: World) -> None:
    world.ingest([event(t, at=T0, user=f"u{i}") for i in range(7) for t in ("edit", "dwell")])
    world.ingest([event("edit", at=T0 + timedelta(hours=20))])  # the next epoch: kept
    epoch = IDS.epoch_of(T0)
    start = int(IDS.epoch_start(epoch + 1).timestamp())
    batches = list(world.store.retention.delete_epochs(epoch + 1, start, 4))
    edit, dwell = EVENT_TYPE_CODES[EventType.EDIT], EVENT_TYPE_CODES[EventType.DWELL]
    assert [sum(b.values()) for b in batches] == [4, 4, 4, 2]
    assert sum(b.get(edit, 0) for b in batches) == 7 and sum(b.get(dwell, 0) for b in batches) == 7
    assert world.count("events") == 1


def test_budgets_of_epochs_past_every_retention_are_forgotten_with_their_data(
    world: World,
) -> None:
    epoch = IDS.epoch_of(T0)
    world.store.ledger.charge(
        Charge(
            release_id="rel_old",
            analyst="ana",
            at=T0,
            request_json="{}",
            request_hash="0" * 64,
            metric="event_count",
            unit="epsilon",
            cost_nanos=500_000_000,
            epochs=(epoch,),
            budget=Budget(Cost.epsilon(4), Cost.epsilon(10)),
            policy_sha256="",
            audit_detail={"release_id": "rel_old"},
        )
    )
    world.clock.advance(days=89)  # every type is kept at most 90 days: the day is still queryable
    world.sweep()
    assert world.store.ledger.spent("ana", [epoch]) == {epoch: 500_000_000}
    world.clock.advance(days=2)
    world.sweep()
    assert world.store.ledger.spent("ana", [epoch]).get(epoch, 0) == 0
