"""Process tuning shared by the long-running serving processes: workers and the writer."""

from __future__ import annotations

import gc

# A request allocates thousands of short-lived objects (a 100-event batch: ~1,000), so
# with Python's default threshold of 700 allocations the collector ran several times per
# request, each time traversing the long-lived app (FastAPI routes, pydantic schemas).
GC_THRESHOLDS = (50_000, 20, 20)


def settle_heap() -> None:
    """Freeze what exists now out of collection, and collect the young less often.

    Call once the process is built (app, store, caches): what exists then lives as long
    as the process, so the collector never needs to traverse it again.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
