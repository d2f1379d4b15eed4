"""Structured logs: one JSON object per line, tagged with the id of the request served.

What a line may hold is decided here, not at each call site:

- the message the code wrote (call sites format ids of releases, salts' epochs, counts and
  type names, never a client's identifier, token or payload value);
- the request id: random, made by the server for each request and returned in the
  ``X-Request-ID`` header; a client-sent id is ignored (it could carry anything);
- for an exception, its type and stack frames (file, line, function) only. Its message
  is never written: pydantic's and the database driver's messages may quote an input.
- request lines name the route *template* (``/v1/events``), never the path as sent, so a
  query string or a mistyped path holding an identifier stays out of the log.

`configure` installs this for an in-process app; `uvicorn_config` is the same as a
``logging.config.dictConfig`` dictionary for `tacit serve` (every worker applies it).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
import traceback
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = "X-Request-ID"
_request_id: ContextVar[str | None] = ContextVar("tacit_request_id", default=None)
request_log = logging.getLogger("tacit.request")

# LogRecord attributes that are not caller-supplied ``extra`` fields.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "color_message",  # uvicorn's copy of the message with ANSI colours
}


def current_request_id() -> str | None:
    """The id of the request being served in this context, if any."""
    return _request_id.get()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, request_id, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = _request_id.get()
        if request_id is not None:
            line["request_id"] = request_id
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                line[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            exc_type, _, tb = record.exc_info
            line["exc_type"] = exc_type.__name__
            line["stack"] = [
                f"{frame.filename}:{frame.lineno} {frame.name}"
                for frame in traceback.extract_tb(tb)
            ]
        return json.dumps(line, default=str)


def uvicorn_config(level: str = "info") -> dict[str, Any]:
    """A dictConfig for uvicorn: every logger in JSON on stderr; uvicorn's access log off
    (it writes the raw path and query string; the request middleware logs instead)."""
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"level": level},
            "uvicorn.access": {"handlers": [], "level": "CRITICAL", "propagate": False},
            "tacit": {"handlers": ["stderr"], "level": level, "propagate": False},
        },
        "root": {"handlers": ["stderr"], "level": "WARNING"},
    }


def configure(level: str = "info") -> None:
    """Apply `uvicorn_config` to this process (for apps not started by `tacit serve`)."""
    import logging.config

    logging.config.dictConfig(uvicorn_config(level))


class RequestLogMiddleware:
    """Pure ASGI middleware: a request id per request (in the context and the response
    header) and, when ``access_log`` is on or the answer is a 5xx, one line per request."""

    def __init__(self, app: ASGIApp, access_log: bool = False) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        # Left set when the app raises: uvicorn's own error line, written after this
        # returns but in the same task's context, then carries the request id too.
        reset = _request_id.set(request_id)
        start = time.perf_counter()
        status = 500
        header = (REQUEST_ID_HEADER.lower().encode(), request_id.encode())

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), header]
            await send(message)

        failed = True
        try:
            await self.app(scope, receive, send_with_id)
            failed = False
        finally:
            if self.access_log or status >= 500 or failed:
                route = scope.get("route")
                request_log.log(
                    logging.ERROR if failed or status >= 500 else logging.INFO,
                    "request",
                    extra={
                        "method": scope["method"],
                        "route": getattr(route, "path", "unmatched"),
                        "status": 500 if failed else status,
                        "ms": round((time.perf_counter() - start) * 1000, 2),
                    },
                )
            if not failed:
                _request_id.reset(reset)
