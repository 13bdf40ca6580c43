"""The issue-40 scripts of items 2 and 3 run at their ``--smoke`` size (tiny models or images, seconds) in a fresh
process and print their tables: a script that raises, or whose table loses a row, fails here. Timings are never
asserted — only that the rows are there, that the base row is 1.00× itself, and the figures that are not timings
(the maps of the shared prefix equal to the plain batch's)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"(-?\d+(?:\.\d+)?(?:e[-+]\d+)?)"


def smoke(script: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--smoke"], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, f"{script} --smoke failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_scaling_prints_every_row_beside_plain():
    out = smoke("bench_scaling.py")
    for row in ("plain", "api", "carve", "carve, same image"):
        found = re.findall(rf"^\s+{re.escape(row)}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+\S+$", out, re.M)
        assert len(found) == 1, (row, out)
    plain = re.search(rf"^\s+plain\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}", out, re.M)
    assert float(plain.group(2)) == 1.0 and float(plain.group(4)) == 1.0
    assert re.search(r"^carve at 96²: .* plain's time \(target ≤ 4.0\)", out, re.M), out


def test_carve_sharing_prints_the_map_against_its_floor_and_equal_maps():
    out = smoke("bench_carve_sharing.py")
    for op in ("shared", "batch", "floor", "plain"):
        assert len(re.findall(rf"^\s+{op}\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}$", out, re.M)) == 2, (op, out)
    maps = re.findall(rf"raw contrast {NUMBER} \(relative\), grid {NUMBER} \(absolute\)", out)
    assert len(maps) == 2 and all(float(raw) <= 1e-5 and float(grid) <= 1e-4 for raw, grid in maps), out
    assert re.search(r"the map \S+× the batched floor \(target ≤ 0.8\)", out)
