"""API errors: each carries its HTTP status and code; :func:`render_error` renders the
envelope ``{"error": {"code": ..., "message": ...}}`` for every refusal the service
sends (the app's handlers, the rate limiter, the raw events endpoint). Raised anywhere
below the routes; never HTTPException.

Each class's docstring is what the OpenAPI schema says of its code (service/api/openapi.py),
so it describes the error to a caller in one sentence."""

from __future__ import annotations

from typing import Any, ClassVar

from starlette.responses import JSONResponse


class ApiError(Exception):
    """Internal error; this is probably a bug."""

    status = 500
    code = "internal"
    retry_after: ClassVar[bool] = False  # every raise sends a Retry-After header

    def __init__(
        self, message: str, *, headers: dict[str, str] | None = None, **extra: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, **self.extra}}


class BadRequest(ApiError):
    """The parameters or the body are malformed; ``errors``, when present, lists each
    field that is wrong."""

    status, code = 400, "bad_request"


class InvalidQuery(ApiError):
    """The query asks for something the policy does not allow, or is malformed; the
    message says what is wrong and what is allowed."""

    status, code = 400, "invalid_query"


class Unauthorized(ApiError):
    """The bearer token is missing, malformed, unknown or revoked."""

    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    """The token's role, or the metrics granted to it, do not allow this request."""

    status, code = 403, "forbidden"


class BudgetExhausted(ApiError):
    """The query costs more than is left on some of its epochs (``epochs`` says how much
    is left on each); nothing was charged."""

    status, code = 403, "budget_exhausted"


class NotFoundError(ApiError):
    """No such resource."""

    status, code = 404, "not_found"


class PayloadTooLarge(ApiError):
    """The body is larger than the server accepts; send smaller batches (or a smaller body)."""

    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    """The body is not sent as Content-Type: application/json."""

    status, code = 415, "unsupported_media_type"


class TooManyRequests(ApiError):
    """This token is over its rate limit; retry after Retry-After seconds."""

    status, code = 429, "too_many_requests"
    retry_after = True


class Unavailable(ApiError):
    """The server cannot take this request now (it is at capacity, or a batch could not
    be stored durably); nothing of it was acknowledged: retry after Retry-After seconds."""

    status, code = 503, "unavailable"
    retry_after = True


class NotReady(ApiError):
    """A dependency of this node (the database, the lake) does not answer now; ``checks``
    names each one and its state. Retry after Retry-After seconds."""

    status, code = 503, "not_ready"
    retry_after = True

    def __init__(self, checks: dict[str, str]) -> None:
        down = ", ".join(name for name, state in checks.items() if state != "ok")
        super().__init__(
            f"not ready: {down} (see checks; the node's log says why)",
            headers={"Retry-After": "5"},
            checks=checks,
        )


class HttpRefusal(ApiError):
    """A refusal of the HTTP layer itself (a route that does not exist, a method it does
    not allow), in the status the framework chose."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None):
        super().__init__(message, headers=headers)
        self.status, self.code = status, code


def render_error(error: ApiError) -> JSONResponse:
    """The response for `error`: its status, its headers and the envelope."""
    return JSONResponse(error.body(), status_code=error.status, headers=error.headers)


class StoreUnavailableError(ApiError):
    """The database cannot be reached now (down, restarting or failing over); retry after
    Retry-After seconds. Nothing of a refused batch of events was acknowledged; a query
    already charged says so (``release_id``): its charge stands."""

    status, code = 503, "store_unavailable"
    retry_after = True
    # The pool notices a database that came back within a few seconds
    # (service/store/postgres/db.py: RECONNECT_TIMEOUT_S).
    RETRY_AFTER_S = 5

    def __init__(self, message: str | None = None, **extra: Any) -> None:
        seconds = self.RETRY_AFTER_S
        super().__init__(
            message or f"the database is unavailable: retry after {seconds} s",
            headers={"Retry-After": str(seconds)},
            **extra,
        )


class EngineUnavailableError(ApiError):
    """The query engine cannot run queries now (a Spark cluster unreachable or without
    executors, its runtime missing, or a query past its time limit); retry after
    Retry-After seconds. A query refused before its charge spent nothing; one already
    charged says so (``release_id``): its charge stands."""

    status, code = 503, "engine_unavailable"
    retry_after = True
    RETRY_AFTER_S = 30

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__(message, headers={"Retry-After": str(self.RETRY_AFTER_S)}, **extra)
