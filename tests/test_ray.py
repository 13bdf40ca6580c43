"""``attnprompt eval --executor ray`` on a local Ray with two workers: the same records as the
single-process run, and a kill -9 mid-run resumes as it does without Ray. Skipped without Ray."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

try:
    import ray  # noqa: F401

    HAVE_RAY = True
except ImportError:
    HAVE_RAY = False

pytestmark = pytest.mark.skipif(not HAVE_RAY, reason="Ray is not installed: pip install -e '.[ray]'")

ARGS = ["--task", "shapes-vqa", "--vlm", "shapes", "--strategy", "plain,api", "--limit", "16", "--batch-size", "2",
        "--quiet"]


def records(directory: Path) -> list[tuple]:
    db = sqlite3.connect(directory / "records.sqlite")
    try:
        return sorted(db.execute("select task, sample_id, config_hash, condition, ok, prediction, scores "
                                 "from records").fetchall())
    finally:
        db.close()


def eval_command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "attnprompt", "eval", *ARGS, "--out", str(out), *extra]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> list[tuple]:
    out = tmp_path_factory.mktemp("single")
    subprocess.run(eval_command(out), check=True, capture_output=True, timeout=600)
    return records(out)


def test_ray_with_two_workers_gives_the_single_process_records(single, tmp_path):
    from attnprompt import evaluate

    run = evaluate("shapes-vqa", vlm="shapes", strategies="plain,api", limit=16, batch_size=2, out=tmp_path,
                   progress=False, executor="ray", workers=2)
    assert records(tmp_path) == single
    assert len(single) == 32 and all(r[4] for r in single)
    assert {label: s.answered for label, s in run.stats["shapes-vqa"].items()} == {"plain": 16, "api (api-clip)": 16}
    # both replicas computed maps (2 chunks of 8 per condition, the api chunks spread over the two)
    assert sum(c["misses"] for c in run.cache.values()) == 16
    assert "executor ray" in (tmp_path / "report.md").read_text()


def test_ray_run_killed_mid_way_resumes_without_loss_or_duplicates(single, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(eval_command(tmp_path, "--executor", "ray", "--workers", "2"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    store = tmp_path / "records.sqlite"
    deadline = time.time() + 300
    try:
        while time.time() < deadline:  # kill once some, not all, records are in
            if store.exists():
                try:
                    n = len(records(tmp_path))
                except sqlite3.Error:
                    n = 0
                if 0 < n < 32:
                    break
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    finally:
        proc.wait(timeout=60)
    kept = records(tmp_path)
    assert 0 < len(kept) < 32, f"the kill landed with {len(kept)} records; the test needs it mid-run"
    done = subprocess.run(eval_command(tmp_path, "--executor", "ray", "--workers", "2"), capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert records(tmp_path) == single  # nothing lost, nothing twice, the same answers
    reused = sum(int(n) for n in re.findall(r"(\d+) already recorded", done.stdout))
    assert reused == len(kept)  # the rerun answered only what the killed run had not recorded
