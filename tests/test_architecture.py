"""The package boundaries of DESIGN.md, checked on the source: who may import whom, and no import cycle.

Every import counts, also the ones inside functions: a function-level import that closes a cycle only hides it.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("assets_store", "hardware", "model", "pipeline")
# package -> the packages it may import (DESIGN.md); hardware may use the model only through its inference policy
MAY_IMPORT = {
    "assets_store": set(),
    "model": {"assets_store"},
    "hardware": {"assets_store", "model.policy"},
    "pipeline": {"assets_store", "hardware", "model"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that `name` imports (resolved to the longest known module prefix)."""
    found = set()
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" for a in node.names] + [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    known = set(mods)
    return {name: _imports(name, path, known) for name, path in mods.items()}


def test_no_import_runs_up_a_layer():
    bad = []
    for mod, deps in _graph().items():
        pkg = mod.split(".")[0]
        for dep in deps:
            dep_pkg = dep.split(".")[0]
            if dep_pkg == pkg:
                continue
            allowed = MAY_IMPORT[pkg]
            if dep_pkg not in allowed and not any(dep == a or dep.startswith(a + ".") for a in allowed):
                bad.append(f"{mod} imports {dep}")
    assert not bad, "imports that break DESIGN.md's layering:\n" + "\n".join(sorted(bad))


def test_no_import_cycle():
    graph = _graph()
    # A package's __init__ importing its own submodules is how a package exports names, not a cycle of concepts.
    edges = {m: {d for d in deps if not (m == d.split(".")[0] or d == m.rpartition(".")[0])} for m, deps in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_checker_sees_function_level_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from pipeline.lineage import upstream\n    return upstream\n")
    assert _imports("model.x", src, {"pipeline.lineage", "model.x"}) == {"pipeline.lineage"}
