"""DuckDB over the lake: the aggregation SQL on the sealed events and the hot rows.

Decision: a query reads the hot rows too, so every answer covers every event stored
when it started, whatever the seal lag (a lag bound would make an answer silently miss
the last minute, and one sealer stall would make it miss more). It stays consistent
without a lock. The hot rows are read first, in one read snapshot together with C, the
highest seal batch claimed so far; then the lake's latest snapshot, watermark W. Counted:
the lake's rows of batches <= C, and the hot rows unclaimed or claimed above W. A row
unclaimed at the hot read may be sealed since, but in a batch > C: read once, from the
hot rows. A row the sealer deleted before the hot read was in a batch <= C committed
before it: read once, from the lake. A claimed row is read from the lake if its batch
is committed (<= W), else from the hot rows. Each event is read exactly once
(tests/system/test_lake_crash.py races queries against the sealer and SIGKILLs).

The cut (``Cut``, ``events_sql``, ``aggregate_over_cut``) is shared by every engine over
the lake: Spark (service/lake/spark.py) reads exactly what DuckDB reads.

The hot part is small in steady state (about the seal interval's worth of events); it is
registered in DuckDB as an Arrow table. DuckDB runs in-process, in memory: one database
per repository, one cursor per query (their threads shared); nothing it reads leaves
as anything but one integer row per cell.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb

from service.lake.table import Lake, Snapshot, to_arrow
from service.store.base import EVENT_COLUMNS, EngineUnavailable, Store

ATTEMPTS = 3  # a compaction or vacuum may remove a file a query is about to read
_COLUMNS = ", ".join(EVENT_COLUMNS)


@dataclass(frozen=True)
class Coverage:
    """What data one aggregation read: the lake version and watermark, and the hot rows."""

    engine: str
    lake_version: int
    sealed_through_batch: int
    hot_rows_read: bool
    hot_rows: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "lake_version": self.lake_version,
            "sealed_through_batch": self.sealed_through_batch,
            "hot_rows_read": self.hot_rows_read,
            "hot_rows": self.hot_rows,
        }

    def note(self) -> str:
        return (
            f"Data: every event stored when the query ran — the lake's sealed events "
            f"through seal batch {self.sealed_through_batch} (version {self.lake_version}) "
            f"and the {self.hot_rows} not sealed yet, read from the transactional store "
            f"({self.engine})."
        )


def parquet_sql(files: tuple[str, ...]) -> str:
    """DuckDB's relation over the snapshot's Parquet files (``epoch`` from the paths)."""
    quoted = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
    return f"read_parquet([{quoted}], hive_partitioning = true, hive_types = {{'epoch': INTEGER}})"


def events_sql(files: str | None, sealed_batch: int, hot: bool, claimed: int | None = None) -> str:
    """The ``events`` relation in any engine: ``files`` (the engine's relation over the
    snapshot's Parquet files, None when it has none) with only the rows of batches up to
    ``claimed`` if given and, with ``hot``, the relation ``hot``'s rows not in the lake's
    watermark ``sealed_batch`` (unclaimed, or claimed above it). The consistent cut of the
    module docstring is this predicate pair."""
    parts = []
    if files is not None:
        upto = "" if claimed is None else f" WHERE seal_batch <= {int(claimed)}"
        parts.append(f"SELECT {_COLUMNS} FROM {files}" + upto)
    if hot or not parts:
        parts.append(
            f"SELECT {_COLUMNS} FROM hot WHERE seal_batch IS NULL "
            f"OR seal_batch > {int(sealed_batch)}"
        )
    return " UNION ALL ".join(parts)


def lake_view_sql(snapshot: Snapshot, hot: bool, claimed: int | None = None) -> str:
    """DuckDB's ``events`` relation: the snapshot's Parquet files (their rows of batches up
    to ``claimed``, if given) and, with ``hot``, the unsealed hot rows."""
    files = parquet_sql(snapshot.files) if snapshot.files else None
    return events_sql(files, snapshot.sealed_batch, hot, claimed)


@dataclass(frozen=True)
class Cut:
    """What one aggregation reads, taken in the order the module docstring requires: the
    hot rows and C (the highest batch claimed) first, then the lake's snapshot."""

    hot_rows: list[tuple[Any, ...]]
    claimed: int
    snapshot: Snapshot

    @classmethod
    def take(cls, store: Store, lake: Lake) -> Cut:
        hot_rows, claimed = store.hot.snapshot()  # first: see the module docstring
        return cls(hot_rows, claimed, lake.snapshot())

    def events_sql(self, files: str | None) -> str:
        """The ``events`` relation of this cut over the engine's ``files`` and ``hot``."""
        return events_sql(files, self.snapshot.sealed_batch, True, self.claimed)

    def coverage(self, engine: str) -> Coverage:
        watermark = self.snapshot.sealed_batch
        unsealed = sum(1 for r in self.hot_rows if r[-1] is None or r[-1] > watermark)
        return Coverage(engine, self.snapshot.version, watermark, True, unsealed)


Rows = list[tuple[int, ...]]


def result_rows(rows: Any) -> list[tuple[Any, ...]]:
    """An aggregation's rows as plain values: integers, and a selection's labels
    (service/queries/selection.py) as text."""
    return [tuple(v if isinstance(v, str) else int(v) for v in row) for row in rows]


def aggregate_over_cut(
    store: Store,
    lake: Lake,
    engine: str,
    run: Callable[[Cut], Rows],
    stale: Callable[[Exception, Cut], bool],
) -> tuple[Rows, Coverage]:
    """``run`` on a fresh cut; again on a new one (at most ATTEMPTS in all) while it fails
    because the cut went stale: a compaction or vacuum removed a file it was reading."""
    for attempt in range(1, ATTEMPTS + 1):
        cut = Cut.take(store, lake)
        try:
            return run(cut), cut.coverage(engine)
        except Exception as exc:
            if attempt == ATTEMPTS or not stale(exc, cut):
                raise
    raise AssertionError("unreachable")


class LakeQueries:
    """The query repository of the ``duckdb`` engine (see service/queries/engine.py)."""

    dialect = "duckdb"

    def __init__(
        self,
        store: Store,
        lake: Lake,
        threads: int | None = None,
        memory_limit: str | None = None,
    ) -> None:
        self._store = store
        self.lake = lake
        # What a query spills past `memory_limit` (its per-person partial aggregates) goes
        # to a directory of this process alone, removed at close(): never DuckDB's default
        # `.tmp` under whatever the working directory is.
        self._spill = tempfile.TemporaryDirectory(prefix="tacit-duckdb-")
        os.chmod(self._spill.name, 0o700)
        config: dict[str, Any] = {
            "temp_directory": self._spill.name,
            # Results are sums per cell: no order to keep, and keeping it costs memory.
            "preserve_insertion_order": False,
        }
        if threads:
            config["threads"] = threads
        if memory_limit:
            config["memory_limit"] = memory_limit
        self._memory_limit = memory_limit or "80 % of the machine"
        # One in-memory DuckDB database for every query of this repository, each query on
        # a cursor of its own (its own ``hot`` and temporary ``events``): the cursors
        # share the database's one pool of ``threads`` workers (default: one per core),
        # so concurrent queries queue for the cores instead of each starting a pool as
        # large as the machine (docs/benchmarks.md, "Concurrent queries").
        self._db = duckdb.connect(config=config)
        self._cursor_lock = threading.Lock()

    @property
    def spill_dir(self) -> str:
        """Where DuckDB spills what does not fit in memory_limit (private, 0700)."""
        return self._spill.name

    def close(self) -> None:
        """Close the database and remove its spill directory."""
        self._db.close()
        self._spill.cleanup()

    def aggregate(self, sql: str) -> list[tuple[int, ...]]:
        return self.aggregate_covered(sql)[0]

    def aggregate_covered(self, sql: str) -> tuple[list[tuple[int, ...]], Coverage]:
        return aggregate_over_cut(
            self._store,
            self.lake,
            "duckdb",
            lambda cut: self._run(sql, cut),
            lambda exc, _cut: isinstance(exc, duckdb.IOException),
        )

    def _run(self, sql: str, cut: Cut) -> list[tuple[Any, ...]]:
        hot = to_arrow(cut.hot_rows)
        with self._cursor_lock:  # a connection object is not thread-safe; a cursor is
            con = self._db.cursor()
        try:
            con.register("hot", hot)
            files = parquet_sql(cut.snapshot.files) if cut.snapshot.files else None
            con.execute(f"CREATE TEMP VIEW events AS {cut.events_sql(files)}")
            return result_rows(con.execute(sql).fetchall())
        except duckdb.OutOfMemoryException as exc:
            raise EngineUnavailable(
                f"the query needed more memory than DuckDB may use here ({self._memory_limit}, "
                "TACIT_DUCKDB_MEMORY_LIMIT) even after spilling to disk: raise the limit, or "
                "ask for fewer days or cells"
            ) from exc
        finally:
            con.close()
