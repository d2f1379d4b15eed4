"""A deadline for the noisy phase of a release, fixed by its plan before it starts.

OpenDP's samplers loop a number of times that grows with the magnitude of the draw:
measured here, a discrete Laplace draw at scale 1e6 that lands in the top tenth of
magnitudes takes ~7 % longer than one in the bottom tenth (Spearman 0.2 over 20 000
draws). Someone who times many answers could learn which ones carry large noise, which
DP does not account for. Wrapped in `ReleaseDeadline.hold`, the noisy phase (planning
the scales and sampling one release's vectors) ends at a deadline computed
from the number of values it noises (public, from the plan) alone:
``base_s + values x per_value_s``. The phase's duration is then that allowance, whatever
the noise, as long as the phase fits in it; the defaults are ~5x what this phase
measured on a loaded 2-core machine. A phase that overruns its deadline ends when it is
done, and is counted (``overruns``, and a warning) so that an operator raises the
allowance: only then does its duration depend on the sampler again. (Rounding up to the
next multiple of a quantum, as before, let the number of quanta depend on the sampler's
time once a release took longer than one quantum.) tests/hardening/test_timing.py
measures both.

The deadline covers the noise only. The post-processing after it (intervals, rows) reads
only the noisy vectors, so its duration reveals nothing the answer does not. The
aggregation before it takes time that grows with
the rows it reads (the data volume, not any one person); docs/threat-model.md says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["PER_VALUE_S", "ReleaseDeadline"]

PER_VALUE_S = 100e-6
"""Allowance per noised value: OpenDP draws one in 10-25 µs here, planning adds a little."""

log = logging.getLogger("tacit.queries")


class ReleaseDeadline:
    """Hold a phase until ``base_s + values x per_value_s`` seconds after it began
    (``base_s`` = 0 turns it off). The clock and the sleep are injected for tests."""

    def __init__(
        self,
        base_s: float,
        per_value_s: float = PER_VALUE_S,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if base_s < 0 or per_value_s < 0:
            raise ValueError(
                f"the release deadline needs base_s >= 0 and per_value_s >= 0, "
                f"got {base_s} and {per_value_s}"
            )
        self.base_s = base_s
        self.per_value_s = per_value_s
        self.clock = clock
        self.sleep = sleep
        self.overruns = 0
        self._lock = threading.Lock()

    def allowance(self, values: int) -> float:
        """The duration a phase noising ``values`` values is given (0: no deadline)."""
        if self.base_s == 0:
            return 0.0
        return self.base_s + values * self.per_value_s

    @contextmanager
    def hold(self, values: int) -> Iterator[None]:
        """Run the block; then wait until the deadline its plan sets.

        Blocking: call it where the release runs, in a worker thread (not the event loop).
        """
        allowance = self.allowance(values)
        start = self.clock()
        try:
            yield
        finally:  # a failing release is held too: its timing says nothing either
            if allowance > 0:
                left = start + allowance - self.clock()
                if left > 0:
                    self.sleep(left)
                else:
                    with self._lock:
                        self.overruns += 1
                    log.warning(
                        "a release of %d values took %.1f ms more than its %.1f ms deadline: "
                        "its duration may reflect its noise; raise release_quantum_s",
                        values,
                        -left * 1000,
                        allowance * 1000,
                    )
