"""The shipped shapes models: load like any checkpoint, beat chance, point, answer — offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from attnprompt.models import embedded_dir, load_clip, resolve
from attnprompt.shapes import COLORS, SHAPES, make_scene, pointing_query
from attnprompt.shapes.splits import CLIP_RETRIEVAL_TEST, POINTING_TEST, VLM_ANSWER_TEST

CLIP_DIR = embedded_dir() / "shapes-clip"
VLM_DIR = embedded_dir() / "shapes-vlm"
needs_clip = pytest.mark.skipif(
    not (CLIP_DIR / "config.json").exists(), reason="shapes CLIP not trained in this checkout"
)
needs_vlm = pytest.mark.skipif(not (VLM_DIR / "config.json").exists(), reason="shapes VLM not trained in this checkout")


@needs_clip
def test_shapes_clip_is_a_plain_hugging_face_checkpoint():
    from transformers import AutoProcessor, CLIPModel

    model = CLIPModel.from_pretrained(CLIP_DIR)  # the same call as for any hub checkpoint
    processor = AutoProcessor.from_pretrained(CLIP_DIR)
    vc = model.config.vision_config
    assert vc.num_hidden_layers >= 4 and vc.image_size // vc.patch_size >= 8
    assert resolve("shapes") == str(CLIP_DIR) and load_clip("shapes").location == str(CLIP_DIR)
    assert processor.tokenizer.tokenize("What colour is the star?") == [
        "what</w>",
        "colour</w>",
        "is</w>",
        "the</w>",
        "star</w>",
        "?</w>",
    ]
    size = sum(p.stat().st_size for p in CLIP_DIR.iterdir())
    assert size <= 20 * 2**20, f"{size / 2**20:.1f} MB shipped; the budget is 20 MB"
    record = json.loads((CLIP_DIR / "training.json").read_text())
    assert record["config"]["image_size"] == model.config.vision_config.image_size  # the record is this model's


@needs_clip
def test_shapes_clip_beats_chance_on_held_out_retrieval():
    """For held-out scenes, the caption of an object in the image scores above captions of
    colour–shape pairs absent from it, far more often than chance (0.5)."""

    clip = load_clip("shapes", device="cpu")
    model, tok = clip.model, clip.tokenizer
    from attnprompt.attribution.clip import ClipAttributor

    attributor = ClipAttributor(clip)
    names = [(c, s) for c in COLORS for s in SHAPES]
    with torch.inference_mode():
        captions = [f"{'an' if c[0] in 'aeiou' else 'a'} {c} {s}" for c, s in names]
        text = model.get_text_features(**tok(captions, padding=True, return_tensors="pt"))
        text = torch.nn.functional.normalize(text.pooler_output, dim=-1)
        wins = []
        for seed in CLIP_RETRIEVAL_TEST.seeds(40):
            scene = make_scene(seed, n_objects=3, size=224)
            pixels, _ = attributor.preprocess([scene.image])
            img = torch.nn.functional.normalize(model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)[0]
            sims = (text @ img).numpy()
            present = {(o.color, o.shape) for o in scene.objects}
            pos = [sims[i] for i, n in enumerate(names) if n in present]
            neg = [sims[i] for i, n in enumerate(names) if n not in present]
            wins.append(np.mean([p > n for p in pos for n in neg]))
    assert np.mean(wins) > 0.75, np.mean(wins)


def _large_object_scenes():
    """Fixed held-out scenes whose queried object is large (≥ 20% of the side): the default
    preset's soft OR with the filtered grid is reliable there (small targets: see README)."""
    out = []
    seed = POINTING_TEST.start
    while len(out) < 5:
        scene = make_scene(seed, n_objects=4, size=224)
        big = [i for i, o in enumerate(scene.objects) if o.size >= 0.2 * 224]
        if big:
            out.append((scene, big[0]))
        seed += 1
    return out


@needs_clip
def test_cli_annotate_with_shapes_runs_offline_and_peaks_on_the_named_object(tmp_path):
    from attnprompt.cli import main
    from attnprompt.evaluation.pointing import in_box, peak

    hits = []
    for k, (scene, idx) in enumerate(_large_object_scenes()):
        path = tmp_path / f"scene{k}.png"
        scene.image.save(path)
        out, heat = tmp_path / f"a{k}.png", tmp_path / f"h{k}.npy"
        assert (
            main(
                [
                    "annotate",
                    str(path),
                    pointing_query(scene, idx),
                    "--model",
                    "shapes",
                    "-o",
                    str(out),
                    "--heatmap",
                    str(heat),
                ]
            )
            == 0
        )
        hits.append(in_box(peak(np.load(heat)), scene.objects[idx].box))
    assert sum(hits) >= 4, hits


@needs_clip
def test_different_queries_on_one_scene_peak_on_their_own_objects():
    """examples/scene.png: each object of at least 12.5% of the side, named in turn, gets the
    grounding map's peak (the default preset does not reliably: see the pointing benchmark)."""
    from attnprompt.api import annotate
    from attnprompt.evaluation.pointing import in_box, peak

    scene = make_scene(7, n_objects=5, size=320)
    targets = [i for i, o in enumerate(scene.objects) if o.size >= 0.125 * 320]
    assert len(targets) >= 3
    for i in targets:
        query = pointing_query(scene, i)
        assert in_box(
            peak(annotate(scene.image, query, model="shapes", preset="grounding").heatmap), scene.objects[i].box
        )


@needs_vlm
def test_shapes_vlm_loads_like_a_hub_model_and_answers_on_fixed_scenes(tmp_path, capsys):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from attnprompt.cli import main
    from attnprompt.models import load_vlm

    model = AutoModelForImageTextToText.from_pretrained(VLM_DIR)
    AutoProcessor.from_pretrained(VLM_DIR)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert load_vlm("shapes").location == str(VLM_DIR)
    size = sum(p.stat().st_size for p in VLM_DIR.iterdir())
    assert size <= 30 * 2**20, f"{size / 2**20:.1f} MB shipped; the budget is 30 MB"
    # What the shipped VLM can claim (README, "Shapes VLM": colour of a named shape 0.69 held out):
    # on 40 fixed scenes of 3 objects, asked the colour of a uniquely-shaped object, it answers with
    # a colour word (it said "1" once), one present in the scene, and mostly the right one — far
    # above a uniform colour guess (1/8, 5 of 40). It answered 35 of 40 exactly when shipped.
    from attnprompt.shapes import COLORS

    answers, truths, present = [], [], []
    seed = VLM_ANSWER_TEST.start
    while len(answers) < 40:
        scene = make_scene(seed, n_objects=3, size=224)
        seed += 1
        unique = [o for o in scene.objects if [p.shape for p in scene.objects].count(o.shape) == 1]
        if not unique:  # three objects of one shape: "the star" would be ambiguous
            continue
        obj = max(unique, key=lambda o: o.size)
        path = tmp_path / f"s{seed}.png"
        scene.image.save(path)
        assert (
            main(["ask", str(path), f"What colour is the {obj.shape}?", "--vlm", "shapes", "--strategy", "plain"]) == 0
        )
        answers.append(capsys.readouterr().out.strip().lower())
        truths.append(obj.color)
        present.append({o.color for o in scene.objects})
    assert sum(a in COLORS for a in answers) >= 38, answers
    assert sum(a in p for a, p in zip(answers, present)) >= 34, list(zip(answers, present))
    assert sum(a == t for a, t in zip(answers, truths)) >= 30, list(zip(answers, truths))
