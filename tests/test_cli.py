"""The command line: single and batch annotate, bad input, resumable batch runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnprompt import batch as batch_mod
from attnprompt.cli import main


def write_image(path: Path, size=(64, 48), seed=0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)
    return path


def test_annotate_writes_image_heatmap_and_visual(tmp_path, tiny_clip_dir, capsys):
    img = write_image(tmp_path / "in.png", (70, 50))
    out, hm, vis = tmp_path / "out.png", tmp_path / "h.npy", tmp_path / "v.png"
    code = main(["annotate", str(img), "the red star", "-o", str(out), "--heatmap", str(hm), "--visual", str(vis),
                 "--model", str(tiny_clip_dir), "--kernel", "1", "--gray", "30"])
    assert code == 0
    assert Image.open(out).size == (70, 50)
    heat = np.load(hm)
    assert heat.shape == (50, 70) and heat.dtype == np.float32 and 0 <= heat.min() and heat.max() <= 1
    # the annotated pixels follow the overlay formula with the requested gray level
    rgb = np.asarray(Image.open(img)).astype(float)
    expected = rgb * heat[..., None] + (1 - heat[..., None]) * 30
    assert np.abs(np.asarray(Image.open(out)).astype(float) - expected).max() <= 0.5 + 1e-3
    assert Image.open(vis).size[0] > 3 * Image.open(vis).size[1] - 60
    assert "wrote" in capsys.readouterr().out


def test_python_dash_m_runs_the_cli(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "attnprompt", "annotate", "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "--batch" in r.stdout and "--preset" in r.stdout


def run_cli(args, capsys) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.parametrize(
    "make_image,query,match",
    [
        (lambda d: d / "missing.png", "the star", "missing.png: no such file"),
        (
            lambda d: (d / "text.png").write_text("hello") and d / "text.png",
            "the star",
            "not an image file PIL can read",
        ),
        (lambda d: Image.new("RGB", (1, 1)).save(d / "one.png") or d / "one.png", "the star", "image is 1×1 pixels"),
        (lambda d: write_image(d / "ok.png"), "", "query is empty or only whitespace"),
        (lambda d: write_image(d / "ok.png"), "   \t ", "query is empty or only whitespace"),
    ],
)
def test_bad_input_gives_one_clear_line_and_no_output(tmp_path, tiny_clip_dir, capsys, make_image, query, match):
    image = make_image(tmp_path)
    out = tmp_path / "out.png"
    code, err = run_cli(["annotate", str(image), query, "-o", str(out), "--model", str(tiny_clip_dir)], capsys)
    assert code == 2
    assert err.startswith("error: ") and match in err and "\n" not in err
    assert not out.exists()
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    "model,match",
    [
        ("openai/clip-vit-base-patch32", r"cannot load model 'openai/clip-vit-base-patch32' \(hub id\).*--model PATH"),
        ("./no/such/dir", r"no such directory; pass a local checkpoint directory with --model PATH"),
    ],
)
def test_unloadable_model_is_one_line_naming_the_fix(tmp_path, capsys, model, match):
    img = write_image(tmp_path / "in.png")
    out = tmp_path / "out.png"
    code, err = run_cli(["annotate", str(img), "the star", "-o", str(out), "--model", model], capsys)
    assert code == 2 and "\n" not in err
    import re

    assert re.search(match, err), err
    assert not out.exists()


def test_a_non_clip_checkpoint_is_named_as_such(tmp_path, capsys):
    d = tmp_path / "llama"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama"}))
    img = write_image(tmp_path / "in.png")
    code, err = run_cli(["annotate", str(img), "q", "-o", str(tmp_path / "o.png"), "--model", str(d)], capsys)
    assert code == 2 and "is a 'llama' checkpoint; api-clip needs a CLIP model" in err


def test_unknown_parameter_values_are_rejected(tmp_path, tiny_clip_dir, capsys):
    img = write_image(tmp_path / "in.png")
    code, err = run_cli(
        [
            "annotate",
            str(img),
            "q",
            "-o",
            str(tmp_path / "o.png"),
            "--model",
            str(tiny_clip_dir),
            "--parts",
            "everything",
        ],
        capsys,
    )
    assert code == 2 and "parts must be one of both, cls, comp; got 'everything'" in err
    code, err = run_cli(["annotate", str(img), "q", "-o", str(tmp_path / "o.png"), "--heatmap", "h.png"], capsys)
    assert code == 2 and "use a .npy suffix" in err


def make_batch(tmp_path: Path, n: int, bad: bool = False) -> Path:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    lines = []
    for i in range(n):
        write_image(images / f"{i}.png", (40 + i % 5 * 7, 48), seed=i)
        lines.append(
            {"image": f"images/{i}.png", "query": ["the red star", "a blue circle"][i % 2], "id": f"item{i:03d}"}
        )
    if bad:
        lines.insert(2, {"image": "images/missing.png", "query": "x", "id": "gone"})
        lines.insert(4, {"image": "images/0.png", "query": "  ", "id": "blank"})
        lines.insert(5, {"image": "images/0.png", "query": "x", "id": "../escape"})
        lines.append({"image": "images/1.png", "query": "dup", "id": "item001"})
    path = tmp_path / "batch.jsonl"
    text = "\n".join(json.dumps(x) for x in lines) + "\n"
    if bad:
        text += "{not json\n"
    path.write_text(text)
    return path


def manifest_ids(out: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (out / "results.jsonl").read_text().splitlines()]


def test_batch_reports_and_skips_bad_items(tmp_path, tiny_clip_dir, capsys):
    path = make_batch(tmp_path, 6, bad=True)
    out = tmp_path / "out"
    code = main(
        ["annotate", "--batch", str(path), "--out-dir", str(out), "--model", str(tiny_clip_dir), "--batch-size", "4"]
    )
    printed = capsys.readouterr().out
    assert code == 1
    assert "11 items: 6 annotated, 0 already done (skipped), 5 failed" in printed
    for needle in (
        "gone (line 3)",
        "no such file",
        "blank",
        "empty 'query'",
        "cannot be a file name",
        "appears more than once",
        "not valid JSON",
    ):
        assert needle in printed
    assert sorted(manifest_ids(out)) == [f"item{i:03d}" for i in range(6)]
    assert len((out / "failures.jsonl").read_text().splitlines()) == 5
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "api-clip" and cfg["model"] == str(tiny_clip_dir) and cfg["kernel"] == 3
    for i in range(6):
        assert Image.open(out / f"item{i:03d}.png").size == Image.open(tmp_path / "images" / f"{i}.png").size


def test_batch_resume_after_interrupt_loses_and_duplicates_nothing(tmp_path, tiny_clip_dir, capsys, monkeypatch):
    path = make_batch(tmp_path, 9)
    out = tmp_path / "out"
    real_append = batch_mod._append_manifest
    calls = {"n": 0}

    def interrupted_append(directory, record):
        calls["n"] += 1
        if calls["n"] == 4:  # files of the 4th item are written, its manifest line is not
            raise KeyboardInterrupt
        real_append(directory, record)

    monkeypatch.setattr(batch_mod, "_append_manifest", interrupted_append)
    args = ["annotate", "--batch", str(path), "--out-dir", str(out), "--model", str(tiny_clip_dir), "--batch-size", "2"]
    assert main(args) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    assert manifest_ids(out) == ["item000", "item001", "item002"]
    monkeypatch.setattr(batch_mod, "_append_manifest", real_append)
    assert main(args) == 0
    assert "9 items: 6 annotated, 3 already done (skipped), 0 failed" in capsys.readouterr().out
    assert sorted(manifest_ids(out)) == [f"item{i:03d}" for i in range(9)] and len(manifest_ids(out)) == 9
    assert main(args) == 0
    assert "0 annotated, 9 already done" in capsys.readouterr().out


def test_torn_manifest_line_and_missing_files_are_repaired(tmp_path, tiny_clip_dir, capsys):
    path = make_batch(tmp_path, 4)
    out = tmp_path / "out"
    args = ["annotate", "--batch", str(path), "--out-dir", str(out), "--model", str(tiny_clip_dir)]
    assert main(args) == 0
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[:2]) + lines[2][: len(lines[2]) // 2])  # killed mid-append
    (out / "item001.npy").unlink()  # a recorded item whose file vanished
    (out / ".item000.png.abc.tmp").write_bytes(b"partial")
    assert main(args) == 0
    assert "3 annotated, 1 already done" in capsys.readouterr().out  # item001 redone, item002 torn
    assert len(manifest_ids(out)) == 4
    assert sorted(manifest_ids(out)) == ["item000", "item001", "item002", "item003"]
    assert not list(out.glob(".*.tmp"))


SLOW_APPEND = """
import sys, time
import attnprompt.batch as b
real = b._append_manifest
def slow(directory, record):
    time.sleep(0.15)
    real(directory, record)
b._append_manifest = slow
from attnprompt.cli import main
raise SystemExit(main(sys.argv[1:]))
"""


def test_batch_resume_after_sigkill(tmp_path, tiny_clip_dir):
    """A real kill -9 in the middle of a run; the rerun completes with every item exactly once."""
    n = 24
    path = make_batch(tmp_path, n)
    out = tmp_path / "out"
    args = ["annotate", "--batch", str(path), "--out-dir", str(out), "--model", str(tiny_clip_dir), "--batch-size", "3"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_APPEND, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.time() + 120
    manifest = out / "results.jsonl"
    while time.time() < deadline:
        if manifest.exists() and len(manifest.read_text().splitlines()) >= 5:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = len(manifest_ids(out))
    assert 5 <= killed_at < n, "the run must be killed part-way through"
    r = subprocess.run([sys.executable, "-m", "attnprompt", *args], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{n - killed_at} annotated, {killed_at} already done" in r.stdout
    ids = manifest_ids(out)
    assert len(ids) == n and sorted(ids) == [f"item{i:03d}" for i in range(n)]
    assert len(list(out.glob("item*.png"))) == n and len(list(out.glob("item*.npy"))) == n
    assert not list(out.glob(".*.tmp"))


def test_second_concurrent_run_is_refused(tmp_path, tiny_clip_dir, capsys):
    path = make_batch(tmp_path, 2)
    out = tmp_path / "out"
    out.mkdir()
    from attnprompt.files import DirectoryLock

    with DirectoryLock(out):
        code = main(["annotate", "--batch", str(path), "--out-dir", str(out), "--model", str(tiny_clip_dir)])
    assert code == 2 and "in use by another attnprompt run" in capsys.readouterr().err


MAKE_LARGE_IMAGE = """
import sys
from PIL import Image, ImageDraw
img = Image.new("RGB", (12000, 9000), (90, 120, 60))
ImageDraw.Draw(img).ellipse((4000, 3000, 8000, 6000), fill=(220, 30, 30))
img.save(sys.argv[1], quality=80)
"""

LARGE_IMAGE = """
import resource, sys, time
import attnprompt
t = time.time()
ann = attnprompt.annotate(sys.argv[1], "the red circle", model=sys.argv[2])
assert ann.image.size == (12000, 9000) and ann.heatmap.shape == (9000, 12000)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, round(time.time() - t, 1))
"""


def test_very_large_image_is_handled_within_bounded_memory(tmp_path, tiny_clip_dir):
    """12000×9000 (108 Mpx). PIL holds RGB in 4 bytes a pixel, so the decoded input and the
    annotated output are 432 MB each, and the float32 heatmap another 432 MB: 1.3 GB that the
    result itself needs. With torch and the model (~0.5 GB) the peak must stay under 2 GB — a
    naive float64 heatmap/overlay would add several GB."""
    big = tmp_path / "big.jpg"
    subprocess.run([sys.executable, "-c", MAKE_LARGE_IMAGE, str(big)], check=True, timeout=120)
    r = subprocess.run(
        [sys.executable, "-c", LARGE_IMAGE, str(big), str(tiny_clip_dir)], capture_output=True, text=True, timeout=300
    )
    assert r.returncode == 0, r.stderr[-2000:]
    peak_mb, seconds = r.stdout.split()
    assert int(peak_mb) < 2000, f"peak RSS {peak_mb} MB"


def test_demo_without_gradio_says_how_to_install_it(monkeypatch, capsys):
    import attnprompt

    monkeypatch.setitem(sys.modules, "gradio", None)  # as if it were not installed
    assert attnprompt.ask is not None  # the package imports without it
    assert main(["demo", "--port", "7999"]) == 2
    assert "the demo needs Gradio: pip install 'attnprompt[demo]'" in capsys.readouterr().err
