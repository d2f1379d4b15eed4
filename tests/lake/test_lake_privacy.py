"""Retention and erasure hold on the lake: rows leave the Delta table, every file version
and the log, only the epochs concerned are rewritten, and both are audited."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from conftest import T0, Api
from factories import event
from queries_data import TODAY, event_row, noon, open_store, policy, write

from privacy.events import EVENT_TYPE_CODES, EventType
from service.lake.sealer import Sealer
from service.lake.table import Lake
from service.lake.upkeep import LakeUpkeep
from service.ops.retention import Sweeper

ALICE = "alice-lake-31c9"
BOB = "bob-lake-77d2"


def parquet_text(root: Path) -> str:
    """Every value of every Parquet file under ``root`` (data files, checkpoints), as text."""
    texts = []
    for path in sorted(root.rglob("*.parquet")):
        rows = duckdb.sql(f"SELECT * FROM read_parquet('{path}')").fetchall()
        texts.append(repr(rows))
    return "\n".join(texts)


def raw_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def forms(pseudonym: int) -> list[bytes]:
    return [
        pseudonym.to_bytes(8, "big", signed=True),
        pseudonym.to_bytes(8, "little", signed=True),
        str(pseudonym).encode(),
    ]


def lake_rows(lake: Lake) -> list[tuple[Any, ...]]:
    snap = lake.snapshot()
    if snap.empty:
        return []
    files = ", ".join(f"'{f}'" for f in snap.files)
    return duckdb.sql(f"SELECT * FROM read_parquet([{files}], hive_partitioning = true)").fetchall()


def post(api: Api, events: list[dict[str, Any]]) -> None:
    response = api.client.post("/v1/events", json={"events": events}, headers=api.headers("ingest"))
    assert response.status_code == 200, response.text


def pseudonyms_of(api: Api, user: str) -> dict[int, int]:
    state, now = api.state, api.clock()
    return {
        epoch: state.keyring.keys(epoch, now).pseudonym("user_id", user)
        for epoch, alive in state.store.salts.status()
        if alive
    }


@pytest.fixture
def sealed(api: Api) -> Api:
    """Alice: 3 + 2 events on days 1 and 2 (sealed), 1 on day 3 (hot); Bob on all 3 days,
    alone on day 3's epoch in the lake."""
    post(api, [event("edit", at=T0, user=ALICE) for _ in range(3)])
    post(api, [event("dwell", at=T0, user=BOB) for _ in range(2)])
    api.clock.advance(days=1)
    post(api, [event("task_completion", at=api.clock(), user=ALICE) for _ in range(2)])
    post(api, [event("click_through", at=api.clock(), user=BOB)])
    api.clock.advance(days=1)
    post(api, [event("click_through", at=api.clock(), user=BOB)])
    assert Sealer(api.state.store, api.state.lake).seal().rows == 9
    post(api, [event("edit", at=api.clock(), user=ALICE)])
    return api


def test_erasure_removes_the_subject_from_both_tiers_and_counts_both(sealed: Api) -> None:
    response = sealed.client.post(
        "/v1/subjects/erase", json={"user_id": ALICE}, headers=sealed.headers("admin")
    )
    assert response.status_code == 200
    assert response.json()["erased"]["events"] == 6  # 5 sealed + 1 hot
    alice = set(pseudonyms_of(sealed, ALICE).values())
    remaining = lake_rows(sealed.state.lake)
    assert len(remaining) == 4 and not {r[3] for r in remaining} & alice  # user_ps: col 3


def test_after_erasure_no_byte_of_the_lake_holds_the_subjects_pseudonyms(sealed: Api) -> None:
    state = sealed.state
    root = Path(state.settings.resolved_lake_uri)
    alice = list(pseudonyms_of(sealed, ALICE).values())
    assert all(str(p) in parquet_text(root) for p in alice[:2])  # the check sees them
    sealed.client.post(
        "/v1/subjects/erase", json={"user_id": ALICE}, headers=sealed.headers("admin")
    )
    text, data = parquet_text(root), raw_bytes(root)
    assert [p for p in alice if str(p) in text] == []
    assert [p for p in alice for f in forms(p) if f in data] == []
    assert (root / "_delta_log" / "_last_checkpoint").exists()
    # Only the checkpoint and the log entries after it remain.
    assert len(list((root / "_delta_log").glob("*.json"))) <= 2


def test_erasure_rewrites_only_the_epochs_holding_the_subject(sealed: Api) -> None:
    lake = sealed.state.lake
    bob_only = max(pseudonyms_of(sealed, BOB))  # day 3: Bob alone in the lake
    before = {f for f in lake.snapshot().files if f"epoch={bob_only}/" in f}
    sealed.client.post(
        "/v1/subjects/erase", json={"user_id": ALICE}, headers=sealed.headers("admin")
    )
    after = {f for f in lake.snapshot().files if f"epoch={bob_only}/" in f}
    assert before and after == before
    entries = sealed.state.store.audit.page(0, 1000)
    (lake_entry,) = [e for e in entries if e.kind == "lake_subject_erased"]
    assert lake_entry.detail["events"] == 5 and lake_entry.detail["epochs_rewritten"] == 2
    assert lake_entry.detail["files_vacuumed"] >= 2


def test_retention_drops_expired_epochs_and_types_from_the_lake(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    try:
        old = TODAY - timedelta(days=120)  # past every retention: the epoch goes whole
        mid = TODAY - timedelta(days=40)  # dwell (30 d) expired, the rest kept (90 d)
        rows = [event_row("edit", day=old, user=u, edit_ratio=0.5) for u in range(5)]
        rows += [event_row("dwell", day=mid, user=u, dwell_ms=10) for u in range(4)]
        rows += [event_row("edit", day=mid, user=u, edit_ratio=0.5) for u in range(3)]
        rows += [event_row("edit", day=TODAY, user=u, edit_ratio=0.5) for u in range(2)]
        write(store, rows)
        lake = Lake(tmp_path / "lake")
        Sealer(store, lake).seal()
        write(store, [event_row("dwell", day=mid, user=9, dwell_ms=1)])  # hot, expired
        sweeper = Sweeper(store, policy(), lake=LakeUpkeep(store, lake))
        dry = sweeper.run(noon(TODAY), dry_run=True)
        assert dry.events["edit"] == 5 and dry.events["dwell"] == 5
        report = sweeper.run(noon(TODAY))
        assert report.events["edit"] == 5 and report.events["dwell"] == 5
        assert report.lake is not None and report.lake["events"] == 9
        left = lake_rows(lake)
        dwell = EVENT_TYPE_CODES[EventType.DWELL]
        assert len(left) == 5 and not [r for r in left if r[2] == dwell]
        days = {int(p.name.split("=")[1]) for p in (tmp_path / "lake").glob("epoch=*")}
        expired_epoch = (old - TODAY.replace(year=1970, month=1, day=1)).days
        assert expired_epoch not in days
        (entry,) = [e for e in store.audit.page(0, 100) if e.kind == "retention_run"]
        assert entry.detail["lake"]["events"] == 9
    finally:
        store.close()
