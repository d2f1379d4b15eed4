"""Any input to the event schema, the batch parser, the ingestion endpoint or the policy
loader gives a valid model or a clear error: never an exception escaping, never a 500.

The policy loader's own properties (any YAML value, any text, the default policy with
one value replaced) live in tests/unit/test_policy.py; here are the hostile shapes on
top: several mutations at once, deleted keys, and YAML alias bombs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Clock, make_settings
from factories import PAYLOADS, event
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from privacy.events import EVENT_ADAPTER
from privacy.keyring import MasterKey
from privacy.policy import LoadedPolicy, PolicyError, parse_policy
from service.api.app import create_app
from service.ingest.parse import BadBatch, Parsed, parse_batch
from service.ops.tokens import create_token
from service.store.base import Role

REPO = Path(__file__).resolve().parents[2]
NOW = datetime.now(UTC).replace(microsecond=0)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "event_id",
        "user_id",
        "session_id",
        "query_id",
        "response_id",
        "timestamp",
        "sent_at",
        "event_type",
        "payload",
        "context",
    ]
) | st.text(max_size=12)


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event of any type with zero to three fields replaced, added or deleted."""
    body = event(draw(st.sampled_from(sorted(PAYLOADS))), at=NOW)
    for _ in range(draw(st.integers(0, 3))):
        target = body
        if draw(st.booleans()) and isinstance(body.get("payload"), dict):
            target = body["payload"]
        name = draw(field_names | st.sampled_from(sorted(target) or ["x"]))
        if draw(st.integers(0, 4)) == 0:
            target.pop(name, None)
        else:
            target[name] = draw(json_values)
    return body


def assert_parsed_or_bad_batch(body: bytes) -> Parsed | None:
    try:
        parsed = parse_batch(body, 1000)
    except BadBatch as exc:
        assert str(exc)  # says what was wrong
        return None
    assert len(parsed.events) + len(parsed.invalid) == parsed.size
    for _, _, errors in parsed.invalid:
        assert errors and all(e.field and e.message for e in errors)
    return parsed


# --- the event schema and the batch parser -------------------------------------------


@given(st.binary(max_size=2000))
def test_any_bytes_give_events_or_a_batch_error(body: bytes) -> None:
    assert_parsed_or_bad_batch(body)


@given(json_values)
def test_any_json_document_gives_events_or_a_batch_error(document: Any) -> None:
    assert_parsed_or_bad_batch(json.dumps(document).encode())


@given(st.lists(mutated_events(), min_size=1, max_size=5))
@settings(max_examples=150)
def test_any_mutation_of_valid_events_gives_per_event_outcomes(
    events: list[dict[str, Any]],
) -> None:
    parsed = assert_parsed_or_bad_batch(json.dumps({"events": events}).encode())
    assert parsed is not None and parsed.size == len(events)


@given(mutated_events())
def test_the_event_schema_gives_a_model_or_a_validation_error(body: dict[str, Any]) -> None:
    try:
        model = EVENT_ADAPTER.validate_json(json.dumps(body))
    except ValidationError as exc:
        assert exc.errors()
        return
    # A valid event round-trips to the same model.
    assert EVENT_ADAPTER.validate_json(EVENT_ADAPTER.dump_json(model)) == model


# --- the ingestion endpoint --------------------------------------------------------------


@pytest.fixture(scope="module")
def ingest_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    settings_ = make_settings(tmp_path_factory.mktemp("fuzz"), MasterKey.generate_base64())
    app = create_app(settings_, clock=Clock(NOW))
    token = create_token(app.state.tacit.store, "app", Role.INGEST, "app")
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client, token


bodies = (
    st.binary(max_size=500)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.lists(mutated_events(), min_size=0, max_size=4).map(
        lambda events: json.dumps({"events": events}).encode()
    )
)


@given(body=bodies)
@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_body_posted_as_events_gets_an_answer_never_a_500(
    ingest_api: tuple[TestClient, str], body: bytes
) -> None:
    client, token = ingest_api
    response = client.post(
        "/v1/events",
        content=body,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["error"]["message"]
    else:
        report = response.json()
        assert report["rejected"] == sum(r["status"] == "rejected" for r in report["results"])


# --- the policy loader ------------------------------------------------------------------

STRICT = yaml.safe_load((REPO / "policies" / "strict.yaml").read_text())
policy_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=15)
    | st.sampled_from(["1d", "7d", "1h", "pure", "zcdp", "drop", "pseudonymize", "other"]),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=15,
)


@st.composite
def mutated_policies(draw: st.DrawFn) -> str:
    """The strict policy with one to four values replaced, keys deleted or keys added."""
    document = json.loads(json.dumps(STRICT, default=str))  # a fresh deep copy
    for _ in range(draw(st.integers(1, 4))):
        node: Any = document
        while isinstance(node, dict | list) and node:
            keys = sorted(node) if isinstance(node, dict) else list(range(len(node)))
            key = draw(st.sampled_from(keys))
            if isinstance(node[key], dict | list) and draw(st.booleans()):
                node = node[key]
                continue
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                node[key] = draw(policy_values)
            elif action == "delete":
                del node[key]
            elif isinstance(node, dict):
                node[draw(st.text(min_size=1, max_size=10))] = draw(policy_values)
            break
    return yaml.safe_dump(document)


@given(mutated_policies())
@settings(max_examples=150, deadline=None)
def test_any_mutation_of_a_policy_gives_a_policy_or_errors_that_name_line_and_key(
    text: str,
) -> None:
    try:
        assert isinstance(parse_policy(text, "mutated.yaml"), LoadedPolicy)
    except PolicyError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.file == "mutated.yaml" and problem.key and problem.message


def alias_bomb(where: str, levels: int = 9) -> str:
    """YAML whose aliases expand to 10**levels strings, placed at ``where``."""
    lines = ['x0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\n{where}: *a{levels - 1}\n"


@pytest.mark.parametrize(
    "where",
    [
        "x9",  # an unknown key
        "name",  # a known key whose error message shows (a short form of) the value
    ],
)
def test_a_yaml_alias_bomb_is_refused_not_expanded(where: str) -> None:
    # In a child process with CPU and memory limits far above what a 10-line file needs:
    # an expansion of 10**9 strings would never finish.
    program = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (3, 3))\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from privacy.policy import PolicyError, parse_policy\n"
        "try:\n"
        "    parse_policy(sys.stdin.read(), 'bomb.yaml')\n"
        "except PolicyError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", program],
        input=alias_bomb(where),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-500:]
    assert "bomb.yaml" in done.stdout
