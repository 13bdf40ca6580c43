"""The package's floors: each part imports only parts below it, and no module imports itself back through others.

A *room* is a top-level module or subpackage of ``attnprompt`` (``models``, ``attribution``, ``evaluation`` …).
Imports inside functions count (they are still dependencies); imports under ``if TYPE_CHECKING`` do not (they
never run). A new room needs a floor in :data:`FLOORS`; an import that runs up a floor fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "attnprompt"

#: Room → floor; a room may import rooms on lower floors only. ``__init__`` (the façade) may import anything.
FLOORS = {
    "errors": 0,
    "checks": 1, "files": 1, "images": 1, "presets": 1, "registry": 1, "text": 1,
    "render": 2, "regions": 2, "capture": 2, "shapes": 2,
    "types": 3, "families": 3,
    "models": 4, "confidence": 4,
    "attribution": 5, "backends": 5,
    "annotation": 6, "forms": 6, "segmenters": 6, "search": 6,
    "strategies": 7,
    "api": 8, "batch": 8, "evaluation": 8, "serve": 8,
    "demo": 9, "integrations": 9,
    "cli": 10,
    "__main__": 11,
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, package: list[str], modules: set[str], type_only: bool = False) -> set[str]:
    """The package's modules a module's code imports (``package``: where its relative imports start):
    ``from .x import y`` is module ``x.y`` if there is one, else module ``x``. Imports under
    ``if TYPE_CHECKING`` count only with ``type_only`` (they never run, but a circle through them is still a
    circle a reader and a type checker must untangle)."""
    found: set[str] = set()
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test) and not type_only:
            continue  # never runs
        if isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:
                base = ".".join(package[: len(package) - child.level + 1] + ([child.module] if child.module else []))
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in child.names)
        elif isinstance(child, ast.Import):
            found.update(a.name for a in child.names)
        found |= imported(child, package, modules, type_only)
    return found & modules


def module_graph(type_only: bool = False) -> dict[str, set[str]]:
    """Module → the package's modules it imports (with ``type_only``, the type checker's imports too)."""
    paths = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        graph[name] = imported(ast.parse(path.read_text(encoding="utf-8")), package, set(paths), type_only) - {name}
    return graph


def room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_imports_itself_back():
    assert cycles(module_graph()) == []


def test_no_module_imports_itself_back_even_for_types():
    assert cycles(module_graph(type_only=True)) == []


def test_every_room_has_a_floor_and_imports_only_below_it():
    graph = module_graph()
    rooms = {room(m) for m in graph} - {"__init__"}
    assert rooms <= set(FLOORS), f"give these rooms a floor in FLOORS: {sorted(rooms - set(FLOORS))}"
    upward = sorted({(room(m), room(d)) for m, deps in graph.items() for d in deps
                     if room(m) != "__init__" and room(d) not in ("__init__", room(m))
                     and FLOORS[room(d)] >= FLOORS[room(m)]})
    assert upward == [], f"imports that run up or across a floor: {upward}"


def test_the_layering_check_sees_relative_and_lazy_imports():
    graph = module_graph()
    assert "attnprompt.families" in graph["attnprompt.models"]  # from .families import … (top level)
    assert "attnprompt.strategies.build" in graph["attnprompt.evaluation.runner"]  # inside a method
    assert "attnprompt.annotation" in graph["attnprompt.api"]
