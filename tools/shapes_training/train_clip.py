"""Train the small shapes CLIP: a stock ``transformers`` CLIPModel, contrastively, on shapes scenes.

Each training pair is (scene, a caption naming ONE of its objects). Scenes hold 2–6
objects, so the image embedding must carry every object and the text side must pick the
right one; a caption can be true of several images in a batch (another scene may have the
same red star), so the InfoNCE targets are multi-positive: every image the caption is true
of counts, in both directions.

Run from the repository root (fixed seed, ~28 minutes on a 2-core CPU)::

    python -m tools.shapes_training.train_clip --out src/attnprompt/shapes/models/shapes-clip

It logs the loss, held-out retrieval precision and held-out pointing accuracy, and writes
``training.json`` (configuration, metrics, wall time) next to the model.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attnprompt.shapes import COLORS, PLURALS, SHAPES, make_scene
from attnprompt.shapes.splits import CLIP_POINTING_EVAL, CLIP_RETRIEVAL_EVAL

from .common import Resumable, run_training, save_directory, training_record, usable_cpus, warmup_cosine
from .testbed import training_seeds

#: Sizes scenes are rendered at before being resized to the model input (scale augmentation).
RENDER_SIZES = (192, 224, 256)
COLOR_NAMES = tuple(COLORS)
MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's pixel statistics
STD = (0.26862954, 0.26130258, 0.27577711)

_FULL = (
    "{a} {name}", "the {name}", "{name}", "a photo of {a} {name}", "Where is the {name}?",
    "Is there {a} {name}?", "Find the {name}.", "the {name} in the image", "Show me the {name}.",
)
_SHAPE_ONLY = ("{sa} {shape}", "the {shape}", "What colour is the {shape}?", "What color is the {shape}?",
               "How many {plural} are there?")
_COLOR_ONLY = ("the {color} object", "something {color}", "What shape is the {color} object?",
               "How many {color} objects are there?", "the {color} shape")


@dataclasses.dataclass
class TrainConfig:
    """Everything that determines the trained model (recorded in ``training.json``).

    >>> TrainConfig(out="x").image_size
    192
    """

    out: str
    steps: int = 520
    batch_size: int = 128
    lr: float = 2e-3
    warmup: int = 60
    weight_decay: float = 0.05
    n_scenes: int = 24000
    image_size: int = 192
    patch_size: int = 8
    width: int = 128
    layers: int = 6
    heads: int = 4
    text_width: int = 128
    text_layers: int = 4
    projection_dim: int = 128
    context: int = 32
    seed: int = 0
    eval_every: int = 130
    eval_scenes: int = 300
    workers: int = 2
    bf16: bool = True
    patch_keep: float = 0.5
    readout_layers: int = 2
    readout_weight: float = 1.0
    shape_weight: float = 0.0
    dense_weight: float = 0.0  # off: see dense_loss / README (it sharpens Ψᶜˡˢ but breaks Ψᶜᵒᵐᵖ)
    bpe: str = str(Path(__file__).resolve().parents[2] / "data" / "clip-bpe")  # the repository's copy


SMOKE = dict(steps=3, batch_size=8, n_scenes=24, width=32, layers=4, heads=2, text_width=32, text_layers=1,
             projection_dim=16, eval_every=2, eval_scenes=8, workers=1, image_size=64)


def article(word: str) -> str:
    """'an' before a vowel sound, else 'a'.

    >>> article("orange"), article("red")
    ('an', 'a')
    """
    return "an" if word[0] in "aeiou" else "a"


def sample_caption(
    objects: Sequence[tuple[int, int]], rng: np.random.Generator, index: int | None = None
) -> tuple[str, tuple[int | None, int | None]]:
    """A caption naming one object of a scene (``index``, else a random one), and the
    (colour, shape) it requires (None = any).

    >>> sample_caption([(0, 3)], np.random.default_rng(0))[1] in [(0, 3), (None, 3), (0, None)]
    True
    """
    ci, si = objects[int(rng.integers(len(objects))) if index is None else index]
    color, shape = COLOR_NAMES[ci], SHAPES[si]
    kind = rng.random()
    if kind < 0.55:
        name = f"{color} {shape}"
        t = _FULL[int(rng.integers(len(_FULL)))]
        return t.format(a=article(color), name=name), (ci, si)
    if kind < 0.85:  # shape-only captions: colour alone cannot match them
        t = _SHAPE_ONLY[int(rng.integers(len(_SHAPE_ONLY)))]
        return t.format(sa=article(shape), shape=shape, plural=PLURALS[shape]), (None, si)
    t = _COLOR_ONLY[int(rng.integers(len(_COLOR_ONLY)))]
    return t.format(color=color), (ci, None)


def hard_negative(objects: Sequence[tuple[int, int]], rng: np.random.Generator) -> tuple[str, tuple[int, int]] | None:
    """A caption for an ABSENT object sharing its colour with a present one ("the red circle"
    when the scene has a red star but no red circle): colour alone cannot reject it.

    >>> hard_negative([(0, 3)], np.random.default_rng(0))[1][0]
    0
    """
    present = set(objects)
    ci, _ = objects[int(rng.integers(len(objects)))]
    absent = [s for s in range(len(SHAPES)) if (ci, s) not in present]
    if not absent:
        return None
    si = absent[int(rng.integers(len(absent)))]
    color, shape = COLOR_NAMES[ci], SHAPES[si]
    return f"{article(color)} {color} {shape}", (ci, si)


def matches(objects: Sequence[tuple[int, int]], need: tuple[int | None, int | None]) -> bool:
    """Whether any object satisfies the (colour, shape) requirement.

    >>> matches([(0, 1)], (None, 1)), matches([(0, 1)], (2, 1))
    (True, False)
    """
    c, s = need
    return any((c is None or c == oc) and (s is None or s == os_) for oc, os_ in objects)


def positives_matrix(
    objects: Sequence[Sequence[tuple[int, int]]], needs: Sequence[tuple[int | None, int | None]]
) -> np.ndarray:
    """B×U booleans: caption requirement ``needs[j]`` is met by image ``i``'s objects.

    >>> positives_matrix([[(0, 1)], [(2, 3)]], [(0, 1), (None, 3), (2, None), (0, 3)]).astype(int).tolist()
    [[1, 0, 0, 0], [0, 1, 1, 0]]
    """
    pres = np.zeros((len(objects), len(COLOR_NAMES) + 1, len(SHAPES) + 1), dtype=bool)
    for i, objs in enumerate(objects):
        for c, sh in objs:
            # the extra last row/column stand for "any colour" / "any shape"
            pres[i, c, sh] = pres[i, c, -1] = pres[i, -1, sh] = pres[i, -1, -1] = True
    cs = np.array([-1 if c is None else c for c, _ in needs])
    ss = np.array([-1 if sh is None else sh for _, sh in needs])
    return pres[:, cs, ss]


def patch_labels(scene, grid: int) -> np.ndarray:
    """Which object is under each cell of a ``grid``×``grid`` patch grid, as a colour–shape name
    index (``colour * len(SHAPES) + shape``), or -1 where no object covers a quarter of the cell.
    Where objects share a cell, the one covering most of it wins.

    >>> scene = make_scene(0, n_objects=3, size=96)
    >>> labels = patch_labels(scene, 12)
    >>> labels.shape, int(labels.min()) >= -1, int(labels.max()) < len(COLOR_NAMES) * len(SHAPES)
    ((12, 12), True, True)
    """
    from .testbed import cell_coverage

    best = np.zeros((grid, grid))
    labels = np.full((grid, grid), -1, np.int16)
    for obj in scene.objects:
        cover = cell_coverage(obj.mask, grid)
        take = (cover > best) & (cover >= 0.25)
        labels[take] = COLOR_NAMES.index(obj.color) * len(SHAPES) + SHAPES.index(obj.shape)
        best[take] = cover[take]
    return labels


def render_training_scene(
    seed: int, image_size: int, grid: int = 1
) -> tuple[np.ndarray, list[tuple[int, int]], np.ndarray]:
    """One training scene as a uint8 model-size array, its objects' (colour, shape) indices, and
    the object under each patch (:func:`patch_labels` on a ``grid``×``grid`` grid).

    >>> from attnprompt.shapes.splits import TRAINING_START
    >>> arr, objs, labels = render_training_scene(TRAINING_START, 96, 12)
    >>> arr.shape, 2 <= len(objs) <= 6, labels.shape
    ((96, 96, 3), True, (12, 12))
    """
    from attnprompt.render import fit_square

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 7))
    size = int(RENDER_SIZES[int(rng.integers(len(RENDER_SIZES)))])
    scene = make_scene(seed, n_objects=n, size=max(size, image_size))
    img, _ = fit_square(scene.image, image_size, fit="squash")
    objs = [(COLOR_NAMES.index(o.color), SHAPES.index(o.shape)) for o in scene.objects]
    return np.asarray(img, dtype=np.uint8), objs, patch_labels(scene, grid)


def _render_chunk(args: tuple[list[int], int, int]) -> list[tuple[np.ndarray, list[tuple[int, int]], np.ndarray]]:
    seeds, image_size, grid = args
    return [render_training_scene(s, image_size, grid) for s in seeds]


def build_dataset(
    seeds: Sequence[int], image_size: int, workers: int, grid: int = 1
) -> tuple[np.ndarray, list, np.ndarray]:
    """Render scenes in parallel worker processes; returns (N×S×S×3 uint8, objects per scene,
    N×grid×grid patch labels).

    >>> from attnprompt.shapes.splits import TRAINING_START
    >>> imgs, objs, labels = build_dataset([TRAINING_START + i for i in range(2)], 64, 1, 8)
    >>> imgs.shape, labels.shape
    ((2, 64, 64, 3), (2, 8, 8))
    """
    chunks = [(list(seeds[i : i + 500]), image_size, grid) for i in range(0, len(seeds), 500)]
    if workers > 1:
        import multiprocessing as mp

        with mp.get_context("fork" if sys.platform != "win32" else "spawn").Pool(workers) as pool:
            parts = pool.map(_render_chunk, chunks)
    else:
        parts = [_render_chunk(c) for c in chunks]
    flat = [x for p in parts for x in p]
    return np.stack([x[0] for x in flat]), [x[1] for x in flat], np.stack([x[2] for x in flat])


def tokenizer_corpus() -> list[str]:
    """Every caption/question wording the shapes models train on (for the tokenizer subset).

    >>> any("star" in t for t in tokenizer_corpus())
    True
    """
    from attnprompt.shapes import caption_templates, describe, make_questions

    texts = []
    for c in COLOR_NAMES:
        for s in SHAPES:
            name = f"{c} {s}"
            texts += [t.format(a=article(c), name=name) for t in _FULL]
            texts += [t.format(sa=article(s), shape=s, plural=PLURALS[s], color=c) for t in _SHAPE_ONLY + _COLOR_ONLY]
    for seed in range(200):
        scene = make_scene(seed, n_objects=5, size=96)
        texts += [q.question for q in make_questions(scene, seed)] + [describe(scene)]
        texts += [t for o in scene.objects for t in caption_templates(o)]
    return texts


def build_model(cfg: TrainConfig, tokenizer: Any):
    """A fresh CLIPModel sized by ``cfg`` (random init, seeded by the caller)."""
    from transformers import CLIPConfig, CLIPModel

    text = dict(
        vocab_size=len(tokenizer),
        hidden_size=cfg.text_width,
        intermediate_size=4 * cfg.text_width,
        num_hidden_layers=cfg.text_layers,
        num_attention_heads=max(1, cfg.text_width // 32),
        max_position_embeddings=cfg.context,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = dict(
        hidden_size=cfg.width,
        intermediate_size=4 * cfg.width,
        num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads,
        image_size=cfg.image_size,
        patch_size=cfg.patch_size,
    )
    return CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.projection_dim))


def _normalise(images_u8: np.ndarray):
    import torch

    x = torch.from_numpy(images_u8).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def early_cls_modules(model, readout: int) -> dict[str, Any]:
    """The attention and MLP modules of every vision block but the last ``readout`` ones, by name:
    the cls token's updates in them are what :func:`train`'s read-out regulariser penalises
    (capture them with :func:`attnprompt.capture.capture_outputs`).
    """
    layers = list(model.vision_model.encoder.layers)
    early = layers[: max(0, len(layers) - readout)]
    return {
        f"{kind}{i}": getattr(layer, attr)
        for i, layer in enumerate(early)
        for kind, attr in (("attn", "self_attn"), ("mlp", "mlp"))
    }


def image_features(model, pixel_values, keep: float, generator=None):
    """Image embeddings with random patch dropout (keep a ``keep`` fraction of patch tokens),
    and which patches were kept (B×n patch indices, in the order they enter the encoder).

    Dropping random patches (as FLIP does) makes the model keep object information in the
    objects' own patches instead of routing it through a few aggregator tokens, which is what
    the per-token decomposition of API-CLIP reads; it also makes steps cheaper. Uses the
    model's own modules in their usual order, so the saved checkpoint is a plain CLIPModel.
    """
    import torch

    vm = model.vision_model
    emb = vm.embeddings(pixel_values)  # B×(1+N)×D, position embeddings included
    b, t, d = emb.shape
    n_keep = max(1, int(round((t - 1) * keep)))
    if n_keep >= t - 1:
        kept_idx = torch.arange(t - 1).expand(b, -1)
        kept = emb[:, 1:]
    else:
        kept_idx = torch.rand(b, t - 1, generator=generator).argsort(1)[:, :n_keep]
        kept = emb.gather(1, (kept_idx + 1).unsqueeze(-1).expand(-1, -1, d))
    hidden = vm.pre_layrnorm(torch.cat([emb[:, :1], kept], 1))
    hidden = vm.encoder(inputs_embeds=hidden).last_hidden_state
    return model.visual_projection(vm.post_layernorm(hidden[:, 0])), kept_idx


def value_paths(model, values: dict[int, Any]) -> dict[int, Any]:
    """Every token's value path through vision block l's attention, v_t · W_o (heads summed,
    before the attention weights; B×T×D), from the block's captured ``v_proj`` outputs ``values[l]``.

    This is what API-CLIP's Ψᶜˡˢ reads: block l's cls output is Σ_t A_cls,t · (v_t · W_o) + bias,
    so a patch's contribution names what the patch *is* exactly when its value path does.
    """
    layers = model.vision_model.encoder.layers
    return {l: v @ layers[l].self_attn.out_proj.weight.T for l, v in values.items()}


def patch_cross_entropy(logits, labels):
    """Mean cross-entropy over the patches that have a label (-1 = none); exactly 0, not NaN, when
    none has one, so a batch without covered patches adds nothing.

    >>> import torch
    >>> float(patch_cross_entropy(torch.zeros(1, 2, 3), torch.tensor([[-1, -1]])))
    0.0
    """
    import torch

    labels = labels.reshape(-1)
    if not bool((labels >= 0).any()):
        return logits.sum() * 0.0
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels, ignore_index=-1)


def shape_labels(labels):
    """Colour–shape name indices (:func:`patch_labels`) → shape indices; -1 stays -1.

    >>> import torch
    >>> shape_labels(torch.tensor([-1, 0, 7, 47])).tolist()
    [-1, 0, 1, 5]
    """
    import torch

    return torch.where(labels >= 0, labels % len(SHAPES), labels)


def dense_loss(model, paths: dict, labels, names_unit):
    """Per-patch naming loss on the value paths: each patch covered by an object must pick that
    object's colour–shape name among all names (cross-entropy over cosine similarities in the
    joint space, through the final LayerNorm's scale and the visual projection; -1 = no label).

    Off by default (``dense_weight`` 0): it makes Ψᶜˡˢ point better (grounding preset 0.785 →
    0.815 in a 200-step pilot) but aligns the patch residuals with their names, which inverts
    Ψᶜᵒᵐᵖ (1 − similarity) and lowers the default preset (0.575 → 0.460); see the README.
    """
    import torch

    vm = model.vision_model
    gamma = vm.post_layernorm.weight
    losses = []
    for u in paths.values():
        u = u[:, 1:].float()  # patch tokens
        u = (u - u.mean(-1, keepdim=True)) * gamma
        e = torch.nn.functional.normalize(model.visual_projection(u), dim=-1)
        logits = model.logit_scale.exp() * e @ names_unit.T
        losses.append(patch_cross_entropy(logits, labels))
    return torch.stack(losses).mean()


def contrastive_loss(img_emb, txt_emb, positives, logit_scale):
    """Multi-positive symmetric InfoNCE (targets spread evenly over each row's/column's positives).

    Captions true of no image in the batch (hard negatives) only act as negatives: they take
    part in every image's softmax but have no text→image term of their own.

    >>> import torch
    >>> e = torch.nn.functional.normalize(torch.eye(3), dim=-1)
    >>> float(contrastive_loss(e, e, torch.eye(3, dtype=torch.bool), torch.tensor(4.0))) < 0.1
    True
    """
    import torch

    logits = logit_scale.exp() * img_emb @ txt_emb.T
    pos = positives.float()
    i2t = -(torch.log_softmax(logits, 1) * pos / pos.sum(1, keepdim=True)).sum(1).mean()
    has = pos.sum(0) > 0
    t2i_all = -(torch.log_softmax(logits[:, has], 0) * pos[:, has] / pos[:, has].sum(0, keepdim=True)).sum(0)
    return (i2t + t2i_all.mean()) / 2


def retrieval_precision(model, tokenizer, images_u8: np.ndarray, objects: list) -> dict[str, float]:
    """Held-out retrieval: rank all colour–shape captions for each image; precision@k where k is
    the number of distinct objects, and top-1 accuracy, with their chance levels.
    """
    import torch

    names = [(c, s) for c in range(len(COLOR_NAMES)) for s in range(len(SHAPES))]
    texts = [f"{article(COLOR_NAMES[c])} {COLOR_NAMES[c]} {SHAPES[s]}" for c, s in names]
    with torch.inference_mode():
        t = model.get_text_features(**tokenizer(texts, padding=True, return_tensors="pt")).pooler_output
        t = torch.nn.functional.normalize(t, dim=-1)
        embs = []
        for i in range(0, len(images_u8), 64):
            e = model.get_image_features(pixel_values=_normalise(images_u8[i : i + 64])).pooler_output
            embs.append(torch.nn.functional.normalize(e, dim=-1))
        sims = (torch.cat(embs) @ t.T).numpy()
    prec, top1, chance = [], [], []
    for row, objs in zip(sims, objects):
        present = {names.index(o) for o in objs}
        k = len(present)
        best = np.argsort(-row)[:k]
        prec.append(len(present & set(best.tolist())) / k)
        top1.append(float(best[0] in present))
        chance.append(k / len(names))
    return {"precision_at_k": float(np.mean(prec)), "top1": float(np.mean(top1)), "chance": float(np.mean(chance))}


def pointing_accuracy(model, tokenizer, seeds: Sequence[int], *, size: int = 224, **params: Any) -> float:
    """Fraction of held-out scenes whose API-CLIP heatmap (``params`` over the reference preset)
    peaks inside the box of the object the query names.
    """
    from attnprompt.attribution.clip import ClipAttributor
    from attnprompt.attribution.configs import ClipConfig
    from attnprompt.evaluation.pointing import in_box, peak
    from attnprompt.models import LoadedClip
    from attnprompt.render import upsample
    from attnprompt.shapes import pointing_query

    attributor = ClipAttributor(
        LoadedClip(model, tokenizer, MEAN, STD, "training", ""), ClipConfig.from_preset(**params)
    )
    hits = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        scene = make_scene(int(seed), n_objects=int(rng.integers(3, 7)), size=size)
        idx = int(rng.integers(len(scene.objects)))
        [m] = attributor.attribute([scene.image], [pointing_query(scene, idx)])
        hm = upsample(m.grid, scene.image.size, extent=m.extent)
        hits.append(in_box(peak(hm), scene.objects[idx].box))
    return float(np.mean(hits))


def save_checkpoint(model, tokenizer, cfg: TrainConfig, out: Path, record: dict[str, Any]) -> None:
    """Save model + processor in Hugging Face format, atomically, with ``training.json`` beside them."""
    from transformers import CLIPImageProcessor, CLIPProcessor

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        ip = CLIPImageProcessor(
            size={"shortest_edge": cfg.image_size},
            crop_size={"height": cfg.image_size, "width": cfg.image_size},
            image_mean=list(MEAN),
            image_std=list(STD),
        )
        CLIPProcessor(image_processor=ip, tokenizer=tokenizer).save_pretrained(tmp)

    save_directory(out, write, record)


def train(cfg: TrainConfig, log=print) -> dict[str, Any]:
    """Train and save; returns the record written to ``training.json``."""
    import torch

    from attnprompt.capture import capture_outputs

    from .subset_tokenizer import build_subset_tokenizer

    if not (Path(cfg.bpe) / "vocab.json").exists():
        raise FileNotFoundError(
            f"CLIP's BPE files are not at {cfg.bpe}; run from a checkout of the repository (data/clip-bpe) "
            "or pass --bpe DIR with OpenAI CLIP's vocab.json and merges.txt"
        )
    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(usable_cpus())
    out = Path(cfg.out)
    tok_dir = out.with_name(out.name + ".tokenizer")
    tokenizer = build_subset_tokenizer(cfg.bpe, tokenizer_corpus(), tok_dir, context=cfg.context)
    shutil.rmtree(tok_dir, ignore_errors=True)
    model = build_model(cfg, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"model: {n_params / 1e6:.2f} M parameters, vocab {len(tokenizer)}, grid "
        f"{cfg.image_size // cfg.patch_size}x{cfg.image_size // cfg.patch_size}, {cfg.layers} vision blocks"
    )

    t0 = time.perf_counter()
    train_seeds = training_seeds("clip", cfg.seed, cfg.n_scenes)
    grid = cfg.image_size // cfg.patch_size
    images, objects, labels = build_dataset(train_seeds, cfg.image_size, cfg.workers, grid)
    labels = torch.from_numpy(labels.reshape(len(labels), -1).astype(np.int64))
    eval_images, eval_objects, _ = build_dataset(CLIP_RETRIEVAL_EVAL.seeds(cfg.eval_scenes), cfg.image_size, 1)
    log(
        f"data: {len(images)} training scenes, {len(eval_images)} held-out, "
        f"rendered in {time.perf_counter() - t0:.0f} s"
    )

    # Optional per-patch shape head on the residual stream of block L−2 (what a LLaVA projector
    # reads and what Ψᶜᵒᵐᵖ projects): a linear probe trained jointly and discarded at save, so
    # the tower must make shape linearly readable there without tying the residual to the names.
    shape_head = torch.nn.Linear(cfg.width, len(SHAPES)) if cfg.shape_weight > 0 else None
    trained = model if shape_head is None else torch.nn.ModuleDict({"clip": model, "shape_head": shape_head})
    decay, no_decay = [], []
    for name, p in trained.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in name or name == "logit_scale" else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=(0.9, 0.98),
        eps=1e-6,
    )

    def lr_at(step: int) -> float:
        return cfg.lr * warmup_cosine(step, cfg.warmup, cfg.steps)

    names = [f"{article(c)} {c} {sh}" for c in COLOR_NAMES for sh in SHAPES]  # index = colour * |SHAPES| + shape
    names_enc = tokenizer(names, padding=True, return_tensors="pt")
    rng = np.random.default_rng(cfg.seed)
    generator = torch.Generator().manual_seed(cfg.seed)
    pointing_seeds = CLIP_POINTING_EVAL.seeds(max(8, cfg.eval_scenes // 2))
    resume = Resumable(out, cfg)
    start, history, elapsed = resume.load(trained, opt, rng, generator)
    if start:
        log(f"resuming the interrupted run at step {start} (state in {resume.path})")
    # What each step captures: the early blocks' cls updates (read-out regulariser), the read-out
    # blocks' values (dense naming) and block L−2's output (shape head).
    layers = model.vision_model.encoder.layers
    early = early_cls_modules(model, cfg.readout_layers)
    dense_blocks = range(cfg.layers - cfg.readout_layers, cfg.layers) if cfg.dense_weight > 0 else ()
    watch = {**early, **{f"v{l}": layers[l].self_attn.v_proj for l in dense_blocks}}
    if shape_head is not None:
        watch["residual"] = layers[cfg.layers - 2]
    model.train()
    t_train = time.perf_counter() - elapsed
    t_start -= elapsed
    for step in range(start, cfg.steps):
        idx = rng.choice(len(images), cfg.batch_size, replace=False)
        # Every object of every image gets a caption: the vision forward is the expensive part,
        # and each caption is one more (multi-positive) contrast for the same image embedding.
        caps = [sample_caption(objects[i], rng, k) for i in idx for k in range(len(objects[i]))]
        # One absent-object caption per image sharing a present colour: a negative for this image
        # (and a positive for any other image in the batch that has that object).
        caps += [n for n in (hard_negative(objects[i], rng) for i in idx) if n is not None]
        unique = list(dict.fromkeys(c for c, _ in caps))
        needs = {c: need for c, need in caps}
        positives = torch.from_numpy(positives_matrix([objects[i] for i in idx], [needs[c] for c in unique]))
        enc = tokenizer(unique, padding=True, truncation=True, max_length=cfg.context, return_tensors="pt")
        # bf16 matmuls (fp32 weights and loss) nearly halve the step time on CPUs with bf16 units.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16), capture_outputs(watch) as seen:
            img, kept = image_features(model, _normalise(images[idx]), cfg.patch_keep, generator)
            txt = model.get_text_features(**enc).pooler_output
            if dense_blocks:
                paths = value_paths(model, {l: seen[f"v{l}"] for l in dense_blocks})
                names_emb = model.get_text_features(**names_enc).pooler_output
        img = torch.nn.functional.normalize(img.float(), dim=-1)
        txt = torch.nn.functional.normalize(txt.float(), dim=-1)
        loss = contrastive_loss(img, txt, positives, model.logit_scale)
        kept_labels = labels[idx].gather(1, kept)
        # Dense naming (optional): every covered patch's value path in the read-out blocks (what
        # Ψᶜˡˢ reads) must name its object.
        dense = (
            dense_loss(model, paths, kept_labels, torch.nn.functional.normalize(names_emb.float(), dim=-1))
            if dense_blocks
            else torch.zeros(())
        )
        # Read-out regulariser: real CLIPs build the image embedding mainly in their last few
        # attention blocks (paper §3.1, Eq. 2) — the property API-CLIP's decomposition relies
        # on. Penalising the cls token's updates in earlier blocks gives our small model the
        # same structure; it stays a standard CLIPModel and inference is unchanged.
        updates = [seen[name][:, 0] for name in early]
        readout_penalty = torch.stack([u.float().pow(2).mean() for u in updates]).sum() if updates else torch.zeros(())
        # Shape head (optional): contrastive captions alone teach colour fast and shape hardly at
        # all (a linear probe found shape at 0.22, chance 0.17); this supervises shape at each patch.
        shape_loss = (
            patch_cross_entropy(shape_head(seen["residual"][:, 1:].float()), shape_labels(kept_labels))
            if shape_head is not None
            else torch.zeros(())
        )
        loss_total = (
            loss + cfg.readout_weight * readout_penalty + cfg.dense_weight * dense + cfg.shape_weight * shape_loss
        )
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss_total.backward()
        torch.nn.utils.clip_grad_norm_(trained.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        if step % 25 == 0 or step == cfg.steps - 1:
            log(
                f"step {step:5d}  loss {loss.item():.4f}  dense {dense.item():.4f}  shape {shape_loss.item():.4f}  "
                f"read-out penalty {readout_penalty.item():.4f}  lr {lr_at(step):.2e}  "
                f"scale {model.logit_scale.exp().item():.1f}  {time.perf_counter() - t_train:.0f} s"
            )
        if (step + 1) % cfg.eval_every == 0 or step == cfg.steps - 1:
            model.eval()
            r = retrieval_precision(model, tokenizer, eval_images, eval_objects)
            p = pointing_accuracy(model, tokenizer, pointing_seeds)
            entry = {"step": step + 1, "loss": round(loss.item(), 4), "retrieval": r, "pointing_reference": p}
            history.append(entry)
            resume.save(step + 1, trained, opt, rng, generator, history, time.perf_counter() - t_train)
            log(
                f"eval step {step + 1}: held-out retrieval precision@k {r['precision_at_k']:.3f} "
                f"(chance {r['chance']:.3f}), top-1 {r['top1']:.3f}; pointing (reference preset) {p:.3f}"
            )
            model.train()
    model.eval()
    record = training_record(cfg, n_params, len(tokenizer), history, t_start, t_train)
    save_checkpoint(model, tokenizer, cfg, out, record)
    resume.done()
    log(f"saved {out} ({record['total_seconds']:.0f} s in all)")
    return record


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m tools.shapes_training.train_clip --out DIR [--smoke] [--steps N] …``."""
    return run_training(train, TrainConfig, SMOKE, argv, __doc__.split("\n")[0])


if __name__ == "__main__":
    raise SystemExit(main())
