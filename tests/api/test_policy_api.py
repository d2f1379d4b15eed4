"""GET /v1/policy: compliance, admin and analyst tokens read the active policy, the sha256
of its file and its plain-words explanation; nobody else does."""

from __future__ import annotations

import hashlib

import pytest
from conftest import Api

from privacy.policy import Policy
from privacy.policy.explain import explain


@pytest.mark.parametrize("role", ["compliance", "admin", "analyst"])
def test_policy_readers_get_the_active_policy(api: Api, role: str) -> None:
    response = api.client.get("/v1/policy", headers=api.headers(role))
    assert response.status_code == 200, response.text
    assert response.json()["name"] == api.state.policy.policy.name


def test_sha256_is_that_of_the_policy_files_bytes(api: Api) -> None:
    body = api.client.get("/v1/policy", headers=api.headers("compliance")).json()
    raw = api.state.settings.policy.read_bytes()
    assert body["sha256"] == hashlib.sha256(raw).hexdigest()


def test_policy_json_has_yaml_key_names_and_durations_as_written(api: Api) -> None:
    body = api.client.get("/v1/policy", headers=api.headers("compliance")).json()
    policy = body["policy"]
    assert policy["identifiers"]["salt_retention"] == "30d"
    assert "global" in policy["privacy"]
    assert Policy.model_validate(policy) == api.state.policy.policy


def test_explanation_is_the_same_as_tacit_policy_explain(api: Api) -> None:
    body = api.client.get("/v1/policy", headers=api.headers("analyst")).json()
    expected = explain(api.state.policy.policy)
    assert body["explanation"]["text"] == expected.as_text()
    assert body["explanation"]["guarantee"]["epsilon_per_period"] == (
        expected.guarantee.epsilon_per_period
    )
    assert [s["title"] for s in body["explanation"]["sections"]] == [
        s.title for s in expected.sections
    ]


def test_ingest_token_is_forbidden(api: Api) -> None:
    response = api.client.get("/v1/policy", headers=api.headers("ingest"))
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_no_token_is_unauthorized(api: Api) -> None:
    response = api.client.get("/v1/policy")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
