"""The shape of the package's code: no function over 80 lines (docstrings not counted), and no function
over 8 parameters (a constructor 10) except the public façade, whose keyword signatures users' code calls
(``annotate``, ``annotate_batch``, ``ask``, ``evaluate``). Settings travel as one object instead
(:class:`~attnprompt.strategies.spec.AskSpec`, the option groups)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "attnprompt"
FACADE = {"annotate", "annotate_batch", "ask", "evaluate"}
MAX_LINES, MAX_PARAMS, MAX_INIT_PARAMS = 80, 8, 10


def functions():
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield path.relative_to(PACKAGE.parent), node


def length(node: ast.FunctionDef) -> int:
    """Lines of the function without its docstring."""
    first = node.body[0]
    doc = (first.end_lineno - first.lineno + 1 if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
           and isinstance(first.value.value, str) else 0)
    return node.end_lineno - node.lineno + 1 - doc


def parameters(node: ast.FunctionDef) -> int:
    """Named parameters, without ``self``/``cls`` (``*args``/``**kwargs`` are not counted)."""
    a = node.args
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    return len(names) - (1 if names and names[0] in ("self", "cls") else 0)


def test_the_counters_count_what_they_say():
    tree = ast.parse('def f(self, a, b=1, *args, c, **kw):\n    """Doc\n    string."""\n    x = 1\n    return x\n')
    node = tree.body[0]
    assert parameters(node) == 3 and length(node) == 3


def test_no_function_is_over_80_lines():
    long = [f"{path}:{node.lineno} {node.name} ({length(node)} lines)" for path, node in functions()
            if length(node) > MAX_LINES]
    assert long == []


def test_no_function_but_the_facade_takes_over_8_parameters():
    wide = [f"{path}:{node.lineno} {node.name} ({parameters(node)} parameters)" for path, node in functions()
            if node.name not in FACADE
            and parameters(node) > (MAX_INIT_PARAMS if node.name == "__init__" else MAX_PARAMS)]
    assert wide == []
