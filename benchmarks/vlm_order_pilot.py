"""Pilot: can a small decoder bind a question to image tokens if the question comes first?

In LLaVA's prompt the image comes before the question, so with causal attention the image tokens
cannot depend on the question: all question-specific selection must happen at the answer
positions. Putting the question first lets every image token see it. This pilot compares the two
orders with everything else equal and cheap: the shapes CLIP's tower is frozen and its features
(block L−2, the LLaVA read-out, at the VLM's 128 px) are computed once and cached; the projector
and a fresh Llama decoder (the shapes VLM's sizes) train on single-turn questions (one scene,
one question, one-word answer); held-out accuracy per kind is the training script's.

    python benchmarks/vlm_order_pilot.py --order question [--clip shapes] [--steps 1200] [--batch 24]
    python benchmarks/vlm_order_pilot.py --order image …

``--kinds color,shape`` trains and evaluates on those question kinds only; ``--qk-scale 4``
multiplies the decoder's query and key weights at initialisation (attention logits ×16), to test
whether the small initial logits are what keeps the decoder from binding (binding_readout.py);
``--shape-first N`` trains the first N steps on the colour questions only (they name a shape).
``--hop1-weight W`` adds an auxiliary loss that makes head 0 of decoder layer ``--hop1-layer``
attend, at the position that predicts the answer, to the question's naming words (its colour and
shape words): the first of the two hops the decoder must learn, given; which image tokens to look
at is still learned from the answers alone. Each evaluation also reports the decoder's pointing
per layer: the head-mean attention of the answer position to the image tokens (renormalised over
them, as API-VLM's reference variant) peaks inside the named object's box.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

from attnprompt.bench.pointing import cell_centre, in_box
from attnprompt.models import load_clip
from attnprompt.shapes.questions import make_questions
from attnprompt.shapes.train_clip import TRAIN_SEED_OFFSET
from attnprompt.shapes.train_vlm import (
    EVAL_SEED,
    NAMING_WORDS,
    Standardized,
    VlmTrainConfig,
    answer_labels,
    build_model,
    build_tokenizer,
    feature_statistics,
    held_out_scene,
    score,
    training_scene,
)


def scenes_and_questions(seeds, train: bool):
    """Images and (question, answer, kind) lists: training scenes as the VLM training draws them,
    held-out scenes as its evaluation does."""
    images, qas = [], []
    for s in seeds:
        scene, rng = training_scene(s, 128) if train else held_out_scene(s)
        images.append(scene.image)
        qas.append([(q.question, q.answer, q.kind) for q in make_questions(scene, rng, per_kind=2 if train else 1)])
    return images, qas


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--order", choices=["image", "question"], required=True)
    ap.add_argument("--clip", default="shapes")
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--batch", type=int, default=24)
    ap.add_argument("--scenes", type=int, default=6000, help="training scenes (features cached)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval-every", type=int, default=300)
    ap.add_argument("--cache", default=None, help="feature cache file (default: in the temp directory)")
    ap.add_argument("--kinds", default="", help="comma-separated question kinds to keep (default: all)")
    ap.add_argument("--qk-scale", type=float, default=1.0, help="scale of the decoder's q/k weights at init")
    ap.add_argument("--shape-first", type=int, default=0, help="first steps on the colour questions only")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    ap.add_argument("--hop1-weight", type=float, default=0.0, help="weight of the answer→naming-word attention loss")
    ap.add_argument("--hop1-layer", type=int, default=0, help="decoder layer whose head 0 that loss supervises")
    ap.add_argument("--rope-theta", type=float, default=0.0,
                    help="the decoder's RoPE base (default: the config's); 'inf' turns rotation off")
    ap.add_argument("--point-weight", type=float, default=0.0, help="weight of the answer→named-object attention loss")
    ap.add_argument("--point-layer", type=int, default=2, help="decoder layer whose head 0 that loss supervises")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    clip = load_clip(a.clip, device="cpu")
    tok = build_tokenizer()
    model, proc = build_model(VlmTrainConfig(out="unused", clip=a.clip), tok, clip.model)
    Standardized(model, *feature_statistics(model, proc, range(TRAIN_SEED_OFFSET, TRAIN_SEED_OFFSET + 64), 128))
    tower = model.model.vision_tower
    tower.requires_grad_(False)
    with torch.no_grad():
        for name, p in model.model.language_model.named_parameters():
            if name.endswith(("q_proj.weight", "k_proj.weight")):
                p.mul_(a.qk_scale)
    image_id, n_image = tok.convert_tokens_to_ids("<image>"), model.config.image_seq_length
    if a.rope_theta:
        rot = model.model.language_model.rotary_emb
        dim = rot.inv_freq.numel() * 2
        inv = torch.zeros(dim // 2) if a.rope_theta == float("inf") else 1.0 / a.rope_theta ** (torch.arange(0, dim, 2).double() / dim)
        rot.inv_freq.copy_(inv.float())
        rot.original_inv_freq = rot.inv_freq.clone()
    # eager attention so that the attention probabilities come back (for the loss and the pointing)
    model.model.language_model.set_attn_implementation("eager")
    naming_ids = torch.tensor(tok.convert_tokens_to_ids(list(NAMING_WORDS)))

    def features(images):
        out = []
        for i in range(0, len(images), 128):
            x = proc.image_processor(images[i : i + 128], return_tensors="pt")["pixel_values"]
            with torch.no_grad():
                out.append(tower(x, output_hidden_states=True).hidden_states[-2][:, 1:].to(torch.bfloat16))
        return torch.cat(out)

    key = f"{os.path.basename(os.path.abspath(clip.location or a.clip))}_{a.scenes}"
    cache = a.cache or os.path.join(tempfile.gettempdir(), f"attnprompt_order_pilot_{key}.pt")
    if os.path.exists(cache):
        d = torch.load(cache)
    else:
        images, train_q = scenes_and_questions([TRAIN_SEED_OFFSET + 50_000_000 + i for i in range(a.scenes)], True)
        train_f = features(images)
        images, eval_q = scenes_and_questions(range(EVAL_SEED, EVAL_SEED + 200), False)
        d = {"train_f": train_f, "train_q": train_q, "eval_f": features(images), "eval_q": eval_q}
        torch.save(d, cache + ".part")
        os.replace(cache + ".part", cache)
    print(f"order {a.order}; features {tuple(d['train_f'].shape)} ready in {time.perf_counter() - t0:.0f} s", flush=True)

    # the named object's box for the held-out questions (same draw as the cache's, so same order)
    boxes = []
    for s_ in range(EVAL_SEED, EVAL_SEED + 200):
        scene, rng_ = held_out_scene(s_)
        boxes.append([scene.objects[q.targets[0]].box if len(q.targets) == 1 else None
                      for q in make_questions(scene, rng_, per_kind=1)])
    d["eval_box"] = boxes
    if a.point_weight:
        # each training question's named objects as a distribution over the image tokens (their
        # visible pixels' share of each patch), for the pointing loss
        side = int(round(n_image**0.5))
        targets = []
        for s_ in range(TRAIN_SEED_OFFSET + 50_000_000, TRAIN_SEED_OFFSET + 50_000_000 + a.scenes):
            scene, rng_ = training_scene(s_, 128)
            rows = []
            for q in make_questions(scene, rng_, per_kind=2):
                if not q.targets:
                    rows.append(None)
                    continue
                # train_vlm.object_coverage up to float rounding (kept so the reported pilots reproduce)
                m = np.any([scene.objects[i].mask for i in q.targets], axis=0).astype(np.float32)
                cov = m.reshape(side, m.shape[0] // side, side, m.shape[1] // side).mean((1, 3)).ravel()
                rows.append(torch.from_numpy(cov / cov.sum()))
            targets.append(rows)
        d["train_q"] = [[(*x, t) for x, t in zip(qs, ts)] for qs, ts in zip(d["train_q"], targets)]
        print(f"pointing targets ready in {time.perf_counter() - t0:.0f} s", flush=True)
    else:
        d["train_q"] = [[(*x, None) for x in qs] for qs in d["train_q"]]
    if a.kinds:
        keep = set(a.kinds.split(","))
        unknown = keep - {k for qs in d["eval_q"] for _, _, k in qs}
        if unknown:
            raise SystemExit(f"unknown --kinds {sorted(unknown)}")
        # a scene with none of those kinds keeps its first question (rare; so the reported pilots ran)
        d["train_q"] = [[x for x in qs if x[2] in keep] or qs[:1] for qs in d["train_q"]]
        d["eval_box"] = [[b for x, b in zip(qs, bs) if x[2] in keep] for qs, bs in zip(d["eval_q"], d["eval_box"])]
        d["eval_q"] = [[x for x in qs if x[2] in keep] for qs in d["eval_q"]]
    image_text = " ".join(["<image>"] * n_image)

    def prompt(question: str, answer: str | None = None) -> str:
        # The shapes VLM's chat format, with the image before or after the question.
        body = f"{image_text} \n{question}" if a.order == "image" else f"{question} \n{image_text}"
        return f"USER: {body} ASSISTANT:" + (f" {answer}</s>" if answer is not None else "")

    projector, lm, embed = model.model.multi_modal_projector, model.model.language_model, model.get_input_embeddings()

    def forward(feats, texts, side):
        tok.padding_side = side
        enc = tok(texts, return_tensors="pt", padding=True)
        ids = enc["input_ids"]
        e = embed(ids)
        img = projector(feats.float()).to(e.dtype)
        e = e.masked_scatter((ids == image_id).unsqueeze(-1), img.reshape(-1, img.shape[-1]))
        out = lm(inputs_embeds=e, attention_mask=enc["attention_mask"], output_attentions=True)
        return ids, model.lm_head(out.last_hidden_state), out.attentions

    def evaluate():
        # One forward per question: the answer is one word, i.e. one token of this vocabulary.
        model.eval()
        items = [(i, q, ans, k, b) for i, (qs, bs) in enumerate(zip(d["eval_q"], d["eval_box"])) for (q, ans, k), b in zip(qs, bs)]
        replies, hits = [], []
        side = int(round(n_image**0.5))
        with torch.no_grad():
            for j in range(0, len(items), 128):
                chunk = items[j : j + 128]
                ids, logits, attns = forward(d["eval_f"][[c[0] for c in chunk]], [prompt(c[1]) for c in chunk], "left")
                replies += tok.convert_ids_to_tokens(logits[:, -1].argmax(-1).tolist())
                for r, c in enumerate(chunk):
                    if c[4] is None:
                        continue
                    image_pos = (ids[r] == image_id).nonzero().squeeze(1)  # left padding shifts it per row
                    row = []
                    for att in attns:
                        w = att[r, :, -1, image_pos]
                        t = int((w / w.sum(-1, keepdim=True)).mean(0).argmax())
                        row.append(in_box(cell_centre(t, side, 224), c[4]))  # held-out scenes are 224 px
                    hits.append((c[3], row))
        out = score([c[3] for c in items], replies, [c[2] for c in items])
        for kind in sorted({k for k, _ in hits}):
            per = np.array([h for k, h in hits if k == kind], dtype=float).mean(0)
            out[f"pointing[{kind}] by layer"] = " ".join(f"{v:.3f}" for v in per)
        return out

    # the colour questions ("What colour is the star?") name their object by shape
    colour_q = [[x for x in qs if x[2] == "color"] for qs in d["train_q"]]
    with_colour = np.array([i for i, qs in enumerate(colour_q) if qs])
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=a.lr, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.05)
    rng = np.random.default_rng(0)
    for step in range(a.steps):
        model.train()
        if step < a.shape_first:
            picks = with_colour[rng.integers(0, len(with_colour), a.batch)]
            items = [colour_q[i][rng.integers(len(colour_q[i]))] for i in picks]
        else:
            picks = rng.integers(0, len(d["train_q"]), a.batch)
            items = [d["train_q"][i][rng.integers(len(d["train_q"][i]))] for i in picks]
        for g in opt.param_groups:
            # the schedule the reported pilots ran with (cosine over all steps, unlike warmup_cosine)
            g["lr"] = a.lr * min(1.0, (step + 1) / 60) * 0.5 * (1 + np.cos(np.pi * step / a.steps))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ids, logits, attns = forward(d["train_f"][torch.as_tensor(picks)], [prompt(q, ans) for q, ans, _, _ in items], "right")
        labels = answer_labels(ids, tok)  # the answer word and its </s>
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100
        )
        answer_at = (labels != -100).int().argmax(1) - 1  # the position that predicts the answer word
        if a.hop1_weight:
            # there, head 0 attends to the question's naming words
            rows = torch.arange(len(ids))
            att = attns[a.hop1_layer][rows, 0, answer_at].float()  # (B, T)
            naming = torch.isin(ids, naming_ids) & (torch.arange(ids.shape[1]) < answer_at[:, None])
            hop1 = -torch.log(((att * naming).sum(1)).clamp_min(1e-6))
            loss = loss + a.hop1_weight * hop1[naming.any(1)].mean()
        if a.point_weight:
            image_pos = (ids[0] == image_id).nonzero().squeeze(1)  # right padding: same span in every row
            has = [i for i, it in enumerate(items) if it[3] is not None]
            if has:
                att = attns[a.point_layer][has, 0, answer_at[has]][:, image_pos].float()
                att = att / att.sum(-1, keepdim=True)  # renormalised over the image, as API-VLM's reference
                target = torch.stack([items[i][3] for i in has])
                loss = loss + a.point_weight * -(target * att.clamp_min(1e-8).log()).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 50 == 0:
            print(f"step {step} loss {loss.item():.3f} {time.perf_counter() - t0:.0f} s", flush=True)
        if (step + 1) % a.eval_every == 0 or step == a.steps - 1:
            r = evaluate()
            print(f"eval {step + 1}: " + " ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in r.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
