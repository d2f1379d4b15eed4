"""A change counter shared by every process that opens one database (a seqlock).

Some tables are read on every request and change a few times a year: the tokens. A
process may keep what it read of them while the counter says nothing changed, and
reading the counter is reading eight bytes of a memory-mapped file beside the database,
where a read transaction would cost a worker 100-150 µs of CPU (its page cache is cold
whenever another process committed, which under ingestion is all the time).

A change makes the counter odd, commits, and makes it even again, holding a file lock
throughout so that changes take turns. A reader keeps a result only if it saw the same
even value before and after reading it, and uses a kept result only while the counter
still has that value. So:

- once a change has committed, no reader anywhere uses anything read before it: the
  counter moved to odd before the commit, and every later read sees that or a later value;
- a change whose process died before its end leaves the counter odd, and readers then
  keep nothing (every request reads the table) until the next change completes.

Changes made to the database by other means (a restored file, an SQL shell) do not move
the counter: a running service sees them after its next restart or its next change.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_COUNTER = struct.Struct("<Q")  # 8 aligned bytes: read and written as one machine word


class Generation:
    def __init__(self, path: Path) -> None:
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _COUNTER.size:
                os.ftruncate(fd, _COUNTER.size)  # zero-filled: even, nothing changed yet
            self._map = mmap.mmap(fd, _COUNTER.size)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def read(self) -> int:
        """The current value: even when no change is under way."""
        value: int = _COUNTER.unpack_from(self._map)[0]
        return value

    @contextmanager
    def change(self) -> Iterator[None]:
        """Bracket a change: readers stop trusting what they kept before it."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            start = self.read()
            # An odd value here is a change that died half-way: step past it.
            self._write(start + 1 if start % 2 == 0 else start + 2)
            try:
                yield
            finally:
                self._write(self.read() + 1)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _write(self, value: int) -> None:
        _COUNTER.pack_into(self._map, 0, value)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
