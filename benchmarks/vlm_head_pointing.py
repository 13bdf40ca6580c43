"""Which decoder heads of a LLaVA-style VLM point at the object a question names?

API-VLM's map is the mean over a layer's heads; a single head may point much better or worse than
that mean. On query_dependence.py's held-out question pairs (colour/shape questions about single
objects), one prefill per question: the attention of the last prompt position (the one that
predicts the answer's first token) to the image tokens, renormalised over them (the reference
variant), per layer and per head and as the head mean; a hit is its maximum patch's centre inside
the named object's box (no enhance, no filter: the raw attention). Printed per question kind:
"names a shape" (colour questions, "What colour is the star?") / "names a colour".

    python benchmarks/vlm_head_pointing.py [--vlm shapes] [--scenes 150]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch

from attnprompt.bench.pointing import cell_centre, in_box
from attnprompt.models import load_vlm
from query_dependence import question_pairs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vlm", default="shapes")
    ap.add_argument("--scenes", type=int, default=150)
    a = ap.parse_args()
    vlm = load_vlm(a.vlm, device="cpu")
    model, proc = vlm.model, vlm.processor
    model.model.language_model.set_attn_implementation("eager")  # returns attention probabilities
    image_id = model.config.image_token_index
    hits: dict[tuple[int, str, str], list[bool]] = {}
    for scene, q1, q2 in question_pairs(a.scenes):
        for qa in (q1, q2):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": qa.question}]}]
            enc = proc(text=[proc.apply_chat_template(messages, add_generation_prompt=True)], images=[scene.image],
                       return_tensors="pt")
            with torch.no_grad():
                attentions = model(**enc, output_attentions=True).attentions
            image_pos = (enc["input_ids"][0] == image_id).nonzero().squeeze(1)
            side = int(round(len(image_pos) ** 0.5))
            box = scene.objects[qa.targets[0]].box
            for layer, att in enumerate(attentions):
                w = att[0, :, -1, image_pos].float()
                w = w / w.sum(-1, keepdim=True)
                for name, row in [(f"head {h}", w[h]) for h in range(w.shape[0])] + [("mean", w.mean(0))]:
                    hit = in_box(cell_centre(int(row.argmax()), side, scene.image.size[0]), box)
                    hits.setdefault((layer, name, qa.kind), []).append(hit)
    names = sorted({n for _, n, _ in hits}, key=lambda n: (n == "mean", n))
    print(f"VLM {a.vlm}: pointing of the raw answer-position attention, names a shape / names a colour")
    for layer in sorted({k[0] for k in hits}):
        cells = [f"{n} {np.mean(hits[(layer, n, 'color')]):.3f}/{np.mean(hits[(layer, n, 'shape')]):.3f}" for n in names]
        print(f"layer {layer}: " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
