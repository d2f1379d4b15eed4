"""GET /ui: the analyst and compliance web page (three static files, no build step).

The page talks to the same JSON API as everyone else, with the token the person pastes
in; the token stays in the browser tab (sessionStorage) and travels only in the
Authorization header, never in a URL. The files are served with a strict Content
Security Policy: scripts and styles only from this origin, no inline code, no framing.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse

from service.api.errors import NotFoundError

router = APIRouter(tags=["ui"], include_in_schema=False)

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> FileResponse:
    if name not in FILES:
        raise NotFoundError(f"no such file in the web page: {name}; open /ui")
    return FileResponse(UI_DIR / name, media_type=FILES[name], headers=HEADERS)


@router.get("/")
def root() -> RedirectResponse:
    return RedirectResponse("/ui", status_code=307)


@router.get("/ui")
@router.get("/ui/")
def index() -> FileResponse:
    return _file("index.html")


@router.get("/ui/{name}")
def asset(name: str) -> FileResponse:
    return _file(name)
