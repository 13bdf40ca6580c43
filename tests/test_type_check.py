"""The package's type hints are checked: mypy over ``src/attnprompt`` with the ``[tool.mypy]`` settings of
pyproject.toml (every function annotated, every body checked) finds no error. CI runs it as part of the suite.

mypy's cache is the repository's ``.mypy_cache`` (git ignores it): a first run on a clean clone reads torch's and
transformers' hints and takes about a minute on two cores; later runs take a few seconds.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(importlib.util.find_spec("mypy") is None,
                    reason="mypy is not installed (it comes with the [dev] extra: pip install -e '.[dev]')")
def test_mypy_finds_no_error_in_the_package():
    command = [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
               "--cache-dir", str(ROOT / ".mypy_cache"), "--no-color-output", "--no-error-summary",
               str(ROOT / "src" / "attnprompt")]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert done.returncode == 0 and errors == [], (
        f"mypy (exit {done.returncode}) finds {len(errors)} error(s):\n{done.stdout}{done.stderr}")
