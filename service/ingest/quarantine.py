"""What a rejected event leaves behind: its shape and the reason, never its content.

Identifiers, the client's event id among them (ids often embed a user id), are replaced
by pseudonyms under the salt of the epoch the event was received in (so erasure can find
them); timestamps are kept only truncated to the policy's precision, as stored events
are; every other string is kept only when it is one of the schema's own enum values or a
declared context label, else it becomes a placeholder saying its type and length.
Unknown keys are replaced too: a client bug that sends free text never lands in the
quarantine.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from privacy.events import CONTEXT_DIMENSIONS, IDENTIFIER_FIELDS, RFC3339, EventType
from privacy.pseudonym import EpochKeys
from service.ingest.parse import FieldError

_KNOWN_KEYS = {
    "event_id", "timestamp", "sent_at", "event_type", "payload", "context",
    *IDENTIFIER_FIELDS,
    "position", "candidates", "similarity", "span_start", "span_end", "span_length",
    "destination", "edit_ratio", "dwell_ms", "scroll_depth", "after_ms", "outcome",
    "attempt", "thumbs", "rating",
    *CONTEXT_DIMENSIONS,
}  # fmt: skip
_SAFE_STRINGS = {t.value for t in EventType} | {
    *("internal", "external", "success", "failure", "up", "down")
}
_PSEUDONYMIZED = (*IDENTIFIER_FIELDS, "event_id")


def _placeholder(value: Any) -> str:
    if isinstance(value, str):
        return f"<string of {len(value)} chars>"
    return f"<{type(value).__name__}>"


def _pseudonym(ps: int) -> str:
    return f"ps:{ps & 0xFFFFFFFFFFFFFFFF:016x}"


def _coarsened(value: str, precision_s: int) -> str | None:
    """An RFC 3339 time truncated to the precision, in UTC; None if it is not one."""
    match = RFC3339.match(value)
    if match is None:
        return None
    offset = match.group(2).upper().replace("Z", "+00:00")  # the fraction goes anyway
    try:
        seconds = int(datetime.fromisoformat(value[:10] + "T" + value[11:19] + offset).timestamp())
        truncated = datetime.fromtimestamp(seconds - seconds % precision_s, UTC)
    except (ValueError, OverflowError):  # a valid shape, but no time (month 13, year 10000)
        return None
    return truncated.strftime("%Y-%m-%dT%H:%M:%SZ")


def _scalar(key: str, value: Any, labels: set[str], precision_s: int) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        if value in _SAFE_STRINGS or value in labels:
            return value
        if key in ("timestamp", "sent_at") and (kept := _coarsened(value, precision_s)):
            return kept
    return _placeholder(value)


def sanitize(
    raw: Any, keys: EpochKeys, labels: set[str], precision_s: int
) -> tuple[dict[str, Any], int | None]:
    """The quarantined form of a raw event, and its user pseudonym if it had a string user_id.

    ``precision_s`` is the policy's timestamp precision in seconds.
    """
    if not isinstance(raw, dict):
        return {"_not_an_object": _placeholder(raw)}, None
    user: int | None = None
    out: dict[str, Any] = {}
    for key, value in raw.items():
        name = key if key in _KNOWN_KEYS else "<unknown key>"
        if key in _PSEUDONYMIZED:
            if isinstance(value, str):
                ps = keys.pseudonym(key, value)
                if key == "user_id":
                    user = ps
                out[name] = _pseudonym(ps)
            else:
                out[name] = _placeholder(value)
        elif key in ("payload", "context") and isinstance(value, dict):
            out[name] = {
                (k if k in _KNOWN_KEYS else "<unknown key>"): _scalar(k, v, labels, precision_s)
                for k, v in value.items()
            }
        elif name == "<unknown key>":
            out.setdefault(name, []).append(_placeholder(value))
        else:
            out[name] = _scalar(key, value, labels, precision_s)
    return out, user


def encode(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


def encode_errors(errors: Iterable[FieldError]) -> str:
    """The field errors as quarantined: a path keeps only the schema's own key names.

    An unknown key's name is client text (it may be free text), so it becomes the same
    placeholder as in the quarantined event.
    """
    return json.dumps(
        [
            {
                "field": ".".join(
                    p if p in _KNOWN_KEYS or p == "(event)" else "<unknown key>"
                    for p in e.field.split(".")
                ),
                "message": e.message,
            }
            for e in errors
        ]
    )
