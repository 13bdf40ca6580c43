"""Does a shapes VLM bind a question's words to image tokens? Counting by colour vs by shape.

"How many blue objects are there?" needs only colour — which every shapes tower sees (linear
probe 0.99) — plus binding the word "blue" to the blue objects' tokens; "How many circles …?"
needs shape as well. Each is compared with the rate of its most common answer: a model that
does not bind scores exactly that (it always says "1"). Existence questions ("Is there a red
cross?") are balanced yes/no, so 0.5 is the no-binding level.

The training's "Describe the image." turn names every object left to right ("red star , blue
circle , …"). Its replies are scored per position (the k-th pair against the k-th object from the
left) and against the same objects in a shuffled order: a model that knows which colours are in
the image but not where scores the same on both.

    python benchmarks/vlm_binding_probe.py [--vlm shapes] [--scenes 300]
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict

import numpy as np

from attnprompt.backends.base import Request
from attnprompt.backends.local import LocalVLM
from attnprompt.models import load_vlm
from attnprompt.shapes import COLORS, make_questions
from attnprompt.shapes.train_vlm import EVAL_SEED, first_word, held_out_scene


def describe_scores(truth: list[list[str]], replies: list[str]) -> dict[str, float]:
    """Per-position colour / shape / both accuracy of object listings, the fraction of replies
    naming the right number of objects, and the colours named as a bag (any order).

    >>> r = describe_scores([["red star", "blue circle"]], ["red star , green circle"])
    >>> r["colour"], r["shape"], r["both"], r["count"], r["bag of colours"]
    (0.5, 1.0, 0.5, 1.0, 0.5)
    """
    col = shp = both = n = right_count = bag = 0
    for objects, reply in zip(truth, replies):
        words = reply.replace(",", " ").lower().split()
        pairs = [words[i : i + 2] for i in range(0, len(words) - 1, 2)]
        right_count += len(pairs) == len(objects)
        bag += sum((Counter(o.split()[0] for o in objects) & Counter(p[0] for p in pairs)).values())
        for k, name in enumerate(objects):
            n += 1
            if k < len(pairs):
                c, s = name.split()
                col += pairs[k][0] == c
                shp += pairs[k][1] == s
                both += pairs[k] == [c, s]
    return {"colour": col / n, "shape": shp / n, "both": both / n, "count": right_count / len(truth), "bag of colours": bag / n}


def group(question) -> str:
    """Which probe a question belongs to: counting by colour, counting by shape, or existence."""
    if question.kind == "exists":
        return "exists (colour and shape)"
    return "count by colour" if any(c in question.question.split() for c in COLORS) else "count by shape"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vlm", default="shapes")
    ap.add_argument("--scenes", type=int, default=300)
    args = ap.parse_args()
    backend = LocalVLM(load_vlm(args.vlm, device="cpu"), batch_size=16)
    items, scenes = [], []
    for seed in range(EVAL_SEED, EVAL_SEED + args.scenes):  # the training script's held-out seeds
        scene, rng = held_out_scene(seed)
        scenes.append(scene)
        items += [(scene, qa) for qa in make_questions(scene, rng, kinds=["count", "exists"], per_kind=2)]
    replies = backend.answer([Request((s.image,), qa.question, max_new_tokens=3) for s, qa in items])
    hits: dict[str, list[bool]] = defaultdict(list)
    answers: dict[str, Counter] = defaultdict(Counter)
    for (_, qa), reply in zip(items, replies):
        hits[group(qa)].append(first_word(reply.text) == qa.answer)
        answers[group(qa)][qa.answer] += 1
    print(f"VLM {args.vlm}, {args.scenes} held-out scenes (seeds {EVAL_SEED}…)")
    print(f"{'probe':28s} {'n':>5s} {'accuracy':>9s} {'no-binding level':>17s}")
    for name in sorted(hits):
        top, count = answers[name].most_common(1)[0]
        level = count / len(hits[name])
        print(f"{name:28s} {len(hits[name]):5d} {np.mean(hits[name]):9.3f} {level:11.3f} ('{top}')")

    truth = [[f"{o.color} {o.shape}" for o in sorted(s.objects, key=lambda o: o.center[0])] for s in scenes]
    shuffle = np.random.default_rng(0)
    shuffled = [[t[int(i)] for i in shuffle.permutation(len(t))] for t in truth]
    texts = [r.text for r in backend.answer([Request((s.image,), "Describe the image.", max_new_tokens=40) for s in scenes])]
    real, control = describe_scores(truth, texts), describe_scores(shuffled, texts)
    print(f"\n'Describe the image.' on {len(scenes)} scenes: objects named left to right, per position")
    print(f"{'':28s} {'colour':>7s} {'shape':>7s} {'both':>7s}")
    print(f"{'true order':28s} {real['colour']:7.3f} {real['shape']:7.3f} {real['both']:7.3f}")
    print(f"{'shuffled order (no place)':28s} {control['colour']:7.3f} {control['shape']:7.3f} {control['both']:7.3f}")
    print(f"right number of objects {real['count']:.3f}; colours named as a bag (any order) {real['bag of colours']:.3f}")


if __name__ == "__main__":
    sys.exit(main())
