"""What the zoom strategies cost (issue 38): VLM calls and CPU seconds per question, side by side in one
process, one thread, on the same questions — and the accuracy on them, with the 95 % paired interval of each
condition's difference from the first one (resampling scenes).

Each condition is a strategy with settings, built as ``attnprompt eval`` builds it (the shipped shapes VLM,
``--preset vicrop --form zoom`` for the strategies that show a map); the conditions run in turn on each chunk of
questions, so a slower or busier moment of a shared machine falls on all of them alike. CPU seconds are the
process's (``time.process_time``: the map, the search and every answer), per question. Writes a Markdown table.

    OMP_NUM_THREADS=1 python benchmarks/bench_zoom_cost.py --task shapes-detail-crowded-4x --limit 40 \\
        --conditions plain,zoom-oracle,carve,zoom-search,auto,zoom-refine --out benchmarks/results
    # the search orders (the map's against ZoomEye's), on every question:
    OMP_NUM_THREADS=1 python benchmarks/bench_zoom_cost.py --task shapes-detail-crowded-4x --limit 400 \\
        --conditions zoom-search,zoom-search:search_order=zoomeye --out benchmarks/results
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from attnprompt.backends import get_backend
from attnprompt.evaluation.report import step_calls
from attnprompt.evaluation.tasks import get_task
from attnprompt.files import atomic_write
from attnprompt.strategies.build import build_strategy
from attnprompt.strategies.registry import STRATEGIES
from attnprompt.text import first_word

MAPPED = {"preset": "vicrop", "form": "zoom"}


def condition(text: str) -> tuple[str, dict]:
    """``name[:key=value;…]`` → (strategy, settings), the map settings of the main job for those that show one."""
    name, _, rest = text.partition(":")
    settings = dict(MAPPED) if STRATEGIES.get(name).needs.map else {}
    for pair in filter(None, rest.split(";")):
        key, _, value = pair.partition("=")
        settings[key] = value
    return name, settings


def paired(a: np.ndarray, b: np.ndarray, scenes: np.ndarray, n: int = 2000) -> tuple[float, float]:
    """95 % bootstrap interval of mean(b − a), resampling scenes (two questions share one)."""
    rng = np.random.default_rng(0)
    ids = np.unique(scenes)
    diffs = {s: (b - a)[scenes == s] for s in ids}
    means = []
    for _ in range(n):
        pick = rng.choice(ids, len(ids))
        means.append(np.concatenate([diffs[s] for s in pick]).mean())
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="shapes-detail-crowded-4x")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--conditions", default="plain,zoom-oracle,carve,zoom-search,auto,zoom-refine")
    ap.add_argument("--chunk", type=int, default=20)
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--smoke", action="store_true",
                    help="two questions, small budgets, nothing written: proves the script runs (figures mean nothing)")
    args = ap.parse_args()
    if args.smoke:
        args.limit, args.chunk, args.out = 2, 2, None
        args.conditions = ("plain,zoom-search:search_budget=4,zoom-search:search_order=zoomeye;search_budget=4,"
                           "zoom-refine")
    torch.set_num_threads(1)
    backend = get_backend("shapes", batch_size=16)
    task = get_task(args.task)
    samples = task.samples(args.limit)
    names = args.conditions.split(",")
    built = {c: build_strategy(condition(c)[0], backend, max_new_tokens=task.max_new_tokens, **condition(c)[1])
             for c in names}
    seconds = dict.fromkeys(names, 0.0)
    calls: dict[str, list[int]] = {c: [] for c in names}
    right: dict[str, list[bool]] = {c: [] for c in names}
    for start in range(0, len(samples), args.chunk):
        chunk = samples[start:start + args.chunk]
        for c in names:
            t0 = time.process_time()
            results = built[c].run([s.sample() for s in chunk])
            seconds[c] += time.process_time() - t0
            for s, r in zip(chunk, results):
                calls[c].append(sum(step_calls({"detail": dict(step.detail)}) for step in r.steps))
                right[c].append(r.answer.ok and first_word(r.text) in s.references)
    scenes = np.array([s.meta.get("seed", i) for i, s in enumerate(samples)])
    base = np.array(right[names[0]], dtype=float)
    lines = [f"# Cost per question: {args.task}, {len(samples)} questions", "",
             f"`OMP_NUM_THREADS=1 python benchmarks/bench_zoom_cost.py --task {args.task} --limit {args.limit} "
             f"--conditions {args.conditions}` (one thread; CPU seconds of this process per question, maps "
             "included)", "",
             f"| condition | accuracy | Δ vs {names[0]} [95 %] | VLM calls / q | CPU s / q |",
             "|---|---:|---:|---:|---:|"]
    for c in names:
        acc = np.array(right[c], dtype=float)
        lo, hi = paired(base, acc, scenes)
        lines.append(f"| {c} | {acc.mean():.3f} | {acc.mean() - base.mean():+.3f} [{lo:+.3f}, {hi:+.3f}] | "
                     f"{np.mean(calls[c]):.2f} | {seconds[c] / len(samples):.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        out = Path(args.out) / f"zoom_cost_{args.task}_{len(samples)}_{len(names)}.md"
        atomic_write(out, lambda f: f.write(text), binary=False)


if __name__ == "__main__":
    main()
