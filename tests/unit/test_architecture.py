"""The layout holds: privacy/ imports no web framework and no database driver, neither
privacy/ nor service/ has an import cycle, and no module in either grows past 400 lines."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest
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
MAX_LINES = 400  # style.md: past ~400 lines a module is split along the seam it has


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


# --- import cycles ------------------------------------------------------------------------


def module_name(path: Path) -> str:
    """``privacy/policy/model.py`` → ``privacy.policy.model``; a package is its __init__."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import the module runs, at any depth (a function-level import still closes a
    cycle), except those under ``if TYPE_CHECKING:``, which never run."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
        else:
            stack.extend(ast.iter_child_nodes(node))


def import_graph(package: str) -> dict[str, set[str]]:
    """Module → the modules of ``package`` it imports (``from a import b`` names the
    module ``a.b`` when there is one, else ``a``)."""
    paths = {module_name(p): p for p in sorted((REPO / package).rglob("*.py"))}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        is_package = path.name == "__init__.py"
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    here = name.split(".") if is_package else name.split(".")[:-1]
                    up = here[: len(here) - (node.level - 1)]
                    base = ".".join([*up, *([base] if base else [])])
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base
                    for alias in node.names
                ]
            for target in targets:
                while target and target not in paths:  # `import a.b.c` of a non-module
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle (``a → b → a``) through each strongly connected group of modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def connect(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return [_cycle_through(group, graph) for group in groups]


def _cycle_through(group: list[str], graph: dict[str, set[str]]) -> list[str]:
    """The shortest path from the group's first module back to itself, within the group."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & members):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in {group}: this is a bug in the test")


def test_the_cycle_finder_names_the_modules_of_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_sees_the_policy_package_modules() -> None:
    graph = import_graph("privacy")
    assert "privacy.policy.model" in graph["privacy.policy.loader"]
    assert "privacy.metrics" in graph["privacy.policy.grants"]


@pytest.mark.parametrize("package", ["privacy", "service"])
def test_modules_import_each_other_without_a_cycle(package: str) -> None:
    found = [" → ".join(cycle) for cycle in cycles(import_graph(package))]
    assert found == [], "import cycles (split out what both sides need): " + "; ".join(found)


# --- module size ----------------------------------------------------------------------------


@pytest.mark.parametrize("package", ["privacy", "service"])
def test_no_module_is_longer_than_400_lines(package: str) -> None:
    long = {
        str(path.relative_to(REPO)): n
        for path in sorted((REPO / package).rglob("*.py"))
        if (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}, f"split these along the seam they already have (at most {MAX_LINES} lines)"
