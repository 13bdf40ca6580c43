"""Cost against image size (issue 40): ``plain``, ``api`` and ``carve`` on the shapes models at 640² … 8000²,
side by side, as ratios to ``plain`` at each size; ``carve, same image`` asks about the picture of its warm-up call
again (CARVE's general pass from its cache: the issue's "warm call").

Each (row, size) runs in a fresh process with one thread (``torch.set_num_threads(1)``): the models are loaded and
one call is made (untimed, warm-up), then ``--repeats`` calls are timed — CPU seconds of the process (less the
memory sampler's own) and the process's peak RSS sampled during the timed calls (absolute: the models, torch and the
decoded image included, as ``top`` shows it; glibc's allocator as it is, since a fixed mmap threshold would charge
every large temporary a page fault per page and distort the CPU seconds, and the warm-up call of the same work has
raised the heap to its peak already). Every other call gets the same image with one pixel changed, so no cache
(maps, CARVE's general pass) answers it: each call pays for everything. The image is the shapes scene drawn at 640²
and resized (bicubic) to the size; it is made before the timed calls, so "reading it" is not in the figures.

``--against SRC`` runs the same children on another source tree (e.g. ``/work/main/src`` before a change) and
prints its rows beside, marked ``(against)``. ``--smoke`` runs one tiny size with one repeat: seconds, to prove the
script runs; its figures mean nothing.

    PYTHONPATH=src python benchmarks/bench_scaling.py [--sizes 640 2000 4000 8000] [--repeats 3]
        [--against /work/main/src] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STRATEGIES = ("plain", "api", "carve")
#: Table row → (strategy, the same picture asked again): ``carve, same image`` asks about the image of its warm-up
#: call again, so CARVE's general pass comes from its cache (the issue's "warm call").
ROWS = {"plain": ("plain", False), "api": ("api", False), "carve": ("carve", False),
        "carve, same image": ("carve", True)}
SIZES = (640, 2000, 4000, 8000)
SMOKE_SIZES = (96,)
QUESTION = "What colour is the circle?"
#: issue 40's targets at the largest size, as ratios to plain: (time, peak memory)
TARGETS = {"api": (2.5, 1.1), "carve": (4.0, 1.2), "carve, same image": (4.0, 1.2)}

CHILD = r"""
import json, statistics, sys, threading, time
import torch
torch.set_num_threads(1)
from PIL import Image
from attnprompt.backends import get_backend
from attnprompt.shapes import make_scene
from attnprompt.strategies.build import build_strategy

strategy_name, size, repeats, same = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[5] == "same"
strategy = build_strategy(strategy_name, get_backend("shapes"), max_new_tokens=8)
image = make_scene(7, n_objects=5, size=640).image.resize((size, size), Image.Resampling.BICUBIC)

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096

def call(i):
    if not same:  # a new picture: no cache answers
        image.putpixel((i % size, (i // size) % size), (i % 256, 255 - i % 256, 0))
    return strategy(image, sys.argv[4]).text

answer = call(0)  # warm: lazy loads, first-call costs
peak, stop, sampler = [0], threading.Event(), [0.0]
def sample():
    t0 = time.thread_time()
    while not stop.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.0005)
    sampler[0] = time.thread_time() - t0
thread = threading.Thread(target=sample, daemon=True)
thread.start()
cpu = []
for i in range(1, repeats + 1):
    before, c0 = sampler[0], time.process_time()
    call(i)
    cpu.append(time.process_time() - c0)
stop.set(); thread.join()
peak[0] = max(peak[0], rss())
# the sampler's own CPU time, spread evenly over the calls it watched
spent = [c - sampler[0] / repeats for c in cpu]
print("RESULT " + json.dumps({"cpu": statistics.median(spent), "peak": peak[0], "answer": answer}))
"""


def measure(row: str, size: int, repeats: int, src: str) -> dict:
    """One child's figures: median CPU seconds per call, peak RSS in bytes, the warm-up call's answer."""
    strategy, same = ROWS[row]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])]))
    done = subprocess.run([sys.executable, "-c", CHILD, strategy, str(size), str(repeats), QUESTION,
                           "same" if same else "new"],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{row} at {size}² failed:\n{done.stderr[-3000:]}")
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def table(size: int, rows: dict[str, dict]) -> str:
    """One size's rows with ratios to plain (and to the ``against`` source's plain for its rows)."""
    lines = [f"{size}×{size}", f"  {'row':28s} {'CPU s':>8s} {'× plain':>8s} {'peak MB':>9s} {'× plain':>8s}  answer"]
    for name, r in rows.items():
        base = rows["plain (against)" if name.endswith("(against)") else "plain"]
        lines.append(f"  {name:28s} {r['cpu']:8.3f} {r['cpu'] / base['cpu']:8.2f} {r['peak'] / 2**20:9.1f} "
                     f"{r['peak'] / base['peak']:8.2f}  {r['answer']}")
    return "\n".join(lines)


def verdicts(largest: int, rows: dict[str, dict], smallest: int, small: dict[str, dict]) -> list[str]:
    """The issue's targets at the largest size, and the smallest size against the ``against`` source."""
    out = []
    for name, (t, m) in TARGETS.items():
        time_ratio = rows[name]["cpu"] / rows["plain"]["cpu"]
        mem_ratio = rows[name]["peak"] / rows["plain"]["peak"]
        ok = time_ratio <= t and mem_ratio <= m
        out.append(f"{name} at {largest}²: {time_ratio:.2f}× plain's time (target ≤ {t}), {mem_ratio:.2f}× its peak "
                   f"(target ≤ {m}): {'met' if ok else 'NOT met'}")
    for name in ROWS:
        if f"{name} (against)" in small:
            ratio = small[name]["cpu"] / small[f"{name} (against)"]["cpu"]
            out.append(f"{name} at {smallest}²: {ratio:.2f}× the against source's CPU time")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    ap.add_argument("--rows", nargs="+", default=list(ROWS), choices=list(ROWS))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--against", default=None, help="another source tree (its src/) to run beside, e.g. main's")
    ap.add_argument("--smoke", action="store_true", help="one tiny size, one repeat: proves the script runs")
    ap.add_argument("--out", default=None, help="also write scaling_cpu.txt into this folder")
    args = ap.parse_args()
    sizes, repeats = (SMOKE_SIZES, 1) if args.smoke else (tuple(args.sizes), args.repeats)
    if "plain" not in args.rows:
        ap.error("plain is every ratio's base; keep it in --rows")
    header = (f"plain / api / carve on the shapes models, one call per image, {repeats} timed call(s) after one "
              f"warm-up; CPU seconds (one thread) and peak RSS, ratios to plain at each size")
    if args.against:
        header += f"\nrows marked (against) ran on {args.against}; their ratios are to its own plain"
    print(header, flush=True)
    texts, results = [header], {}
    for size in sizes:
        rows = {}
        for name in args.rows:
            rows[name] = measure(name, size, repeats, str(ROOT / "src"))
        if args.against:
            for name in args.rows:
                rows[f"{name} (against)"] = measure(name, size, repeats, args.against)
        results[size] = rows
        texts.append(table(size, rows))
        print(texts[-1], flush=True)
    if {"plain", *TARGETS} <= set(args.rows):
        found = verdicts(sizes[-1], results[sizes[-1]], sizes[0], results[sizes[0]])
        texts += found
        print("\n".join(found), flush=True)
    if args.out:
        sys.path.insert(0, str(ROOT / "src"))
        from attnprompt.files import atomic_write

        atomic_write(Path(args.out) / "scaling_cpu.txt", lambda f: f.write("\n".join(texts) + "\n"), binary=False)


if __name__ == "__main__":
    main()
