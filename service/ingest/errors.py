"""Why a whole batch was refused. Nothing of a refused batch was stored or acknowledged;
the HTTP layer maps each to its status in one place (service/api/routes/events.py)."""

from __future__ import annotations


class IngestError(Exception):
    """A batch refused as a whole; the message says what to do."""


class BadBatch(IngestError):
    """The request as a whole is unusable (400); the message says how to fix it."""


class NotStored(IngestError):
    """The batch could not be written durably (the writer or the store failed, or the
    service is stopping): retry it with the same event ids (503)."""
