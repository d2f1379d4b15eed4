"""API errors: each carries its HTTP status and code; one handler renders the envelope
``{"error": {"code": ..., "message": ...}}``. Raised anywhere below the routes; never
HTTPException."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status = 500
    code = "internal"

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
    status, code = 400, "bad_request"


class InvalidQuery(ApiError):
    status, code = 400, "invalid_query"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class BudgetExhausted(ApiError):
    status, code = 403, "budget_exhausted"


class NotFoundError(ApiError):
    status, code = 404, "not_found"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class TooManyRequests(ApiError):
    status, code = 429, "too_many_requests"


class Unavailable(ApiError):
    status, code = 503, "unavailable"
