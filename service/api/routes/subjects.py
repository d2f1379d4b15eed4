"""POST /v1/subjects/erase: erase one data subject (admin). The id is never echoed."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from privacy.events import Identifier
from service.api.deps import AdminPrincipal, StateDep
from service.ops.erasure import Erasure

router = APIRouter(tags=["operations"])


class EraseRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user_id: Identifier


@router.post(
    "/v1/subjects/erase",
    summary="Delete one data subject's events from every epoch that can still be linked",
)
def erase_subject(body: EraseRequest, principal: AdminPrincipal, state: StateDep) -> dict[str, Any]:
    erased = Erasure(state.store, state.keyring, state.lake_upkeep).erase(
        body.user_id, state.clock(), actor=principal.name
    )
    return {
        "erased": erased.as_dict(),
        "note": (
            "rows of epochs whose salt is destroyed were not searched: nobody can link "
            "them to this subject any more"
        ),
    }
