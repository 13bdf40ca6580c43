"""Every family on its real checkpoints' own files (issue 39): a reduced random-weight model built from each hub
id's real config, with its real processor, tokenizer (or the stand-in the README names), chat template and
generation config (``../shared/data/checkpoints``; each test skips, saying so, where a hub id's files are absent).

Asserted per hub id: the prompt's token ids and pixels are those of the documented
``processor.apply_chat_template(..., tokenize=True)`` path, with one ``<bos>``; the image-token count is what the
config implies; the image region the map covers is the region the answering processor keeps; a 4000×3000 and an
8K photo stay within the family's pixel and token bound, and two such images fit the context; greedy decoding is
the argmax whatever the checkpoint's generation config asks; and annotate, ask with api, carve and ViCrop run
from the command line.
"""

from __future__ import annotations

import json

import builders
import numpy as np
import pytest
import torch
from PIL import Image

from attnprompt.attribution.vlm_attention import VlmAttributor
from attnprompt.cli import main
from attnprompt.families import ImageSpan
from attnprompt.models import (
    LoadOptions,
    answer_input,
    chat_prompt,
    context_length,
    generate,
    load_vlm,
    resolve_dtype,
)
from attnprompt.types import Request

HUB_IDS = builders.CHECKPOINT_VLMS
QUESTION = "What is in the image?"


@pytest.fixture(scope="module")
def reduced(tmp_path_factory):
    """hub id → the directory of its reduced random-weight checkpoint, built on first use."""
    root = tmp_path_factory.mktemp("checkpoints")
    built: dict[str, str] = {}

    def get(hub_id: str) -> str:
        if hub_id not in built:
            built[hub_id] = str(builders.reduced_checkpoint(hub_id, root / hub_id.replace("/", "--")))
        return built[hub_id]

    return get


def photo(width: int = 640, height: int = 480, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


def pixel_values(vlm, image: Image.Image) -> torch.Tensor:
    """What the processor makes of ``image`` (given as it is) in a one-image prompt."""
    prompt = chat_prompt(vlm.processor, Request.single(image, QUESTION))
    return vlm.processor(text=[prompt], images=[[image]], return_tensors="pt")["pixel_values"]


def image_tokens(vlm, image: Image.Image) -> int:
    """The image tokens of a one-image prompt, ``image`` given as the answering model is given it."""
    prompt = chat_prompt(vlm.processor, Request.single(image, QUESTION))
    ids = vlm.processor(text=[prompt], images=[[answer_input(vlm, image)]], return_tensors="pt")["input_ids"][0]
    return int((ids == vlm.family_info.image_token_id(vlm.model.config)).sum())


def token_bound(vlm) -> int:
    """The most image tokens one image can become, from the config and the processor (not from attnprompt's
    code): the largest tile canvas, tile count or pixel budget each family's processor allows."""
    cfg, ip = vlm.model.config, vlm.processor.image_processor
    family = vlm.family_info.name
    if family.startswith("qwen"):
        factor = ip.patch_size * ip.merge_size
        return dict(vlm.pixels)["max_pixels"] // factor**2
    if family == "gemma3":
        return int(cfg.mm_tokens_per_image)
    if family == "internvl":
        return (int(ip.max_patches) + 1) * int(cfg.image_seq_length)
    if family == "idefics3":
        tiles = (ip.size["longest_edge"] // ip.max_image_size["longest_edge"]) ** 2
        return (tiles + 1) * int(vlm.processor.image_seq_len)
    vis = cfg.vision_config
    side = vis.image_size // vis.patch_size
    if family == "llava":
        return side * side + (cfg.vision_feature_select_strategy == "full")
    rows = max(h // vis.patch_size for h, _ in cfg.image_grid_pinpoints)
    largest = max((h // vis.patch_size) * (w // vis.patch_size + 1) for h, w in cfg.image_grid_pinpoints)
    if family == "llava_onevision":  # the model pools a grid over 1.1² times anyres_max_N tiles down to N tiles
        most = int(str(cfg.vision_aspect_ratio).removeprefix("anyres_max_"))
        largest = min(largest, int(1.21 * most * side * side) + rows)
    return side * side + largest  # llava_next, llava_onevision


# -- the prompt ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hub_id", HUB_IDS)
def test_prompt_ids_and_pixels_are_the_documented_chat_template_path_with_one_bos(hub_id, reduced):
    vlm = load_vlm(reduced(hub_id), device="cpu")
    image = photo()
    ours = generate(vlm, [Request.single(image, QUESTION, max_new_tokens=1)]).inputs
    messages = [{"role": "user", "content": [{"type": "image", "image": answer_input(vlm, image)},
                                             {"type": "text", "text": QUESTION}]}]
    documented = vlm.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                   return_dict=True, return_tensors="pt")
    assert ours["input_ids"][0].tolist() == documented["input_ids"][0].tolist()
    assert torch.equal(ours["pixel_values"], documented["pixel_values"].to(ours["pixel_values"].dtype))
    bos = vlm.processor.tokenizer.bos_token_id
    ids = ours["input_ids"][0].tolist()
    if bos is not None:
        assert ids.count(bos) == 1 and ids[0] == bos


def test_gemma3s_template_writes_bos_so_the_tokenizer_must_not_add_a_second(reduced):
    vlm = load_vlm(reduced("google/gemma-3-4b-it"), device="cpu")
    prompt = chat_prompt(vlm.processor, Request.single(photo(), QUESTION))
    naive = vlm.processor(text=[prompt], images=[[photo()]], return_tensors="pt")["input_ids"][0].tolist()
    assert naive[:2] == [2, 2]  # what a plain processor call made of it (issue 39): two <bos>
    ours = generate(vlm, [Request.single(photo(), QUESTION, max_new_tokens=1)]).inputs["input_ids"][0].tolist()
    assert ours[0] == 2 and ours.count(2) == 1


@pytest.mark.parametrize("hub_id", HUB_IDS)
def test_the_image_token_count_is_what_the_config_implies(hub_id, reduced):
    vlm = load_vlm(reduced(hub_id), device="cpu")
    attributor = VlmAttributor(vlm)
    image = photo()
    prepared, extent = attributor.prepare(image)
    out = generate(vlm, [Request.single(prepared, QUESTION, max_new_tokens=1)], fit=attributor.config.fit)
    ids = out.inputs["input_ids"][0]
    n = int((ids == attributor.image_token_id).sum())
    # the family's layouts check the count against the config (a ProcessorMismatchError if they disagree) …
    layouts = vlm.family_info.layouts(ImageSpan(n, out.inputs, 0, (prepared.size[1], prepared.size[0]), extent),
                                      vlm.model.config, vlm.processor)
    covered = np.concatenate([g.index.ravel() for g in layouts])
    assert covered.min() >= 0 and covered.max() < n
    # … and where the count is a plain formula of the config, it is that formula
    cfg, ip = vlm.model.config, vlm.processor.image_processor
    if vlm.family_info.name == "llava":
        assert n == (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2 == 576
    elif vlm.family_info.name == "gemma3":
        assert n == cfg.mm_tokens_per_image == 256
    elif vlm.family_info.name.startswith("qwen"):
        t, h, w = out.inputs["image_grid_thw"][0].tolist()
        assert n == t * h * w // ip.merge_size**2 and h * w * ip.patch_size**2 <= dict(vlm.pixels)["max_pixels"]


# -- what the answering model sees ---------------------------------------------------------------------------------

STRIPS = {"left": (0, 0, 0.04, 1), "right": (0.96, 0, 1, 1), "top": (0, 0, 1, 0.04), "bottom": (0, 0.96, 1, 1)}


def kept_strips(image: Image.Image, seen) -> set[str]:
    """The edge strips of ``image`` whose pixels reach ``seen(image)`` (a pixel tensor): each is repainted with
    other noise, and a strip is kept when what is seen changes."""
    base = seen(image)
    kept = set()
    w, h = image.size
    for name, (x0, y0, x1, y1) in STRIPS.items():
        changed = image.copy()
        box = (int(x0 * w), int(y0 * h), int(x1 * w), int(y1 * h))
        changed.paste(photo(box[2] - box[0], box[3] - box[1], seed=7), box[:2])
        if not torch.equal(seen(changed), base):
            kept.add(name)
    return kept


@pytest.mark.parametrize("hub_id", HUB_IDS)
def test_the_region_the_map_covers_is_the_region_the_answering_model_keeps(hub_id, reduced):
    vlm = load_vlm(reduced(hub_id), device="cpu")
    attributor = VlmAttributor(vlm)
    image = photo()  # 4:3: LLaVA-1.5's processor alone would centre-crop 12.5 % of each side away
    by_map = kept_strips(image, lambda im: pixel_values(vlm, attributor.prepare(im)[0]))
    by_answer = kept_strips(image, lambda im: pixel_values(vlm, answer_input(vlm, im)))
    assert by_map == by_answer == set(STRIPS)


def test_llava_answering_on_the_processors_crop_loses_the_sides_the_map_covers(reduced):
    vlm = load_vlm(reduced("llava-hf/llava-1.5-7b-hf"), device="cpu")
    image = photo()
    assert kept_strips(image, lambda im: pixel_values(vlm, answer_input(vlm, im, "processor"))) == {"top", "bottom"}
    cropping = load_vlm(reduced("llava-hf/llava-1.5-7b-hf"), loading=LoadOptions(device="cpu", answer_fit="processor"))
    assert cropping.model is vlm.model and cropping.options.answer_fit == "processor"  # one model, two ways to answer
    assert kept_strips(image, lambda im: pixel_values(cropping, answer_input(cropping, im))) == {"top", "bottom"}


# -- pixel and token bounds ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("hub_id", HUB_IDS)
def test_large_photos_stay_within_the_familys_pixel_and_token_bound(hub_id, reduced):
    vlm = load_vlm(reduced(hub_id), device="cpu")
    bound = token_bound(vlm)
    family = vlm.family_info
    for size in ((4000, 3000), (7680, 4320)):
        image = Image.new("RGB", size, (120, 90, 60))
        given = answer_input(vlm, image)
        target = family.input_size(given.size, vlm.model.config, vlm.processor)
        # reduced by a whole factor until one side is under 2·REDUCE_GAP (8) times the side it is resized to
        assert target is not None and min(g / t for g, t in zip(given.size, target)) < 8
        assert image_tokens(vlm, image) <= bound
    # the original and a crop (CARVE, ViCrop) and a question fit the context, whatever the photo
    assert 2 * bound + 256 < context_length(vlm)


@pytest.mark.parametrize("hub_id", ["Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct",
                                    "Qwen/Qwen3-VL-2B-Instruct"])
def test_qwens_pixel_budget_is_lmms_evals_by_default_and_settable(hub_id, reduced):
    default = load_vlm(reduced(hub_id), device="cpu")
    factor = default.processor.image_processor.patch_size * default.processor.image_processor.merge_size
    expected = 602_112 if hub_id.startswith("Qwen/Qwen2-VL") else 1_605_632
    assert dict(default.pixels)["max_pixels"] == expected
    assert image_tokens(default, Image.new("RGB", (4000, 3000))) <= expected // factor**2
    small = load_vlm(reduced(hub_id), loading={"device": "cpu", "max_pixels": 200_704})
    assert small.model is default.model  # the weights are shared; the processors are not
    assert image_tokens(small, Image.new("RGB", (4000, 3000))) <= 200_704 // factor**2
    assert small.record()["max_pixels"] == 200_704 and default.record()["max_pixels"] == expected


# -- loading and decoding --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hub_id, dtype", [("llava-hf/llava-1.5-7b-hf", torch.float16),
                                           ("Qwen/Qwen2.5-VL-3B-Instruct", torch.bfloat16),
                                           ("google/gemma-3-4b-it", torch.bfloat16),
                                           ("Qwen/Qwen3-VL-2B-Instruct", torch.bfloat16)])
def test_auto_dtype_is_the_checkpoints_own_on_a_gpu_and_float32_on_the_cpu(hub_id, dtype):
    config = json.loads((builders.checkpoint_files(hub_id) / "config.json").read_text())
    assert resolve_dtype("auto", config, "cuda") == dtype and resolve_dtype("auto", config, "cuda:1") == dtype
    assert resolve_dtype("auto", config, "cpu") == torch.float32
    assert resolve_dtype("float32", config, "cuda") == torch.float32


def test_greedy_is_the_argmax_whatever_the_checkpoints_generation_config_asks(reduced):
    directory = reduced("Qwen/Qwen2.5-VL-3B-Instruct")
    shipped = json.loads((builders.checkpoint_files("Qwen/Qwen2.5-VL-3B-Instruct") / "generation_config.json")
                         .read_text())
    assert shipped["do_sample"] is True and shipped["repetition_penalty"] == 1.05  # what the checkpoint asks
    vlm = load_vlm(directory, device="cpu")
    assert vlm.model.generation_config.repetition_penalty is None and vlm.model.generation_config.eos_token_id == \
        shipped["eos_token_id"]
    request = Request.single(photo(), QUESTION, max_new_tokens=6)
    out = generate(vlm, [request])
    inputs = dict(out.inputs)
    expected: list[int] = []
    with torch.no_grad():  # greedy by hand: the whole prompt again at every step, and its argmax
        for _ in range(len(out.tokens[0])):
            ids = torch.cat([inputs["input_ids"], torch.tensor([expected], dtype=torch.long)], 1)
            step = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": inputs["pixel_values"],
                    "image_grid_thw": inputs["image_grid_thw"]}
            expected.append(int(vlm.model(**step, use_cache=False).logits[0, -1].argmax()))
    assert out.tokens[0] == expected
    penalised = load_vlm(directory, loading={"device": "cpu", "generation": {"repetition_penalty": 1.05}})
    from attnprompt.backends.local import LocalVLM

    assert LocalVLM(penalised).describe()["generation"] == {"repetition_penalty": 1.05}
    assert "generation" not in LocalVLM(vlm).describe()


# -- every entry point ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hub_id", HUB_IDS)
def test_annotate_ask_carve_and_vicrop_run_on_every_family(hub_id, reduced, tmp_path, capsys):
    directory = reduced(hub_id)
    image = tmp_path / "photo.png"
    photo().save(image)
    common = ["--device", "cpu", "--map-max-new-tokens", "3", "--max-new-tokens", "3"]
    assert main(["annotate", str(image), "the red car", "-o", str(tmp_path / "a.png"), "--method", "api-vlm",
                 "--model", directory, "--max-new-tokens", "3", "--device", "cpu"]) == 0
    assert (tmp_path / "a.png").is_file()
    capsys.readouterr()
    runs = {("api", "api-vlm", "reference"): ["--strategy", "api", "--method", "api-vlm"],
            ("carve", "carve", "carve"): ["--strategy", "carve"],
            ("carve", "carve", "vicrop"): ["--strategy", "carve", "--preset", "vicrop"]}
    for (strategy, method, preset), extra in runs.items():
        code = main(["ask", str(image), QUESTION, "--vlm", directory, "--json", *common, *extra])
        out = capsys.readouterr().out
        assert code in (0, 2), out  # 2: a random model may say nothing, which is a recorded failure …
        config = json.loads(out)["config"]  # … but the strategy ran to its answer, on its map
        assert (config["strategy"], config["map"]["method"], config["map"]["preset"]) == (strategy, method, preset)
        assert config["map"]["family"] == load_vlm(directory, device="cpu").family


def test_the_gpu_check_runs_in_its_smoke_mode(tmp_path):
    """benchmarks/gpu_check.py --smoke: the two checkpoints' configs reduced, CPU, float32: every condition measured,
    ratios to plain, the capture against eager exact, the load back through load_vlm in the dtype and on the device
    asked — the script the GPU runs, end to end."""
    import os
    import subprocess
    import sys

    hubs = ("llava-hf/llava-1.5-7b-hf", "Qwen/Qwen2.5-VL-3B-Instruct")
    for hub_id in hubs:
        builders.checkpoint_files(hub_id)
    out = tmp_path / "gpu_check.json"
    script = builders.DATA.parent / "benchmarks" / "gpu_check.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(script), "--smoke", "--checkpoints", str(builders.CHECKPOINTS),
                           "--through-disk", "--json", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["smoke"] and list(report["models"]) == list(hubs)
    for entry in report["models"].values():
        assert entry["parameters_b"] < 0.05  # reduced
        assert list(entry["conditions"]) == ["plain", "api-vlm", "carve", "vicrop"]
        assert entry["conditions"]["plain"]["time_ratio"] == 1.0
        assert all(row["seconds"] > 0 and row["answered"] for row in entry["conditions"].values())
        [(kernel, found)] = entry["exactness"]["kernels"].items()
        assert kernel == "sdpa" and found["tokens_agree"] and found["max_abs_diff"] < 1e-5
        assert entry["through_disk"]["dtype_and_device_as_asked"]
