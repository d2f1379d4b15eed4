"""The policy model and its YAML loader: what a reviewed policy file may say, and how
every mistake in one is reported (file, line, key path and, where known, the choices)."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from privacy.durations import DURATION_PATTERN, parse_duration
from privacy.events import EventType
from privacy.policy import (
    Duration,
    IdentifierAction,
    Identifiers,
    LoadedPolicy,
    Policy,
    PolicyError,
    Problem,
    QueryPolicy,
    format_duration,
    load_policy,
    parse_policy,
    policy_json_schema,
)

POLICIES = Path(__file__).resolve().parents[2] / "policies"
SOURCE = "p.yaml"

MINIMAL = """\
version: 1
name: test
privacy:
  max_per_query: 1.0
  per_analyst: 2.0
  global: 4.0
"""

# "file:line: key.path: message" — the shape of every line of a PolicyError.
PROBLEM_LINE = re.compile(r"^p\.yaml:(\d+): (\S+): (.+)$")


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, SOURCE)
    return info.value.problems


def only_problem(text: str) -> Problem:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    return problems[0]


def with_privacy(**values: object) -> str:
    """MINIMAL with keys of the privacy section replaced or added (flow style)."""
    section = {"max_per_query": 1.0, "per_analyst": 2.0, "global": 4.0, **values}
    return "version: 1\nname: test\nprivacy: " + yaml.safe_dump(section, default_flow_style=True)


# --- the shipped files ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["default.yaml", "strict.yaml"])
def test_shipped_policy_file_loads(name: str) -> None:
    loaded = load_policy(POLICIES / name)
    assert loaded.policy.name == name.removesuffix(".yaml")


def test_default_policy_has_the_reviewed_values() -> None:
    p = load_policy(POLICIES / "default.yaml").policy
    assert (p.identifiers.salt_rotation, p.identifiers.salt_retention) == (
        timedelta(days=1),
        timedelta(days=30),
    )
    assert all(
        p.identifiers.action(f) is IdentifierAction.PSEUDONYMIZE for f in p.identifiers.fields
    )
    assert len(p.identifiers.fields) == 4
    assert p.timestamp_precision == timedelta(minutes=1)
    assert p.event_types == list(EventType)
    assert p.context["surface"] == ["chat", "search", "ide", "docs"]
    assert p.retention.for_type(EventType.DWELL) == timedelta(days=30)
    assert p.retention.for_type(EventType.EDIT) == timedelta(days=90)
    assert p.sampling.rate(EventType.DWELL) == 0.5
    assert p.sampling.rate(EventType.EDIT) == 1.0
    q = p.privacy
    assert (q.accounting, q.max_per_query, q.per_analyst, q.global_cap) == ("pure", 1.0, 4.0, 10.0)
    assert (q.contribution.max_groups_per_user, q.contribution.max_rows_per_group) == (24, 10)


def test_strict_policy_drops_query_and_response_ids_under_zcdp() -> None:
    p = load_policy(POLICIES / "strict.yaml").policy
    assert p.identifiers.action("query_id") is IdentifierAction.DROP
    assert p.identifiers.action("response_id") is IdentifierAction.DROP
    assert (p.privacy.accounting, p.privacy.budget_unit, p.privacy.delta) == ("zcdp", "rho", 1e-8)


def test_minimal_policy_takes_the_documented_defaults() -> None:
    p = parse_policy(MINIMAL).policy
    assert p.identifiers.salt_rotation == timedelta(days=1)
    assert p.identifiers.salt_retention == timedelta(days=30)
    assert p.identifiers.action("session_id") is IdentifierAction.PSEUDONYMIZE
    assert p.timestamp_precision == timedelta(minutes=1)
    assert p.event_types == list(EventType)
    assert p.retention.default == timedelta(days=90)
    assert p.retention.quarantine == timedelta(days=7)
    assert p.sampling.calibration_period == timedelta(days=30)
    assert p.privacy.repeat_window == timedelta(hours=24)
    assert p.privacy.delta == 1e-7
    assert p.privacy.metrics.click_examination_propensity == [1.0, 0.7, 0.5, 0.4, 0.33]
    assert p.privacy.metrics.cohort_level_only == ["dwell_time", "scroll_depth"]


def test_policy_survives_a_json_round_trip_with_durations_as_written() -> None:
    p = load_policy(POLICIES / "strict.yaml").policy
    dumped = p.model_dump(mode="json", by_alias=True)
    assert dumped["identifiers"]["salt_retention"] == "7d"
    assert dumped["privacy"]["global"] == 0.5
    assert Policy.model_validate(dumped) == p


# --- unknown keys, enums, duplicates, structure ----------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "key", "allowed"),
    [
        (MINIMAL + "colour: blue\n", 7, "colour", "version, name, description"),
        (
            MINIMAL + "identifiers:\n  salt_rotation: 1d\n  pepper: 2d\n",
            9,
            "identifiers.pepper",
            "salt_rotation, salt_retention, fields",
        ),
        (
            MINIMAL + "  contribution:\n    max_users: 3\n",
            8,
            "privacy.contribution.max_users",
            "max_groups_per_user, max_rows_per_group",
        ),
    ],
    ids=["top-level", "nested", "deep"],
)
def test_unknown_key_is_named_with_line_path_and_allowed_keys(
    text: str, line: int, key: str, allowed: str
) -> None:
    problem = only_problem(text)
    assert (problem.file, problem.line, problem.key) == (SOURCE, line, key)
    assert "unknown key" in problem.message
    assert allowed in problem.message


def test_wrong_enum_value_lists_the_allowed_values() -> None:
    problem = only_problem(MINIMAL + "  accounting: renyi\n")
    assert (problem.line, problem.key) == (7, "privacy.accounting")
    assert problem.allowed == ("pure", "zcdp")
    assert str(problem).endswith("(allowed: pure, zcdp)")


def test_unknown_event_type_lists_the_event_types() -> None:
    problem = only_problem(MINIMAL + "event_types: [dwell, hover]\n")
    assert problem.key == "event_types[1]"
    assert problem.allowed == tuple(t.value for t in EventType)


def test_unknown_identifier_field_lists_the_identifier_fields() -> None:
    problem = only_problem(MINIMAL + "identifiers:\n  fields:\n    ip_address: drop\n")
    assert (problem.line, problem.key) == (9, "identifiers.fields.ip_address")
    assert problem.allowed == ("user_id", "session_id", "query_id", "response_id")


def test_duplicate_key_is_reported_at_its_second_line_naming_the_first() -> None:
    problem = only_problem(MINIMAL + "name: again\n")
    assert (problem.line, problem.key) == (7, "name")
    assert "duplicate key 'name', first defined on line 2" in problem.message


def test_duplicate_key_in_a_nested_mapping_is_detected() -> None:
    problem = only_problem(MINIMAL + "  per_analyst: 3.0\n")
    assert (problem.line, problem.key) == (7, "privacy.per_analyst")


@pytest.mark.parametrize(("text", "line"), [("- a\n- b\n", 1), ("just text\n", 1), ("\n\n42\n", 3)])
def test_top_level_that_is_not_a_mapping_is_refused(text: str, line: int) -> None:
    problem = only_problem(text)
    assert (problem.line, problem.key) == (line, "<document>")
    assert "mapping" in problem.message
    assert "privacy" in problem.allowed


def test_empty_file_is_refused() -> None:
    assert "empty" in only_problem("# nothing here\n").message


def test_missing_required_key_is_reported_on_its_parent_line() -> None:
    problem = only_problem(MINIMAL.replace("  global: 4.0\n", ""))
    assert (problem.line, problem.key) == (3, "privacy.global")
    assert "missing" in problem.message


def test_yaml_syntax_error_names_its_line() -> None:
    problem = only_problem(MINIMAL + "context: {surface: [chat\n")
    assert problem.line == 8
    assert problem.key == "<document>"


def test_explicit_yaml_tags_are_refused() -> None:
    problem = only_problem(MINIMAL + "description: !!binary aGVsbG8=\n")
    assert (problem.line, problem.key) == (7, "description")
    assert "tag" in problem.message


def test_value_yaml_cannot_construct_is_located() -> None:
    problem = only_problem(MINIMAL + "description: 2024-02-30\n")
    assert (problem.line, problem.key) == (7, "description")


def test_recursive_alias_is_an_error_not_a_crash() -> None:
    assert problems_of(MINIMAL + "context: &loop {surface: *loop}\n")


def test_unquoted_yes_in_a_text_list_suggests_quoting() -> None:
    problem = only_problem(MINIMAL + "context:\n  cohort: [control, yes]\n")
    assert problem.key == "context.cohort[1]"
    assert "quotes" in problem.message


def test_numbers_are_not_read_from_strings_or_booleans() -> None:
    assert only_problem(with_privacy(max_per_query="1.0")).key == "privacy.max_per_query"
    assert only_problem(with_privacy(max_per_query=True)).key == "privacy.max_per_query"


def test_exponent_without_a_dot_is_a_number() -> None:
    # PyYAML's YAML 1.1 would read 1e-8 as a string; policies write deltas this way.
    assert parse_policy(MINIMAL + "  delta: 1e-8\n").policy.privacy.delta == 1e-8


def test_version_must_be_the_number_one() -> None:
    for bad in ("2", "true", "'1'"):
        assert only_problem(MINIMAL.replace("version: 1", f"version: {bad}")).key == "version"


# --- durations ------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["30", "1w", "1.5d", "0d", "-1d", "1d12h", "030d", "30 d", "D"])
def test_bad_duration_is_refused_with_the_format_to_use(bad: str) -> None:
    problem = only_problem(MINIMAL + f"retention:\n  quarantine: '{bad}'\n")
    assert (problem.line, problem.key) == (8, "retention.quarantine")
    assert "positive whole number followed by d, h, m or s" in problem.message


def test_duration_longer_than_python_can_hold_is_refused() -> None:
    problem = only_problem(MINIMAL + "retention:\n  default: 99999999999999d\n")
    assert problem.key == "retention.default"


@pytest.mark.parametrize(
    ("text", "td"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
    ],
)
def test_duration_strings_parse(text: str, td: timedelta) -> None:
    assert parse_duration(text) == td


@pytest.mark.parametrize(
    ("td", "text"),
    [
        (timedelta(days=1), "1d"),
        (timedelta(hours=36), "36h"),
        (timedelta(minutes=90), "90m"),
        (timedelta(seconds=3600), "1h"),
        (timedelta(seconds=61), "61s"),
    ],
)
def test_duration_formats_to_the_shortest_exact_form(td: timedelta, text: str) -> None:
    assert format_duration(td) == text


@given(st.integers(min_value=1, max_value=10**9))
def test_formatted_duration_parses_back_to_itself(seconds: int) -> None:
    td = timedelta(seconds=seconds)
    assert parse_duration(format_duration(td)) == td


@pytest.mark.parametrize("td", [timedelta(0), timedelta(seconds=-1), timedelta(milliseconds=1500)])
def test_duration_that_no_policy_can_hold_does_not_format(td: timedelta) -> None:
    with pytest.raises(ValueError):
        format_duration(td)


def test_duration_json_schema_is_a_patterned_string() -> None:
    from pydantic import TypeAdapter

    schema = TypeAdapter(Duration).json_schema()
    assert (schema["type"], schema["pattern"]) == ("string", DURATION_PATTERN)


# --- rules ----------------------------------------------------------------------------


def test_user_id_cannot_be_dropped_because_it_is_the_privacy_unit() -> None:
    problem = only_problem(MINIMAL + "identifiers:\n  fields:\n    user_id: drop\n")
    assert (problem.line, problem.key) == (9, "identifiers.fields.user_id")
    assert "privacy unit" in problem.message
    assert problem.allowed == ("pseudonymize",)


def test_other_identifiers_can_be_dropped() -> None:
    text = MINIMAL + "identifiers:\n  fields:\n    session_id: drop\n"
    assert parse_policy(text).policy.identifiers.action("session_id") is IdentifierAction.DROP


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"max_per_query": 3.0}, "privacy.max_per_query"),
        ({"per_analyst": 5.0}, "privacy.per_analyst"),
        ({"per_analyst_overrides": {"alice": 4.5}}, "privacy.per_analyst_overrides.alice"),
    ],
    ids=["query-over-analyst", "analyst-over-global", "override-over-global"],
)
def test_budgets_must_nest_query_within_analyst_within_global(
    values: dict[str, Any], key: str
) -> None:
    problem = only_problem(with_privacy(**values))
    assert problem.key == key
    assert "must not exceed" in problem.message


def test_override_may_exceed_the_default_analyst_budget_up_to_global() -> None:
    q = parse_policy(with_privacy(per_analyst_overrides={"alice": 4.0})).policy.privacy
    assert (q.analyst_cap("alice"), q.analyst_cap("bob")) == (4.0, 2.0)


def test_negative_override_is_refused() -> None:
    assert only_problem(with_privacy(per_analyst_overrides={"eve": -1.0})).key == (
        "privacy.per_analyst_overrides.eve"
    )


@pytest.mark.parametrize("rotation", ["5h", "7h", "36h", "25h", "90m", "1s"])
def test_salt_rotation_must_divide_a_day_or_be_whole_days(rotation: str) -> None:
    problem = only_problem(
        MINIMAL + f"identifiers:\n  salt_rotation: {rotation}\n  salt_retention: 30d\n"
    )
    assert problem.key == "identifiers.salt_rotation"
    assert "12h" in problem.allowed


@pytest.mark.parametrize("rotation", ["1h", "2h", "3h", "4h", "6h", "8h", "12h", "24h", "1d", "2d"])
def test_salt_rotation_that_fits_the_day_is_accepted(rotation: str) -> None:
    text = MINIMAL + f"identifiers:\n  salt_rotation: {rotation}\n  salt_retention: 30d\n"
    assert parse_policy(text).policy.identifiers.salt_rotation == parse_duration(rotation)


@pytest.mark.parametrize("retention", ["12h", "45h"])
def test_salt_retention_must_be_a_whole_number_of_rotations(retention: str) -> None:
    text = MINIMAL + f"identifiers:\n  salt_rotation: 1d\n  salt_retention: {retention}\n"
    assert only_problem(text).key == "identifiers.salt_retention"


def test_other_is_reserved_in_declared_context_values() -> None:
    problem = only_problem(MINIMAL + "context:\n  surface: [chat, other]\n")
    assert (problem.line, problem.key) == (8, "context.surface[1]")
    assert "reserved" in problem.message


def test_declared_context_values_are_unique() -> None:
    assert only_problem(MINIMAL + "context:\n  model: [a, b, a]\n").key == "context.model[2]"


def test_context_value_must_be_a_label() -> None:
    assert only_problem(MINIMAL + "context:\n  model: ['gpt 4']\n").key == "context.model[0]"


@pytest.mark.parametrize("rate", ["0", "0.0", "1.5", "-0.1", ".nan"])
def test_sampling_rate_must_be_above_zero_and_at_most_one(rate: str) -> None:
    problem = only_problem(MINIMAL + f"sampling:\n  rates:\n    dwell: {rate}\n")
    assert (problem.line, problem.key) == (9, "sampling.rates.dwell")


def test_sampling_rate_for_a_disallowed_event_type_is_refused() -> None:
    text = MINIMAL + "event_types: [dwell, edit]\nsampling:\n  rates:\n    click_through: 0.5\n"
    problem = only_problem(text)
    assert (problem.line, problem.key) == (10, "sampling.rates.click_through")
    assert problem.allowed == ("dwell", "edit")


def test_retention_for_a_disallowed_event_type_is_refused() -> None:
    text = MINIMAL + "event_types: [dwell]\nretention:\n  event_types:\n    edit: 3d\n"
    problem = only_problem(text)
    assert (problem.line, problem.key) == (10, "retention.event_types.edit")
    assert problem.allowed == ("dwell",)


def test_event_types_are_unique() -> None:
    assert only_problem(MINIMAL + "event_types: [dwell, edit, dwell]\n").key == "event_types[2]"


def test_timestamp_precision_must_divide_a_day() -> None:
    assert only_problem(MINIMAL + "timestamp_precision: 7m\n").key == "timestamp_precision"


def test_timestamp_precision_must_divide_the_salt_rotation() -> None:
    # Otherwise coarsening could move an event into the previous epoch and its budget.
    text = MINIMAL + "timestamp_precision: 1d\nidentifiers:\n  salt_rotation: 6h\n"
    problem = only_problem(text)
    assert problem.key == "timestamp_precision"
    assert "epoch" in problem.message


def test_click_propensities_may_not_increase_with_position() -> None:
    text = MINIMAL + "  metrics:\n    click_examination_propensity: [1.0, 0.5, 0.6]\n"
    assert only_problem(text).key == "privacy.metrics.click_examination_propensity[2]"


def test_delta_must_be_below_one_thousandth() -> None:
    assert only_problem(with_privacy(delta=0.01)).key == "privacy.delta"


def test_several_problems_are_all_reported_in_file_order() -> None:
    text = (
        MINIMAL.replace("name: test", "name: Bad Name") + "colour: blue\ntimestamp_precision: 7m\n"
    )
    problems = problems_of(text)
    assert [p.key for p in problems] == ["name", "colour", "timestamp_precision"]


# --- every loader error names file, line and key ----------------------------------------

BROKEN = [
    # (snippet, line, key path)
    (MINIMAL + "extra: 1\n", 7, "extra"),
    (MINIMAL + "name: twice\n", 7, "name"),
    (MINIMAL.replace("name: test", "name: UPPER"), 2, "name"),
    (MINIMAL.replace("version: 1", "version: 3"), 1, "version"),
    (MINIMAL + "  accounting: laplace\n", 7, "privacy.accounting"),
    (MINIMAL + "  repeat_window: 1 day\n", 7, "privacy.repeat_window"),
    (
        MINIMAL + "  contribution:\n    max_rows_per_group: 0\n",
        8,
        "privacy.contribution.max_rows_per_group",
    ),
    (MINIMAL + "  metrics: [1, 2]\n", 7, "privacy.metrics"),
    (MINIMAL + "  analyst_metrics:\n    bob: [Dwell Time]\n", 8, "privacy.analyst_metrics.bob[0]"),
    (MINIMAL + "  analyst_metrics:\n    bob: [dwel_time]\n", 8, "privacy.analyst_metrics.bob[0]"),
    (
        MINIMAL + "  metrics:\n    cohort_level_only: [dwell_time, scrol_depth]\n",
        8,
        "privacy.metrics.cohort_level_only[1]",
    ),
    (MINIMAL + "identifiers:\n  fields:\n    user_id: keep\n", 9, "identifiers.fields.user_id"),
    (MINIMAL + "identifiers: 1d\n", 7, "identifiers"),
    (MINIMAL + "event_types: []\n", 7, "event_types"),
    (MINIMAL + "context:\n  region: [eu]\n", 8, "context.region"),
    (MINIMAL + "context:\n  surface: chat\n", 8, "context.surface"),
    (MINIMAL + "retention:\n  event_types:\n    clicks: 1d\n", 9, "retention.event_types.clicks"),
    (MINIMAL + "sampling:\n  calibration_period: 0d\n", 8, "sampling.calibration_period"),
    (MINIMAL + "description: [a]\n", 7, "description"),
    (MINIMAL.replace("  max_per_query: 1.0\n", ""), 3, "privacy.max_per_query"),
    ("version: 1\nname: test\n", 1, "privacy"),
    ("[1, 2]\n", 1, "<document>"),
    (MINIMAL + "context: {surface: [chat}\n", 7, "<document>"),
]


@pytest.mark.parametrize(("text", "line", "key"), BROKEN)
def test_every_loader_error_names_file_line_and_key(text: str, line: int, key: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, SOURCE)
    first = str(info.value).splitlines()[0]
    match = PROBLEM_LINE.match(first)
    assert match, first
    assert (int(match[1]), match[2]) == (line, key)


def test_problem_renders_as_file_line_key_message() -> None:
    problem = Problem("a.yaml", 3, "privacy.global", "must be positive")
    assert str(problem) == "a.yaml:3: privacy.global: must be positive"
    assert issubclass(PolicyError, ValueError)


# --- files and digests ----------------------------------------------------------------


def test_sha256_is_that_of_the_files_exact_bytes(tmp_path: Path) -> None:
    raw = MINIMAL.replace("\n", "\r\n").encode()  # CRLF must not be normalised away
    path = tmp_path / "p.yaml"
    path.write_bytes(raw)
    loaded = load_policy(path)
    assert loaded.sha256 == hashlib.sha256(raw).hexdigest()
    assert (loaded.source, loaded.text) == (str(path), raw.decode())


def test_parsed_text_is_digested_as_utf8() -> None:
    text = MINIMAL + "description: café\n"
    assert parse_policy(text).sha256 == hashlib.sha256(text.encode("utf-8")).hexdigest()


def test_missing_file_is_a_policy_error_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path / "absent.yaml")
    assert info.value.problems[0].file == str(tmp_path / "absent.yaml")


def test_file_that_is_not_utf8_is_refused_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_bytes(MINIMAL.encode() + b"description: caf\xe9\n")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert info.value.problems[0].line == 7


def test_json_schema_uses_yaml_key_names_and_duration_strings() -> None:
    schema = policy_json_schema()
    query = schema["$defs"]["QueryPolicy"]["properties"]
    assert "global" in query and "global_cap" not in query
    assert query["repeat_window"]["default"] == "1d"
    assert re.match(DURATION_PATTERN, schema["properties"]["timestamp_precision"]["default"])


# --- models in Python -----------------------------------------------------------------


def test_policies_are_frozen() -> None:
    p = parse_policy(MINIMAL).policy
    with pytest.raises(ValidationError):
        p.name = "changed"  # type: ignore[misc]


def test_query_policy_can_be_built_by_field_name() -> None:
    q = QueryPolicy(max_per_query=0.5, per_analyst=1.0, global_cap=2.0)
    assert (q.global_cap, q.budget_unit) == (2.0, "epsilon")


def test_identifier_action_of_an_unknown_field_is_an_error() -> None:
    with pytest.raises(ValueError):
        Identifiers().action("ip_address")


# --- epochs ---------------------------------------------------------------------------

DAILY = Identifiers()  # 1d rotation, 30d retention
MIDNIGHT = datetime(2026, 11, 20, tzinfo=UTC)
MIDNIGHT_EPOCH = (MIDNIGHT - datetime(1970, 1, 1, tzinfo=UTC)).days


def test_epoch_begins_exactly_at_utc_midnight() -> None:
    assert DAILY.epoch_of(MIDNIGHT) == MIDNIGHT_EPOCH
    assert DAILY.epoch_of(MIDNIGHT - timedelta(microseconds=1)) == MIDNIGHT_EPOCH - 1


def test_epoch_of_depends_on_the_instant_not_the_offset() -> None:
    # 01:00 at +02:00 is 23:00 UTC the day before; 20:00 at -05:00 is 01:00 UTC next day.
    plus_two = datetime(2026, 11, 20, 1, 0, tzinfo=timezone(timedelta(hours=2)))
    minus_five = datetime(2026, 11, 19, 20, 0, tzinfo=timezone(timedelta(hours=-5)))
    assert DAILY.epoch_of(plus_two) == MIDNIGHT_EPOCH - 1
    assert DAILY.epoch_of(minus_five) == MIDNIGHT_EPOCH


def test_epoch_of_refuses_a_naive_datetime() -> None:
    with pytest.raises(ValueError):
        DAILY.epoch_of(datetime(2026, 11, 20))


def test_epoch_start_is_aware_utc_and_inverts_epoch_of() -> None:
    start = DAILY.epoch_start(MIDNIGHT_EPOCH)
    assert start == MIDNIGHT
    assert start.utcoffset() == timedelta(0)


def test_hourly_epochs_start_on_the_hour() -> None:
    hourly = Identifiers(salt_rotation=timedelta(hours=6), salt_retention=timedelta(days=1))
    assert hourly.epoch_of(MIDNIGHT) == MIDNIGHT_EPOCH * 4
    assert hourly.epoch_start(MIDNIGHT_EPOCH * 4 + 1) == MIDNIGHT + timedelta(hours=6)


def test_oldest_live_epoch_counts_today_and_the_29_days_before() -> None:
    assert DAILY.oldest_live_epoch(MIDNIGHT) == MIDNIGHT_EPOCH - 29
    assert DAILY.oldest_live_epoch(MIDNIGHT - timedelta(microseconds=1)) == MIDNIGHT_EPOCH - 30


@given(
    rotation_hours=st.sampled_from([1, 2, 3, 4, 6, 8, 12, 24, 48]),
    multiple=st.integers(min_value=1, max_value=60),
    seconds=st.integers(min_value=-(10**10), max_value=10**10),
)
def test_an_epoch_is_alive_exactly_while_younger_than_salt_retention(
    rotation_hours: int, multiple: int, seconds: int
) -> None:
    ids = Identifiers(
        salt_rotation=timedelta(hours=rotation_hours),
        salt_retention=timedelta(hours=rotation_hours * multiple),
    )
    now = datetime(2000, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds, microseconds=seconds % 7)
    oldest = ids.oldest_live_epoch(now)
    assert now - ids.epoch_start(oldest) < ids.salt_retention
    assert now - ids.epoch_start(oldest - 1) >= ids.salt_retention


# --- the loader never fails in any other way -------------------------------------------

POLICY_KEYS = [
    "version",
    "name",
    "identifiers",
    "salt_rotation",
    "fields",
    "user_id",
    "context",
    "surface",
    "retention",
    "event_types",
    "sampling",
    "rates",
    "dwell",
    "privacy",
    "max_per_query",
    "per_analyst",
    "global",
    "metrics",
    "accounting",
    "timestamp_precision",
]
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["1d", "30d", "pure", "zcdp", "drop", "other", "1"])
)
keys = st.sampled_from(POLICY_KEYS) | st.text(max_size=10) | st.integers()
yaml_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=5),
    max_leaves=25,
)


def assert_loads_or_policy_error(text: str) -> None:
    try:
        assert isinstance(parse_policy(text, SOURCE), LoadedPolicy)
    except PolicyError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == SOURCE and problem.key


@given(yaml_values)
@settings(max_examples=300)
def test_any_yaml_value_gives_a_policy_or_a_policy_error(value: object) -> None:
    assert_loads_or_policy_error(yaml.safe_dump(value))


@given(st.text(alphabet=st.sampled_from(list(" \n\t:-[]{},&*!|>'\"#?%@`abc01.")) | st.characters()))
def test_any_text_gives_a_policy_or_a_policy_error(text: str) -> None:
    assert_loads_or_policy_error(text)


DEFAULT_DATA = yaml.safe_load((POLICIES / "default.yaml").read_text())


@given(st.data())
# No deadline: on a loaded machine one example can take longer than hypothesis's 200 ms,
# and a test must not assert a time.
@settings(max_examples=300, deadline=None)
def test_default_policy_with_one_value_replaced_gives_a_policy_or_a_policy_error(
    data: st.DataObject,
) -> None:
    document = yaml.safe_load(yaml.safe_dump(DEFAULT_DATA))  # a fresh deep copy
    node: Any = document
    while isinstance(node, dict | list) and node:
        key = data.draw(
            st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node)))
        )
        if not isinstance(node[key], dict | list) or data.draw(st.booleans()):
            node[key] = data.draw(yaml_values)
            break
        node = node[key]
    assert_loads_or_policy_error(yaml.safe_dump(document))
