"""The Python client's chat-signal builders: events the server accepts, mistakes refused
before anything is sent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from privacy.events import EVENT_ADAPTER
from service.client import Turn, feedback, regenerate, stop_generation

TURN = Turn("user-1", "session-1", "query-1", "response-1", {"surface": "chat"})
AT = datetime(2026, 11, 20, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "built",
    [
        regenerate(TURN, 2, timestamp=AT),
        stop_generation(TURN, 1_500, timestamp=AT),
        feedback(TURN, "down", timestamp=AT),
        feedback(TURN, "up", rating=5, timestamp=AT),
    ],
)
def test_each_builder_makes_an_event_the_event_model_accepts(built: dict[str, object]) -> None:
    parsed = EVENT_ADAPTER.validate_python({**built, "event_id": "ev-1"}, strict=False)
    assert parsed.event_type == built["event_type"]
    assert parsed.context.surface == "chat"


def test_feedback_without_stars_carries_no_rating() -> None:
    assert feedback(TURN, "up")["payload"] == {"thumbs": "up"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: regenerate(TURN, 0), "attempt must be a whole number from 1 to 20"),
        (lambda: regenerate(TURN, 21), "attempt must be a whole number from 1 to 20"),
        (lambda: stop_generation(TURN, -5), "after_ms must be a whole number from 0"),
        (lambda: feedback(TURN, "meh"), 'thumbs must be "up" or "down"'),  # type: ignore[arg-type]
        (lambda: feedback(TURN, "up", rating=True), "rating must be a whole number from 1 to 5"),
        (lambda: feedback(TURN, "up", rating=6), "rating must be a whole number from 1 to 5"),
    ],
)
def test_a_value_the_server_would_reject_is_refused_here_saying_what_is_allowed(
    call: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call()  # type: ignore[operator]
