"""One batch from its bytes to its report: steps 1-7, the durable write and the counts.

The HTTP layer (service/api/routes/events.py) authenticates, checks the content type and
reads the body with its size limit; everything after that is here, so that the FastAPI
route and the raw ASGI endpoint in front of it serve a batch the same way. A batch is
refused as a whole only by an :class:`IngestError` (a body that is not a batch, or a
write that did not become durable); one bad event never sinks the others.
"""

from __future__ import annotations

from collections.abc import Callable

from service.api.telemetry import Telemetry
from service.ingest.errors import NotStored
from service.ingest.parse import parse_batch
from service.ingest.pipeline import Ingestor, Report
from service.ingest.writer import BatchWriter, GroupWriter
from service.ingest.writer_process import RemoteWriter
from service.settings import Settings
from service.store.base import EventRepository, Principal, StoreUnavailable


def writer_for(settings: Settings, events: EventRepository) -> BatchWriter:
    """Where this process writes its batches, decided here only: through the writer
    process when `tacit serve` started one (SQLite: service/ingest/writer_process.py),
    else a group-commit thread of this process."""
    if settings.writer_socket:
        return RemoteWriter(settings.writer_socket)
    return GroupWriter(events)


def _admit_all(events: int) -> None:
    return None


class Ingestion:
    """What the events endpoint calls; one per app, shared by every request."""

    def __init__(self, ingestor: Ingestor, telemetry: Telemetry, max_batch_events: int) -> None:
        self.ingestor = ingestor
        self.telemetry = telemetry
        self.max_batch_events = max_batch_events
        self.writer: BatchWriter | None = None  # set when the app starts (lifespan)

    async def submit(
        self,
        body: bytes,
        principal: Principal,
        admit: Callable[[int], None] = _admit_all,
    ) -> Report:
        """Validate, prepare and durably write one batch; the report of every event.

        `admit(n)` is asked once the batch's size is known and before any work on its
        events (the token's events-per-second limit); it refuses by raising.
        """
        parsed = parse_batch(body, self.max_batch_events)  # step 1; BadBatch if unusable
        admit(parsed.size)
        if principal.source_id is None:
            raise ValueError("an ingest principal always carries a source: this is a bug")
        prepared = self.ingestor.prepare(parsed, principal.source_id)  # steps 2-6
        flags: list[bool] = []
        if prepared.batch.keys or prepared.batch.quarantine:  # step 7
            if self.writer is None:
                raise NotStored("the service is not started yet: retry with the same event ids")
            try:
                flags = await self.writer.write(prepared.batch)
            except StoreUnavailable:
                raise  # the database is down: the HTTP layer answers it as an outage
            except Exception as exc:
                # Whatever failed (the store, the writer process, a shutdown), nothing
                # of the batch is acknowledged, so resending it is safe and loses nothing.
                raise NotStored(
                    "the batch could not be stored durably and none of it was "
                    "acknowledged: retry it with the same event ids"
                ) from exc
        report = self.ingestor.report(prepared, flags)
        self.telemetry.count_events(
            report.accepted, report.duplicates, report.sampled_out, report.rejected_by_reason
        )
        return report
