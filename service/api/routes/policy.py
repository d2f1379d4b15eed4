"""GET /v1/policy: the active policy, its sha256 and its plain-words explanation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from privacy.policy.explain import explain
from service.api.deps import PolicyReader, StateDep

router = APIRouter(tags=["compliance"])


@router.get(
    "/v1/policy",
    summary="The active policy as JSON, the sha256 of its file and what it means in plain words",
)
def get_policy(principal: PolicyReader, state: StateDep) -> dict[str, Any]:
    # The policy is fixed for the life of the app: explain it once (the zCDP conversion
    # builds OpenDP measurements) and serve the same body to every reader.
    body = state.policy_view
    if body is None:
        loaded = state.policy
        body = {
            "name": loaded.policy.name,
            "sha256": loaded.sha256,
            "policy": loaded.policy.model_dump(mode="json", by_alias=True),
            "explanation": explain(loaded.policy).as_dict(),
        }
        state.policy_view = body
    return body
