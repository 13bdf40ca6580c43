"""``attnprompt eval --executor ray`` on this machine: shapes-vqa (plain and api) with 1 and 2 Ray
workers, beside the single-process run, in one script — the speed-up of the second replica and what
Ray costs to start.

- start-up: a local Ray and its actors up, each with the shapes VLM loaded and the conditions
  planned, then torn down (``RayExecutor`` built and closed, no sample answered);
- each run: ``evaluate`` wall time over the first N samples into a fresh directory, the best of
  ``--repeats``; the records of every run are checked equal to the single-process run's.

Each Ray worker holds one CPU (torch uses one thread in it); the single-process run uses torch's
default threads (all cores). On a GPU cluster a worker holds one GPU, so N GPUs give N replicas
(docs/integrations.md, "On a Ray cluster").

``--smoke``: 4 samples, single process against 2 workers only (one Ray start-up) — it proves the script runs; its
figures mean nothing.

    python benchmarks/bench_ray.py [--samples 200] [--repeats 1]
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

from attnprompt.evaluation.evaluate import conditions_for, evaluate
from attnprompt.evaluation.tasks import get_task


def records(directory: Path) -> list[tuple]:
    db = sqlite3.connect(directory / "records.sqlite")
    try:
        return sorted(db.execute("select sample_id, config_hash, prediction, scores from records").fetchall())
    finally:
        db.close()


def timed_run(samples: int, repeats: int, **kwargs) -> tuple[float, list[tuple]]:
    best, rows = float("inf"), []
    for _ in range(repeats):
        out = Path(tempfile.mkdtemp(prefix="bench-ray-"))
        start = time.perf_counter()
        evaluate("shapes-vqa", vlm="shapes", strategies="plain,api", limit=samples, batch_size=4, out=out,
                 progress=False, gallery=0, report=False, **kwargs)
        best = min(best, time.perf_counter() - start)
        rows = records(out)
        shutil.rmtree(out, ignore_errors=True)
    return best, rows


def startup(workers: int) -> float:
    from attnprompt.evaluation.options import BackendOptions
    from attnprompt.evaluation.ray_executor import RayExecutor

    start = time.perf_counter()
    engine = RayExecutor(backend=BackendOptions(vlm="shapes", batch_size=4), runner_args={}, workers=workers)
    try:
        store = tempfile.mkdtemp(prefix="bench-ray-store-")
        from attnprompt.evaluation.store import RunStore

        with RunStore(store) as s:
            engine.prepare(get_task("shapes-vqa"), conditions_for(["plain", "api"]), s)
        shutil.rmtree(store, ignore_errors=True)
    finally:
        engine.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="4 samples, one repeat")
    args = parser.parse_args()
    if args.smoke:
        args.samples, args.repeats = 4, 1

    single, base = timed_run(args.samples, args.repeats)
    if args.smoke:
        two, rows2 = timed_run(args.samples, args.repeats, executor="ray", workers=2)
        n = 2 * args.samples
        print(f"shapes-vqa, {args.samples} samples × plain, api ({n} answers, {len(base)} records); records equal to "
              f"the single-process run: {rows2 == base}")
        print(f"single process {single:.1f} s, ray with 2 workers {two:.1f} s (start-up included): "
              f"2 workers vs single process: {single / two:.2f}×")
        if rows2 != base:
            raise SystemExit("the Ray run's records differ from the single-process run's")
        return
    up1, up2 = startup(1), startup(2)
    one, rows1 = timed_run(args.samples, args.repeats, executor="ray", workers=1)
    two, rows2 = timed_run(args.samples, args.repeats, executor="ray", workers=2)
    same = rows1 == base and rows2 == base
    n = 2 * args.samples
    print(f"shapes-vqa, {args.samples} samples × plain, api ({n} answers, {len(base)} records); records equal to "
          f"the single-process run: {same}")
    print(f"{'run':<28}{'seconds':>10}{'answers/s':>12}")
    for label, seconds in (("single process", single), ("ray, 1 worker", one), ("ray, 2 workers", two)):
        print(f"{label:<28}{seconds:>10.1f}{n / seconds:>12.2f}")
    print(f"ray start-up (init, actors, model, plan; then shut down): 1 worker {up1:.1f} s, 2 workers {up2:.1f} s")
    print(f"speed-up, 2 workers vs 1: {one / two:.2f}×; 2 workers vs single process: {single / two:.2f}×")
    print(f"2 workers without start-up vs 1 without: {(one - up1) / max(1e-9, two - up2):.2f}×")
    if not same:
        raise SystemExit("the Ray runs' records differ from the single-process run's")


if __name__ == "__main__":
    main()
