"""Time as Unix milliseconds (service/store/rows.py): exact for every aware datetime,
whatever its zone object, and refused for a naive one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter

from privacy.events import Timestamp
from service.store.rows import to_ms

TIMESTAMPS = TypeAdapter(list[Timestamp])
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def reference(t: datetime) -> int:
    """Exact, the slow way: whole microseconds since the epoch, floored to ms."""
    delta = t.astimezone(UTC).replace(tzinfo=None) - EPOCH.replace(tzinfo=None)
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    return micros // 1000


instants = st.datetimes(
    min_value=datetime(1900, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
offsets = st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1).map(
    lambda minutes: timedelta(minutes=minutes)
)


@given(instants, offsets)
def test_a_timestamp_as_pydantic_parses_it_converts_exactly(
    instant: datetime, offset: timedelta
) -> None:
    local = instant.astimezone(timezone(offset))
    [parsed] = TIMESTAMPS.validate_json(json.dumps([local.isoformat()]))
    assert type(parsed.tzinfo).__name__ == "TzInfo"  # the zone object the fast path keeps
    assert to_ms(parsed) == reference(parsed) == reference(instant)


@given(instants, offsets)
def test_a_fixed_offset_datetime_converts_exactly(instant: datetime, offset: timedelta) -> None:
    assert to_ms(instant.astimezone(timezone(offset))) == reference(instant)


@pytest.mark.parametrize(
    "wall",
    [
        datetime(2026, 3, 29, 0, 59, 59, 999_999),  # the hour before Europe's spring jump
        datetime(2026, 3, 29, 3, 0, 0, 1),  # and after it
        datetime(2026, 10, 25, 2, 30, fold=0),  # the autumn hour, first pass
        datetime(2026, 10, 25, 2, 30, fold=1),  # and second pass
    ],
)
def test_a_zone_with_daylight_saving_converts_exactly(wall: datetime) -> None:
    paris = wall.replace(tzinfo=ZoneInfo("Europe/Paris"))
    assert to_ms(paris) == reference(paris)
    # A second datetime of the same zone object must not share a "fast" epoch with it.
    winter = datetime(2026, 1, 15, 12, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert to_ms(winter) - to_ms(paris) == reference(winter) - reference(paris)


class Unhashable(tzinfo):
    """A fixed offset as some libraries write it: equality defined, so no hash."""

    def __init__(self, minutes: int) -> None:
        self.offset = timedelta(minutes=minutes)

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return self.offset

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unhashable) and other.offset == self.offset

    __hash__ = None  # type: ignore[assignment]


def test_a_zone_that_cannot_be_a_dict_key_converts_exactly() -> None:
    t = datetime(2026, 11, 26, 12, 0, 0, 123_456, tzinfo=Unhashable(-330))
    assert to_ms(t) == reference(t)


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(TypeError):
        to_ms(datetime(2026, 11, 26, 12, 0))
