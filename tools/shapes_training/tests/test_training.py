"""The training tools run (tiny smoke configurations), and their pieces do what they claim."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from builders import CLIP_BPE
from transformers import CLIPTokenizer

from tools.shapes_training.subset_tokenizer import build_subset_tokenizer
from tools.shapes_training.train_clip import (
    SMOKE,
    TrainConfig,
    contrastive_loss,
    dense_loss,
    hard_negative,
    image_features,
    matches,
    patch_labels,
    positives_matrix,
    sample_caption,
    tokenizer_corpus,
    train,
    value_paths,
)


def test_subset_tokenizer_reproduces_clip_on_the_corpus(tmp_path):
    texts = tokenizer_corpus()
    sub = build_subset_tokenizer(CLIP_BPE, texts, tmp_path / "tok")
    full = CLIPTokenizer.from_pretrained(str(CLIP_BPE))
    assert len(sub) < 1000 < len(full)
    mismatched = [t for t in texts[::7] if sub.tokenize(t) != full.tokenize(t)]
    assert mismatched == []
    # any other word still tokenizes, into smaller pieces of CLIP's own vocabulary
    pieces = sub.tokenize("a giraffe")
    assert pieces[0] == "a</w>" and "".join(pieces[1:]).replace("</w>", "") == "giraffe"


def test_positives_are_exactly_the_captions_true_of_each_image():
    rng = np.random.default_rng(0)
    objs = [[(int(rng.integers(8)), int(rng.integers(6))) for _ in range(rng.integers(2, 7))] for _ in range(40)]
    caps = [sample_caption(o, rng, k) for o in objs for k in range(len(o))]
    caps += [h for h in (hard_negative(o, rng) for o in objs) if h]
    needs = [n for _, n in caps]
    expected = np.array([[matches(o, n) for n in needs] for o in objs])
    assert (positives_matrix(objs, needs) == expected).all()
    for o in objs:  # a hard negative shares a present colour but names an absent object
        neg = hard_negative(o, np.random.default_rng(1))
        if neg:
            assert neg[1] not in set(o) and neg[1][0] in {c for c, _ in o}


def test_loss_handles_captions_true_of_no_image():
    img = torch.nn.functional.normalize(torch.randn(3, 4), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(4, 4), dim=-1)
    pos = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], dtype=torch.bool)  # caption 3: a hard negative
    loss = contrastive_loss(img, txt, pos, torch.tensor(2.0))
    assert torch.isfinite(loss)


def test_patch_dropout_keep_all_equals_the_stock_forward(tmp_path):
    from builders import build_tiny_clip
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(build_tiny_clip(tmp_path / "c", "b")).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        stock = model.get_image_features(pixel_values=x).pooler_output
        # keeping every patch but in a random order: attention is permutation-equivariant
        emb, kept = image_features(model, x, 0.999999)
        torch.testing.assert_close(emb, stock, rtol=1e-5, atol=1e-5)
        assert kept.tolist() == [list(range(16))] * 2  # 32 px / patch 8 → 16 patches, all kept
        emb, kept = image_features(model, x, 0.5, torch.Generator().manual_seed(0))
        assert emb.shape == stock.shape and kept.shape == (2, 8)
        assert all(len(set(row)) == 8 and 0 <= min(row) and max(row) < 16 for row in kept.tolist())


def test_patch_labels_name_the_object_covering_each_cell():
    from attnprompt.shapes import SHAPES, make_scene
    from tools.shapes_training.train_clip import COLOR_NAMES

    scene = make_scene(7, n_objects=5, size=96)
    labels = patch_labels(scene, 12)  # 8-px cells
    cover = {
        COLOR_NAMES.index(o.color) * len(SHAPES) + SHAPES.index(o.shape): o.mask.reshape(12, 8, 12, 8).mean((1, 3))
        for o in scene.objects
    }
    assert (labels >= 0).sum() > 0
    for (i, j), lab in np.ndenumerate(labels):
        best = max(cover, key=lambda k: cover[k][i, j])
        if cover[best][i, j] >= 0.25:
            assert lab == best  # the most-covering object wins
        else:
            assert lab == -1


def test_value_paths_are_each_tokens_value_through_the_out_projection(tmp_path):
    """The hooked paths equal v_proj(LayerNorm1(block input)) · W_oᵀ, recomputed from the
    hidden states; with every head's attention forced uniform, Σ_t A_t·path_t + bias is the
    block's real cls attention output."""
    from builders import build_tiny_clip
    from transformers import CLIPModel

    from attnprompt.attribution.clip import cls_contributions

    model = CLIPModel.from_pretrained(build_tiny_clip(tmp_path / "c", "b")).eval().double()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    layers = model.vision_model.encoder.layers
    with torch.no_grad():  # transformers installs its own output-capturing hooks on first use
        model.vision_model(pixel_values=x, output_hidden_states=True)
    before = {id(m): len(m._forward_hooks) for m in model.modules()}
    from attnprompt.capture import capture_outputs

    with torch.no_grad(), capture_outputs({l: layers[l].self_attn.v_proj for l in (0, len(layers) - 1)}) as values:
        hidden = model.vision_model(pixel_values=x, output_hidden_states=True).hidden_states
    paths = value_paths(model, values)
    assert sorted(paths) == [0, len(layers) - 1]
    for l, path in paths.items():
        att = layers[l].self_attn
        expected = att.v_proj(layers[l].layer_norm1(hidden[l])) @ att.out_proj.weight.T
        torch.testing.assert_close(path, expected, rtol=1e-10, atol=1e-10)
        v = att.v_proj(layers[l].layer_norm1(hidden[l]))
        zeros = torch.zeros_like(v)  # q = 0 → uniform attention in every head
        eta = cls_contributions(zeros, zeros, v, att.out_proj.weight, att.out_proj.bias, att.num_heads, att.scale)
        t = path.shape[1]
        torch.testing.assert_close(eta, path / t + att.out_proj.bias / t, rtol=1e-10, atol=1e-12)
    assert {id(m): len(m._forward_hooks) for m in model.modules()} == before  # our hooks removed


def test_dense_loss_rewards_paths_that_point_at_their_names(tmp_path):
    from builders import build_tiny_clip
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(build_tiny_clip(tmp_path / "c", "b")).eval().double()
    d = model.config.vision_config.hidden_size
    names = torch.nn.functional.normalize(torch.randn(5, model.config.projection_dim, dtype=torch.float64), dim=-1)
    # paths whose projection is exactly name k: solve projection(gamma * centred u) = name
    gamma = model.vision_model.post_layernorm.weight
    w = model.visual_projection.weight  # E×D
    centring = torch.eye(d, dtype=torch.float64) - 1.0 / d
    a = w @ torch.diag(gamma) @ centring
    u = torch.linalg.lstsq(a, names.T).solution.T  # 5×D
    labels = torch.tensor([[0, 1, 2, 3, 4, -1]])
    good = torch.cat([torch.zeros(1, 1, d, dtype=torch.float64), u[None], u[None, :1]], 1)  # cls + 6 patches
    shuffled = torch.cat([torch.zeros(1, 1, d, dtype=torch.float64), u[None, [1, 2, 3, 4, 0]], u[None, :1]], 1)
    right = dense_loss(model, {5: good}, labels, names)
    wrong = dense_loss(model, {5: shuffled}, labels, names)
    assert right.item() < wrong.item()
    # the unlabelled last patch does not count: changing it changes nothing
    good2 = good.clone()
    good2[0, -1] = 100.0
    torch.testing.assert_close(dense_loss(model, {5: good2}, labels, names), right)
    # a batch with no covered patch contributes exactly zero (not NaN)
    assert dense_loss(model, {5: good}, torch.full_like(labels, -1), names).item() == 0.0


def test_clip_training_smoke_run_saves_a_loadable_checkpoint(tmp_path):
    out = tmp_path / "clip"
    record = train(TrainConfig(out=str(out), bpe=str(CLIP_BPE), **SMOKE), log=lambda s: None)
    assert len(record["history"]) >= 1 and record["config"]["steps"] == SMOKE["steps"]
    assert json.loads((out / "training.json").read_text())["vocab_size"] == record["vocab_size"]
    from attnprompt.api import annotate

    ann = annotate(np.zeros((40, 50, 3), np.uint8), "the red star", model=str(out))
    assert ann.heatmap.shape == (40, 50)


def test_clip_training_with_the_auxiliary_losses_saves_a_plain_clip(tmp_path):
    """The per-patch shape head and the dense naming loss train alongside and leave nothing
    behind: the checkpoint is a stock CLIPModel (resuming with them: the parametrised resume test)."""
    from safetensors.torch import load_file
    from transformers import CLIPModel

    out = tmp_path / "clip"
    cfg = dict(SMOKE, shape_weight=1.0, dense_weight=1.0)
    logs: list[str] = []
    train(TrainConfig(out=str(out), bpe=str(CLIP_BPE), **cfg), log=logs.append)
    shape_losses = [float(line.split(" shape ")[1].split()[0]) for line in logs if line.startswith("step")]
    assert shape_losses and all(0 < v < 5 for v in shape_losses)  # the head really trained
    keys = load_file(str(out / "model.safetensors")).keys()
    assert not any("shape_head" in k for k in keys)
    CLIPModel.from_pretrained(str(out))  # loads with no missing or unexpected weights


@pytest.mark.parametrize("aux", [{}, {"point_weight": 1.0, "hop1_weight": 1.0}], ids=["plain", "attention-losses"])
def test_vlm_training_smoke_run_saves_a_loadable_llava(tmp_path, aux):
    from attnprompt.backends.local import LocalVLM
    from tools.shapes_training.train_vlm import SMOKE as VLM_SMOKE
    from tools.shapes_training.train_vlm import VlmTrainConfig
    from tools.shapes_training.train_vlm import train as train_vlm

    clip = tmp_path / "clip"
    train(TrainConfig(out=str(clip), bpe=str(CLIP_BPE), **SMOKE), log=lambda s: None)
    out = tmp_path / "vlm"
    lines = []
    record = train_vlm(VlmTrainConfig(out=str(out), clip=str(clip), **VLM_SMOKE, **aux), log=lines.append)
    assert set(record["final"]["accuracy"]) >= {"color", "shape", "count", "exists", "left_of", "all"}
    # the auxiliary losses are logged when on; the saved model runs SDPA like any checkpoint
    assert any("pointing" in line and "naming" in line for line in lines) == bool(aux)
    assert "eager" not in (out / "config.json").read_text()
    backend = LocalVLM.from_pretrained(str(out), device="cpu")
    answer = backend.ask(np.zeros((64, 64, 3), np.uint8) + 100, "What colour is the star?", max_new_tokens=2)
    assert answer.ok


def test_vlm_labels_supervise_only_the_answers():
    from tools.shapes_training.train_vlm import answer_labels, build_tokenizer

    tok = build_tokenizer()
    text = "USER: What colour is the star? ASSISTANT: red</s>USER: How many stars are there? ASSISTANT: 2</s>"
    ids = tok(text, return_tensors="pt")["input_ids"]
    labels = answer_labels(ids, tok)[0].tolist()
    supervised = tok.convert_ids_to_tokens([t for t, lab in zip(ids[0].tolist(), labels) if lab != -100])
    assert supervised == ["red", "</s>", "2", "</s>"]


def test_projector_standardisation_folds_exactly_into_a_stock_llava():
    """Training standardises vision features with a hook; the saved model must give the same
    image features with no hook, from raw features."""
    import torch
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration

    from tools.shapes_training.train_vlm import Standardized

    torch.manual_seed(0)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       image_size=16, patch_size=8).to_dict(),
        text_config=dict(model_type="llama", vocab_size=40, hidden_size=24, intermediate_size=48,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2),
        image_token_index=39, vision_feature_layer=-2, vision_feature_select_strategy="default",
    )
    model = LlavaForConditionalGeneration(config).double().eval()
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64)
    raw = model.model.vision_tower(x, output_hidden_states=True).hidden_states[-2][:, 1:]
    mean, sd = torch.randn(16, dtype=torch.float64) * 5, torch.rand(16, dtype=torch.float64) + 0.5
    s = Standardized(model, mean, sd)
    with torch.no_grad():
        hooked = model.model.multi_modal_projector(raw)
        expected = model.model.multi_modal_projector.linear_2(
            model.model.multi_modal_projector.act(model.model.multi_modal_projector.linear_1((raw - mean) / sd)))
        s.fold()
        folded = model.model.multi_modal_projector(raw)
    torch.testing.assert_close(hooked, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(folded, hooked, rtol=1e-10, atol=1e-10)
    assert not model.model.multi_modal_projector._forward_pre_hooks


class _Interrupt(Exception):
    pass


def _interrupt_at(prefix: str):
    def log(message: str) -> None:
        if message.startswith(prefix):
            raise _Interrupt(message)

    return log


def _weights(directory) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


@pytest.mark.parametrize("aux", [{}, {"shape_weight": 1.0, "dense_weight": 1.0}], ids=["plain", "auxiliary-losses"])
def test_interrupted_clip_training_resumes_to_the_same_weights(tmp_path, aux):
    cfg = dict(SMOKE, steps=4, eval_every=2, **aux)
    straight = tmp_path / "straight"
    train(TrainConfig(out=str(straight), bpe=str(CLIP_BPE), **cfg), log=lambda s: None)

    out = tmp_path / "resumed"
    # steps 0-1 and the evaluation after them (state saved), then step 2 ran; killed at step 3
    with pytest.raises(_Interrupt):
        train(TrainConfig(out=str(out), bpe=str(CLIP_BPE), **cfg), log=_interrupt_at("step     3"))
    assert not out.exists() and (tmp_path / "resumed.resume.pt").exists()
    messages: list[str] = []
    record = train(TrainConfig(out=str(out), bpe=str(CLIP_BPE), **cfg), log=messages.append)
    assert any("resuming the interrupted run at step 2" in m for m in messages)
    assert [h["step"] for h in record["history"]] == [2, 4]  # nothing lost, nothing twice
    assert not (tmp_path / "resumed.resume.pt").exists()
    a, b = _weights(straight), _weights(out)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def test_resuming_with_another_configuration_is_refused(tmp_path):
    import pytest

    cfg = dict(SMOKE, steps=4, eval_every=2)
    out = tmp_path / "run"
    with pytest.raises(_Interrupt):
        train(TrainConfig(out=str(out), bpe=str(CLIP_BPE), **cfg), log=_interrupt_at("step     3"))
    with pytest.raises(ValueError, match="different configuration.*lr"):
        train(TrainConfig(out=str(out), bpe=str(CLIP_BPE), **dict(cfg, lr=1e-4)), log=lambda s: None)


def test_interrupted_vlm_training_resumes_to_the_same_weights(tmp_path):
    import pytest

    from tools.shapes_training.train_vlm import SMOKE as VLM_SMOKE
    from tools.shapes_training.train_vlm import VlmTrainConfig
    from tools.shapes_training.train_vlm import train as train_vlm

    clip = tmp_path / "clip"
    train(TrainConfig(out=str(clip), bpe=str(CLIP_BPE), **SMOKE), log=lambda s: None)
    cfg = dict(VLM_SMOKE, steps=4, eval_every=2)
    straight = tmp_path / "straight"
    train_vlm(VlmTrainConfig(out=str(straight), clip=str(clip), **cfg), log=lambda s: None)
    out = tmp_path / "resumed"
    with pytest.raises(_Interrupt):
        train_vlm(VlmTrainConfig(out=str(out), clip=str(clip), **cfg), log=_interrupt_at("step     3"))
    record = train_vlm(VlmTrainConfig(out=str(out), clip=str(clip), **cfg), log=lambda s: None)
    assert [h["step"] for h in record["history"]] == [2, 4]
    a, b = _weights(straight), _weights(out)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def _two_turn_batch(grid: int):
    """ids and labels of one two-turn conversation with grid² image tokens (the VLM's layout)."""
    from tools.shapes_training.train_vlm import answer_labels, build_tokenizer

    tok = build_tokenizer()
    image = " ".join(["<image>"] * grid * grid)
    text = (f"USER: {image} \nWhat colour is the star? ASSISTANT: red</s>"
            "USER: What shape is the blue object? ASSISTANT: square</s>")
    ids = tok(text, return_tensors="pt")["input_ids"]
    return tok, ids, answer_labels(ids, tok)


def test_answer_spans_are_the_supervised_runs():
    from tools.shapes_training.train_vlm import answer_spans

    tok, ids, labels = _two_turn_batch(2)
    spans = answer_spans(labels[0])
    assert [tok.convert_ids_to_tokens(ids[0, a:b].tolist()) for a, b in spans] == [["red", "</s>"], ["square", "</s>"]]


def test_naming_loss_is_zero_on_the_named_words_and_log_share_when_uniform():
    from tools.shapes_training.train_vlm import answer_spans, naming_loss

    tok, ids, labels = _two_turn_batch(2)
    naming_ids = torch.tensor(tok.convert_tokens_to_ids(["star", "blue", "red", "square"]))
    T = ids.shape[1]
    att = torch.zeros(1, 2, T, T)
    star = (ids[0] == tok.convert_tokens_to_ids("star")).nonzero().item()
    blue = (ids[0] == tok.convert_tokens_to_ids("blue")).nonzero().item()
    (s1, e1), (s2, e2) = answer_spans(labels[0])
    att[0, 0, s1 - 1 : e1 - 1, star] = 1.0  # each answer looks at its own question's word
    att[0, 0, s2 - 1 : e2 - 1, blue] = 1.0
    assert naming_loss(att, ids, labels, naming_ids).item() == pytest.approx(0.0, abs=1e-6)
    # the first answer's word "red" and its question's "star" are both naming words, but only words
    # of the answer's *own question* count: attending to the first answer "red" scores nothing
    att2 = att.clone()
    att2[0, 0, s2 - 1 : e2 - 1] = 0.0
    att2[0, 0, s2 - 1 : e2 - 1, s1] = 1.0
    assert naming_loss(att2, ids, labels, naming_ids).item() == pytest.approx(-np.log(1e-8) / 2, rel=1e-4)
    uniform = torch.full((1, 2, T, T), 1.0 / T)
    assert naming_loss(uniform, ids, labels, naming_ids).item() == pytest.approx(np.log(T), rel=1e-5)


def test_pointing_loss_is_the_cross_entropy_to_the_objects_coverage():
    from attnprompt.shapes import make_scene
    from tools.shapes_training.train_vlm import answer_spans, object_coverage, pointing_loss

    grid = 8
    scene = make_scene(3, n_objects=3, size=64)
    cov = object_coverage(scene, [1], grid)
    # the coverage is the object's pixel share per 8×8 block, row-major like the image tokens
    mask = scene.objects[1].mask
    expected = mask.reshape(grid, 8, grid, 8).mean((1, 3)).ravel()
    np.testing.assert_allclose(cov, expected / expected.sum(), atol=1e-6)
    tok, ids, labels = _two_turn_batch(grid)
    image_pos = (ids[0] == tok.convert_tokens_to_ids("<image>")).nonzero().squeeze(1)
    T = ids.shape[1]
    att = torch.full((1, 2, T, T), 0.01)
    (s1, e1), _ = answer_spans(labels[0])
    # head 0 at the first answer: image attention ∝ coverage (half the mass elsewhere, which the
    # renormalisation over the image removes)
    att[0, 0, s1 - 1 : e1 - 1] = 0.0
    att[0, 0, s1 - 1 : e1 - 1, image_pos] = 0.5 * torch.as_tensor(cov, dtype=torch.float32)
    att[0, 0, s1 - 1 : e1 - 1, 0] = 0.5
    image_id = tok.convert_tokens_to_ids("<image>")
    loss = pointing_loss(att, ids, labels, [scene], [[(1,), ()]], image_id, head=0)
    entropy = -(cov[cov > 0] * np.log(cov[cov > 0])).sum()
    assert loss.item() == pytest.approx(entropy, rel=1e-4)  # the minimum: cross-entropy = entropy
    # the default scores the mean over heads (the map API-VLM reads): head 1 still looks elsewhere
    assert pointing_loss(att, ids, labels, [scene], [[(1,), ()]], image_id).item() > entropy + 0.1
    att[0, 1] = att[0, 0]
    assert pointing_loss(att, ids, labels, [scene], [[(1,), ()]], image_id).item() == pytest.approx(entropy, rel=1e-4)
    uniform = pointing_loss(
        torch.full((1, 2, T, T), 1.0 / T), ids, labels, [scene], [[(1,), ()]], tok.convert_tokens_to_ids("<image>")
    )
    assert uniform.item() == pytest.approx(np.log(grid * grid), rel=1e-5)


@pytest.mark.parametrize("field, value", [("point_layer", "9"), ("hop1_layer", -5)])
def test_vlm_training_refuses_a_layer_the_decoder_lacks_before_training(tmp_path, field, value):
    from attnprompt.errors import InputError
    from tools.shapes_training.train_vlm import SMOKE as VLM_SMOKE
    from tools.shapes_training.train_vlm import VlmTrainConfig
    from tools.shapes_training.train_vlm import train as train_vlm

    cfg = VlmTrainConfig(out=str(tmp_path / "vlm"), **{**VLM_SMOKE, field: value})  # smoke decoder: 1 layer
    with pytest.raises(InputError, match=r"out of range; the model has 1 blocks"):
        train_vlm(cfg, log=lambda s: None)
    assert not (tmp_path / "vlm").exists()


def test_shape_first_conversations_ask_only_questions_that_name_a_shape():
    from attnprompt.shapes.scenes import COLORS
    from attnprompt.shapes.splits import TRAINING_START
    from tools.shapes_training.train_vlm import conversation

    described = 0
    for seed in range(TRAINING_START, TRAINING_START + 40):
        scene, messages, kinds, targets = conversation(seed, 6, 64, describe_rate=0.0, kinds=("color",))
        shapes = [o.shape for o in scene.objects]
        if kinds == ["describe"]:  # no shape occurs once: the scene is described instead of skipped
            assert all(shapes.count(s) != 1 for s in shapes)
            described += 1
            continue
        assert set(kinds) == {"color"} and 1 <= len(kinds) <= 6
        questions = [m["content"][-1]["text"] for m in messages if m["role"] == "user"]
        for q, t in zip(questions, targets, strict=True):
            (i,) = t  # one object, named by its shape, which occurs once
            assert f" {shapes[i]}?" in q and shapes.count(shapes[i]) == 1
            assert not any(c in q for c in COLORS)
    assert described < 10
    # without the restriction the same seeds mix the kinds, as before
    mixed = set()
    for seed in range(TRAINING_START, TRAINING_START + 20):
        mixed.update(conversation(seed, 6, 64)[2])
    assert mixed >= {"color", "shape", "count", "exists", "left_of"}


def test_vlm_training_refuses_a_shape_first_phase_longer_than_the_run(tmp_path, capsys):
    from tools.shapes_training.train_vlm import main

    out = tmp_path / "vlm"
    assert main(["--out", str(out), "--smoke", "--shape-first", "9"]) == 2
    assert "error: --shape-first 9: expected 0 to --steps (3) steps" in capsys.readouterr().err
    assert not out.exists()


def test_tower_finetune_smoke_run_saves_a_clip_at_the_new_size(tmp_path):
    """The recipe's middle step: the fine-tuned CLIP is a stock checkpoint at the new input size,
    its text tower untouched, and train_vlm can start from it."""
    from transformers import CLIPModel

    from attnprompt.models import load_clip
    from tools.shapes_training.finetune_tower import SMOKE as TOWER_SMOKE
    from tools.shapes_training.finetune_tower import TowerConfig
    from tools.shapes_training.finetune_tower import train as finetune

    out = tmp_path / "tower"
    record = finetune(TowerConfig(out=str(out), layer=-2, **TOWER_SMOKE), log=lambda s: None)
    assert [h["step"] for h in record["history"]] == [1, 2]
    assert all(0.0 <= h["patch_accuracy"] <= 1.0 for h in record["history"])
    tuned, shipped = CLIPModel.from_pretrained(str(out)), load_clip("shapes").model
    assert tuned.config.vision_config.image_size == TOWER_SMOKE["size"]
    assert shipped.config.vision_config.image_size == 192  # the cached shipped model was not touched
    for (name, a), b in zip(tuned.text_model.state_dict().items(), shipped.text_model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)
    assert not torch.equal(
        tuned.vision_model.encoder.layers[0].mlp.fc1.weight, shipped.vision_model.encoder.layers[0].mlp.fc1.weight
    )
    assert load_clip(str(out)).model.config.vision_config.image_size == TOWER_SMOKE["size"]
