"""The product apart from the research: what the package imports, and what the wheel holds."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from attnprompt.shapes import splits

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "attnprompt"


def imports(path: Path) -> set[str]:
    """Dotted names of the modules a file imports (relative ones resolved from the repository root,
    so ``from ..cli import main`` in src/attnprompt/shapes/x.py is ``src.attnprompt.cli``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level]
                names.add(".".join(base + ([node.module] if node.module else [])))
            else:
                names.add(node.module or "")
    return names


def test_the_package_never_imports_the_tools_and_the_testbed_never_the_cli():
    for path in PACKAGE.rglob("*.py"):
        found = imports(path)
        assert not any(n == "tools" or n.startswith("tools.") for n in found), path
        if "shapes" in path.parts:
            assert not any(n.endswith(".cli") or n == "attnprompt.cli" for n in found), path


def test_the_training_tools_do_not_import_the_cli():
    for path in (ROOT / "tools").rglob("*.py"):
        assert "attnprompt.cli" not in imports(path), path


def test_held_out_ranges_are_disjoint_and_never_trained_on():
    ranges = sorted(splits.HELD_OUT, key=lambda r: r.start)
    for a, b in zip(ranges, ranges[1:]):
        assert a.stop <= b.start, (a.name, b.name)
    assert ranges[-1].stop <= splits.TRAINING_START
    with pytest.raises(ValueError, match="vlm-eval: 100001 seeds asked for, the range holds 100000"):
        splits.VLM_EVAL.seeds(100_001)


@pytest.mark.slow
def test_the_wheel_holds_the_product_and_the_shipped_models_only(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", str(ROOT),
                        "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    [wheel] = tmp_path.glob("attnprompt-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if "train" in n.rsplit("/", 1)[-1] and n.endswith(".py")]
    assert not [n for n in names if n.startswith(("tools/", "benchmarks/", "tests/"))]
    assert "attnprompt/shapes/models/shapes-vlm/model.safetensors" in names
    assert "attnprompt/strategies/base.py" in names and "attnprompt/py.typed" in names
