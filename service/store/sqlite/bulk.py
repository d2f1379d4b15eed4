"""Multi-row statements for the hot path.

Rows go in as multi-row INSERTs (and keys are looked up with multi-row VALUES lists) of a
few fixed sizes: one statement, and one release of the GIL, per chunk instead of per row,
and a bounded set of statement texts for sqlite3's statement cache.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from itertools import chain
from typing import Any

CHUNKS = (256, 64, 16, 4, 1)  # 25 columns x 256 rows: well under 32766 variables


def values(width: int, rows: int) -> str:
    """``(?,?),(?,?)...``: ``rows`` groups of ``width`` placeholders."""
    one = "(" + ",".join("?" * width) + ")"
    return ",".join([one] * rows)


def chunked(items: Sequence[Any]) -> Iterator[tuple[int, Sequence[Any]]]:
    start = 0
    for size in CHUNKS:
        while len(items) - start >= size:
            yield size, items[start : start + size]
            start += size


def execute(
    conn: sqlite3.Connection, statements: dict[int, str], rows: Sequence[Any]
) -> sqlite3.Cursor | None:
    """Run the statement of each chunk size over ``rows``, a chunk at a time; the cursor
    of the last chunk (its ``lastrowid`` is the last row's), None when ``rows`` is empty."""
    cursor = None
    for size, chunk in chunked(rows):
        cursor = conn.execute(statements[size], list(chain.from_iterable(chunk)))
    return cursor


def select(
    conn: sqlite3.Connection, statements: dict[int, str], rows: Sequence[Any]
) -> Iterator[Any]:
    """The rows each chunk's query returns."""
    for size, chunk in chunked(rows):
        yield from conn.execute(statements[size], list(chain.from_iterable(chunk)))
