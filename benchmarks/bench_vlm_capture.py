"""api-vlm attribution cost against plain generation, measured side by side in one run.

On one random-weight LLaVA-architecture model (no download): a CLIP ViT-L/14-336 vision tower
and a Llama decoder — ``small`` (~0.5 B parameters in all, for CPUs) or ``7b`` (LLaVA-1.5-7B
size, for a GPU) — times (median of interleaved repeats) and peak extra memory of:

- ``generate``:          :func:`attnprompt.models.generate` (processor + greedy generation, SDPA, KV cache) —
                          a plain answer, what answering costs;
- ``api-vlm``:           processor + the same generation with the attention capture + the map;
- ``api-authors``:       the API authors' own computation (yu-rp/apiprompting, the ``LlamaAttention`` of their
                          vendored ``llava/transformers/models/llama/modeling_llama.py``, written here from its
                          description): greedy generation with a KV cache in which every decoder layer computes
                          eager scores and an fp32 softmax, weights every value by every (query, key) weight —
                          ``einsum('bnqk,bnkd->bnqkd')``, a (batch, heads, queries, keys, head size) tensor — and
                          applies ``o_proj`` to each of the queries × keys rows before summing over keys; the map
                          (their hook's) is the captured layer's last-row softmax over the image tokens, mean over
                          heads and steps;
- ``output_attentions``: transformers' eager attention returning every layer's attention weights at every step
                          (``generate(output_attentions=True)``) — a common way to read attention, not the authors'.

Every op generates exactly ``--tokens`` tokens (EOS disabled). Target: api-vlm ≤ 1.15× generate. ``api-authors``
holds queries × keys × width values per layer during the prefill (1.4 GB per layer at ``small``): it is left out of
the warm-up round.

``--family`` measures, instead, a random-weight model of a newer family at its real decoder depth and image-token
geometry, with narrow layers so that CPUs can run it (``_models.random_family``): Qwen3-VL, InternVL3, Gemma 3,
SmolVLM or LLaVA-OneVision (``all`` for each in turn); ``generate`` against ``api-vlm`` only.

``--smoke`` runs tiny models (``--family``: 2 decoder layers) with 2 tokens and one repeat, in seconds: it proves the
script runs; its figures mean nothing.

    python benchmarks/bench_vlm_capture.py [--size small|7b] [--tokens 20] [--repeats 3]
    python benchmarks/bench_vlm_capture.py --family all [--tokens 10] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import add_device_args, compare, device_dtype, table  # noqa: E402
from _models import FAMILY_DEPTH, LLAMA_SIZES, Attention, random_family, random_llava  # noqa: E402


class AuthorsAttention:
    """Inside the ``with`` block every decoder layer's self-attention of ``model`` computes as the API authors'
    vendored ``LlamaAttention`` does (see the module docstring), and ``rows[layer]`` collects, for the layers in
    ``watch``, the last query row's masked scores before the softmax (batch, heads, keys) — what their hook logs at
    one layer (it then takes the softmax over the image tokens and the mean over heads). The model's own forward
    comes back on exit."""

    def __init__(self, model, watch) -> None:
        from attnprompt.capture import language_attention_modules

        depth = model.config.get_text_config().num_hidden_layers
        self.modules = language_attention_modules(model, range(depth))
        self.watch = set(watch)
        self.rows: dict[int, list[torch.Tensor]] = {i: [] for i in self.watch}

    def _forward(self, module, hidden_states, position_embeddings=None, attention_mask=None, cache=None,
                 past_key_values=None, **kwargs):
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

        batch, queries, _ = hidden_states.shape
        shape = (batch, queries, -1, module.head_dim)
        q = module.q_proj(hidden_states).view(shape).transpose(1, 2)
        k = module.k_proj(hidden_states).view(shape).transpose(1, 2)
        v = module.v_proj(hidden_states).view(shape).transpose(1, 2)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        cache = cache if cache is not None else past_key_values
        if cache is not None:
            k, v = cache.update(k, v, module.layer_idx)
        k, v = repeat_kv(k, module.num_key_value_groups), repeat_kv(v, module.num_key_value_groups)
        scores = torch.matmul(q, k.transpose(2, 3)) * module.scaling
        if attention_mask is not None:
            if attention_mask.dtype == torch.bool:
                scores = scores.masked_fill(~attention_mask, torch.finfo(scores.dtype).min)
            else:
                scores = scores + attention_mask
        if module.layer_idx in self.watch:
            self.rows[module.layer_idx].append(scores[:, :, -1].float())
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype)
        keys = k.shape[2]
        # each (query, key) pair's weighted value, then o_proj on every one of those rows, then the sum over keys
        per_pair = torch.einsum("bnqk,bnkd->bnqkd", weights, v)
        per_pair = per_pair.permute(0, 2, 3, 1, 4).reshape(batch, queries, keys, -1)
        return module.o_proj(per_pair).sum(2), weights

    def __enter__(self) -> AuthorsAttention:
        from types import MethodType

        for module in self.modules.values():
            module.forward = MethodType(self._forward, module)
        return self

    def __exit__(self, *exc) -> None:
        for module in self.modules.values():
            del module.forward  # the instance attribute: the class's forward is back


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="small", choices=list(LLAMA_SIZES))
    ap.add_argument("--tokens", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--family", default=None, choices=[*FAMILY_DEPTH, "all"],
                    help="a newer family at its real depth instead of LLaVA-1.5 (all: each in turn)")
    ap.add_argument("--smoke", action="store_true", help="tiny models, 2 tokens, 1 repeat: seconds, to prove it runs")
    add_device_args(ap)
    args = ap.parse_args()
    if args.smoke:
        args.tokens, args.repeats = 2, 1
    dtype = device_dtype(args)
    if args.family:
        for family in FAMILY_DEPTH if args.family == "all" else [args.family]:
            bench_family(family, args, dtype)
        return
    from attnprompt.attribution.configs import VlmConfig
    from attnprompt.attribution.vlm_attention import VlmAttributor
    from attnprompt.models import chat_prompt, generate

    size = "tiny" if args.smoke else args.size
    vlm = random_llava(size, args.device, dtype)
    model, proc = vlm.model, vlm.processor
    n_params = sum(p.numel() for p in model.parameters())
    attributor = VlmAttributor(vlm, VlmConfig.from_preset(max_new_tokens=args.tokens))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    query = "what is in the image ? describe the red car on the left"
    request = attributor.request(image, query)  # what both the answer and the map generate from

    def inputs():
        return proc(text=[chat_prompt(proc, request)], images=[request.images[0]], return_tensors="pt").to(
            args.device, dtype
        )

    def plain_generate():
        return generate(vlm, [request])

    def api_vlm():
        return attributor.run([image], [query])

    @torch.no_grad()
    def authors():
        x = inputs()
        with Attention(model, "eager"), AuthorsAttention(model, attributor.layers) as watch:
            model.generate(**x, max_new_tokens=args.tokens, do_sample=False)
        positions = (x["input_ids"][0] == attributor.image_token_id).nonzero().flatten()
        rows = torch.stack([r[0][:, positions].softmax(-1).mean(0) for layer in attributor.layers
                            for r in watch.rows[layer]])  # the authors' hook: softmax over the image tokens
        return rows.mean(0).reshape(24, 24)

    @torch.no_grad()
    def output_attentions():
        with Attention(model, "eager"):
            return model.generate(**inputs(), max_new_tokens=args.tokens, do_sample=False, output_attentions=True,
                                  return_dict_in_generate=True)

    n_prompt = inputs()["input_ids"].shape[1]
    print(
        f"device {args.device}, dtype {dtype}, {n_params / 1e9:.2f} B parameters ({size}), "
        f"prompt {n_prompt} tokens "
        f"(576 image), {args.tokens} new tokens, capture at layer {attributor.layers}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, repeats {args.repeats}"
    )
    ops = {"generate": plain_generate, "api-vlm": api_vlm, "api-authors": authors,
           "output_attentions": output_attentions}
    results = compare(ops, args.device, args.repeats, warmup=("generate", "api-vlm", "output_attentions"))
    print(table("api-vlm vs plain generation", results, "generate"))


def bench_family(family: str, args, dtype) -> None:
    """Capture cost against plain generation on one newer family's random model (640×480 image)."""
    from attnprompt.attribution.configs import VlmConfig
    from attnprompt.attribution.vlm_attention import VlmAttributor
    from attnprompt.models import generate

    depth = 2 if args.smoke else FAMILY_DEPTH[family]
    vlm = random_family(family, args.device, dtype, depth=depth)
    attributor = VlmAttributor(vlm, VlmConfig.from_preset(max_new_tokens=args.tokens))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    query = "what is in the image ? describe the red car on the left"
    request = attributor.request(image, query)
    out = generate(vlm, [request])
    n_prompt = out.inputs["input_ids"].shape[1]
    n_image = int((out.inputs["input_ids"][0] == attributor.image_token_id).sum())
    n_params = sum(p.numel() for p in vlm.model.parameters())
    print(f"\n{family}: device {args.device}, dtype {dtype}, {n_params / 1e6:.0f} M parameters, "
          f"{depth} decoder layers, prompt {n_prompt} tokens ({n_image} image), {args.tokens} new "
          f"tokens, capture at layer {attributor.layers}, threads {torch.get_num_threads()}, repeats {args.repeats}")
    ops = {"generate": lambda: generate(vlm, [request]), "api-vlm": lambda: attributor.run([image], [query])}
    results = compare(ops, args.device, args.repeats)
    print(table(f"{family}: api-vlm vs plain generation", results, "generate"))


if __name__ == "__main__":
    main()
