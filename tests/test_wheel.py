"""The wheel as users get it (.ci/wheel, which CI runs after the tests): built with ``python -m build``, installed
into a fresh virtual environment that cannot see the checkout, ``attnprompt --help`` and the README's main job run
from it. Slow: it installs torch and the package's dependencies (minutes)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_wheel_installs_alone_and_runs_the_main_job():
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["WHEEL_LIMIT"] = "2"
    done = subprocess.run([str(ROOT / ".ci" / "wheel")], capture_output=True, text=True, env=env, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert any(line.startswith("built attnprompt-") and line.endswith(".tar.gz") for line in lines)
    assert any(line.startswith("attnprompt ") and "/venv/" in line and "site-packages" in line for line in lines)
    # the README's full job (its fourth command), limited to 2 questions: every task × every strategy × 2
    full = next(line for line in (ROOT / "README.md").read_text().splitlines()
                if line.startswith("attnprompt eval ") and line.endswith("--out runs/full"))
    words = full.split()
    tasks, strategies = (words[words.index(flag) + 1].split(",") for flag in ("--task", "--strategy"))
    assert f"main job from the wheel: {len(tasks) * len(strategies) * 2} records, report written" in lines
