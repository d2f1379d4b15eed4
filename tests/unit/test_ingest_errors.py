"""Every way a batch is refused as a whole has its HTTP answer, mapped in one place."""

from __future__ import annotations

import pytest

from service.api.errors import BadRequest, Unavailable
from service.api.routes.events import refusal
from service.ingest.errors import BadBatch, IngestError, NotStored


def test_every_ingest_error_maps_to_its_documented_status() -> None:
    kinds = set(IngestError.__subclasses__())
    assert kinds == {BadBatch, NotStored}, "map the new refusal in routes/events.py:refusal"
    bad = refusal(BadBatch("the body is not JSON"))
    assert isinstance(bad, BadRequest) and bad.message == "the body is not JSON"
    retry = refusal(NotStored("retry it with the same event ids"))
    assert isinstance(retry, Unavailable) and retry.headers == {"Retry-After": "1"}


@pytest.mark.parametrize("kind", [BadBatch, NotStored])
def test_no_ingest_refusal_renders_as_an_internal_error(kind: type[IngestError]) -> None:
    assert refusal(kind("x")).status in {400, 503}
