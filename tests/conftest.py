"""Shared fixtures: tiny CLIP checkpoints built in code (random weights), offline hub settings."""

from __future__ import annotations

import os

# No test may reach a model hub: fail fast instead of retrying for half a minute.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
CLIP_BPE = DATA / "clip-bpe"

#: Two differently shaped tiny CLIPs: (name, vision kwargs, text kwargs, projection dim).
CLIP_SHAPES = {
    "b": dict(
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, image_size=32, patch_size=8),
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
        projection_dim=16,
    ),
    "l": dict(
        vision=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=5, num_attention_heads=6, image_size=48, patch_size=6),
        text=dict(hidden_size=40, intermediate_size=80, num_hidden_layers=2, num_attention_heads=5),
        projection_dim=24,
    ),
}


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="also run tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def build_tiny_clip(directory: Path, shape: str = "b", seed: int = 0, dtype=None) -> Path:
    """Save a random-weight CLIPModel + the real CLIP tokenizer + image processor to ``directory``."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    spec = CLIP_SHAPES[shape]
    torch.manual_seed(seed)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, max_position_embeddings=77, **spec["text"]),
        vision_config=dict(**spec["vision"]),
        projection_dim=spec["projection_dim"],
    )
    model = CLIPModel(cfg).eval()
    with torch.no_grad():
        # Random init leaves LayerNorms at identity and biases at zero; perturb them so the
        # identities under test cannot pass by accident.
        for name, p in model.named_parameters():
            if "layer_norm" in name or "layrnorm" in name or "layernorm" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    if dtype is not None:
        model = model.to(dtype)
    size = spec["vision"]["image_size"]
    tok = CLIPTokenizer.from_pretrained(str(CLIP_BPE))
    ip = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    CLIPProcessor(image_processor=ip, tokenizer=tok).save_pretrained(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_clip_dirs(tmp_path_factory):
    """{"b": path, "l": path}: two tiny CLIP checkpoints of different shapes."""
    root = tmp_path_factory.mktemp("clips")
    return {name: build_tiny_clip(root / name, name, seed=i) for i, name in enumerate(CLIP_SHAPES)}


@pytest.fixture(scope="session")
def tiny_clip_dir(tiny_clip_dirs):
    return tiny_clip_dirs["b"]
