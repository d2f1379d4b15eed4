"""The chat signals as events: regenerate, stop_generation and feedback, checked locally.

Each builder returns the dict ``Client.track`` takes, for one shown answer (a `Turn`),
and refuses a value the server would reject, so a mistake shows up in the app's own
traceback instead of as a rejected event later:

    turn = Turn(user_id=u, session_id=s, query_id=q, response_id=r, context={"surface": "chat"})
    tacit.track(feedback(turn, "up", rating=5))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from privacy.events import MAX_ATTEMPT, MAX_DURATION_MS

__all__ = ["Turn", "feedback", "regenerate", "stop_generation"]


@dataclass(frozen=True)
class Turn:
    """The identifiers (and context labels) of one answer shown to one person."""

    user_id: str
    session_id: str
    query_id: str
    response_id: str
    context: Mapping[str, str] = field(default_factory=dict)

    def event(
        self, event_type: str, payload: dict[str, Any], timestamp: datetime | None
    ) -> dict[str, Any]:
        """The event of this answer (``timestamp`` None: the client stamps it on track)."""
        body: dict[str, Any] = {
            "event_type": event_type,
            "user_id": self.user_id,
            "session_id": self.session_id,
            "query_id": self.query_id,
            "response_id": self.response_id,
            "payload": payload,
        }
        if self.context:
            body["context"] = dict(self.context)
        if timestamp is not None:
            body["timestamp"] = timestamp
        return body


def _whole(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return value


def regenerate(turn: Turn, attempt: int, *, timestamp: datetime | None = None) -> dict[str, Any]:
    """The person asked for another answer; ``attempt`` counts the requests (1..20)."""
    attempt = _whole("attempt", attempt, 1, MAX_ATTEMPT)
    return turn.event("regenerate", {"attempt": attempt}, timestamp)


def stop_generation(
    turn: Turn, after_ms: int, *, timestamp: datetime | None = None
) -> dict[str, Any]:
    """The person stopped a streaming answer ``after_ms`` after it started."""
    after_ms = _whole("after_ms", after_ms, 0, MAX_DURATION_MS)
    return turn.event("stop_generation", {"after_ms": after_ms}, timestamp)


def feedback(
    turn: Turn,
    thumbs: Literal["up", "down"],
    *,
    rating: int | None = None,
    timestamp: datetime | None = None,
) -> dict[str, Any]:
    """An explicit rating: thumbs up or down, optionally 1..5 stars. No free text."""
    if thumbs not in ("up", "down"):
        raise ValueError(f'thumbs must be "up" or "down", not {thumbs!r}')
    payload: dict[str, Any] = {"thumbs": thumbs}
    if rating is not None:
        payload["rating"] = _whole("rating", rating, 1, 5)
    return turn.event("feedback", payload, timestamp)
