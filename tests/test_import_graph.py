"""The package's import graph has no cycle.

Modules import each other along the pipeline (model/manifest at the bottom, cli at the top);
a cycle means a type lives in the wrong module. Imports under `if TYPE_CHECKING:` are not
edges (they never run); imports inside functions are, because hiding a cycle in a function
is still a cycle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import extpack

PACKAGE_DIR = Path(extpack.__file__).parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING"


def _imported(module: str, path: Path, node: ast.Import | ast.ImportFrom, known: set[str]) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name for alias in node.names} & known
    base = node.module or ""
    if node.level:
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join(package + ([base] if base else []))
    names = {f"{base}.{alias.name}" for alias in node.names}
    return {name if name in known else base for name in names} & known


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(path): path for path in PACKAGE_DIR.rglob("*.py")}
    known = set(paths)
    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        edges: set[str] = set()
        pending: list[ast.AST] = [ast.parse(path.read_text(), str(path))]
        while pending:
            node = pending.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child):
                    pending.extend(child.orelse)
                elif isinstance(child, (ast.Import, ast.ImportFrom)):
                    edges |= _imported(module, path, child, known)
                else:
                    pending.append(child)
        edges.discard(module)
        graph[module] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path (its first module repeated at the end), or None."""
    finished: set[str] = set()
    for start in sorted(graph):
        if start in finished:
            continue
        path = [start]
        successors = [iter(sorted(graph[start]))]
        while successors:
            following = next(successors[-1], None)
            if following is None:
                successors.pop()
                finished.add(path.pop())
            elif following in path:
                return path[path.index(following):] + [following]
            elif following not in finished:
                path.append(following)
                successors.append(iter(sorted(graph[following])))
    return None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_graph_sees_the_pipeline():
    """Guards the walker itself: the modules and edges it must find are found."""
    graph = import_graph()
    assert "extpack.pipeline" in graph["extpack.fetch"] and "extpack.stage" in graph["extpack.pipeline"]


def test_the_cycle_finder_finds_a_cycle_and_only_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
