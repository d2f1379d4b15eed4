"""`tacit lake seal` and `tacit lake status`: a store made before the lake seals whole,
resumably, and the status counts exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from queries_data import event_row, open_store, write

from service.cli import main
from service.lake.sealer import Sealer
from service.lake.table import Lake
from service.store.sqlite import SQLiteStore

KEYS = {
    "partitions",
    "files",
    "rows_sealed",
    "rows_hot",
    "seal_lag_seconds",
    "last_seal",
    "last_compaction",
    "last_vacuum",
}


def status(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    capsys.readouterr()
    assert main(["lake", "status", "--json", "--data-dir", str(data_dir)]) == 0
    result: dict[str, object] = json.loads(capsys.readouterr().out)
    return result


def test_a_store_from_before_the_lake_migrates_and_seals_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A store at the schema before the lake's migration, holding events.
    old = SQLiteStore(tmp_path / "tacit.db", "normal")
    old.db.migrate(6)  # the version before the lake's migration (seal_batch)
    rows = [event_row("edit", user=u, edit_ratio=0.25, second=u) for u in range(250)]
    write(old, rows)
    old.close()
    assert main(["lake", "seal", "--data-dir", str(tmp_path)]) == 0
    assert "sealed 250 events" in capsys.readouterr().out
    got = status(tmp_path, capsys)
    assert set(got) >= KEYS
    assert got["rows_sealed"] == 250 and got["rows_hot"] == 0 and got["seal_lag_seconds"] == 0
    assert got["partitions"] == 1 and got["files"] == 1 and got["last_seal"] is not None
    assert main(["lake", "compact", "--data-dir", str(tmp_path)]) == 0
    assert status(tmp_path, capsys)["last_compaction"] is not None


def test_sealing_resumes_where_an_interrupted_run_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = open_store(tmp_path)
    write(store, [event_row("edit", user=u, edit_ratio=0.5, second=u) for u in range(300)])
    lake = Lake(tmp_path / "lake")
    assert Sealer(store, lake, batch_rows=100).seal(max_batches=1).rows == 100
    store.hot.claim(lake.sealed_batch() + 1, 100)  # interrupted after its claim
    store.close()
    got = status(tmp_path, capsys)
    assert got["rows_sealed"] == 100 and got["rows_hot"] == 200
    assert main(["lake", "seal", "--data-dir", str(tmp_path)]) == 0
    assert "100 of an interrupted batch recovered" in capsys.readouterr().out
    got = status(tmp_path, capsys)
    assert got["rows_sealed"] == 300 and got["rows_hot"] == 0
