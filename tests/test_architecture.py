"""The layering the design asks for, read from the source (every import statement, also those inside
functions and under `if TYPE_CHECKING:`):

- `storage/` is the only package that knows SQLAlchemy and FAISS;
- no file imports a file that imports it back, directly or around a longer loop. Imports made only for
  type checking count too: a type-level loop ties two modules together as much as a runtime one (it is
  how `storage.catalog` ↔ `storage.index_choice` hid), and a function-level import is a runtime one.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("api", "search", "captioning", "training", "evaluation", "indexer", "storage")
STORAGE_ONLY = ("sqlalchemy", "faiss")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """Every import of module `name`, in any scope, as (module, names): `import a.b` gives ("a.b", ()),
    `from .x import y` in package p gives ("p.x", ("y",))."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    out: list[tuple[str, tuple[str, ...]]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            out.append((base, tuple(alias.name for alias in node.names)))
    return out


def _graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Which first-party files each one imports (`from a import b`: the module a.b when there is one, else a)."""
    graph = {}
    for name, path in modules.items():
        found = set()
        for module, names in _imports(name, path):
            for target in [f"{module}.{n}" for n in names if f"{module}.{n}" in modules] or [module]:
                if target in modules and target != name:
                    found.add(target)
        graph[name] = found
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One loop (a → … → a) through each strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

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
            group = set()
            while True:
                w = stack.pop()
                group.add(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(group)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_loop(graph, group) for group in groups]


def _loop(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """The shortest import path from the group's first module back to itself."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v] & group):
                if w == start:
                    return [*paths[v], start]
                if w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no loop through {group}")


def test_only_storage_imports_sqlalchemy_and_faiss() -> None:
    offenders = [
        f"{name} imports {imported}"
        for name, path in _modules().items()
        if not name.startswith("storage.") and name != "storage"
        for imported, _names in _imports(name, path)
        if imported.split(".")[0] in STORAGE_ONLY
    ]
    assert not offenders, "only storage/ may import SQLAlchemy or FAISS:\n" + "\n".join(sorted(set(offenders)))


def test_no_import_cycles_between_files() -> None:
    loops = _cycles(_graph(_modules()))
    assert not loops, "import cycles:\n" + "\n".join(" → ".join(loop) for loop in loops)


def test_the_checks_see_every_kind_of_import(tmp_path: Path) -> None:
    """The walker finds imports in functions, under TYPE_CHECKING and relative ones, and reports a loop."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n")
    (pkg / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "c.py").write_text("def g():\n    import sqlalchemy\n    from pkg import a\n")
    modules = {f"pkg.{n}": pkg / f"{n}.py" for n in "abc"} | {"pkg": pkg / "__init__.py"}
    graph = _graph(modules)
    assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"} and graph["pkg.c"] == {"pkg.a"}
    assert _cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"]]
    assert ("sqlalchemy", ()) in _imports("pkg.c", modules["pkg.c"])
