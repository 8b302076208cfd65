"""The architecture as tests: which package may import which, and no import cycles.

Layers, lowest first: `media` and `models` (plain media and model code: no Ray, no
database, nothing of ours above them), `lumalive` (settings, errors, database,
repositories), `actors` (Ray actors and the logic they wrap), `serve_app` (the API),
`cluster` (composition root, CLI). A package imports only from its own layer or below.
Read from the source with `ast`, so nothing is imported to check it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("media", "models", "lumalive", "actors", "serve_app", "cluster")
# What each package may import of ours (besides itself).
ALLOWED: dict[str, set[str]] = {
    "media": set(),
    "models": {"media"},
    "lumalive": {"media", "models"},
    "actors": {"media", "models", "lumalive"},
    "serve_app": {"media", "models", "lumalive", "actors"},
    "cluster": {"media", "models", "lumalive", "actors", "serve_app", "sql"},
}
# Third-party packages a layer must not touch at all.
FORBIDDEN: dict[str, set[str]] = {
    "media": {"ray", "sqlalchemy", "psycopg", "fastapi"},
    "models": {"ray", "sqlalchemy", "psycopg", "fastapi"},
}


def modules(package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports, anywhere in the file (lazy imports count too)."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_from_its_layer_or_below(package: str) -> None:
    allowed = ALLOWED[package] | {package}
    forbidden = FORBIDDEN.get(package, set())
    wrong = []
    for name, path in modules(package):
        for target in imports(name, path):
            top = target.split(".")[0]
            if (top in ALLOWED or top == "sql") and top not in allowed:
                wrong.append(f"{name} imports {target}")
            if top in forbidden:
                wrong.append(f"{name} imports {target} (no {top} in {package}/)")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_no_import_cycles_between_our_modules() -> None:
    known = {name: path for package in PACKAGES for name, path in modules(package)}
    graph = {
        name: {t for t in imports(name, path) if t in known and t != name}
        for name, path in known.items()
    }
    cycles = _strongly_connected(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(sorted(c)) for c in cycles)


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm; components of more than one module are cycles. A package's
    `__init__` re-exporting its own submodules is not a cycle worth reporting."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1 and not _package_and_its_parts(component):
                out.append(component)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _package_and_its_parts(component: set[str]) -> bool:
    shortest = min(component, key=len)
    return all(m == shortest or m.startswith(shortest + ".") for m in component)
