"""shapes-vqa: does Attention Prompting help the shapes VLM answer, and do the maps point right?

On held-out cluttered scenes (4–6 objects, small ones included), every question kind (colour of a
named shape, shape of a named colour, counting, existence incl. absent objects, left/right) is
answered by the shapes VLM:

- ``plain``:    the original image, no prompt;
- ``api-clip``: the image annotated with API-CLIP (the shapes CLIP as auxiliary model);
- ``api-vlm``:  the image annotated with the VLM's own attention (self-reflection).

Accuracy per question kind (exact one-word match), and, for questions about one object (colour,
shape), the pointing accuracy of each method's map (heatmap maximum inside the object's box).
Ablations as in the paper: gray level, enhance coefficient, API-VLM layer, API-CLIP kernel.

    python benchmarks/bench_shapes_vqa.py [--scenes 300] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from attnprompt.api import annotate_images
from attnprompt.attribution.clip import ClipAttributor
from attnprompt.attribution.vlm_attention import VlmAttributor
from attnprompt.backends.local import LocalVLM
from attnprompt.bench.pointing import in_box, peak
from attnprompt.config import ClipConfig, VlmConfig
from attnprompt.files import atomic_write
from attnprompt.models import load_clip, load_vlm
from attnprompt.render import overlay
from attnprompt.shapes import QUESTION_KINDS, accuracy_by_kind, make_questions, make_scene
from attnprompt.shapes.splits import SHAPES_VQA
from attnprompt.types import Request


def dataset(n: int, size: int):
    items = []
    for seed in SHAPES_VQA.seeds(n):
        rng = np.random.default_rng(seed)
        scene = make_scene(seed, n_objects=int(rng.integers(4, 7)), size=size)
        for qa in make_questions(scene, rng, per_kind=1):
            items.append((scene, qa))
    return items


def annotate_all(attributor, items, gray: float):
    """Annotated images (and maps) for every (scene, question), batched by the attributor."""
    return annotate_images(attributor, [s.image for s, _ in items], [qa.question for _, qa in items], gray=gray)


def accuracy(backend, items, images) -> dict[str, float]:
    got = backend.answer([Request.single(img, qa.question, max_new_tokens=3) for img, (_, qa) in zip(images, items)])
    res = accuracy_by_kind([qa.kind for _, qa in items], [g.text for g in got], [qa.answer for _, qa in items])
    failed = sum(not g.ok for g in got)
    if failed:
        res["failed"] = failed
    return res


def pointing(annotations, items) -> float:
    hits = []
    for ann, (scene, qa) in zip(annotations, items):
        if qa.kind in ("color", "shape") and len(qa.targets) == 1:
            hits.append(in_box(peak(ann.heatmap), scene.objects[qa.targets[0]].box))
    return float(np.mean(hits))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vlm", default="shapes")
    ap.add_argument("--clip", default="shapes")
    ap.add_argument("--scenes", type=int, default=300)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    vlm = load_vlm(args.vlm, device="cpu")
    backend = LocalVLM(vlm, batch_size=16)
    clip = load_clip(args.clip, device="cpu")
    items = dataset(args.scenes, args.size)
    counts = {k: sum(qa.kind == k for _, qa in items) for k in QUESTION_KINDS}
    print(f"{len(items)} questions on {args.scenes} held-out scenes: {counts}", flush=True)

    rows: list[tuple[str, dict[str, float], float | None]] = []

    def report(label: str, acc: dict[str, float], point: float | None) -> None:
        rows.append((label, acc, point))
        cells = " ".join(f"{acc[k]:.3f}" for k in list(QUESTION_KINDS) + ["all"])
        print(f"{label:44s} {cells}  pointing {'' if point is None else f'{point:.3f}'}", flush=True)

    report("plain image (no prompt)", accuracy(backend, items, [s.image for s, _ in items]), None)
    clip_default = ClipAttributor(clip, ClipConfig.from_preset())
    vlm_default = VlmAttributor(vlm, VlmConfig.from_preset())
    configs = [
        ("api-clip (reference, gray 0)", clip_default, 0.0),
        ("api-clip, gray 128", clip_default, 128.0),
        ("api-clip, enhance 0", ClipAttributor(clip, ClipConfig.from_preset(enhance=0.0)), 0.0),
        ("api-clip, enhance 10", ClipAttributor(clip, ClipConfig.from_preset(enhance=10.0)), 0.0),
        ("api-clip, kernel 1", ClipAttributor(clip, ClipConfig.from_preset(kernel=1)), 0.0),
        ("api-vlm (reference, layer 0.5, gray 0)", vlm_default, 0.0),
        ("api-vlm, gray 128", vlm_default, 128.0),
        ("api-vlm, layer 0.25", VlmAttributor(vlm, VlmConfig.from_preset(layers=0.25)), 0.0),
        ("api-vlm, layer 0.75", VlmAttributor(vlm, VlmConfig.from_preset(layers=0.75)), 0.0),
        ("api-vlm, last layer", VlmAttributor(vlm, VlmConfig.from_preset(layers=-1)), 0.0),
        ("api-vlm, paper variant", VlmAttributor(vlm, VlmConfig.from_preset("paper")), 0.0),
    ]
    cache: dict[int, list] = {}
    for label, attributor, gray in configs:
        key = id(attributor)
        if key not in cache:
            cache[key] = annotate_all(attributor, items, 0.0)
        anns = cache[key]
        # another gray level re-blends the same heatmaps; the maps (and pointing) are unchanged
        images = [a.image if gray == 0.0 else overlay(a.original, a.heatmap, gray=gray) for a in anns]
        report(label, accuracy(backend, items, images), pointing(anns, items))

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    head = "| condition | " + " | ".join(QUESTION_KINDS) + " | all | pointing |"
    lines = [
        f"shapes-vqa: {len(items)} questions on {args.scenes} held-out scenes (4–6 objects, {args.size} px, seeds "
        f"{SHAPES_VQA.start}–{SHAPES_VQA.start + args.scenes - 1}); VLM `{args.vlm}`, CLIP `{args.clip}`. "
        "Accuracy = exact "
        "one-word match; pointing = map maximum inside the box of the object a colour/shape question names.",
        "",
        head,
        "|" + "---|" * (len(QUESTION_KINDS) + 3),
    ]
    for label, acc, point in rows:
        cells = " | ".join(f"{acc[k]:.3f}" for k in list(QUESTION_KINDS) + ["all"])
        lines.append(f"| {label} | {cells} | {'' if point is None else f'{point:.3f}'} |")
    lines += [
        "",
        f"Reproduce: `python benchmarks/bench_shapes_vqa.py --scenes {args.scenes}` "
        f"({time.perf_counter() - t0:.0f} s on this run).",
    ]
    text = "\n".join(lines) + "\n"
    atomic_write(out / "shapes_vqa.md", lambda f: f.write(text), binary=False)
    print(f"wrote {out / 'shapes_vqa.md'}")


if __name__ == "__main__":
    main()
