"""Crops on the shapes testbed: does a map's crop hold the object a question names, and does CARVE help?

On held-out shapes-VQA scenes (4–6 objects) with the shipped shapes VLM (and its shapes CLIP):

1. for every colour/shape question about one object, the crop box of each map — CARVE's contrast,
   the api-vlm map, the api-clip map (all with CARVE's region rule) — and a centre crop of the same
   area: how often the box holds the named object's box entirely, and the box's mean share of the
   image (a box that is the whole image holds everything);
2. accuracy per question kind (exact one-word match) with ``plain`` and with ``carve`` (the original
   and CARVE's crop together), with api-vlm's crop in CARVE's form, and — a control — with the
   original image given twice (the two-image request without a crop).

Writes a Markdown table. A testbed measurement (it becomes a task of the evaluation harness). ``--smoke``: 2 scenes,
the table into a temporary folder, in seconds — it proves the script runs; its figures mean nothing.

    python benchmarks/bench_crops.py [--scenes 150] [--layers 0.71:0.93] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from attnprompt.annotation import render_annotation
from attnprompt.api import build_strategy, get_attributor
from attnprompt.backends.local import LocalVLM
from attnprompt.files import atomic_write
from attnprompt.models import load_vlm
from attnprompt.regions import RegionConfig
from attnprompt.shapes import QUESTION_KINDS, make_questions, make_scene
from attnprompt.shapes.splits import SHAPES_VQA
from attnprompt.text import first_word
from attnprompt.types import Request, Sample


def dataset(n: int, size: int):
    items = []
    for seed in SHAPES_VQA.seeds(n):
        rng = np.random.default_rng(seed)
        scene = make_scene(seed, n_objects=int(rng.integers(4, 7)), size=size)
        items += [(scene, qa) for qa in make_questions(scene, rng, per_kind=1)]
    return items


def contains(outer, inner) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3]


def centre_box(box, size):
    """A box of ``box``'s width and height centred in the image."""
    w, h = box[2] - box[0], box[3] - box[1]
    x0, y0 = (size[0] - w) // 2, (size[1] - h) // 2
    return x0, y0, x0 + w, y0 + h


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenes", type=int, default=150)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--layers", default=None, help="carve's layers (default its preset's: 0.71:0.93 of depth)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--smoke", action="store_true", help="2 scenes, written to a temporary folder")
    args = ap.parse_args()
    if args.smoke:
        with tempfile.TemporaryDirectory() as out:
            args.scenes, args.out = 2, out
            return measure(args)
    measure(args)


def measure(args) -> None:
    t0 = time.perf_counter()
    vlm = load_vlm("shapes", device="cpu")
    backend = LocalVLM(vlm, batch_size=16)
    items = dataset(args.scenes, args.size)
    pointed = [(s, qa) for s, qa in items if qa.kind in ("color", "shape") and len(qa.targets) == 1]
    regions = RegionConfig.from_preset()
    carve_params = {} if args.layers is None else {"layers": args.layers}
    maps = {
        "carve": get_attributor("carve", model=vlm, **carve_params),
        "api-vlm": get_attributor("api-vlm", model=vlm),
        "api-clip": get_attributor("api-clip", model="shapes"),
    }
    lines = [f"Crops on {len(pointed)} colour/shape questions about one object, {args.scenes} held-out shapes-VQA "
             f"scenes (seeds {SHAPES_VQA.start}…, 4–6 objects, {args.size} px), shapes VLM; CARVE's region rule "
             f"(top 20 %, 4-connected components, max(3, ⌊0.2·n⌋) by attention sum). carve layers: "
             f"{maps['carve'].describe()['layers']} of {maps['carve'].describe()['depth']}.", "",
             "| crop from | box holds the named object | box's mean share of the image "
             "| centre crop of the same area |",
             "|---|---:|---:|---:|"]
    for name, attributor in maps.items():
        held, centre, share = [], [], []
        for start in range(0, len(pointed), 16):
            chunk = pointed[start : start + 16]
            found = attributor.attribute([s.image for s, _ in chunk], [qa.question for _, qa in chunk])
            for (scene, qa), m in zip(chunk, found):
                box = render_annotation(scene.image, qa.question, m, {}, regions=regions).box
                target = scene.objects[qa.targets[0]].box
                held.append(contains(box, target))
                centre.append(contains(centre_box(box, scene.image.size), target))
                share.append((box[2] - box[0]) * (box[3] - box[1]) / (args.size * args.size))
        row = f"| {name} | {np.mean(held):.3f} | {np.mean(share):.3f} | {np.mean(centre):.3f} |"
        print(row, flush=True)
        lines.append(row)
    lines += ["", f"Accuracy on all {len(items)} questions (exact one-word match):", "",
              "| strategy | " + " | ".join(QUESTION_KINDS) + " | all |", "|---|" + "---:|" * (len(QUESTION_KINDS) + 1)]
    samples = [Sample(s.image, qa.question) for s, qa in items]
    kinds, answers = [qa.kind for _, qa in items], [qa.answer for _, qa in items]

    def add_row(label: str, replies: list[str]) -> None:
        hits = np.array([first_word(r) == a for r, a in zip(replies, answers)])
        acc = {k: float(hits[[q == k for q in kinds]].mean()) for k in QUESTION_KINDS}
        acc["all"] = float(hits.mean())
        row = f"| {label} | " + " | ".join(f"{acc[k]:.3f}" for k in list(QUESTION_KINDS) + ["all"]) + " |"
        print(row, flush=True)
        lines.append(row)

    for label, strategy in (("plain", build_strategy("plain", backend, max_new_tokens=3)),
                            ("carve (original + CARVE's crop)",
                             build_strategy("carve", backend, max_new_tokens=3, **carve_params)),
                            ("api-vlm map, crop form",
                             build_strategy("api", backend, method="api-vlm", form="crop", max_new_tokens=3))):
        add_row(label, [r.text for r in strategy.run(samples)])
    # control: the same two-image request shape with no crop — the original twice — separates what the
    # crop does from what a second image does to a VLM trained on one image per question
    twice = backend.answer([Request.single([s.image, s.image], qa.question, max_new_tokens=3) for s, qa in items])
    add_row("control: the original twice (no crop)", [a.text for a in twice])
    lines += ["", f"Reproduce: `python benchmarks/bench_crops.py --scenes {args.scenes}"
              + (f" --layers {args.layers}" if args.layers else "") + f"` ({time.perf_counter() - t0:.0f} s)."]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = "crops.md" if args.layers is None else f"crops_layers_{args.layers.replace(':', '-')}.md"
    atomic_write(out / name, lambda f: f.write("\n".join(lines) + "\n"), binary=False)
    print(f"wrote {out / name}")


if __name__ == "__main__":
    main()
