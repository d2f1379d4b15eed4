"""The lake's Delta table: layout, compact schema, and every write to it.

Layout: ``<lake>/_delta_log/`` and one directory per epoch (``epoch=<n>/``) of Parquet
files (zstd). Columns keep the stored row's values exactly (floats stay float64, so a
threshold or a ROUND gives the same answer as on the row store) in the narrowest type
that holds every value the ingestion schema admits.

Privacy in the table's own metadata: the Delta log records per-file statistics only for
``ts`` and ``event_type`` (``delta.dataSkippingStatsColumns``), so no pseudonym is ever
written into ``_delta_log`` (a log entry outlives the rows it describes until the log is
cleaned); every predicate a commit records is built from epochs, types and times only.
Vacuum runs with zero retention and the log is cleaned up to a fresh checkpoint, so a
deleted row survives in no older file version.

Only the holder of the store's lake lock writes (``HotRepository.lake_lock``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, Transaction, WriterProperties, write_deltalake
from deltalake.exceptions import DeltaError, TableNotFoundError

from service.store.base import EVENT_COLUMNS

SEALER_APP_ID = "tacit-sealer"
_T = TypeVar("_T")

_TYPES: dict[str, pa.DataType] = {
    "epoch": pa.int32(),
    "ts": pa.int64(),
    "event_type": pa.int8(),
    "source_id": pa.int32(),
    "user_ps": pa.int64(),
    "session_ps": pa.int64(),
    "query_ps": pa.int64(),
    "response_ps": pa.int64(),
    "surface": pa.string(),
    "task_type": pa.string(),
    "cohort": pa.string(),
    "model": pa.string(),
    "position": pa.int16(),  # 1..50
    "candidates": pa.int16(),
    "similarity": pa.float64(),
    "span_start": pa.int32(),  # <= 10M characters
    "span_end": pa.int32(),
    "span_length": pa.int32(),
    "destination": pa.string(),
    "edit_ratio": pa.float64(),
    "dwell_ms": pa.int32(),  # <= one day of ms
    "scroll_depth": pa.float64(),
    "after_ms": pa.int32(),
    "outcome": pa.string(),
    "inclusion_prob": pa.float64(),
    "attempt": pa.int16(),  # regenerate: 1..20
    "thumbs": pa.string(),  # feedback: "up" | "down"
    "rating": pa.int16(),  # feedback: 1..5
}
# Each row keeps the seal batch that brought it: a query excludes batches claimed after
# it read the hot rows (service/lake/engine.py). One value per file: it costs ~nothing.
SCHEMA = pa.schema(
    [pa.field(c, _TYPES[c], nullable=c not in ("epoch", "ts")) for c in EVENT_COLUMNS]
    + [pa.field("seal_batch", pa.int64())]
)

CONFIGURATION: dict[str, str | None] = {
    "delta.dataSkippingStatsColumns": "ts,event_type",
    # Old log entries go at every cleanup (after a checkpoint): nothing is kept for time
    # travel, which is what lets a deletion be complete.
    "delta.logRetentionDuration": "interval 0 seconds",
    "delta.checkpointInterval": "20",
}
_WRITER = WriterProperties(compression="ZSTD")
TARGET_FILE_BYTES = 128 << 20


def to_arrow(rows: Sequence[Sequence[Any]]) -> pa.Table:
    """Rows (EVENT_COLUMNS order, then seal_batch) as an Arrow table of the lake schema."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in SCHEMA]
    return pa.Table.from_arrays(
        [pa.array(col, type=f.type) for col, f in zip(columns, SCHEMA, strict=False)],
        schema=SCHEMA,
    )


@dataclass(frozen=True)
class Snapshot:
    """One version of the table: its data files and the sealer's watermark in it."""

    version: int
    files: tuple[str, ...]
    sealed_batch: int  # the last seal batch this version holds (0: none)

    @property
    def empty(self) -> bool:
        return not self.files


# Reading the table while another node cleans its log: tries before giving up.
_READ_ATTEMPTS = 20


def _retrying(read: Callable[[], _T]) -> _T:
    """``read()``, again when the log changed under it.

    Another node's upkeep may checkpoint and clean the log while this one reads it: the
    `_last_checkpoint` just read can name a checkpoint already replaced and removed, and
    deltalake reads the log lazily, so the miss can surface in any call on the table, not
    only in opening it. Reading again from the start finds the new checkpoint.
    """
    for attempt in range(1, _READ_ATTEMPTS + 1):
        try:
            return read()
        except TableNotFoundError:
            raise
        except DeltaError as exc:
            if attempt == _READ_ATTEMPTS or "not found" not in str(exc):
                raise
            time.sleep(0.005 * attempt)
    raise AssertionError("unreachable")


class Lake:
    """The Delta table at ``uri`` (a local path, or a URL deltalake accepts)."""

    def __init__(self, uri: str | Path, storage_options: dict[str, str] | None = None) -> None:
        self.uri = str(uri)
        self._options = storage_options

    # --- reading ----------------------------------------------------------------------

    def table(self) -> DeltaTable | None:
        """The table's newest version (None before the first commit)."""
        return _retrying(self._open)

    def snapshot(self) -> Snapshot:
        """The newest version's files and last seal batch, read as one."""
        return _retrying(self._snapshot)

    def _open(self) -> DeltaTable | None:
        try:
            return DeltaTable(self.uri, storage_options=self._options)
        except TableNotFoundError:
            return None

    def _snapshot(self) -> Snapshot:
        dt = self._open()
        if dt is None:
            return Snapshot(-1, (), 0)
        return Snapshot(
            dt.version(), tuple(dt.file_uris()), dt.transaction_version(SEALER_APP_ID) or 0
        )

    def sealed_batch(self) -> int:
        return self.snapshot().sealed_batch

    # --- writing (lake lock held) -------------------------------------------------------

    def append(self, rows: Sequence[Sequence[Any]], batch: int) -> None:
        """Append stored rows as seal batch ``batch``, in one commit that records it."""
        write_deltalake(
            self.table() or self.uri,
            to_arrow([(*r, batch) for r in rows]),
            partition_by=["epoch"],
            mode="append",
            configuration=CONFIGURATION,
            storage_options=self._options,
            writer_properties=_WRITER,
            target_file_size=TARGET_FILE_BYTES,
            commit_properties=CommitProperties(
                app_transactions=[Transaction(SEALER_APP_ID, batch)],
                custom_metadata={"tacit": "seal", "rows": str(len(rows))},
            ),
        )

    def replace_epoch(self, epoch: int, data: pa.Table) -> None:
        """Rewrite epoch ``epoch`` to hold exactly ``data`` (erasure: the kept rows)."""
        dt = self.table()
        if dt is None:
            return
        if data.num_rows == 0:
            dt.delete(f"epoch = {int(epoch)}", commit_properties=_meta("erase"))
            return
        write_deltalake(
            dt,
            data,
            partition_by=["epoch"],
            mode="overwrite",
            predicate=f"epoch = {int(epoch)}",
            writer_properties=_WRITER,
            target_file_size=TARGET_FILE_BYTES,
            commit_properties=_meta("erase"),
        )

    def delete(self, predicate: str, what: str) -> int:
        """Delete the rows matching ``predicate`` (epochs, types, times only); how many."""
        dt = self.table()
        if dt is None:
            return 0
        metrics = dt.delete(predicate, writer_properties=_WRITER, commit_properties=_meta(what))
        return int(metrics.get("num_deleted_rows", 0) or 0)

    def compact(self) -> dict[str, Any]:
        """Merge small files per epoch, then vacuum (the merged-away files go at once)."""
        dt = self.table()
        if dt is None:
            return {}
        metrics = dt.optimize.compact(
            target_size=TARGET_FILE_BYTES,
            writer_properties=_WRITER,
            commit_properties=_meta("compact"),
        )
        self.vacuum()
        return dict(metrics)

    def vacuum(self) -> int:
        """Remove every file no longer in the current version, and every older log entry.

        Zero retention: a deleted row must not survive in an earlier file version. A query
        still reading a removed file fails and is retried on the new snapshot
        (service/lake/engine.py).
        """
        dt = self.table()
        if dt is None:
            return 0
        removed = dt.vacuum(
            retention_hours=0,
            dry_run=False,
            enforce_retention_duration=False,
            full=True,
            commit_properties=_meta("vacuum"),
        )
        dt = self.table()
        assert dt is not None
        dt.create_checkpoint()
        dt.cleanup_metadata()
        self._drop_empty_partitions()
        return len(removed)

    def _drop_empty_partitions(self) -> None:
        """On a local filesystem, remove the directories of epochs left without a file."""
        root = Path(self.uri.removeprefix("file://"))
        if "://" in self.uri.removeprefix("file://") or not root.is_dir():
            return
        for directory in root.glob("epoch=*"):
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()


def _meta(what: str) -> CommitProperties:
    return CommitProperties(custom_metadata={"tacit": what})
