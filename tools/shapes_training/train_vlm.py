"""Train the shapes VLM: a stock ``transformers`` LlavaForConditionalGeneration on shapes VQA.

A genuine LLaVA: the shapes CLIP's vision tower (initialised from the shipped shapes CLIP and
fine-tuned), LLaVA's two-layer projector, a small Llama decoder, a word-level tokenizer with a
LLaVA-1.5-style chat template, and a LlavaProcessor — saved in Hugging Face format, loadable by
``from_pretrained(directory)`` like any checkpoint.

Training data are multi-turn conversations about training scenes (:mod:`attnprompt.shapes.splits`): one image,
then several questions of every kind (colour of a named shape, shape of a named colour,
counting, existence incl. absent objects, left/right), each answered with one word; the loss
covers the answers only. Held-out accuracy per question kind is printed and saved.

Two optional losses act on the decoder's own attention (eager attention while training; the saved
model runs SDPA like any checkpoint): ``--hop1-weight`` makes one head attend, where each answer is
predicted, to its question's colour/shape words; ``--point-weight`` makes the layer that API-VLM
reads by default (``--point-layer 0.5``; its head mean, or one head with ``--point-head``) attend to
the objects the question names (grounding supervision from the scene generator's masks). What they change:
``docs/research/shapes.md``.

    python -m tools.shapes_training.train_vlm --out src/attnprompt/shapes/models/shapes-vlm --clip CLIP2 \\
        --point-weight 4 --hop1-weight 1 --shape-first 700 --eval-every 1100

(the shipped recipe: ``CLIP2`` is the tower made by ``train_clip`` and ``finetune_tower``; see this
folder's README).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from attnprompt.checks import parse_layers
from attnprompt.errors import InputError
from attnprompt.shapes import COLORS, PLURALS, SHAPES, make_questions, make_scene
from attnprompt.shapes.splits import TRAINING_START, VLM_EVAL

from .common import Resumable, run_training, save_directory, training_record, usable_cpus, warmup_cosine
from .testbed import accuracy_by_kind, training_seeds
from .train_clip import MEAN, STD

CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'system' %}"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{{ c['text'] }}{% endfor %}{% endif %} "
    "{% elif m['role'] == 'user' %}USER: "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{{ '\\n' }}{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %} "
    "{% else %}ASSISTANT: "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}"
    "{% for c in m['content'] %}{{ c['text'] }}{% endfor %}{% endif %}"
    "</s>"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

#: The words by which a question names objects: colours, shapes and plural shapes.
NAMING_WORDS: tuple[str, ...] = tuple(COLORS) + tuple(SHAPES) + tuple(PLURALS.values())

#: Words of the API paper's prompts (strategies), so they tokenize to known words.
PROMPT_WORDS = (
    "let's think step by step hint the answer is related to unmasked visible regions for this image question "
    "evaluate whether of alone can provide an if they suffice respond with letter t f do not support reply your "
    "previous quality and a new please yes or no write general description"
).split()


@dataclasses.dataclass
class VlmTrainConfig:
    """Everything that determines the trained VLM (recorded in ``training.json``).

    ``point_weight``/``point_layer``/``point_head`` and ``hop1_weight``/``hop1_layer``: the
    attention losses (:func:`pointing_loss`, :func:`naming_loss`; 0 = off); ``point_layer`` is a
    fraction of the depth or an index, as API-VLM's ``layers``; ``point_head`` −1 supervises the
    mean over the heads (the map API-VLM reads), else that one head. ``shape_first``: the first
    that many steps ask only questions that name an object by its shape (kind "color"), a
    curriculum that teaches selection by shape before selection by colour.

    >>> VlmTrainConfig(out="x").hidden
    256
    """

    out: str
    clip: str = "shapes"
    image_size: int = 128
    steps: int = 2200
    batch_size: int = 16
    turns: int = 6
    describe_rate: float = 0.5
    lr: float = 1e-3
    vision_lr: float = 2e-4
    warmup: int = 60
    weight_decay: float = 0.05
    n_scenes: int = 50000
    hidden: int = 256
    layers: int = 4
    heads: int = 4
    intermediate: int = 768
    seed: int = 0
    eval_every: int = 550
    eval_scenes: int = 200
    bf16: bool = True
    point_weight: float = 0.0
    point_layer: str = "0.5"
    point_head: int = -1
    hop1_weight: float = 0.0
    hop1_layer: int = 0
    shape_first: int = 0


SMOKE = dict(
    steps=3,
    batch_size=2,
    turns=2,
    n_scenes=8,
    hidden=32,
    layers=1,
    heads=2,
    intermediate=64,
    eval_every=2,
    eval_scenes=4,
    image_size=48,
)


def vocabulary() -> list[str]:
    """Every word the shapes VLM needs: questions, answers, chat roles, API prompts.

    >>> "star" in vocabulary() and "yes" in vocabulary()
    True
    """
    words: set[str] = set()

    def add(text: str) -> None:
        for w in text.lower().replace("?", " ? ").replace(".", " . ").replace(",", " , ").replace(":", " : ").split():
            words.add(w)

    for seed in range(400):
        scene = make_scene(seed, n_objects=5, size=96)
        for qa in make_questions(scene, seed):
            add(qa.question)
            add(qa.answer)
    for w in list(COLORS) + list(SHAPES) + list(PLURALS.values()) + [str(i) for i in range(13)] + PROMPT_WORDS:
        add(w)
    add("user : assistant : yes no \" ' ( ) ! describe the image .")
    return sorted(words)


def build_tokenizer():
    """A word-level tokenizer (lower-cased, punctuation split) with the chat template.

    >>> tok = build_tokenizer()
    >>> tok.tokenize("What colour is the star?")
    ['what', 'colour', 'is', 'the', 'star', '?']
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>", "<image>"]
    vocab = {t: i for i, t in enumerate(specials + vocabulary())}
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tk.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tk.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok = PreTrainedTokenizerFast(
        tokenizer_object=tk,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<image>"],
        padding_side="left",
        model_max_length=2048,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def vision_tower_weights(clip_model, image_size: int) -> dict:
    """The CLIP vision tower's weights for input size ``image_size``: position embeddings of the
    patch grid resized (bicubic) to the new grid, everything else copied.
    """
    import torch

    state = {k: v.clone() for k, v in clip_model.vision_model.state_dict().items()}
    vc = clip_model.config.vision_config
    old, new = vc.image_size // vc.patch_size, image_size // vc.patch_size
    if old != new:
        pos = state["embeddings.position_embedding.weight"]  # (1 + old², D)
        grid = pos[1:].reshape(1, old, old, -1).permute(0, 3, 1, 2)
        grid = torch.nn.functional.interpolate(grid, size=(new, new), mode="bicubic", align_corners=False)
        state["embeddings.position_embedding.weight"] = torch.cat(
            [pos[:1], grid.permute(0, 2, 3, 1).reshape(new * new, -1)]
        )
        state.pop("embeddings.position_ids", None)
    return state


def vision_tower(clip_model, image_size: int):
    """The CLIP's vision tower as a stand-alone ``CLIPVisionModel`` (eval mode) at input ``image_size``."""
    from transformers import CLIPVisionConfig, CLIPVisionModel

    vc = CLIPVisionConfig(**{**clip_model.config.vision_config.to_dict(), "image_size": image_size})
    tower = CLIPVisionModel(vc).eval()
    tower.load_state_dict(vision_tower_weights(clip_model, image_size), strict=False)
    return tower


def training_scene(seed: int, image_size: int):
    """(scene, generator) as training draws them: 2–6 objects at ``image_size``, 160 or 224 px; the
    generator then draws the scene's questions.

    >>> scene, rng = training_scene(TRAINING_START, 128); 2 <= len(scene.objects) <= 6
    True
    """
    rng = np.random.default_rng(seed)
    return make_scene(int(seed), n_objects=int(rng.integers(2, 7)), size=int(rng.choice([image_size, 160, 224]))), rng


def held_out_scene(seed: int, image_size: int = 224):
    """(scene, generator) as the held-out evaluation draws them: 3–6 objects at ``image_size``.

    >>> scene, rng = held_out_scene(VLM_EVAL.start); 3 <= len(scene.objects) <= 6
    True
    """
    rng = np.random.default_rng(seed)
    return make_scene(int(seed), n_objects=int(rng.integers(3, 7)), size=image_size), rng


def build_model(cfg: VlmTrainConfig, tokenizer, clip_model):
    """A LlavaForConditionalGeneration whose vision tower is the shapes CLIP's (at ``cfg.image_size``)."""
    from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    vc = clip_model.config.vision_config.__class__(
        **{**clip_model.config.vision_config.to_dict(), "image_size": cfg.image_size}
    )
    grid = vc.image_size // vc.patch_size
    config = LlavaConfig(
        vision_config=vc.to_dict(),
        text_config=dict(
            model_type="llama",
            vocab_size=len(tokenizer),
            hidden_size=cfg.hidden,
            intermediate_size=cfg.intermediate,
            num_hidden_layers=cfg.layers,
            num_attention_heads=cfg.heads,
            num_key_value_heads=cfg.heads,
            max_position_embeddings=1024,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            tie_word_embeddings=True,
        ),
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        image_seq_length=grid * grid,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
    )
    model = LlavaForConditionalGeneration(config)
    missing, unexpected = model.model.vision_tower.load_state_dict(
        vision_tower_weights(clip_model, cfg.image_size), strict=False
    )
    if unexpected or any(not k.endswith("position_ids") for k in missing):
        raise RuntimeError(f"vision tower weights do not fit: missing {missing}, unexpected {unexpected}")
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    ip = CLIPImageProcessorPil(
        size={"shortest_edge": vc.image_size},
        crop_size={"height": vc.image_size, "width": vc.image_size},
        image_mean=list(MEAN),
        image_std=list(STD),
    )
    processor = LlavaProcessor(
        image_processor=ip,
        tokenizer=tokenizer,
        patch_size=vc.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor


def feature_statistics(model, processor, seeds: Sequence[int], image_size: int):
    """Per-dimension mean and spread of the vision features the projector reads (one value per
    channel, over all patches of the scenes ``seeds``).
    """
    import torch

    images = [conversation(int(s), 1, image_size, 0.0)[0].image for s in seeds]
    x = processor.image_processor(images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        hidden = model.model.vision_tower(x, output_hidden_states=True).hidden_states[model.config.vision_feature_layer]
    feats = hidden[:, 1:].reshape(-1, hidden.shape[-1]).double()  # "default" strategy drops the cls token
    return feats.mean(0).float(), feats.std(0).clamp_min(1e-3).float()


class Standardized:
    """Feed the projector standardised features, ``(x − mean) / sd``, while training.

    CLIP's hidden states are not normalised (here their norm is ~50 and mostly a shared offset,
    against ~0.5 for word embeddings), which makes the projector's updates noisy. Standardising
    is affine, so :meth:`fold` bakes it exactly into the first projector layer afterwards: the
    saved model is a stock LLaVA that reads raw features.
    """

    def __init__(self, model, mean, sd):
        self.projector, self.mean, self.sd = model.model.multi_modal_projector, mean, sd
        self.handle = self.projector.register_forward_pre_hook(lambda _m, args: ((args[0] - self.mean) / self.sd,))

    def fold(self) -> None:
        """Remove the hook and rewrite linear_1 so that linear_1'(x) = linear_1((x − mean) / sd)."""
        import torch

        self.handle.remove()
        lin = self.projector.linear_1
        with torch.no_grad():
            w = lin.weight / self.sd  # (out, in) · diag(1/sd)
            if lin.bias is not None:
                lin.bias -= w @ self.mean
            lin.weight.copy_(w)


def conversation(
    seed: int, turns: int, image_size: int, describe_rate: float = 0.5, kinds: Sequence[str] | None = None
) -> tuple[Any, list[dict[str, Any]], list[str], list[tuple[int, ...]]]:
    """(scene, chat messages, kinds, targets) for one training scene: ``turns`` questions with
    one-word answers, preceded with probability ``describe_rate`` by a description of every
    object; ``targets`` are the indices of the objects each turn's question is about (empty for
    the description and for absent objects). ``kinds`` restricts the question kinds (up to
    ``turns`` questions of them; fewer when the scene does not support more).

    >>> scene, messages, kinds, targets = conversation(TRAINING_START, 3, 96)
    >>> [m["role"] for m in messages][:2], len(kinds) <= 4, len(targets) == len(kinds)
    (['user', 'assistant'], True, True)
    """
    scene, rng = training_scene(seed, image_size)
    qas = make_questions(scene, rng, kinds, per_kind=2 if kinds is None else turns)
    order = rng.permutation(len(qas))[:turns]
    turns_: list[tuple[str, str, str, tuple[int, ...]]] = [
        (qas[int(i)].question, qas[int(i)].answer, qas[int(i)].kind, tuple(qas[int(i)].targets)) for i in order
    ]
    # a scene with no question of the restricted kinds is still a (described) example
    if rng.random() < describe_rate or not turns_:
        # LLaVA's first stage aligns images and text with captions; here a description that names
        # every object, left to right, gives dense supervision on each object's colour, shape and
        # place — what every question kind then needs.
        objects = sorted(scene.objects, key=lambda o: o.center[0])
        turns_.insert(0, ("Describe the image.", " , ".join(f"{o.color} {o.shape}" for o in objects), "describe", ()))
    messages: list[dict[str, Any]] = []
    for k, (question, answer, _, _) in enumerate(turns_):
        content = ([{"type": "image"}] if k == 0 else []) + [{"type": "text", "text": question}]
        messages.append({"role": "user", "content": content})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return scene, messages, [t[2] for t in turns_], [t[3] for t in turns_]


def object_coverage(scene, targets: Sequence[int], grid: int) -> np.ndarray:
    """The objects ``targets`` as a distribution over a ``grid``×``grid`` patch grid (row-major, as
    the image tokens): each patch's share of their visible pixels.

    >>> scene = make_scene(0, n_objects=2, size=64)
    >>> cov = object_coverage(scene, [0], 8); cov.shape, round(float(cov.sum()), 6)
    ((64,), 1.0)
    """
    from PIL import Image

    mask = np.any([scene.objects[i].mask for i in targets], axis=0)
    # a box filter gives each patch the fraction of its pixels that the objects cover
    cov = np.asarray(Image.fromarray(mask.astype(np.float32)).resize((grid, grid), Image.BOX), dtype=np.float64).ravel()
    return cov / cov.sum()  # positive: every object keeps ≥ 60 % of its area visible (make_scene)


def answer_spans(labels_row) -> list[tuple[int, int]]:
    """(start, end) of each supervised answer in one row of labels (end exclusive), in order.

    >>> import torch
    >>> answer_spans(torch.tensor([-100, -100, 7, 3, -100, 9, 3]))
    [(2, 4), (5, 7)]
    """
    spans, start = [], None
    for i, v in enumerate(labels_row.tolist()):
        if v != -100 and start is None:
            start = i
        elif v == -100 and start is not None:
            spans.append((start, i))
            start = None
    if start is not None:
        spans.append((start, len(labels_row)))
    return spans


def naming_loss(attention, input_ids, labels, naming_ids, head: int = 0):
    """−log of the attention mass that one head puts, at each position predicting an answer token,
    on the naming words (colour and shape words) of that answer's own question.

    This hands the decoder the first of the two hops a question needs (bring the named word to the
    answer; then find it in the image); which image tokens to read stays to be learned.
    """
    import torch

    rows, positions, masks = [], [], []
    for b in range(input_ids.shape[0]):
        previous_end = 0
        for start, end in answer_spans(labels[b]):
            mask = torch.zeros(input_ids.shape[1], dtype=torch.bool)
            mask[previous_end:start] = torch.isin(input_ids[b, previous_end:start], naming_ids)
            previous_end = end
            if mask.any():
                rows += [b] * (end - start)
                positions += list(range(start - 1, end - 1))
                masks += [mask] * (end - start)
    if not rows:
        return attention.new_zeros(()).float()
    # one gather of the needed query rows: indexing the B×H×T×T tensor once per turn would make
    # the backward pass fill a full-size zero gradient for every turn
    att = attention[:, head][torch.tensor(rows), torch.tensor(positions)].float()  # (N, T)
    mass = (att * torch.stack(masks)).sum(-1)
    return -mass.clamp_min(1e-8).log().mean()


def pointing_loss(attention, input_ids, labels, scenes, targets, image_token_id: int, head: int = -1):
    """Cross-entropy between a layer's answer-to-image attention and the named objects.

    ``attention``: one decoder layer's probabilities (B, H, T, T), of which ``head`` (−1: the mean
    over heads, the map API-VLM reads) is scored; for every answered turn whose
    question names objects, each position that predicts a token of the answer attends (renormalised
    over the image tokens, as API-VLM's reference variant reads it) to the image-token grid, and is
    scored against :func:`object_coverage` of those objects. ``targets[b]`` lists the objects of each
    turn of row b, in the order of its answers.
    """
    import torch

    rows, positions, image_rows, dists = [], [], [], []
    for b in range(input_ids.shape[0]):
        image_pos = (input_ids[b] == image_token_id).nonzero().squeeze(1)
        grid = int(round(len(image_pos) ** 0.5))
        for (start, end), objs in zip(answer_spans(labels[b]), targets[b]):
            if not objs:
                continue
            target = torch.as_tensor(object_coverage(scenes[b], objs, grid), dtype=torch.float32)
            for pos in range(start - 1, end - 1):
                rows.append(b)
                positions.append(pos)
                image_rows.append(image_pos)
                dists.append(target)
    if not rows:
        return attention.new_zeros(()).float()
    heads = attention.mean(1) if head == -1 else attention[:, head]
    att = heads[torch.tensor(rows), torch.tensor(positions)].float()  # (N, T), one gather
    att = torch.gather(att, 1, torch.stack(image_rows))  # each row's image tokens, in grid order
    att = att / att.sum(-1, keepdim=True)
    return -(torch.stack(dists) * att.clamp_min(1e-8).log()).sum(-1).mean()


def answer_labels(input_ids, tokenizer):
    """Labels that supervise only the assistant's answers (each answer plus its ``</s>``)."""
    import torch

    assistant = tokenizer.convert_tokens_to_ids("assistant")
    colon = tokenizer.convert_tokens_to_ids(":")
    eos = tokenizer.eos_token_id
    labels = torch.full_like(input_ids, -100)
    for b, row in enumerate(input_ids.tolist()):
        inside = False
        for i, t in enumerate(row):
            if inside:
                labels[b, i] = t
                if t == eos:
                    inside = False
            elif t == colon and i > 0 and row[i - 1] == assistant:
                inside = True
    return labels


def evaluate(backend, seeds: Sequence[int], image_size: int = 224) -> dict[str, float]:
    """Held-out accuracy per question kind (exact first-word match) with a LocalVLM backend."""
    from attnprompt.types import Request

    requests, kinds, answers = [], [], []
    for seed in seeds:
        scene, rng = held_out_scene(seed, image_size)
        for qa in make_questions(scene, rng, per_kind=1):
            requests.append(Request.single(scene.image, qa.question, max_new_tokens=3))
            kinds.append(qa.kind)
            answers.append(qa.answer)
    return accuracy_by_kind(kinds, [g.text for g in backend.answer(requests)], answers)


def train(cfg: VlmTrainConfig, log=print) -> dict[str, Any]:
    """Train and save; returns the record written to ``training.json``."""
    import torch

    from attnprompt.backends.local import LocalVLM
    from attnprompt.models import LoadedVlm, load_clip

    if not 0 <= cfg.shape_first <= cfg.steps:
        raise InputError(f"--shape-first {cfg.shape_first}: expected 0 to --steps ({cfg.steps}) steps")

    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(usable_cpus())
    clip = load_clip(cfg.clip, device="cpu")
    tokenizer = build_tokenizer()
    model, processor = build_model(cfg, tokenizer, clip.model)
    image_size = cfg.image_size
    mean, sd = feature_statistics(model, processor, range(TRAINING_START, TRAINING_START + 64), image_size)
    standardized = Standardized(model, mean, sd)
    attentions = bool(cfg.point_weight or cfg.hop1_weight)
    if attentions:
        # attention probabilities are needed for the auxiliary losses: eager attention while training
        model.model.language_model.set_attn_implementation("eager")
    # bad layer choices fail here with the valid range, not mid-training
    point_layer = parse_layers(cfg.point_layer, cfg.layers, allow_fraction=True)[0]
    hop1_layer = parse_layers(cfg.hop1_layer, cfg.layers)[0]
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    naming_ids = torch.tensor(tokenizer.convert_tokens_to_ids(list(NAMING_WORDS)))
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"model: {n_params / 1e6:.2f} M parameters, vocab {len(tokenizer)}, "
        f"{model.config.image_seq_length} image tokens, {cfg.layers}-layer decoder of width {cfg.hidden}"
    )

    vision = list(model.model.vision_tower.parameters())
    vision_ids = {id(p) for p in vision}
    rest = [p for p in model.parameters() if id(p) not in vision_ids]
    opt = torch.optim.AdamW(
        [
            {"params": rest, "lr": cfg.lr, "base": cfg.lr},
            {"params": vision, "lr": cfg.vision_lr, "base": cfg.vision_lr},
        ],
        betas=(0.9, 0.98),
        eps=1e-6,
        weight_decay=cfg.weight_decay,
    )

    seeds = training_seeds("vlm", cfg.seed, cfg.n_scenes)
    rng = np.random.default_rng(cfg.seed)
    eval_seeds = VLM_EVAL.seeds(cfg.eval_scenes)
    loaded = LoadedVlm(model, processor, "llava", "training", "")
    resume = Resumable(Path(cfg.out), cfg)
    start, history, elapsed = resume.load(model, opt, rng)
    if start:
        log(f"resuming the interrupted run at step {start} (state in {resume.path})")
    t_train = time.perf_counter() - elapsed
    t_start -= elapsed
    for step in range(start, cfg.steps):
        model.train()
        kinds = ("color",) if step < cfg.shape_first else None
        batch = [
            conversation(int(s), cfg.turns, image_size, cfg.describe_rate, kinds)
            for s in rng.choice(seeds, cfg.batch_size, replace=False)
        ]
        texts = [processor.apply_chat_template(m, tokenize=False) for _, m, _, _ in batch]
        tokenizer.padding_side = "right"  # positions 0.. for real tokens, as at generation time
        enc = processor(text=texts, images=[sc.image for sc, _, _, _ in batch], padding=True, return_tensors="pt")
        tokenizer.padding_side = "left"
        labels = answer_labels(enc["input_ids"], tokenizer)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            out = model(**enc, labels=labels, output_attentions=attentions)
            loss = out.loss
            if cfg.point_weight:
                point = pointing_loss(
                    out.attentions[point_layer],
                    enc["input_ids"],
                    labels,
                    [sc for sc, _, _, _ in batch],
                    [t for _, _, _, t in batch],
                    image_id,
                    head=cfg.point_head,
                )
                loss = loss + cfg.point_weight * point
            if cfg.hop1_weight:
                hop1 = naming_loss(out.attentions[hop1_layer], enc["input_ids"], labels, naming_ids)
                loss = loss + cfg.hop1_weight * hop1
        for g in opt.param_groups:
            g["lr"] = g["base"] * warmup_cosine(step, cfg.warmup, cfg.steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step % 25 == 0 or step == cfg.steps - 1:
            extra = (f"  pointing {point.item():.4f}" if cfg.point_weight else "") + (
                f"  naming {hop1.item():.4f}" if cfg.hop1_weight else ""
            )
            log(f"step {step:5d}  loss {out.loss.item():.4f}{extra}  {time.perf_counter() - t_train:.0f} s")
        if (step + 1) % cfg.eval_every == 0 or step == cfg.steps - 1:
            model.eval()
            acc = evaluate(LocalVLM(loaded, batch_size=16), eval_seeds)
            history.append({"step": step + 1, "loss": round(out.loss.item(), 4), "accuracy": acc})
            resume.save(step + 1, model, opt, rng, None, history, time.perf_counter() - t_train)
            log(f"eval step {step + 1}: held-out accuracy " + ", ".join(f"{k} {v:.3f}" for k, v in acc.items()))
    model.eval()
    model.model.language_model.set_attn_implementation("sdpa")
    standardized.fold()
    record = training_record(cfg, n_params, len(tokenizer), history, t_start, t_train)
    save(model, processor, Path(cfg.out), record)
    resume.done()
    log(f"saved {cfg.out} ({record['total_seconds']:.0f} s in all)")
    return record


def save(model, processor, out: Path, record: dict[str, Any]) -> None:
    """Save model + processor in Hugging Face format atomically, with ``training.json``."""
    save_directory(out, lambda tmp: (model.save_pretrained(tmp), processor.save_pretrained(tmp)), record)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m tools.shapes_training.train_vlm --out DIR [--smoke] [--steps N] …``."""
    return run_training(train, VlmTrainConfig, SMOKE, argv, __doc__.split("\n")[0])


if __name__ == "__main__":
    sys.exit(main())
