"""API-CLIP cost against a bare CLIP image+text embedding, measured side by side in one run.

For random-weight CLIPs of ViT-B/16 and ViT-L/14-336 size (no download needed), times
(median of interleaved repeats) and peak extra memory of:

- ``embed``:     preprocessing + ``get_image_features`` + ``get_text_features`` (what any CLIP
                 user pays to score one image against one query);
- ``attribute``: the API-CLIP attribution map on the grid (same preprocessing);
- ``annotate``:  attribution + heatmap + overlay rendered at the image's own size.

Target: ``attribute`` ≤ 1.2× ``embed``. ``--smoke`` runs a tiny CLIP once, in seconds: it proves the script runs;
its figures mean nothing. Run::

    python benchmarks/bench_clip_overhead.py [--sizes b16 l14-336] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import compare, exact_cpu_memory, table  # noqa: E402

SIZES = {
    "tiny": dict(  # --smoke
        vision=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    image_size=224, patch_size=16),
        text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
        projection_dim=64,
    ),
    "b16": dict(
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                    image_size=224, patch_size=16),
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
        projection_dim=512,
    ),
    "l14-336": dict(
        vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                    image_size=336, patch_size=14),
        text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
        projection_dim=768,
    ),
}


def build(size: str, directory: Path, device: str, dtype: torch.dtype):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

    spec = SIZES[size]
    repo = Path(__file__).resolve().parents[1]
    tok = CLIPTokenizer.from_pretrained(str(repo / "data" / "clip-bpe"))
    cfg = CLIPConfig(
        text_config=dict(vocab_size=49408, max_position_embeddings=77, **spec["text"]),
        vision_config=spec["vision"],
        projection_dim=spec["projection_dim"],
    )
    torch.manual_seed(0)
    model = CLIPModel(cfg)
    s = spec["vision"]["image_size"]
    model.save_pretrained(directory)
    CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": s}, crop_size={"height": s, "width": s}),
        tokenizer=tok,
    ).save_pretrained(directory)
    del model
    from attnprompt.attribution.clip import ClipAttributor
    from attnprompt.attribution.configs import ClipConfig
    from attnprompt.models import load_clip

    return ClipAttributor(load_clip(str(directory), device=device, dtype=dtype), ClipConfig.from_preset())


def measure(size: str, args, image, query: str, dtype) -> str:
    """Time and memory rows for one CLIP size (the model lives only inside this call)."""
    from attnprompt.annotation import render_annotation

    with tempfile.TemporaryDirectory() as d:
        attributor = build(size, Path(d), args.device, dtype)
        model, tok = attributor.model, attributor.clip.tokenizer

        @torch.inference_mode()
        def embed():
            pixel_values, _ = attributor.preprocess([image])
            enc = tok([query], padding=True, truncation=True, max_length=77, return_tensors="pt").to(args.device)
            i = model.get_image_features(pixel_values=pixel_values).pooler_output
            t = model.get_text_features(**enc).pooler_output
            return float((i @ t.T).sum())

        def attribute():
            return attributor.attribute([image], [query])[0]

        def annotate():
            m = attributor.attribute([image], [query])[0]
            return render_annotation(image, query, m, attributor.describe())

        ops = {"embed": embed, "attribute": attribute, "annotate": annotate}
        return table(f"{size} (grid {attributor.grid}x{attributor.grid}, {attributor.depth} blocks)",
                     compare(ops, args.device, args.repeats), "embed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["b16", "l14-336"], choices=list(SIZES))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--image", default="640x480", help="input image size WxH")
    ap.add_argument("--smoke", action="store_true", help="a tiny CLIP, one repeat: seconds, to prove it runs")
    args = ap.parse_args()
    if args.smoke:
        args.sizes, args.repeats = ["tiny"], 1
    if not args.device.startswith("cuda"):
        exact_cpu_memory()
    dtype = getattr(torch, args.dtype)
    w, h = (int(v) for v in args.image.split("x"))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    query = "What colour is the car parked next to the red building?"

    print(f"device {args.device}, dtype {args.dtype}, image {w}x{h}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, repeats {args.repeats}")
    rows = [measure(size, args, image, query, dtype) for size in args.sizes]
    print("\n".join(rows))


if __name__ == "__main__":
    main()
