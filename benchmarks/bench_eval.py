"""The evaluation runner's costs, side by side in one run.

1. Runner overhead: ``evaluate`` (store, scoring, pictures for the gallery, progress) of ``plain``
   on N shapes-vqa samples with the shapes VLM, against a bare loop that sends the same requests to
   the same backend in the same batches — target ≤ 1.1× (in CPU seconds; the wall clock, which also
   holds the store's writes to disk, beside it). The samples are built before timing (a task
   over ready rows), so both sides time answering, not scene drawing; the report is timed apart.
2. HTTP concurrency: ``evaluate`` against a local OpenAI-compatible server whose answers take a fixed
   0.2 s, with 8 requests in flight against 1 — target ≥ 6× the throughput.
3. The annotation cache: ``api`` and ``api-reemphasize`` share one map per sample — target: the
   second strategy computes no map (the cache's hits equal the samples).

``--smoke``: 8 samples, one repeat, in seconds — it proves the script runs; its figures mean nothing.

    python benchmarks/bench_eval.py [--samples 256] [--http-samples 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

from attnprompt.backends.base import Backend
from attnprompt.backends.local import LocalVLM
from attnprompt.evaluation.evaluate import evaluate
from attnprompt.evaluation.tasks import get_task
from attnprompt.serve import make_server
from attnprompt.types import Answer, Request

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import compare  # noqa: E402

LATENCY = 0.2


class FixedLatency(Backend):
    """Every answer takes LATENCY seconds (a server busy elsewhere), whatever the load."""

    name = "fixed-latency"

    def answer(self, requests):
        time.sleep(LATENCY)
        return [Answer("yes") for _ in requests]


def ready_task(n: int):
    """shapes-vqa over its first ``n`` rows, drawn once now."""
    task = get_task("shapes-vqa")
    rows = task.rows(n)
    return replace(task, name="shapes-vqa-ready", rows=lambda limit: rows[:limit], spec=None)


def overhead(args) -> str:
    backend = LocalVLM.from_pretrained("shapes", batch_size=args.batch_size)
    task = ready_task(args.samples)
    samples = task.samples()
    requests = [Request.single(s.images, s.question, max_new_tokens=task.max_new_tokens) for s in samples]
    chunk = 4 * args.batch_size  # the runner's chunk on a local backend

    def bare():
        for start in range(0, len(requests), chunk):
            backend.answer(requests[start : start + chunk])

    def runner():
        out = Path(tempfile.mkdtemp())
        try:
            evaluate(task, vlm=backend, strategies="plain", out=out, batch_size=args.batch_size, progress=False,
                     report=False)
        finally:
            shutil.rmtree(out)

    results = compare({"bare loop": bare, "evaluate": runner}, "cpu", args.repeats)
    out = Path(tempfile.mkdtemp())
    evaluate(task, vlm=backend, strategies="plain", out=out, batch_size=args.batch_size, progress=False, report=False)
    from attnprompt.evaluation.report import write_report

    t0 = time.perf_counter()
    write_report(out, tasks=[task])
    report_s = time.perf_counter() - t0
    shutil.rmtree(out)
    bare, run = results["bare loop"], results["evaluate"]
    ratio, wall = run.seconds / bare.seconds, run.wall / bare.wall
    return (f"1. runner overhead, {len(samples)} shapes-vqa samples, plain, shapes VLM, batch {args.batch_size} "
            f"(median of {args.repeats}):\n"
            f"   bare loop {bare.seconds:.2f} CPU s, evaluate {run.seconds:.2f} CPU s → {ratio:.3f}× (target ≤ 1.1×); "
            f"wall {bare.wall:.2f} s and {run.wall:.2f} s → {wall:.3f}× (the store's writes included); "
            f"the report afterwards: {report_s:.2f} s")


def concurrency(args) -> str:
    server = make_server(FixedLatency(), "127.0.0.1", 0, max_parallel=None)  # a server that serves many at once
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    task = ready_task(args.http_samples)
    seconds = {}
    try:
        for k in (1, 8):
            out = Path(tempfile.mkdtemp())
            t0 = time.perf_counter()
            run = evaluate(task, vlm=url, strategies="plain", out=out, concurrency=k, progress=False, report=False)
            seconds[k] = time.perf_counter() - t0
            assert run.failed == 0, "the server failed requests"
            shutil.rmtree(out)
    finally:
        server.shutdown()
        server.server_close()
    n = args.http_samples
    return (f"2. HTTP, {n} samples, a local server answering in {LATENCY} s each:\n"
            f"   concurrency 1: {seconds[1]:.2f} s ({n / seconds[1]:.1f} answers/s), concurrency 8: {seconds[8]:.2f} s "
            f"({n / seconds[8]:.1f} answers/s) → {seconds[1] / seconds[8]:.2f}× the throughput (target ≥ 6×)")


def cache(args) -> str:
    task = ready_task(args.cache_samples)
    out = Path(tempfile.mkdtemp())
    try:
        run = evaluate(task, vlm="shapes", strategies="api,api-reemphasize", out=out, progress=False, report=False)
    finally:
        shutil.rmtree(out)
    [info] = run.cache.values()
    n = args.cache_samples
    verdict = "met" if info["misses"] == n and info["hits"] == n else "NOT met"
    return (f"3. annotation cache, {n} samples, api and api-reemphasize sharing the api-clip map:\n"
            f"   maps computed {info['misses']}, reused {info['hits']} — the second strategy computed "
            f"{info['misses'] - n} maps (target 0: {verdict})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--http-samples", type=int, default=64)
    ap.add_argument("--cache-samples", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--smoke", action="store_true", help="8 samples each part, one repeat")
    args = ap.parse_args()
    if args.smoke:
        args.samples = args.http_samples = args.cache_samples = 8
        args.repeats = 1
    import torch

    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}", flush=True)
    for part in (overhead, concurrency, cache):
        print(part(args), flush=True)


if __name__ == "__main__":
    main()
