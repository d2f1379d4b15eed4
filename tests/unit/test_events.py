"""The event schema: what an app may send, and nothing more.

Events are validated from JSON text, exactly as the ingestion endpoint does, and each
rejection is checked by the field path the client is told about.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import T0
from factories import PAYLOADS, event
from pydantic import ValidationError

from privacy.events import EVENT_ADAPTER, Event, EventType
from service.ingest.parse import field_errors


def validate(document: dict[str, Any]) -> Event:
    return EVENT_ADAPTER.validate_json(json.dumps(document))


def rejected_fields(document: dict[str, Any] | str) -> list[str]:
    """The field paths a client is told about when ``document`` is rejected."""
    text = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(ValidationError) as caught:
        EVENT_ADAPTER.validate_json(text)
    return [e.field for e in field_errors(caught.value)]


def with_payload(event_type: str, **changes: Any) -> dict[str, Any]:
    document = event(event_type, at=T0)
    document["payload"].update(changes)
    return document


# --- every type with its valid payload ---------------------------------------------------


@pytest.mark.parametrize("event_type", [t.value for t in EventType])
def test_every_event_type_is_accepted_with_its_valid_payload(event_type: str) -> None:
    parsed = validate(event(event_type, at=T0))
    assert parsed.event_type == event_type
    assert parsed.payload.model_dump() == PAYLOADS[event_type]


def test_every_event_type_has_a_valid_payload_in_the_factories() -> None:
    assert set(PAYLOADS) == {t.value for t in EventType}


def test_context_is_optional() -> None:
    document = event(at=T0)
    del document["context"]
    assert validate(document).context.surface is None


def test_sent_at_is_optional_and_kept_when_given() -> None:
    document = event(at=T0, sent_at="2026-11-20T12:00:05+00:00")
    assert validate(document).sent_at == T0.replace(second=5)


# --- numeric bounds, each one step outside -------------------------------------------------

INSIDE_EDGES = [
    ("response_shown", {"position": 1, "candidates": 1}),
    ("response_shown", {"position": 50, "candidates": 50}),
    ("click_through", {"position": 50, "candidates": 50}),
    ("reformulation", {"similarity": 0}),
    ("reformulation", {"similarity": 1}),
    ("copy_paste", {"span_start": 0, "span_end": 1, "span_length": 1}),
    ("copy_paste", {"span_start": 0, "span_end": 10_000_000, "span_length": 10_000_000}),
    ("edit", {"edit_ratio": 0.0}),
    ("edit", {"edit_ratio": 1.0}),
    ("dwell", {"dwell_ms": 0, "scroll_depth": 0.0}),
    ("dwell", {"dwell_ms": 86_400_000, "scroll_depth": 1.0}),
    ("abandonment", {"after_ms": 0}),
    ("abandonment", {"after_ms": 86_400_000}),
    ("task_completion", {"outcome": "failure"}),
    ("copy_paste", {"destination": "internal"}),
]


@pytest.mark.parametrize(("event_type", "changes"), INSIDE_EDGES)
def test_values_at_the_bounds_are_accepted(event_type: str, changes: dict[str, Any]) -> None:
    validate(with_payload(event_type, **changes))


OUTSIDE = [
    ("response_shown", {"position": 0}, "payload.position"),
    ("response_shown", {"position": 51, "candidates": 50}, "payload.position"),
    ("response_shown", {"candidates": 0}, "payload.candidates"),
    ("response_shown", {"candidates": 51}, "payload.candidates"),
    ("click_through", {"position": 0}, "payload.position"),
    ("click_through", {"position": 51, "candidates": 50}, "payload.position"),
    ("click_through", {"position": -1}, "payload.position"),
    ("reformulation", {"similarity": -0.01}, "payload.similarity"),
    ("reformulation", {"similarity": 1.01}, "payload.similarity"),
    ("reformulation", {"similarity": 1e308}, "payload.similarity"),
    ("reformulation", {"similarity": -1e308}, "payload.similarity"),
    ("copy_paste", {"span_start": -1, "span_length": 301}, "payload.span_start"),
    ("copy_paste", {"span_start": 0, "span_end": 0, "span_length": 1}, "payload.span_end"),
    ("copy_paste", {"span_start": 0, "span_end": 10_000_001, "span_length": 1}, "payload.span_end"),
    ("copy_paste", {"span_start": 0, "span_end": 1, "span_length": 0}, "payload.span_length"),
    ("copy_paste", {"span_start": 10_000_001, "span_length": 1}, "payload.span_start"),
    ("copy_paste", {"span_length": 10_000_001}, "payload.span_length"),
    ("edit", {"edit_ratio": -0.01}, "payload.edit_ratio"),
    ("edit", {"edit_ratio": 1.01}, "payload.edit_ratio"),
    ("edit", {"edit_ratio": 1e308}, "payload.edit_ratio"),
    ("dwell", {"dwell_ms": -1}, "payload.dwell_ms"),
    ("dwell", {"dwell_ms": 86_400_001}, "payload.dwell_ms"),
    ("dwell", {"dwell_ms": 2**63}, "payload.dwell_ms"),
    ("dwell", {"scroll_depth": -0.01}, "payload.scroll_depth"),
    ("dwell", {"scroll_depth": 1.01}, "payload.scroll_depth"),
    ("abandonment", {"after_ms": -1}, "payload.after_ms"),
    ("abandonment", {"after_ms": 86_400_001}, "payload.after_ms"),
    ("abandonment", {"after_ms": -(2**63)}, "payload.after_ms"),
    ("task_completion", {"outcome": "partial"}, "payload.outcome"),
    ("task_completion", {"outcome": "SUCCESS"}, "payload.outcome"),
    ("copy_paste", {"destination": "clipboard"}, "payload.destination"),
    ("copy_paste", {"destination": ""}, "payload.destination"),
]


@pytest.mark.parametrize(("event_type", "changes", "field"), OUTSIDE)
def test_a_value_one_step_outside_its_bound_is_rejected(
    event_type: str, changes: dict[str, Any], field: str
) -> None:
    assert rejected_fields(with_payload(event_type, **changes)) == [field]


@pytest.mark.parametrize("event_type", ["response_shown", "click_through"])
def test_position_beyond_the_candidates_is_rejected(event_type: str) -> None:
    document = with_payload(event_type, position=4, candidates=3)
    assert rejected_fields(document) == ["payload"]


@pytest.mark.parametrize(
    ("start", "end", "length"), [(10, 310, 299), (10, 310, 301), (10, 310, 310), (0, 5, 4)]
)
def test_span_length_other_than_end_minus_start_is_rejected(
    start: int, end: int, length: int
) -> None:
    document = with_payload("copy_paste", span_start=start, span_end=end, span_length=length)
    assert rejected_fields(document) == ["payload"]


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_rejected(literal: str) -> None:
    # Not valid JSON, but some encoders emit them; they must never reach the store.
    text = json.dumps(with_payload("reformulation", similarity=0.5))
    assert rejected_fields(text.replace('"similarity": 0.5', f'"similarity": {literal}')) == [
        "payload.similarity"
    ]


# --- no coercion ---------------------------------------------------------------------------

COERCIONS = [
    ("response_shown", "position", "1"),
    ("response_shown", "candidates", "3"),
    ("reformulation", "similarity", "0.5"),
    ("edit", "edit_ratio", "0"),
    ("dwell", "dwell_ms", "12000"),
    ("dwell", "scroll_depth", "1"),
    ("abandonment", "after_ms", "30000"),
    ("response_shown", "position", True),
    ("reformulation", "similarity", False),
    ("response_shown", "position", 1.0),
    ("abandonment", "after_ms", 1.5),
]


@pytest.mark.parametrize(("event_type", "name", "value"), COERCIONS)
def test_numbers_must_be_json_numbers_of_their_kind(event_type: str, name: str, value: Any) -> None:
    assert rejected_fields(with_payload(event_type, **{name: value})) == [f"payload.{name}"]


def test_identifier_given_as_a_json_number_is_rejected() -> None:
    assert rejected_fields(event(at=T0, user_id=12345)) == ["user_id"]


# --- unknown fields and types --------------------------------------------------------------


def test_unknown_top_level_field_is_rejected() -> None:
    assert rejected_fields(event(at=T0, query_text="how do I ...")) == ["query_text"]


def test_unknown_payload_field_is_rejected() -> None:
    assert rejected_fields(with_payload("edit", edited_text="...")) == ["payload.edited_text"]


def test_unknown_context_key_is_rejected() -> None:
    document = event(at=T0, context={"surface": "chat", "email": "a@example.com"})
    assert rejected_fields(document) == ["context.email"]


def test_a_payload_of_another_type_is_rejected() -> None:
    document = event("edit", at=T0, payload=PAYLOADS["dwell"])
    assert set(rejected_fields(document)) == {
        "payload.edit_ratio",
        "payload.dwell_ms",
        "payload.scroll_depth",
    }


@pytest.mark.parametrize("event_type", ["page_view", "", "Response_Shown", "response_shown "])
def test_unknown_event_type_is_rejected(event_type: str) -> None:
    document = event(at=T0)
    document["event_type"] = event_type
    assert rejected_fields(document) == ["event_type"]


@pytest.mark.parametrize(
    "name",
    ["event_id", "user_id", "session_id", "query_id", "response_id", "timestamp", "payload"],
)
def test_a_missing_required_field_is_rejected(name: str) -> None:
    document = event(at=T0)
    del document[name]
    assert rejected_fields(document) == [name]


def test_a_missing_event_type_is_rejected() -> None:
    document = event(at=T0)
    del document["event_type"]
    assert rejected_fields(document) == ["event_type"]


@pytest.mark.parametrize("label", ["has space", "a@b", "x" * 65, ""])
def test_context_label_outside_the_label_charset_is_rejected(label: str) -> None:
    document = event(at=T0, context={"surface": label})
    assert rejected_fields(document) == ["context.surface"]


# --- identifiers ---------------------------------------------------------------------------

IDENTIFIERS = ["user_id", "session_id", "query_id", "response_id"]


@pytest.mark.parametrize("name", IDENTIFIERS)
@pytest.mark.parametrize("value", ["", "u" * 257])
def test_identifier_of_0_or_257_chars_is_rejected(name: str, value: str) -> None:
    assert rejected_fields(event(at=T0, **{name: value})) == [name]


@pytest.mark.parametrize("name", IDENTIFIERS)
def test_identifier_of_1_or_256_chars_of_any_text_is_accepted(name: str) -> None:
    validate(event(at=T0, **{name: "é"}))
    validate(event(at=T0, **{name: "ü" * 256}))


@pytest.mark.parametrize("event_id", ["a", "A-z_0.9:x", "e" * 64])
def test_event_id_of_the_allowed_charset_and_length_is_accepted(event_id: str) -> None:
    assert validate(event(at=T0, event_id=event_id)).event_id == event_id


@pytest.mark.parametrize(
    "event_id", ["", "e" * 65, "has space", "slash/y", "é", "a\nb", "{x}", "a+b"]
)
def test_event_id_outside_the_charset_or_length_is_rejected(event_id: str) -> None:
    assert rejected_fields(event(at=T0, event_id=event_id)) == ["event_id"]


# --- timestamps ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-20T12:00:00Z",
        "2026-11-20T12:00:00+00:00",
        "2026-11-20T13:30:00.123456+01:30",
        "2026-11-20T07:00:00-05:00",
    ],
)
def test_rfc3339_timestamp_with_offset_is_accepted(text: str) -> None:
    assert validate(event(at=T0, timestamp=text)).timestamp.utcoffset() is not None


@pytest.mark.parametrize("name", ["timestamp", "sent_at"])
@pytest.mark.parametrize("text", ["2026-11-20T12:00:00", "2026-11-20T12:00:00.5"])
def test_timestamp_without_offset_is_rejected(name: str, text: str) -> None:
    assert rejected_fields(event(at=T0, **{name: text})) == [name]


@pytest.mark.parametrize("name", ["timestamp", "sent_at"])
@pytest.mark.parametrize(
    "text",
    [
        "yesterday",
        "2026-11-20",
        "20/11/2026 12:00:00+00:00",
        "Fri, 20 Nov 2026 12:00:00 GMT",
        "2026-11-20T25:00:00Z",
        "2026-W47-5T12:00:00Z",
        "",
        "1790000000",
        "1790000000.5",
        "2026-11-20T12:00+00:00",
        "2026-11-20_12:00:00+00:00",
        "2026-11-20T12:00:00+0100",
    ],
)
def test_timestamp_that_is_not_rfc3339_is_rejected(name: str, text: str) -> None:
    assert rejected_fields(event(at=T0, **{name: text})) == [name]


@pytest.mark.parametrize("name", ["timestamp", "sent_at"])
@pytest.mark.parametrize("value", [1_790_000_000, 1_790_000_000.5, 0, True])
def test_timestamp_as_a_json_number_is_rejected(name: str, value: Any) -> None:
    assert rejected_fields(event(at=T0, **{name: value})) == [name]


def test_timestamp_null_is_rejected() -> None:
    assert rejected_fields(event(at=T0, timestamp=None)) == ["timestamp"]


def test_sent_at_null_means_not_given() -> None:
    assert validate(event(at=T0, sent_at=None)).sent_at is None
