"""The analyst API: the metric catalogue, DP queries and their previews, the budget."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, ConfigDict, Field

from service.api.deps import AnalystPrincipal, QueryServiceDep
from service.api.errors import (
    BudgetExhausted,
    EngineUnavailableError,
    Forbidden,
    InvalidQuery,
    PayloadTooLarge,
    StoreUnavailableError,
)
from service.api.openapi import raises
from service.queries.service import ReleaseFailed

router = APIRouter(tags=["queries"])


class CompareBody(BaseModel):
    """Compare each other key of a grouped dimension with one baseline key (rates, means)."""

    model_config = ConfigDict(extra="forbid")

    dimension: str = Field(description='a grouped dimension, e.g. "cohort"')
    baseline: str = Field(description='one of its keys, e.g. "control"')


class QueryBody(BaseModel):
    """The body of POST /v1/queries and /v1/queries/preview (documentation only: the
    query planner validates it and says what is allowed)."""

    model_config = ConfigDict(extra="forbid")

    metric: str
    start: str = Field(description="first day, YYYY-MM-DD (UTC)")
    end: str = Field(description="last day, inclusive, YYYY-MM-DD (UTC)")
    group_by: list[str] = Field(default_factory=list, description='"day" and/or dimensions')
    filters: dict[str, list[str]] = Field(default_factory=dict)
    compare: CompareBody | None = Field(
        default=None,
        description="difference and lift against a baseline, with 95 % intervals; no extra cost",
    )
    totals: bool = Field(
        default=False,
        description="each day's total, the exact sum of its released breakdown (counts, "
        "rates, funnels); no extra cost",
    )
    epsilon: float | None = Field(default=None, description="budget under pure accounting")
    rho: float | None = Field(default=None, description="budget under zcdp accounting")
    target_ci95: float | None = Field(
        default=None, description="preview only: the 95 % half-width wanted, instead of a budget"
    )


_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": QueryBody.model_json_schema()}},
    }
}
# Forbidden: a metric the analyst is not granted (the role is checked by AnalystPrincipal).
_PREVIEW_ERRORS = (InvalidQuery, PayloadTooLarge, Forbidden)


async def _query_body(request: Request) -> dict[str, Any]:
    raw = await request.body()  # at most max_request_bytes (service/api/body_limit.py)
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise InvalidQuery(
            'the body must be a JSON object: {"metric", "start", "end", "group_by", '
            '"filters", "epsilon" or "rho"}'
        )
    return body


@router.get("/v1/metrics", summary="The metric catalogue, with allowed group-bys")
def list_metrics(principal: AnalystPrincipal, queries: QueryServiceDep) -> dict[str, Any]:
    return queries.catalogue(principal.name)


@router.post(
    "/v1/queries",
    summary="Run a DP query; its budget is charged before the answer leaves",
    openapi_extra=_BODY_DOC,
    # StoreUnavailableError, EngineUnavailableError: also after the charge, which then
    # stands (release_id); an engine that cannot run queries refuses before it too.
    responses=raises(
        *_PREVIEW_ERRORS,
        BudgetExhausted,
        ReleaseFailed,
        StoreUnavailableError,
        EngineUnavailableError,
    ),
)
async def post_query(
    request: Request, principal: AnalystPrincipal, queries: QueryServiceDep
) -> dict[str, Any]:
    body = await _query_body(request)
    # The planner and the aggregation block: keep them off the event loop.
    result: dict[str, Any] = await run_in_threadpool(queries.run, principal.name, body)
    return result


@router.post(
    "/v1/queries/preview",
    summary="Cost and expected 95 % half-widths of a query; charges nothing",
    openapi_extra=_BODY_DOC,
    responses=raises(*_PREVIEW_ERRORS),
)
async def preview_query(
    request: Request, principal: AnalystPrincipal, queries: QueryServiceDep
) -> dict[str, Any]:
    body = await _query_body(request)
    result: dict[str, Any] = await run_in_threadpool(queries.preview, principal.name, body)
    return result


@router.get("/v1/budget", summary="Your remaining budget per epoch, and the global remaining")
def get_budget(principal: AnalystPrincipal, queries: QueryServiceDep) -> dict[str, Any]:
    return queries.budget(principal.name)
