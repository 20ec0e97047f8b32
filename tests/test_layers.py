"""The rule of the layers, enforced: data flows text -> encode -> index -> hits, and no module imports from a
layer above its own (lazy imports inside functions count too); no import cycles between modules; no oversized
files."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "spladekit"

# Lower number = lower layer. A module may import its own layer or lower ones.
LAYERS = {
    "errors": 0,
    "io": 0,
    "sparse": 1,
    "data": 1,
    "sources": 1,
    "encode": 2,
    "index": 3,
    "eval": 4,
    "scale": 4,
    "ingest": 4,
    "train": 5,
    "serve": 5,
    "cli": 6,
}
MAX_LINES = 420  # "~400": a file past it holds more than one concept


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """spladekit modules imported by ``path`` (absolute names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    me = _module_name(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:  # TYPE_CHECKING blocks import nothing at run time
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("spladekit"):
                out.add(mod)
                for alias in node.names:  # `from . import pooling` imports a module
                    candidate = f"{mod}.{alias.name}"
                    if (SRC.parent / Path(*candidate.split("."))).with_suffix(".py").exists() or (
                        SRC.parent / Path(*candidate.split(".")) / "__init__.py"
                    ).exists():
                        out.add(candidate)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("spladekit"))
    return out


def _area(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


FILES = sorted(SRC.rglob("*.py"))


def test_every_area_has_a_layer():
    areas = {_area(_module_name(f)) for f in FILES} - {None}
    assert areas <= set(LAYERS), f"new areas need a layer in this test: {areas - set(LAYERS)}"


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_import_from_a_higher_layer(path):
    me = _area(_module_name(path))
    if me is None:  # the package root re-exports the public names lazily
        return
    for mod in _imports(path, top_level_only=False):
        other = _area(mod)
        if other is None:
            continue
        assert LAYERS[other] <= LAYERS[me], (
            f"{_module_name(path)} ({me}) imports {mod} ({other}), a higher layer"
        )


def test_no_import_cycles():
    graph = {_module_name(f): {m for m in _imports(f, top_level_only=True)} for f in FILES}
    names = set(graph)
    graph = {k: {m for m in v if m in names and m != k} for k, v in graph.items()}
    # a package imports its own __init__ implicitly: edges into a package's own parents are not cycles
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for m in graph[n]:
            if n.startswith(m + "."):
                continue
            if state.get(m) == 1:
                cycle = stack[stack.index(m) :] + [m]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if m not in state:
                visit(m)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)


def test_no_oversized_files():
    big = {str(f.relative_to(SRC)): n for f in FILES if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert not big, f"files over {MAX_LINES} lines: {big}"
