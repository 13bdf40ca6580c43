"""Exploration (issue 38): ``zoom-search`` variants on the crowded detail tasks, one question at a time recorded.

Runs the strategy (the shipped shapes VLM, its carve/vicrop map as the prior, the ``answer`` confidence, the zoom
form) with the settings given, plus variants that are not settings: ``--root`` (the whole image asked first and
allowed to be the answer, ZoomEye's default; the strategy leaves it to ``auto``), ``--scale`` (ZoomEye's
``patch_scale``: windows grown by this factor), ``--scored`` (map order, but every queued window answered as in
ZoomEye's order). Prints accuracy, calls and CPU seconds per question, how often the zoom holds the named object,
why the searches stopped and at which depth they chose; ``--out`` keeps every question's search. From the
repository root:

    PYTHONPATH=src OMP_NUM_THREADS=1 python docs/research/shapes/search_variants.py \\
        --task tuning-shapes-detail-crowded-4x --n 100 --budget 48 --out /tmp/tA48.json
    # --task tuning-8x: the 8x canvas on training-range seeds (built here, not a registered task)
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import time

import numpy as np

from attnprompt.attribution import get_attributor
from attnprompt.backends import get_backend
from attnprompt.evaluation.tasks import get_task
from attnprompt.evaluation.tasks.shapes_detail import crowded_task
from attnprompt.shapes.splits import TUNING, TUNING_DISTRACTORS
from attnprompt.strategies.search_confidence import AnswerConfidence
from attnprompt.strategies.zoom_search import ZoomSearch
from attnprompt.text import first_word


def build(args: argparse.Namespace) -> ZoomSearch:
    zs = ZoomSearch(get_backend("shapes", batch_size=16), get_attributor(args.method, model="shapes",
                    preset=args.preset or None), search_order=args.order, max_new_tokens=3,
                    search_budget=args.budget, search_threshold=args.threshold, search_skip=args.skip)
    if args.scored:
        zs.confidence.settings = lambda q, order: {"priority": ("answering",),
                                                   "costs": AnswerConfidence.costs(q.sample.question)}
    changes = {k: v for k, v in (("patch_scale", args.scale), ("root", True if args.root else None)) if v}
    if changes:
        made = zs._settings
        zs._settings = lambda q, before: dataclasses.replace(made(q, before), **changes)
    return zs


def row(result, sample) -> dict:
    d = result.steps[-1].detail
    search = d["search"]
    box = d.get("box")
    x0, y0, x1, y1 = sample.meta["box"]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    chosen = search["chosen"]
    depth = None if chosen is None else next(n["depth"] for n in search["nodes"] if n["id"] == chosen)
    return {"id": sample.id, "correct": first_word(result.text) == sample.references[0], "calls": d["calls"],
            "stop": search["stop"], "chosen": chosen, "depth": depth,
            "holds": None if not box else bool(box[0] <= cx < box[2] and box[1] <= cy < box[3]),
            "said": search.get("said"), "visits": search["visits"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="tuning-shapes-detail-crowded-4x")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--order", default="map")
    ap.add_argument("--budget", type=int, default=40)
    ap.add_argument("--threshold", type=float, default=0.6)
    ap.add_argument("--skip", type=float, default=0.2)
    ap.add_argument("--method", default="carve")
    ap.add_argument("--preset", default="vicrop")
    ap.add_argument("--scale", type=float, default=None)
    ap.add_argument("--root", action="store_true")
    ap.add_argument("--scored", action="store_true")
    ap.add_argument("--out")
    args = ap.parse_args()
    task = crowded_task(8, "tuning-8x", (TUNING, TUNING_DISTRACTORS)) if args.task == "tuning-8x" else \
        get_task(args.task)
    samples = task.samples(args.n)
    zs = build(args)
    started = time.process_time()
    results = []
    for k in range(0, len(samples), 20):
        results += zs.run([s.sample() for s in samples[k:k + 20]])
    seconds = time.process_time() - started
    rows = [row(r, s) for r, s in zip(results, samples)]
    summary = {"args": vars(args), "accuracy": float(np.mean([r["correct"] for r in rows])),
               "calls": float(np.mean([r["calls"] for r in rows])), "cpu_per_q": seconds / len(rows),
               "whole_image": sum(r["depth"] in (None, 0) for r in rows), "holds": sum(bool(r["holds"]) for r in rows),
               "stops": collections.Counter(r["stop"] for r in rows),
               "depths": collections.Counter(str(r["depth"]) for r in rows),
               "calls_percentiles_50_90_100": np.percentile([r["calls"] for r in rows], [50, 90, 100]).tolist()}
    print(json.dumps(summary))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "rows": rows}, f)


if __name__ == "__main__":
    main()
