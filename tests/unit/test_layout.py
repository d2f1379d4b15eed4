"""Route handlers stay thin: the work lives in the services they call. (Import cycles and
module sizes: tests/unit/test_architecture.py.)"""

from __future__ import annotations

import ast

from conftest import REPO

HANDLER_LINES = 20  # a route handler reads its input, calls one service, shapes the answer


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
    for path in (REPO / "service" / "api" / "routes").glob("*.py"):
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
