"""GET /demo: a small chat page that uses the browser SDK (clients/js), for newcomers.

Several candidate answers, copyable text, a follow-up box and "this solved my task": click
around, then see the signals in the analyst page (/ui). The page loads the built script-tag
bundle (clients/js/dist/tacit.min.js, built by `make run`) from /demo/tacit.min.js and
its publishable key from /demo/config.json; `tacit serve --dev --demo` makes that key for
the server's own origin (service/dev/demo.py). Same strict CSP as /ui.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse

from service.api.deps import get_state
from service.api.errors import NotFoundError
from service.api.routes.ui import HEADERS
from service.dev.demo import browser_config

router = APIRouter(tags=["demo"], include_in_schema=False)

DEMO_DIR = Path(__file__).resolve().parent.parent / "demo"
BUNDLE = Path(__file__).resolve().parents[3] / "clients" / "js" / "dist" / "tacit.min.js"
FILES = {
    "index.html": "text/html; charset=utf-8",
    "demo.js": "text/javascript; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
}


@router.get("/demo")
@router.get("/demo/")
def page() -> FileResponse:
    return FileResponse(DEMO_DIR / "index.html", media_type=FILES["index.html"], headers=HEADERS)


@router.get("/demo/config.json")
def config(request: Request) -> JSONResponse:
    origin = str(request.base_url).rstrip("/")
    found = browser_config(get_state(request).settings.data_dir, origin)
    if found is None:
        raise NotFoundError(
            f"no demo key for {origin}: the demo page runs under `make run` "
            "(tacit serve --dev --demo), which makes its publishable key"
        )
    return JSONResponse(found, headers=HEADERS)


@router.get("/demo/{name}")
def asset(name: str) -> FileResponse:
    if name == "tacit.min.js":
        if not BUNDLE.exists():
            raise NotFoundError("the browser SDK is not built: run `make run` (or npm run build)")
        return FileResponse(BUNDLE, media_type=FILES["demo.js"], headers=HEADERS)
    if name not in FILES:
        raise NotFoundError(f"no such file in the demo page: {name}; open /demo")
    return FileResponse(DEMO_DIR / name, media_type=FILES[name], headers=HEADERS)
