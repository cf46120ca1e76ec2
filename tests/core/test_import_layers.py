"""The core's modules form layers: no import cycle among them.

The graph is read from the source with ``ast``: every ``import`` — at module level, inside a function or
under ``if TYPE_CHECKING`` — so a cycle hidden behind a deferred import still counts, and
``importlib.import_module("…")`` / ``__import__("…")`` with a literal name. An import of a package
counts as an import of its ``__init__``, which Python runs first (except a module's own ancestors, which
are initialised before it). ``test_no_airflow.py`` checks the same imports for Airflow.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "airflow_genius.core"
CORE = Path(__file__).resolve().parents[2] / "airflow_genius" / "core"


@dataclass(frozen=True)
class Import:
    """One import statement's target, as a dotted name, and where it stands."""

    module: str
    target: str
    line: int


def module_name(path: Path) -> str:
    """``airflow_genius.core.streams.io`` for ``core/streams/io.py`` (a package for its ``__init__``)."""
    parts = path.relative_to(CORE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def core_modules() -> dict[str, Path]:
    """Every module of the core, by dotted name."""
    return {module_name(path): path for path in sorted(CORE.rglob("*.py"))}


def imports_of(module: str, path: Path) -> Iterator[Import]:
    """Every name ``path`` imports (``from a import b`` gives ``a.b``: b may be a submodule)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            yield Import(module, base, node.lineno)
            for alias in node.names:
                yield Import(module, f"{base}.{alias.name}", node.lineno)
        elif isinstance(node, ast.Call) and _dynamic_import(node.func) and node.args:
            name = node.args[0]
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                yield Import(module, name.value, node.lineno)


def _dynamic_import(func: ast.expr) -> bool:
    """``import_module(…)``, ``importlib.import_module(…)`` or ``__import__(…)``."""
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name in ("import_module", "__import__")


def import_graph() -> dict[str, set[str]]:
    """Module -> the core modules it imports (with the packages Python initialises on the way)."""
    modules = core_modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for found in imports_of(name, path):
            parts = found.target.split(".")
            for end in range(1, len(parts) + 1):
                prefix = ".".join(parts[:end])
                if prefix in modules and prefix != name and not name.startswith(prefix + "."):
                    graph[name].add(prefix)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def describe(component: list[str], graph: dict[str, set[str]]) -> str:
    """One cycle as the edges inside it, so the import to remove can be seen."""
    members = set(component)
    edges = [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]
    return "\n    ".join(edges)


def test_the_graph_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "import importlib\n"
        "def f():\n"
        "    from .base import thing\n"
        "    import airflow_genius.core.spec\n"
        "    importlib.import_module('airflow.sdk')\n"
    )
    found = {i.target for i in imports_of(f"{PACKAGE}.streams.sample", source)}
    assert {f"{PACKAGE}.streams.base.thing", f"{PACKAGE}.spec", "airflow.sdk"} <= found


def test_cycles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_core_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 20  # the walk found the core
    found = cycles(graph)
    assert not found, "import cycles inside airflow_genius/core:\n  " + "\n  ".join(
        describe(c, graph) for c in found
    )
