"""Reduced random-weight checkpoints built from real checkpoints' own files (no download).

``../shared/data/checkpoints`` (or ``$ATTNPROMPT_CHECKPOINTS``) holds, for each hub id its README names, the files
``from_pretrained`` reads — config, processor and tokenizer files, chat template, generation config — without
weights. :func:`reduced_checkpoint` builds a model from the real config with the language model and the vision
tower made small (everything that decides the image tokens and the prompt is the checkpoint's), gives it random
weights, and saves it beside copies of every other file: a checkpoint every entry point loads as the real one, in
seconds. The tests (through ``tests/builders.py``) and the benchmarks use them.

    python -m tools.checkpoints --out /tmp/reduced                      # every VLM hub id found
    python -m tools.checkpoints --out /tmp/reduced Qwen/Qwen2.5-VL-3B-Instruct
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

#: Where the real checkpoints' non-weight files are: ``$ATTNPROMPT_CHECKPOINTS``, else ``shared/data/checkpoints``
#: in the checkout, else beside it (``../shared/data/checkpoints``).
ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = Path(os.environ.get("ATTNPROMPT_CHECKPOINTS") or next(
    (p for p in (ROOT / "shared" / "data" / "checkpoints", ROOT.parent / "shared" / "data" / "checkpoints")
     if p.is_dir()), ROOT.parent / "shared" / "data" / "checkpoints"))
#: The VLM hub ids whose files the tests read, one or more per family.
CHECKPOINT_VLMS = (
    "llava-hf/llava-1.5-7b-hf", "llava-hf/llava-1.5-13b-hf", "llava-hf/llava-v1.6-mistral-7b-hf",
    "llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "Qwen/Qwen2-VL-2B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct",
    "Qwen/Qwen3-VL-2B-Instruct", "OpenGVLab/InternVL3-1B-hf", "google/gemma-3-4b-it",
    "HuggingFaceTB/SmolVLM-256M-Instruct",
)
#: Reduced widths and depths: the language model's and the vision tower's (everything else — image and patch
#: sizes, tokens per image, pinpoints, merges, windows, token ids, vocabularies, contexts — is the checkpoint's).
REDUCED_TEXT = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=16)
REDUCED_VISION = dict(hidden_size=32, intermediate_size=64, num_attention_heads=4, num_heads=4, num_hidden_layers=2,
                      depth=2, embed_dim=32, mlp_ratio=2)


def files_of(hub_id: str, checkpoints: Path | None = None) -> Path:
    """The folder of ``hub_id``'s real files; a FileNotFoundError that says where it looked when it is absent."""
    directory = Path(checkpoints or CHECKPOINTS) / hub_id
    if not (directory / "config.json").is_file():
        raise FileNotFoundError(f"{hub_id}: no config.json under {directory.parent.parent} (set "
                                "ATTNPROMPT_CHECKPOINTS to the folder of the real checkpoints' files)")
    return directory


def reduced_config(config):
    """``config`` (a transformers config of a real checkpoint) with the language model and the vision tower made
    small (:data:`REDUCED_TEXT`, :data:`REDUCED_VISION`), everything else kept."""
    text = config.get_text_config()
    for key, value in REDUCED_TEXT.items():
        setattr(text, key, value)
    if getattr(text, "layer_types", None):  # one layer of each kind the checkpoint has (Gemma 3: sliding, full)
        kinds = list(dict.fromkeys(text.layer_types))
        text.layer_types = (kinds * 2)[: text.num_hidden_layers]
    if hasattr(text, "query_pre_attn_scalar"):
        text.query_pre_attn_scalar = text.head_dim
    rope = getattr(text, "rope_parameters", None)
    if isinstance(rope, dict) and rope.get("mrope_section"):
        rope["mrope_section"] = [2, 3, 3]  # sums to head_dim / 2, as the real sections do for theirs
    vision = config.vision_config
    for key, value in REDUCED_VISION.items():
        if hasattr(vision, key):
            setattr(vision, key, value)
    if config.model_type == "qwen2_vl":
        vision.hidden_size = text.hidden_size  # Qwen2-VL's merger projects onto the language model's width
    if hasattr(vision, "out_hidden_size"):
        vision.out_hidden_size = text.hidden_size
    if hasattr(vision, "fullatt_block_indexes"):
        vision.fullatt_block_indexes = [vision.depth - 1]
    if hasattr(vision, "deepstack_visual_indexes"):
        vision.deepstack_visual_indexes = [0]
    return config


def _copy_files(source: Path, directory: Path) -> None:
    for path in source.iterdir():
        if path.is_file() and path.name not in ("config.json", "PROVENANCE.txt"):
            shutil.copy(path, directory / path.name)  # the checkpoint's own generation config, processor, tokenizer


def reduced_checkpoint(hub_id: str, directory: Path, seed: int = 0, checkpoints: Path | None = None) -> Path:
    """A reduced random-weight checkpoint of ``hub_id`` in ``directory``: :func:`reduced_config` of its real
    config, random weights (seeded), and every other file of the real checkpoint as it is."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    source = files_of(hub_id, checkpoints)
    config = reduced_config(AutoConfig.from_pretrained(source))
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config).eval()
    projector = getattr(getattr(model, "model", None), "multi_modal_projector", None)
    if hasattr(projector, "mm_input_projection_weight"):
        with torch.no_grad():  # Gemma 3 initialises it to zeros: every image would look the same to the decoder
            projector.mm_input_projection_weight.normal_(0.0, 0.2)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    _copy_files(source, directory)
    return directory


def reduced_clip_checkpoint(hub_id: str, directory: Path, seed: int = 0, checkpoints: Path | None = None) -> Path:
    """A CLIP of ``hub_id``'s real config and files (its BPE, processor) with both towers made small (2 layers,
    width 32, projection 16); the image and patch sizes — the map's grid — are the checkpoint's."""
    import torch
    from transformers import AutoConfig, CLIPModel

    source = files_of(hub_id, checkpoints)
    config = AutoConfig.from_pretrained(source)
    for tower in (config.vision_config, config.text_config):
        tower.hidden_size, tower.intermediate_size, tower.num_attention_heads, tower.num_hidden_layers = 32, 64, 4, 2
    config.projection_dim = 16
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    _copy_files(source, directory)
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write reduced random-weight checkpoints from real files.")
    parser.add_argument("hub_ids", nargs="*", help=f"default: every one of {', '.join(CHECKPOINT_VLMS)} found")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT/<hub id>/")
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS, help="the real files (default %(default)s)")
    args = parser.parse_args(argv)
    wanted = args.hub_ids or [h for h in CHECKPOINT_VLMS if (args.checkpoints / h / "config.json").is_file()]
    for hub_id in wanted:
        print(reduced_checkpoint(hub_id, args.out / hub_id, checkpoints=args.checkpoints))
    return 0


if __name__ == "__main__":
    sys.exit(main())
