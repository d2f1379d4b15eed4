"""The pure core stays pure: privacy/ imports no web framework and no database driver."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

FORBIDDEN = {
    "fastapi",
    "starlette",
    "sqlite3",
    "sqlite_utils",
    "psycopg",
    "psycopg2",
    "asyncpg",
    "uvicorn",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_privacy_package_imports_no_io_layer() -> None:
    offenders = {
        str(path.relative_to(REPO)): sorted(imported_modules(path) & FORBIDDEN)
        for path in (REPO / "privacy").rglob("*.py")
        if imported_modules(path) & FORBIDDEN
    }
    assert offenders == {}
