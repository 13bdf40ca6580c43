"""Pilot (issue 38): can the shipped shapes VLM verify where the named object is, on the crowded detail tasks?

For each question, every node of the search tree at the given depths (the image split 2×2 per level, as the
search splits it) is shown alone to the VLM, and three confidences are read from its first answer token
(``attnprompt.confidence``, no extra forward):

- ``exists-open``: P(yes) to "Is there a <colour> <shape>?" over the colours (or shapes) the question leaves
  open — the named attribute fixed, the max over the others (6 or 8 prompts per node);
- ``exists-name``: P(yes) to "Is there a <shape>?" / "Is there a <colour> object?" (one prompt; a phrasing the
  VLM was not trained on);
- ``answer-first``: the probability of the first token of its answer to the question itself (one prompt).

Reported per signal and depth: how often the most confident node holds the named object's centre (chance:
1 / nodes), and the accuracy of the answer given on that node. Run from the repository root:

    PYTHONPATH=src OMP_NUM_THREADS=1 python docs/research/shapes/verify_tiles.py \\
        --task shapes-detail-crowded-4x --limit 40 --depths 1,2 --out /tmp/verify4.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from attnprompt.backends.local import LocalVLM
from attnprompt.confidence import first_token_probability, yes_probability
from attnprompt.evaluation.tasks import get_task
from attnprompt.search import ImageTree
from attnprompt.shapes import COLORS, SHAPES
from attnprompt.text import first_word
from attnprompt.types import Request

SIGNALS = ("exists-open", "exists-name", "answer-first")


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


def nodes_at(tree: ImageTree, depth: int) -> list[int]:
    level = [0]
    for _ in range(depth):
        level = [k for n in level for k in tree.children(n)]
    return level


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="shapes-detail-crowded-4x")
    ap.add_argument("--limit", type=int, default=40)
    ap.add_argument("--depths", default="1,2")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out")
    args = ap.parse_args()
    backend = LocalVLM.from_pretrained("shapes", batch_size=args.batch_size)
    samples = get_task(args.task).samples(args.limit)
    depths = [int(d) for d in args.depths.split(",")]
    rows = []
    started = time.process_time()
    for sample in samples:
        image = sample.images[0]
        tree = ImageTree(image.size, native_side=backend.native_side())
        x0, y0, x1, y1 = sample.meta["box"]
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        asks = prompts(sample.meta["named"])
        row = {"id": sample.id, "reference": sample.references[0], "depths": {}}
        for depth in depths:
            nodes = nodes_at(tree, depth)
            boxes = [tree.node(n).box for n in nodes]
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
            row["depths"][depth] = {
                "nodes": len(boxes), "target": holds.index(True) if any(holds) else None,
                **{s: {"pick": int(np.argmax(scores[s])), "hit": bool(holds[int(np.argmax(scores[s]))]),
                       "correct": first_word(said[int(np.argmax(scores[s]))]) == sample.references[0],
                       "rank": int((scores[s] > scores[s][holds.index(True)]).sum()) if any(holds) else None}
                   for s in SIGNALS},
                "calls": len(requests)}
        rows.append(row)
    summary = {"task": args.task, "questions": len(rows), "cpu_seconds": round(time.process_time() - started, 1),
               "depths": {}}
    for depth in depths:
        per = [r["depths"][depth] for r in rows]
        summary["depths"][depth] = {
            "nodes": per[0]["nodes"], "chance": round(1 / per[0]["nodes"], 3),
            "calls_per_question": round(float(np.mean([p["calls"] for p in per])), 1),
            **{s: {"holds_target": round(float(np.mean([p[s]["hit"] for p in per])), 3),
                   "accuracy_there": round(float(np.mean([p[s]["correct"] for p in per])), 3),
                   "median_rank": float(np.median([p[s]["rank"] for p in per if p[s]["rank"] is not None]))}
               for s in SIGNALS}}
    print(json.dumps(summary, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"summary": summary, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
