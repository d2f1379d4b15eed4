"""The analyst's client: DP queries, previews, the budget left and the metric catalogue.

    from service.client import AnalystClient

    with AnalystClient("http://127.0.0.1:8000", token) as api:
        answer = api.query({"metric": "task_completion_rate", "start": "2026-11-01",
                            "end": "2026-11-30", "group_by": ["day"], "epsilon": 0.5})
        answer.raise_for_error()
        rows = answer.body["rows"]

Nothing is retried: a query charges the budget, and the server's repeat window (an
identical request soon after returns the stored release, free) is what makes a resend
safe, not this client. The token never appears in a repr, a log or an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx

__all__ = ["AnalystClient", "Answer", "ApiError", "Unreachable"]


class Unreachable(RuntimeError):
    """The API could not be reached, or answered without JSON."""


@dataclass(frozen=True)
class Answer:
    """One answer of the API: its status and its JSON body (an error envelope if not ok)."""

    status: int
    body: Any

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def error(self) -> str:
        """``code: message`` of an error envelope ('' for a success)."""
        if self.ok:
            return ""
        error = self.body.get("error", {}) if isinstance(self.body, dict) else {}
        return f"{error.get('code', self.status)}: {error.get('message', self.body)}"

    def raise_for_error(self) -> None:
        if not self.ok:
            raise ApiError(self)


class ApiError(RuntimeError):
    """The API refused: `answer` holds the status and the error envelope."""

    def __init__(self, answer: Answer) -> None:
        super().__init__(answer.error)
        self.answer = answer


class AnalystClient:
    """Synchronous calls to the analyst routes with one analyst token."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 120.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"},
            transport=transport,
        )

    def __repr__(self) -> str:  # never the token
        return f"AnalystClient({self.url!r})"

    def query(self, body: dict[str, Any]) -> Answer:
        """POST /v1/queries: a DP release, charged against the budget."""
        return self._call("POST", "/v1/queries", body)

    def preview(self, body: dict[str, Any]) -> Answer:
        """POST /v1/queries/preview: the cost and the expected accuracy; charges nothing."""
        return self._call("POST", "/v1/queries/preview", body)

    def budget(self) -> Answer:
        """GET /v1/budget: what is left, per epoch, for this analyst and for everyone."""
        return self._call("GET", "/v1/budget")

    def metrics(self) -> Answer:
        """GET /v1/metrics: the metrics this analyst may ask for."""
        return self._call("GET", "/v1/metrics")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Answer:
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise Unreachable(f"cannot reach {self.url}: {type(exc).__name__}: {exc}") from None
        try:
            return Answer(response.status_code, response.json())
        except ValueError:
            raise Unreachable(f"{self.url} answered {response.status_code} without JSON") from None
