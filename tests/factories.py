"""Valid events of every type, for tests to start from and break on purpose."""

from __future__ import annotations

import itertools
from datetime import datetime
from typing import Any

PAYLOADS: dict[str, dict[str, Any]] = {
    "response_shown": {"position": 1, "candidates": 3},
    "click_through": {"position": 2, "candidates": 3},
    "reformulation": {"similarity": 0.8},
    "copy_paste": {
        "span_start": 10,
        "span_end": 310,
        "span_length": 300,
        "destination": "external",
    },
    "edit": {"edit_ratio": 0.1},
    "dwell": {"dwell_ms": 12_000, "scroll_depth": 0.7},
    "abandonment": {"after_ms": 30_000},
    "task_completion": {"outcome": "success"},
    "regenerate": {"attempt": 2},
    "stop_generation": {"after_ms": 4_000},
    "feedback": {"thumbs": "up", "rating": 4},
}

_ids = itertools.count()


def event(
    event_type: str = "response_shown",
    *,
    at: datetime,
    user: str = "user-1",
    session: str = "session-1",
    **overrides: Any,
) -> dict[str, Any]:
    n = next(_ids)
    body: dict[str, Any] = {
        "event_id": f"ev-{n}",
        "user_id": user,
        "session_id": session,
        "query_id": f"query-{n}",
        "response_id": f"response-{n}",
        "timestamp": at.isoformat(),
        "event_type": event_type,
        "payload": dict(PAYLOADS[event_type]),
        "context": {"surface": "chat", "task_type": "coding", "cohort": "control"},
    }
    body.update(overrides)
    return body
