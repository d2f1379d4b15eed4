"""GET /v1/audit: compliance and admin tokens page through the log, oldest first, and
see whether the hash chain verifies; other roles may not read it."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import Api


def page(api: Api, role: str = "compliance", **params: Any) -> Any:
    return api.client.get("/v1/audit", params=params, headers=api.headers(role))


def test_compliance_reads_the_log_oldest_first_with_an_intact_chain(api: Api) -> None:
    body = page(api).json()
    kinds = [e["kind"] for e in body["entries"]]
    assert kinds[0] == "policy_loaded" and kinds.count("token_created") == 4
    assert [e["seq"] for e in body["entries"]] == list(range(1, len(kinds) + 1))
    assert body["chain"] == {
        "ok": True,
        "entries": len(kinds),
        "first_break": None,
        "message": f"{len(kinds)} entries, chain intact",
    }


def test_an_entry_shows_its_hash_link_and_the_policy_digest(api: Api) -> None:
    first, second = page(api, limit=2).json()["entries"]
    assert second["prev_hash"] == first["hash"]
    assert first["policy_sha256"] == api.state.policy.sha256
    assert set(first) == {
        "seq", "at", "kind", "actor", "policy_sha256", "detail", "prev_hash", "hash"
    }  # fmt: skip


def test_pages_follow_after_and_limit(api: Api) -> None:
    first = page(api, limit=2).json()
    assert [e["seq"] for e in first["entries"]] == [1, 2] and first["next_after"] == 2
    second = page(api, after=first["next_after"], limit=2).json()
    assert [e["seq"] for e in second["entries"]] == [3, 4]
    last = page(api, after=4, limit=100).json()
    assert [e["seq"] for e in last["entries"]] == [5] and last["next_after"] is None


def test_admin_may_read_the_log(api: Api) -> None:
    assert page(api, "admin").status_code == 200


@pytest.mark.parametrize("role", ["analyst", "ingest"])
def test_other_roles_may_not_read_the_log(api: Api, role: str) -> None:
    response = page(api, role)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


def test_reading_the_log_needs_a_token(api: Api) -> None:
    assert api.client.get("/v1/audit").status_code == 401


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"after": -1}])
def test_out_of_range_paging_is_a_bad_request(api: Api, params: dict[str, int]) -> None:
    assert page(api, **params).status_code == 400


def test_a_row_edited_behind_the_service_shows_as_a_broken_chain(api: Api) -> None:
    api.rows("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3")
    chain = page(api).json()["chain"]
    assert chain["ok"] is False and chain["first_break"] == 3


def test_an_erasure_appears_in_the_log_with_its_actor(api: Api) -> None:
    api.client.post("/v1/subjects/erase", json={"user_id": "someone"}, headers=api.headers("admin"))
    entries = page(api, after=5).json()["entries"]
    assert [(e["kind"], e["actor"]) for e in entries] == [("subject_erased", "test-admin")]
