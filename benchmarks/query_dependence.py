"""Do the maps depend on the question? Two questions about different objects of one scene.

A map can only point at the object a question names if it changes when the question does. On
held-out shapes-vqa scenes, take two colour/shape questions whose targets are different objects,
build each method's map for both, and report: the mean Pearson correlation between the two maps
(1 = the question changes nothing), pointing accuracy (map maximum in the named object's box) and
how often both maps peak on their own objects. API-VLM maps are the shapes VLM's own attention;
API-CLIP's are shown beside them for comparison.

    python benchmarks/query_dependence.py [--scenes 150] [--vlm shapes] [--clip shapes] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from attnprompt.attribution.clip import ClipAttributor, ClipConfig
from attnprompt.attribution.vlm_attention import VlmAttributor, VlmConfig
from attnprompt.bench.pointing import in_box, peak
from attnprompt.files import atomic_write
from attnprompt.models import load_clip, load_vlm
from attnprompt.render import upsample
from attnprompt.shapes import make_questions, make_scene

FIRST_SEED = 200_000  # the shapes-vqa benchmark's held-out scenes


def question_pairs(n: int, size: int = 224):
    """(scene, question 1, question 2): colour/shape questions naming two different single objects."""
    pairs = []
    seed = FIRST_SEED
    while len(pairs) < n:
        rng = np.random.default_rng(seed)
        scene = make_scene(seed, n_objects=int(rng.integers(4, 7)), size=size)
        first_by_target = {}
        for qa in make_questions(scene, rng, per_kind=2):
            if qa.kind in ("color", "shape") and len(qa.targets) == 1:
                first_by_target.setdefault(qa.targets[0], qa)
        if len(first_by_target) >= 2:
            a, b = list(first_by_target.values())[:2]
            pairs.append((scene, a, b))
        seed += 1
    return pairs


def measure(attributor, pairs) -> tuple[float, float, float, dict[str, float]]:
    """(mean r between the two maps, pointing over both questions, both on their own object,
    pointing by question kind: ``color`` questions name a shape, ``shape`` questions a colour)."""
    images = [s.image for s, _, _ in pairs]
    first = attributor.attribute(images, [a.question for _, a, _ in pairs])
    second = attributor.attribute(images, [b.question for _, _, b in pairs])
    rs, hits, by_kind = [], [], {}
    for (scene, a, b), ma, mb in zip(pairs, first, second):
        x, y = ma.grid.ravel(), mb.grid.ravel()
        if x.std() > 0 and y.std() > 0:
            rs.append(float(np.corrcoef(x, y)[0, 1]))
        hits.append([in_box(peak(upsample(m.grid, scene.image.size, extent=m.extent)), scene.objects[qa.targets[0]].box)
                     for m, qa in ((ma, a), (mb, b))])
        for qa, hit in zip((a, b), hits[-1]):
            by_kind.setdefault(qa.kind, []).append(hit)
    h = np.array(hits)
    return float(np.mean(rs)), float(h.mean()), float(h.all(1).mean()), {k: float(np.mean(v)) for k, v in by_kind.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vlm", default="shapes")
    ap.add_argument("--clip", default="shapes")
    ap.add_argument("--scenes", type=int, default=150)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    vlm = load_vlm(args.vlm, device="cpu")
    clip = load_clip(args.clip, device="cpu")
    pairs = question_pairs(args.scenes)
    methods = [
        ("api-clip, reference preset", ClipAttributor(clip, ClipConfig.from_preset())),
        ("api-clip, grounding preset", ClipAttributor(clip, ClipConfig.from_preset("grounding"))),
        ("api-vlm, reference (layer 0.5)", VlmAttributor(vlm, VlmConfig.from_preset())),
        ("api-vlm, layer 0.25", VlmAttributor(vlm, VlmConfig.from_preset(layers=0.25))),
        ("api-vlm, last layer", VlmAttributor(vlm, VlmConfig.from_preset(layers=-1))),
    ]
    n_kind = {k: sum(qa.kind == k for _, a, b in pairs for qa in (a, b)) for k in ("color", "shape")}
    rows = []
    for label, attributor in methods:
        r, point, both, by_kind = measure(attributor, pairs)
        rows.append((label, r, point, both, by_kind))
        print(f"{label:34s} r {r:.3f}  pointing {point:.3f}  both {both:.3f}  names a shape {by_kind.get('color', float('nan')):.3f}"
              f"  names a colour {by_kind.get('shape', float('nan')):.3f}", flush=True)
    lines = [
        f"Query dependence on {len(pairs)} held-out shapes-vqa scenes (seeds from {FIRST_SEED}; two colour/shape "
        f"questions naming different objects per scene); VLM `{args.vlm}`, CLIP `{args.clip}`.", "",
        "| method | r(map for q1, map for q2) | pointing | both on their own object | pointing, question names "
        f"a shape (n={n_kind['color']}) | pointing, question names a colour (n={n_kind['shape']}) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {label} | {r:.3f} | {point:.3f} | {both:.3f} | {bk.get('color', float('nan')):.3f} | "
              f"{bk.get('shape', float('nan')):.3f} |" for label, r, point, both, bk in rows]
    lines += ["", "r = 1 means the question does not change the map at all. A colour question (\"What colour is "
              "the star?\") names its object by shape, a shape question by colour.", "",
              f"Reproduce: `python benchmarks/query_dependence.py --scenes {args.scenes}` "
              f"({time.perf_counter() - t0:.0f} s on this run)."]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines) + "\n"
    atomic_write(out / "query_dependence.md", lambda f: f.write(text), binary=False)
    print(f"wrote {out / 'query_dependence.md'}")


if __name__ == "__main__":
    sys.exit(main())
