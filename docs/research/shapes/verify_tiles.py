"""Pilot (issue 38): can the shipped shapes VLM verify where the named object is, on the crowded detail tasks?

For each question, every node of the search tree at the given depths (the image split 2×2 per level, as the
search splits it) is shown alone to the VLM, and three confidences are read from its first answer token
(``attnprompt.confidence``, no extra forward):

- ``exists-open``: P(yes) to "Is there a <colour> <shape>?" over the colours (or shapes) the question leaves
  open — the named attribute fixed, the max over the others (6 or 8 prompts per node);
- ``exists-name``: P(yes) to "Is there a <shape>?" / "Is there a <colour> object?" (one prompt; a phrasing the
  VLM was not trained on);
- ``answer-first``: the probability of the first token of its answer to the question itself (one prompt);
- ``exists-answer``: P(yes) to "Is there a <colour> <shape>?" made of the named attribute and the node's own
  answer (one more prompt, after the answer: the VLM checks what it said);
- ``answer×exists``: the product of the two before.

Reported per signal and depth: how often the most confident node holds the named object's centre (chance:
1 / nodes), how often it is among the two most confident, and the accuracy of the answer given on the most
confident node. Every node's confidences are kept in ``--out``. Run from the repository root:

    PYTHONPATH=src OMP_NUM_THREADS=1 python docs/research/shapes/verify_tiles.py \\
        --task shapes-detail-crowded-4x --limit 40 --depths 1,2 --out /tmp/verify4.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from attnprompt.api import annotate
from attnprompt.backends.local import LocalVLM
from attnprompt.confidence import first_token_probability, yes_probability
from attnprompt.evaluation.tasks import get_task
from attnprompt.search import ImageTree, box_mass
from attnprompt.shapes import COLORS, SHAPES
from attnprompt.text import first_word
from attnprompt.types import Request

SIGNALS = ("exists-open", "exists-name", "answer-first", "exists-answer", "answer×exists")


def article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def prompts(named: dict) -> dict[str, list[str]]:
    if "shape" in named:
        s = named["shape"]
        return {"exists-open": [f"Is there {article(c)} {c} {s}?" for c in COLORS],
                "exists-name": [f"Is there {article(s)} {s}?"]}
    c = named["color"]
    return {"exists-open": [f"Is there {article(c)} {c} {s}?" for s in SHAPES],
            "exists-name": [f"Is there {article(c)} {c} object?"]}


def check_prompt(named: dict, said: str) -> str | None:
    """The existence question made of the named attribute and a node's answer (None: the answer names none)."""
    word = first_word(said)
    if "shape" in named and word in COLORS:
        return f"Is there {article(word)} {word} {named['shape']}?"
    if "color" in named and word in SHAPES:
        return f"Is there {article(named['color'])} {named['color']} {word}?"
    return None


def boxes_for(spec: str, tree: ImageTree) -> list[tuple[int, int, int, int]]:
    """The nodes at a depth of the search tree ("2"), or overlapping windows ("w224s112": side 224, stride 112,
    the last row and column flush with the border)."""
    if spec.startswith("w"):
        side, stride = (int(v) for v in spec[1:].split("s"))
        W, H = tree.size
        xs = sorted({*range(0, W - side + 1, stride), W - side})
        ys = sorted({*range(0, H - side + 1, stride), H - side})
        return [(x, y, x + side, y + side) for y in ys for x in xs]
    level = [0]
    for _ in range(int(spec)):
        level = [k for n in level for k in tree.children(n)]
    return [tree.node(n).box for n in level]


def block_mean(heat: np.ndarray, n: int) -> list[list[float]]:
    """A heatmap averaged over an n × n grid of blocks (what a prior needs, a few KB to keep)."""
    h, w = heat.shape
    rows = np.array_split(np.arange(h), n)
    cols = np.array_split(np.arange(w), n)
    return [[round(float(heat[np.ix_(r, c)].mean()), 5) for c in cols] for r in rows]


def rank_of(scores: np.ndarray, holds: list[bool]) -> int | None:
    """How many nodes that do not hold the target score above the best one that does."""
    if not any(holds):
        return None
    best = max(v for v, h in zip(scores, holds) if h)
    return int(sum(v > best for v, h in zip(scores, holds) if not h))


def simulate(args: argparse.Namespace) -> dict:
    """The search core (``attnprompt.search``, ZoomEye's rule) run on the confidences a pilot recorded at depths
    1 and 2 (the root is never confident: it is what ``plain`` answers): ``--priority`` ranks the queued nodes
    (a recorded signal, or ``none``: the map alone), ``--answering`` is the stopping confidence, ``--order map``
    with ``--prior`` (a map the pilot kept) and ``--skip``. Reported: how often a zoom holds the target, the
    probes (each a recorded signal; see its prompts for what it costs), and the accuracy — of the answer
    recorded on the node it picks, or of ``plain``'s (``--plain``: an eval run's ``samples.jsonl``) where it
    keeps the whole image."""
    from attnprompt.search import SearchSettings, search

    data = json.load(open(args.simulate))
    plain_correct = {}
    for line in open(args.plain):
        r = json.loads(line)
        if r["strategy"] == "plain" and r["scores"]:
            plain_correct[r["sample_id"]] = r["scores"]["correct"]
    hits, correct, calls, whole = [], [], [], 0
    for row in data["rows"]:
        by_depth = {int(d): v for d, v in row["depths"].items() if d.isdigit()}

        def score(probes, by_depth=by_depth):
            out = []
            for p in probes:
                if p.depth == 0:
                    out.append(-1.0)
                    continue
                first = 1 if p.depth == 1 else 5
                kind = args.priority if p.kind == "existence" else args.answering
                out.append(2 * by_depth[p.depth][kind]["scores"][p.node - first] - 1)
            return out

        settings = SearchSettings(budget=args.budget, native_side=128, threshold=args.threshold, depth_limit=2,
                                  priority=() if args.priority == "none" else ("existence",), order=args.order,
                                  skip=args.skip)
        prior = np.asarray(row["maps"][args.prior]) if args.order == "map" else None
        r = search((896, 896), score, settings, prior=prior)
        calls.append(r.calls)
        if r.chosen in (None, 0):
            whole += 1
            correct.append(bool(plain_correct[row["id"]]))
            continue
        d = by_depth[2 if r.chosen >= 5 else 1]
        j = r.chosen - (5 if r.chosen >= 5 else 1)
        hits.append(d["target"] == j)
        correct.append(first_word(d["said"][j]) == row["reference"])
    return {"questions": len(data["rows"]), "whole_image": whole,
            "zoomed_holds_target": round(float(np.mean(hits)), 3) if hits else None,
            "accuracy": round(float(np.mean(correct)), 3), "probes_mean": round(float(np.mean(calls)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="shapes-detail-crowded-4x")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--depths", default="1,2", help="tree depths and/or windows (w224s112), comma-separated")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out")
    ap.add_argument("--maps", default="", help="attribution maps to score nodes by mass too: method[:preset],…")
    ap.add_argument("--answer-then-check", action="store_true",
                    help="ask only the question and its check (2 prompts a node; exists-open/-name left out)")
    ap.add_argument("--simulate", metavar="PILOT_JSON", help="run the search on a 4× pilot's recorded confidences")
    ap.add_argument("--plain", metavar="SAMPLES_JSONL", help="with --simulate: an eval run's samples.jsonl (plain)")
    ap.add_argument("--priority", default="exists-open")
    ap.add_argument("--answering", default="answer-first")
    ap.add_argument("--threshold", type=float, default=0.6)
    ap.add_argument("--budget", type=int, default=60)
    ap.add_argument("--order", default="zoomeye", choices=("zoomeye", "map"))
    ap.add_argument("--prior", default="carve:vicrop", help="with --order map: which kept map")
    ap.add_argument("--skip", type=float, default=0.0)
    args = ap.parse_args()
    if args.simulate:
        print(json.dumps(simulate(args)))
        return
    backend = LocalVLM.from_pretrained("shapes", batch_size=args.batch_size)
    samples = get_task(args.task).samples(args.limit)
    depths = args.depths.split(",")
    maps = [m for m in args.maps.split(",") if m]
    rows = []
    started = time.process_time()
    for sample in samples:
        image = sample.images[0]
        tree = ImageTree(image.size, native_side=backend.native_side())
        x0, y0, x1, y1 = sample.meta["box"]
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        asks = {} if args.answer_then_check else prompts(sample.meta["named"])
        row = {"id": sample.id, "reference": sample.references[0], "depths": {}, "maps": {}}
        for spec in maps:
            method, _, preset = spec.partition(":")
            heat = annotate(image, sample.question, method=method, model="shapes", preset=preset or None).heatmap
            row["maps"][spec] = block_mean(heat, 64)
        for depth in depths:
            boxes = boxes_for(depth, tree)
            holds = [b[0] <= centre[0] < b[2] and b[1] <= centre[1] < b[3] for b in boxes]
            requests, where = [], []
            for j, box in enumerate(boxes):
                crop = image.crop(box)
                for signal, texts in asks.items():
                    for text in texts:
                        requests.append(Request.single(crop, text, max_new_tokens=1, top_logprobs=5))
                        where.append((j, signal))
                requests.append(Request.single(crop, sample.question, max_new_tokens=3, top_logprobs=5))
                where.append((j, "answer-first"))
            answers = backend.answer(requests)
            scores = {s: np.full(len(boxes), -1.0) for s in SIGNALS}
            said = [""] * len(boxes)
            for (j, signal), answer in zip(where, answers):
                if not answer.ok:
                    continue
                if signal == "answer-first":
                    scores[signal][j] = first_token_probability(answer)
                    said[j] = answer.text
                else:
                    p = yes_probability(answer)
                    scores[signal][j] = max(scores[signal][j], -1.0 if p is None else p)
            checks = [(j, check_prompt(sample.meta["named"], said[j])) for j in range(len(boxes))]
            checks = [(j, text) for j, text in checks if text]
            verdicts = backend.answer([Request.single(image.crop(boxes[j]), text, max_new_tokens=1, top_logprobs=5)
                                       for j, text in checks])
            for (j, _), answer in zip(checks, verdicts):
                p = yes_probability(answer) if answer.ok else None
                scores["exists-answer"][j] = -1.0 if p is None else p
            scores["answer×exists"] = np.where(scores["exists-answer"] < 0, -1.0,
                                               scores["answer-first"] * scores["exists-answer"])
            for spec, grid in row["maps"].items():
                scores[f"map {spec}"] = np.array([box_mass(np.asarray(grid), b, image.size) for b in boxes])
            requests += [None] * len(checks)  # counted as calls
            row["depths"][depth] = {
                "nodes": len(boxes), "target": holds.index(True) if any(holds) else None,
                "holding": int(sum(holds)),
                **{s: {"pick": int(np.argmax(scores[s])), "hit": bool(holds[int(np.argmax(scores[s]))]),
                       "correct": first_word(said[int(np.argmax(scores[s]))]) == sample.references[0],
                       "rank": rank_of(scores[s], holds), "scores": [round(float(v), 4) for v in scores[s]]}
                   for s in scores},
                "said": said, "calls": len(requests)}
        rows.append(row)
    summary = {"task": args.task, "questions": len(rows), "cpu_seconds": round(time.process_time() - started, 1),
               "depths": {}}
    for depth in depths:
        per = [r["depths"][depth] for r in rows]
        asked = [s for s in per[0] if isinstance(per[0][s], dict)
                 and any(v != -1.0 for p in per for v in p[s]["scores"])]
        summary["depths"][depth] = {
            "nodes": per[0]["nodes"], "chance": round(float(np.mean([p["holding"] / p["nodes"] for p in per])), 3),
            "calls_per_question": round(float(np.mean([p["calls"] for p in per])), 1),
            **{s: {"holds_target": round(float(np.mean([p[s]["hit"] for p in per])), 3),
                   "in_top_2": round(float(np.mean([p[s]["rank"] is not None and p[s]["rank"] <= 1 for p in per])), 3),
                   "accuracy_there": round(float(np.mean([p[s]["correct"] for p in per])), 3),
                   "median_rank": float(np.median([p[s]["rank"] for p in per if p[s]["rank"] is not None]))}
               for s in asked}}
    print(json.dumps(summary, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
