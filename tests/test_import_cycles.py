"""No import cycle among segstudio modules, deferred (function-level) imports included.

A cycle hidden by a deferred import still means neither module can be understood, tested or
moved without the other (io.export <-> io.formats.writers was one). The graph is read from
the source with `ast`, every import statement wherever it stands, except under
`if TYPE_CHECKING:` (never run). The import-linter contract in pyproject.toml says the same;
this test names the cycle and the lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO


def module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or \
        (isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING")


def _imported_names(tree: ast.Module, package: str) -> list[tuple[str, list[str], int]]:
    """(module, names imported from it, line) for every import statement outside TYPE_CHECKING."""
    found = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for c in child.orelse:
                    visit_node(c)
                continue
            visit_node(child)

    def visit_node(node: ast.AST) -> None:
        if isinstance(node, ast.Import):
            found.extend((a.name, [], node.lineno) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.append((base, [a.name for a in node.names], node.lineno))
        visit(node)

    visit(tree)
    return found


def import_graph(root: Path) -> dict[str, dict[str, int]]:
    """module -> {segstudio module it imports: first line}, for every module under root/segstudio."""
    files = {module_name(p, root): p for p in sorted((root / "segstudio").rglob("*.py"))}
    graph: dict[str, dict[str, int]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for module, names, line in _imported_names(ast.parse(path.read_text(encoding="utf-8")),
                                                   package):
            # `from a.b import c` imports module a.b.c when there is one, else names of a.b
            targets = [f"{module}.{n}" if f"{module}.{n}" in files else module for n in names] \
                or [module]
            for target in targets:
                while target and target not in files:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.setdefault(target, line)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph.get(w, {}))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def describe(graph: dict[str, dict[str, int]], component: list[str]) -> str:
    inside = set(component)
    lines = [f"  {m}:{line} imports {t}" for m in component
             for t, line in sorted(graph[m].items()) if t in inside]
    return f"cycle among {component}:\n" + "\n".join(lines)


def test_no_import_cycle_among_segstudio_modules():
    graph = import_graph(REPO)
    assert "segstudio.io.export" in graph and graph["segstudio.io.export"]   # the walk found it
    found = cycles(graph)
    assert not found, "\n".join(describe(graph, c) for c in found)


def test_the_walk_sees_deferred_imports(tmp_path):
    """A function-level import closes a cycle as surely as a top-level one."""
    pkg = tmp_path / "segstudio"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from segstudio.b import f\n")
    (pkg / "b.py").write_text("def f():\n    from segstudio import a\n    return a\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                              "    from segstudio import a\n")
    graph = import_graph(tmp_path)
    assert cycles(graph) == [["segstudio.a", "segstudio.b"]]
    assert graph["segstudio.b"] == {"segstudio.a": 2} and graph["segstudio.c"] == {}
