"""Memory as the benches report it: anonymous pages apart from mapped file pages.

VmHWM and ru_maxrss count every resident page, file-backed ones included: a query over a
1.3 GB SQLite file read through mmap shows a "peak" of over a gigabyte that the kernel
can drop at any time and that several processes share. What a process really costs is
its anonymous memory (heap, stacks, Arrow buffers): ``RssAnon`` in /proc/<pid>/status.
Linux keeps no peak of RssAnon, so `Sampler` samples it (and ``RssFile`` + ``RssShmem``,
the mapped pages) in a background thread and keeps the largest of each. The SQLite,
DuckDB and Polars work being measured releases the GIL, so the sampler keeps running.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

__all__ = ["Memory", "Sampler", "memory_of", "session_pids", "tree_pids"]


@dataclass(frozen=True)
class Memory:
    """Resident memory in MB: anonymous pages, and mapped file (and shared) pages."""

    anon_mb: float = 0.0
    mapped_mb: float = 0.0

    def __add__(self, other: Memory) -> Memory:
        return Memory(self.anon_mb + other.anon_mb, self.mapped_mb + other.mapped_mb)

    def peak(self, other: Memory) -> Memory:
        return Memory(max(self.anon_mb, other.anon_mb), max(self.mapped_mb, other.mapped_mb))


def memory_of(pid: int | str = "self") -> Memory:
    """RssAnon and RssFile + RssShmem of one process (zero if it is gone)."""
    kb: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssFile", "RssShmem"):
                kb[name] = int(value.split()[0])
    except (OSError, ValueError):
        return Memory()
    return Memory(
        kb.get("RssAnon", 0) / 1024, (kb.get("RssFile", 0) + kb.get("RssShmem", 0)) / 1024
    )


def session_pids(session: int) -> list[int]:
    """Every live process of a session (a server and its worker processes)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[3]) == session:
            pids.append(int(entry.name))
    return pids


def tree_pids(root: int) -> list[int]:
    """A process and all its live descendants (a server and the workers it forked)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                todo += [int(child) for child in task.read_text().split()]
            except OSError:
                continue
    return found


class Sampler:
    """The peak of the summed memory of some processes, sampled every ``interval_s``.

    ``pids`` is called at every sample, so processes that start or exit are followed:

        with Sampler() as memory:          # this process
            run()
        memory.peak.anon_mb, memory.peak.mapped_mb
    """

    def __init__(
        self,
        pids: Callable[[], Iterable[int | str]] = lambda: ["self"],
        interval_s: float = 0.005,
    ) -> None:
        self._pids = pids
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self.peak = Memory()

    def sample(self) -> None:
        total = Memory()
        for pid in self._pids():
            total += memory_of(pid)
        self.peak = self.peak.peak(total)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.sample()

    def __enter__(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()
