"""Reading the lake while another node checkpoints and cleans its log.

Upkeep on one node creates a checkpoint and removes the log before it; a reader on
another node that had just read `_last_checkpoint` then finds that checkpoint gone.
Measured before the fix: about one open in ten failed under this churn ("Object at
location .../_delta_log/...checkpoint.parquet not found"); the lake crash test met it
once in a full run; with only the open retried, a fresh-clone CI run failed it once more
(deltalake reads the log lazily, so the miss surfaced in `transaction_version`, after
the open). Every snapshot must succeed and see a version at least as new as the last.
"""

from __future__ import annotations

import threading
from pathlib import Path

from queries_data import event_row

from service.lake.table import Lake

COMMITS = 200


def test_snapshots_read_while_the_log_is_checkpointed_and_cleaned_never_fail(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path / "lake")
    rows = [event_row("response_shown", user=u) for u in range(1, 40)]
    lake.append(rows, 1)
    done = threading.Event()
    failures: list[BaseException] = []

    def upkeep() -> None:  # another node: seal, checkpoint, clean the log
        try:
            for batch in range(2, COMMITS + 2):
                lake.append(rows, batch)
                dt = lake.table()
                assert dt is not None
                dt.create_checkpoint()
                dt.cleanup_metadata()
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)
        finally:
            done.set()

    writer = threading.Thread(target=upkeep)
    writer.start()
    opened, newest = 0, -1
    try:
        while not done.is_set():
            snap = lake.snapshot()
            assert snap.version >= newest
            newest = snap.version
            opened += 1
    finally:
        done.set()
        writer.join()
    assert not failures, failures
    assert opened > 50, f"only {opened} opens overlapped the cleanups"
    assert lake.snapshot().sealed_batch == COMMITS + 1
