"""Every script in benchmarks/ runs at its ``--smoke`` size (tiny models, seconds) in a fresh process and prints
its tables: a script that raises, or whose tables lose a row, fails here. Timings are never asserted — only that
the rows are there, that a table's base row is 1.00× itself, and the figures that are not timings (records equal,
maps reused)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
NUMBER = r"(-?\d+(?:\.\d+)?(?:e[-+]\d+)?)"


def smoke(script: str, *extra: str) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]))
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--smoke", *extra], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, f"{script} --smoke failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def rows(out: str, name: str, columns: int) -> list[list[float]]:
    """Every table row of ``out`` named ``name``, its ``columns`` numbers parsed."""
    pattern = re.compile(rf"^\s+{re.escape(name)}\s+" + r"\s+".join([NUMBER] * columns) + r"\s*$", re.M)
    return [[float(v) for v in m] for m in pattern.findall(out)]


SCRIPTS = {
    "bench_carve.py", "bench_vlm_capture.py", "bench_clip_overhead.py", "bench_crops.py", "bench_eval.py",
    "bench_memory.py", "bench_ray.py", "bench_scaling.py", "bench_carve_sharing.py", "bench_zoom_cost.py",
    "bench_large_photos.py",
}


def test_every_benchmark_script_has_a_smoke_test_here():
    assert {p.name for p in BENCHMARKS.glob("bench_*.py")} == SCRIPTS


def test_carve_against_the_public_loop_its_floor_and_plain():
    out = smoke("bench_carve.py")
    assert out.count("answers of 3 tokens") == 2  # llava and qwen2-vl
    for op in ("ours", "public-loop", "floor", "plain"):
        found = rows(out, op, 6)  # seconds, × ours, × plain, MB, × ours, × plain
        assert len(found) == 2, (op, out)
    assert all(r[1] == 1.0 and r[4] == 1.0 for r in rows(out, "ours", 6))
    assert all(r[2] == 1.0 and r[5] == 1.0 for r in rows(out, "plain", 6))


def test_vlm_capture_against_the_authors_computation_and_output_attentions():
    out = smoke("bench_vlm_capture.py")
    for op in ("generate", "api-vlm", "api-authors", "output_attentions"):
        assert len(rows(out, op, 4)) == 1, (op, out)
    assert rows(out, "generate", 4)[0][1] == 1.0


def test_vlm_capture_on_every_newer_family():
    out = smoke("bench_vlm_capture.py", "--family", "all")
    for family in ("qwen3_vl", "internvl", "gemma3", "smolvlm", "llava_onevision"):
        assert f"{family}: api-vlm vs plain generation" in out
    assert len(rows(out, "api-vlm", 4)) == 5


def test_clip_overhead():
    out = smoke("bench_clip_overhead.py")
    for op in ("embed", "attribute", "annotate"):
        assert len(rows(out, op, 4)) == 1, (op, out)


def test_crops_tables():
    out = smoke("bench_crops.py")
    crop_rows = [m for m in re.findall(r"^\| (carve|api-vlm|api-clip) \|(.*)\|$", out, re.M)]
    assert [name for name, _ in crop_rows] == ["carve", "api-vlm", "api-clip"]
    accuracy = re.findall(r"^\| plain \|(.*)\|$", out, re.M)
    assert len(accuracy) == 1 and all(0 <= float(v) <= 1 for v in accuracy[0].split("|"))


def test_eval_runner_concurrency_and_cache():
    out = smoke("bench_eval.py")
    assert re.search(rf"evaluate {NUMBER} CPU s → {NUMBER}× \(target", out)
    assert re.search(rf"→ {NUMBER}× the throughput", out)
    assert "maps computed 8, reused 8 — the second strategy computed 0 maps (target 0: met)" in out


def test_memory_beside_plain():
    out = smoke("bench_memory.py")
    assert re.search(r"^plain\s+\d+\.\d+ GB; ", out, re.M)
    assert re.search(rf"^api\s+{NUMBER}× \({NUMBER}×\)$", out, re.M), out


def test_ray_executor():
    pytest.importorskip("ray", reason="the Ray benchmark needs the [ray] extra")
    out = smoke("bench_ray.py")
    assert "records equal to the single-process run: True" in out
    assert re.search(rf"2 workers vs single process: {NUMBER}×", out)


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


def test_zoom_cost_rows_with_calls_and_seconds_per_question():
    out = smoke("bench_zoom_cost.py")
    conditions = ["plain", "zoom-search:search_budget=4", "zoom-search:search_order=zoomeye;search_budget=4",
                  "zoom-refine"]
    row = rf"^\| (\S+) \| {NUMBER} \| [-+]{NUMBER} \[[-+]{NUMBER}, [-+]{NUMBER}\] \| {NUMBER} \| {NUMBER} \|$"
    found = {m[0]: m[1:] for m in re.findall(row, out, re.M)}
    assert list(found) == conditions, out
    assert float(found["plain"][4]) == 1.0  # plain asks once a question
    # a search within its budget of 4 calls (plus the answer on the window it chose)
    assert all(1.0 <= float(found[c][4]) <= 5.0 for c in conditions[1:3]), out


def test_large_photos_through_a_real_checkpoints_files():
    from tools.checkpoints import CHECKPOINT_VLMS, CHECKPOINTS

    if not any((CHECKPOINTS / h / "config.json").is_file() for h in CHECKPOINT_VLMS):
        pytest.skip(f"no checkpoint's files under {CHECKPOINTS} (see tools/checkpoints.py)")
    out = smoke("bench_large_photos.py")
    row = re.findall(r"^\| (\S+) \| 320×240 \| (\d+) \| \S+ \| (\d+) \| (\d+) ", out, re.M)
    assert len(row) == 1, out
    hub_id, image_tokens, context, exit_code = row[0]
    assert 0 < int(image_tokens) < int(context) and exit_code in ("0", "2"), out
