"""A fixed time quantum for releases: drawing the noise takes the same time whatever it is.

OpenDP's samplers loop a number of times that grows with the magnitude of the draw:
measured here, a discrete Laplace draw at scale 1e6 that lands in the top tenth of
magnitudes takes ~7 % longer than one in the bottom tenth (Spearman 0.2 over 20 000
draws). Someone who times many answers could learn which ones carry large noise, which
DP does not account for. Wrapped in `ReleaseQuantum.hold`, the noisy phase (sampling and
post-processing of one release) ends on the next multiple of the quantum after it
began, so its duration is a multiple of the quantum that depends on the number of cells
(public), not on the noise. tests/hardening/test_timing.py measures both.

The quantum covers the noise only. The aggregation before it takes time that grows with
the rows it reads (the data volume, not any one person); docs/threat-model.md says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class ReleaseQuantum:
    """Hold a phase until the next multiple of ``quantum_s`` seconds after it began
    (0 turns it off). The clock and the sleep are injected for tests."""

    def __init__(
        self,
        quantum_s: float,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if quantum_s < 0:
            raise ValueError(f"the release quantum must be >= 0 s, got {quantum_s}")
        self.quantum_s = quantum_s
        self.clock = clock
        self.sleep = sleep

    def end_of(self, elapsed: float) -> float:
        """The duration the phase is given: the first multiple of the quantum >= elapsed."""
        if self.quantum_s == 0:
            return elapsed
        return max(1, math.ceil(elapsed / self.quantum_s)) * self.quantum_s

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Run the block; then wait until its duration is a multiple of the quantum.
        Blocking: call it where the release runs, in a worker thread (not the event loop)."""
        start = self.clock()
        try:
            yield
        finally:  # a failing release is held too: its timing says nothing either
            elapsed = self.clock() - start
            wait = self.end_of(elapsed) - elapsed
            if wait > 0:
                self.sleep(wait)
