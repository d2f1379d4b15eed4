"""Retention and erasure on the lake: the same privacy lines as the row store.

- Retention: epochs past the longest retention leave whole (their partitions' files are
  removed without being read); what is left past each type's own retention is deleted
  by a predicate on (event_type, ts, epoch).
- Erasure: only the epochs that hold one of the subject's pseudonyms are rewritten,
  each to its rows minus the subject's. Delta's own delete would write its predicate —
  the pseudonyms — into the commit's log entry; this rewrite records ``epoch = <n>`` only.
- Both then vacuum with zero retention and clean the log up to a fresh checkpoint, so no
  earlier file version or log entry keeps a deleted row (service/lake/table.py).

Every call holds the store's lake lock, so no seal batch read before a deletion can put
the deleted rows back after it. The callers (service/ops/retention.py and erasure.py)
audit the counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import duckdb

from service.lake.engine import lake_view_sql
from service.lake.table import SCHEMA, Lake, Snapshot
from service.store.base import Store


@dataclass(frozen=True)
class LakeErased:
    events: int
    epochs_rewritten: int
    files_vacuumed: int
    searched: bool = True  # False: there is no lake table yet


def _files_view(con: duckdb.DuckDBPyConnection, snapshot: Snapshot) -> None:
    con.execute(f"CREATE TEMP VIEW events AS {lake_view_sql(snapshot, False)}")
    files = ", ".join("'" + f.replace("'", "''") + "'" for f in snapshot.files)
    con.execute(
        f"CREATE TEMP VIEW lake AS SELECT * FROM read_parquet([{files}], "
        "hive_partitioning = true, hive_types = {'epoch': INTEGER})"
    )


class LakeUpkeep:
    """Retention and erasure for one lake, under one store's lake lock."""

    def __init__(self, store: Store, lake: Lake) -> None:
        self.store = store
        self.lake = lake

    def _count(self, where: str) -> dict[int, int]:
        snapshot = self.lake.snapshot()
        if snapshot.empty:
            return {}
        con = duckdb.connect()
        try:
            _files_view(con, snapshot)
            rows = con.execute(
                f"SELECT event_type, count(*) FROM events WHERE {where} GROUP BY event_type"
            ).fetchall()
        finally:
            con.close()
        return {int(t): int(n) for t, n in rows}

    def retain(
        self,
        first_kept_epoch: int,
        cutoffs: Mapping[int, tuple[int, int]],
        *,
        dry_run: bool = False,
        at: datetime | None = None,
    ) -> tuple[dict[int, int], int]:
        """Delete (or count) what retention removes; per event type code, and files vacuumed.

        ``cutoffs`` maps each type code to (before_ts, max_epoch): its rows with
        ``ts < before_ts`` (all in epochs <= max_epoch) are past retention.
        """
        whole = f"epoch < {int(first_kept_epoch)}"
        per_type = [
            f"(event_type = {int(code)} AND epoch <= {int(max_epoch)} AND ts < {int(before)})"
            for code, (before, max_epoch) in sorted(cutoffs.items())
        ]
        if dry_run:
            condition = " OR ".join([whole, *per_type])
            return self._count(condition), 0
        with self.store.hot.lake_lock():
            counts = self._count(whole)
            if counts:
                self.lake.delete(whole, "retention")
            for term in per_type:
                found = self._count(term)
                for code, n in found.items():
                    counts[code] = counts.get(code, 0) + n
                if found:
                    self.lake.delete(term, "retention")
            vacuumed = self.lake.vacuum() if counts else 0
            if counts and at is not None:
                self.store.hot.note("vacuum", int(at.timestamp() * 1000))
        return counts, vacuumed

    def erase(self, subjects: Sequence[tuple[int, int]], at: datetime | None = None) -> LakeErased:
        """Rewrite each epoch holding one of ``subjects`` (epoch, user pseudonym) without them.

        Call with the lake lock held (service/ops/erasure.py holds it across both tiers).
        """
        snapshot = self.lake.snapshot()
        if snapshot.empty or not subjects:
            return LakeErased(0, 0, 0, searched=snapshot.version >= 0)
        by_epoch: dict[int, list[int]] = {}
        for epoch, user_ps in subjects:
            by_epoch.setdefault(int(epoch), []).append(int(user_ps))
        con = duckdb.connect()
        erased = rewritten = 0
        try:
            _files_view(con, snapshot)
            for epoch, pseudonyms in sorted(by_epoch.items()):
                listed = ", ".join(str(p) for p in pseudonyms)  # integers only, in memory
                ((n,),) = con.execute(
                    f"SELECT count(*) FROM events WHERE epoch = {epoch} AND user_ps IN ({listed})"
                ).fetchall()
                if not n:
                    continue
                kept = con.sql(
                    f"SELECT {', '.join(SCHEMA.names)} FROM lake WHERE epoch = {epoch} "
                    f"AND (user_ps IS NULL OR user_ps NOT IN ({listed}))"
                ).to_arrow_table()
                assert kept is not None
                self.lake.replace_epoch(epoch, kept.cast(SCHEMA))
                erased += int(n)
                rewritten += 1
        finally:
            con.close()
        vacuumed = self.lake.vacuum() if rewritten else 0
        if rewritten and at is not None:
            self.store.hot.note("vacuum", int(at.timestamp() * 1000))
        return LakeErased(erased, rewritten, vacuumed)
