"""The import structure of ``spal/`` and ``harness/``: every module imports, and the static import graph
(function-level imports included) has no cycle, no import of another module's private names and no
``spal -> harness`` edge."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("spal", "harness")


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages (``__main__`` included)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = module_files()


def imported_names(name: str, path: Path) -> list[tuple[str, str | None]]:
    """``(module, imported name or None)`` for every import statement in the file, at any depth."""
    is_package = path.name == "__init__.py"
    found: list[tuple[str, str | None]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                # A relative import counts from the module's package (the module itself for an __init__).
                anchor = name.split(".")[: len(name.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(base, alias.name) for alias in node.names]
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (``from a import b`` is an edge to ``a.b`` when that is a
    module, else to ``a``). A parent package's ``__init__`` is not an edge: Python runs it first anyway."""
    graph: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        edges = set()
        for module, member in imported_names(name, path):
            if member is not None and f"{module}.{member}" in MODULES:
                edges.add(f"{module}.{member}")
            elif module in MODULES:
                edges.add(module)
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first repeated at the end), or ``None`` when it is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_a_cycle_and_accepts_a_dag() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_scan_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from spal.active import selection\n    from . import kinds\n")
    assert imported_names("spal.active.m", source) == [("spal.active", "selection"), ("spal.active", "kinds")]


def test_no_import_cycle_among_spal_and_harness_modules() -> None:
    graph = import_graph()
    assert graph["spal.annotation.human"] >= {"spal.annotation.server", "spal.annotation.session"}  # edges seen
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_spal_never_imports_harness() -> None:
    offenders = [name for name, edges in import_graph().items() if name.startswith("spal") and
                 any(edge.startswith("harness") for edge in edges)]  # fmt: skip
    assert offenders == []


def test_no_module_imports_another_modules_private_names() -> None:
    offenders = [
        f"{name}: from {module} import {member}"
        for name, path in MODULES.items()
        for module, member in imported_names(name, path)
        if member and member.startswith("_") and not member.startswith("__") and module.split(".")[0] in PACKAGES
    ]
    assert offenders == []


@pytest.mark.parametrize("name", sorted(name for name in MODULES if not name.endswith("__main__")))
def test_every_module_imports(name: str) -> None:
    assert importlib.import_module(name).__name__ == name
