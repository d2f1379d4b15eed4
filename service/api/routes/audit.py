"""GET /v1/audit: page through the hash-chained audit log (compliance, admin)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from service.api.deps import CompliancePrincipal, StateDep
from service.ops.audit import entries, entry_dict, verify

router = APIRouter(tags=["compliance"])


@router.get(
    "/v1/audit",
    summary="Audit log entries after a seq, oldest first, with the chain's verification",
)
def get_audit(
    principal: CompliancePrincipal,
    state: StateDep,
    after: Annotated[
        int, Query(ge=0, le=2**63 - 1, description="return entries with seq > after")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 100,
) -> dict[str, Any]:
    page = state.store.audit.page(after, limit)
    # The whole chain is recomputed on every request: a cached result would miss a row
    # edited behind the service's back after it was cached.
    chain = verify(entries(state.store.audit))
    return {
        "entries": [entry_dict(e) for e in page],
        "next_after": page[-1].seq if len(page) == limit else None,
        "chain": {
            "ok": chain.ok,
            "entries": chain.entries,
            "first_break": chain.first_break,
            "message": chain.message,
        },
    }
