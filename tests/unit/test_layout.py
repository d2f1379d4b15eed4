"""The layout keeps its shape: no import cycle among the service's and the core's modules,
and route handlers stay thin (the work lives in the services they call)."""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGES = ("service", "privacy")
HANDLER_LINES = 20  # a route handler reads its input, calls one service, shapes the answer


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_graph() -> dict[str, set[str]]:
    """Module-level imports between our modules (imports inside functions and under
    TYPE_CHECKING do not run at import time, so they cannot form an import cycle)."""
    paths = {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        deps: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                submodules = {f"{node.module}.{a.name}" for a in node.names} & paths.keys()
                # `from package import submodule` needs the submodule, not the package.
                deps.update(submodules or {node.module})
        graph[name] = {d for d in deps if d in paths and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            component.append(v)
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_among_our_modules() -> None:
    assert cycles(module_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def _is_route(node: ast.AST) -> bool:
    if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return False
    return any(
        isinstance(d, ast.Call)
        and isinstance(d.func, ast.Attribute)
        and d.func.attr in {"get", "post", "put", "patch", "delete", "api_route"}
        for d in node.decorator_list
    )


def test_route_handlers_are_short() -> None:
    long: dict[str, int] = {}
    routes = 0
    for path in (REPO / "service" / "routes").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not _is_route(node):
                continue
            assert isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            routes += 1
            body = node.body
            if isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                body = body[1:] or body  # the docstring is not code
            lines = (node.end_lineno or node.lineno) - body[0].lineno + 1
            if lines > HANDLER_LINES:
                long[f"{path.name}:{node.name}"] = lines
    assert routes >= 10  # the finder sees the routes
    assert long == {}
