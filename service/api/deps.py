"""The app's shared state and the FastAPI dependencies built on it (Annotated aliases)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Request

from privacy.keyring import Keyring
from privacy.policy import LoadedPolicy
from service.api.auth import authenticate_route
from service.api.errors import Forbidden, StoreUnavailableError, Unauthorized
from service.api.telemetry import Telemetry
from service.ingest.ingestion import Ingestion
from service.queries.service import QueryService
from service.settings import Settings
from service.store.base import Principal, Role, Store

if TYPE_CHECKING:  # built by service/api/app.py, after this module
    from service.api.limits import Limiter
    from service.lake.sealer import SealSchedule
    from service.lake.table import Lake
    from service.lake.upkeep import LakeUpkeep
    from service.ops.retention import RetentionSchedule


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AppState:
    settings: Settings
    policy: LoadedPolicy
    store: Store
    keyring: Keyring
    ingestion: Ingestion
    telemetry: Telemetry
    clock: Callable[[], datetime] = utc_now
    queries: QueryService | None = None  # set by build_state
    limiter: Limiter | None = None  # set by create_app
    retention: RetentionSchedule | None = None  # set when the app starts (lifespan)
    policy_view: dict[str, Any] | None = None  # GET /v1/policy's body, built once
    lake: Lake | None = None  # the event lake (None: the rowstore engine)
    sealing: SealSchedule | None = None  # set when the app starts with a lake
    lake_upkeep: LakeUpkeep | None = None  # retention and erasure on the lake


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.tacit
    return state


async def _state_dependency(request: Request) -> AppState:
    # async: a sync dependency costs a thread-pool round trip, which under ingestion load
    # made even /healthz wait (measured p99 ~900 ms sync vs 6 ms async).
    return get_state(request)


StateDep = Annotated[AppState, Depends(_state_dependency)]


async def _query_service(request: Request) -> QueryService:
    queries = get_state(request).queries
    assert queries is not None, "build_state sets the query service"
    return queries


QueryServiceDep = Annotated[QueryService, Depends(_query_service)]


class RoleCheck:
    """The dependency of an authenticated route: the caller, if its bearer token holds
    one of ``roles``. ``raises`` is what the OpenAPI schema documents for every route
    that depends on it (service/api/openapi.py): the token is looked up in the database, so
    a route that needs a token cannot answer while the database is unavailable."""

    raises = (Unauthorized, Forbidden, StoreUnavailableError)

    def __init__(self, *roles: Role) -> None:
        self.roles = frozenset(roles)

    def __call__(self, request: Request) -> Principal:
        state = get_state(request)
        header, query = request.headers.get("authorization"), request.scope["query_string"]
        return authenticate_route(header, query, state.store.tokens, self.roles)


IngestPrincipal = Annotated[Principal, Depends(RoleCheck(Role.INGEST))]
AnalystPrincipal = Annotated[Principal, Depends(RoleCheck(Role.ANALYST))]
CompliancePrincipal = Annotated[Principal, Depends(RoleCheck(Role.COMPLIANCE, Role.ADMIN))]
PolicyReader = Annotated[Principal, Depends(RoleCheck(Role.COMPLIANCE, Role.ADMIN, Role.ANALYST))]
AdminPrincipal = Annotated[Principal, Depends(RoleCheck(Role.ADMIN))]
