"""API with a VLM's own attention (paper §3.2, "self-reflection" when the VLM also answers).

The VLM answers (image, query) greedily for up to ``max_new_tokens`` tokens. For each of the M
forward steps that produced a token (the prefill's last position, then each decode step), at
decoder layer L̄ we take the attention of that step's query position to the image tokens,
average over heads and steps, and lay the result out on the image-token grid:

    paper:      Ψ_t = (1/MH) Σ_m Σ_h softmax(s_m,h)_t           (probabilities over all keys)
    reference:  Ψ_t = (1/MH) Σ_m Σ_h softmax(s_m,h[image span])_t (renormalised over the image
                                                                  tokens only — the authors' code)

Capture keeps SDPA and the KV cache (see :class:`~attnprompt.attribution.capture.AttentionCapture`).
Image-token positions come from ``input_ids == image_token_id`` and the grid from the model config
and the processor's outputs (see :mod:`~attnprompt.attribution.layouts`).

Post-processing: ``reference`` min-max → enhance(5) → 3×3 mean filter (no final renormalisation,
as the authors); ``paper`` min-max → 3×3 mean filter → min-max.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Sequence

import numpy as np
import torch
from PIL import Image

from .. import render
from ..errors import InputError
from ..models import LoadedVlm, load_vlm
from ..types import AttributionMap
from .base import Attributor, MethodConfig, check_choice, check_enhance, check_kernel, check_query, parse_layers
from .capture import AttentionCapture
from .layouts import GridLayout, llava_layout, llava_next_layout, qwen_vl_layout

VARIANTS = ("reference", "paper")
NEXT_GRIDS = ("highres", "base")


@dataclasses.dataclass(frozen=True)
class VlmConfig(MethodConfig):
    """Hyper-parameters of API-VLM. Defaults are the ``reference`` preset.

    - ``layers``: decoder layer(s) L̄ — a fraction of depth (0.5 = the middle-deep layer the paper
      found best: 20 of LLaVA-1.5-13B's 40), an index, a list or a slice; several are averaged.
    - ``variant``: ``reference`` (softmax renormalised over image tokens) or ``paper``.
    - ``max_new_tokens``: greedy answer length M (the steps averaged).
    - ``enhance``, ``kernel``: as for api-clip; ``renormalize``: min-max after the filter.
    - ``grid``: LLaVA-NeXT only — the ``highres`` tile grid (default) or the ``base`` grid.
    - ``fit``: fixed-square processors (LLaVA-1.5): ``pad`` to a square with the mean colour
      first, so no part of the image is cropped away (the original LLaVA "pad" mode), or
      ``processor`` to keep the processor's own resize/crop (cropped sides get no heat).

    >>> VlmConfig.from_preset("paper").variant
    'paper'
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": dict(variant="reference", layers=0.5, max_new_tokens=20, enhance=5.0, kernel=3, renormalize=False),
        "paper": dict(variant="paper", layers=0.5, max_new_tokens=20, enhance=0.0, kernel=3, renormalize=True),
    }
    DEFAULT_PRESET: ClassVar[str] = "reference"

    preset: str = "reference"
    variant: str = "reference"
    layers: Any = 0.5
    max_new_tokens: int = 20
    enhance: float = 5.0
    kernel: int = 3
    renormalize: bool = False
    grid: str = "highres"
    fit: str = "pad"

    def __post_init__(self) -> None:
        check_choice("variant", self.variant, VARIANTS)
        check_choice("grid", self.grid, NEXT_GRIDS)
        check_choice("fit", self.fit, ("pad", "processor"))
        n = self.max_new_tokens
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"max_new_tokens must be an integer ≥ 1; got {n!r}")
        object.__setattr__(self, "kernel", check_kernel(self.kernel))
        object.__setattr__(self, "enhance", check_enhance(self.enhance))
        if isinstance(self.layers, list):
            object.__setattr__(self, "layers", tuple(self.layers))
        if isinstance(self.layers, str):
            try:
                object.__setattr__(self, "layers", float(self.layers) if "." in self.layers else self.layers)
            except ValueError:
                pass


def image_span_attention(scores: torch.Tensor, positions: torch.Tensor, variant: str) -> torch.Tensor:
    """Head-averaged attention of one query row to the image tokens.

    ``scores``: H×kv masked pre-softmax scores; ``positions``: indices of the image tokens.
    ``paper`` takes the softmax over all keys, ``reference`` over the image tokens only.

    >>> s = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    >>> image_span_attention(s, torch.tensor([1, 2]), "paper").tolist(), image_span_attention(s, torch.tensor([1, 2]), "reference").tolist()
    ([0.25, 0.25], [0.5, 0.5])
    """
    if variant == "paper":
        probs = torch.softmax(scores, dim=-1)[:, positions]
    else:
        probs = torch.softmax(scores[:, positions], dim=-1)
    return probs.mean(0)


class VlmAttributor(Attributor):
    """API-VLM on a stock ``transformers`` LLaVA-1.5, LLaVA-NeXT, Qwen2-VL or Qwen2.5-VL.

    >>> attributor = VlmAttributor.from_pretrained("shapes-vlm")  # doctest: +SKIP
    >>> [m] = attributor.attribute([image], ["What colour is the star?"])  # doctest: +SKIP
    """

    method: ClassVar[str] = "api-vlm"

    def __init__(self, vlm: LoadedVlm, config: VlmConfig | None = None, *, batch_size: int = 4) -> None:
        if vlm.family is None:
            raise InputError(
                f"api-vlm cannot read the image-token layout of {vlm.model_id!r} (model_type "
                f"{vlm.model.config.model_type!r}); supported: LLaVA-1.5, LLaVA-NeXT, Qwen2-VL, Qwen2.5-VL"
            )
        self.vlm = vlm
        self.model = vlm.model
        self.processor = vlm.processor
        self.config = config or VlmConfig.from_preset()
        self.model_id = vlm.model_id
        self.batch_size = int(batch_size)
        self.depth = int(self.model.config.get_text_config().num_hidden_layers)
        self.layers = parse_layers(self.config.layers, self.depth, allow_fraction=True)
        cfg = self.model.config
        self.image_token_id = int(getattr(cfg, "image_token_id", None) or getattr(cfg, "image_token_index"))
        if getattr(self.processor, "chat_template", None) is None:
            raise InputError(f"{self.model_id!r} has no chat template; api-vlm needs one to build its prompt")

    @classmethod
    def from_pretrained(
        cls, name: str | None = None, *, device: str | None = None, dtype: Any = None, preset: str | None = None, **params: Any
    ) -> "VlmAttributor":
        """Load a VLM (cached) and configure API-VLM on it.

        >>> VlmAttributor.from_pretrained("shapes-vlm", layers=0.75)  # doctest: +SKIP
        """
        config = VlmConfig.from_preset(preset, **params)
        return cls(load_vlm(name, device=device, dtype=dtype), config)

    def describe(self) -> dict[str, Any]:
        """Configuration with the layer(s) resolved to absolute decoder indices.

        >>> # {'method': 'api-vlm', 'model': ..., 'layers': [16], 'depth': 32, 'family': 'llava', ...}
        """
        d = super().describe()
        d.update(layers=list(self.layers), depth=self.depth, family=self.vlm.family)
        return d

    # -- inputs ------------------------------------------------------------------------------

    def _prepare(self, image: Image.Image) -> tuple[Image.Image, tuple[float, float, float, float]]:
        if self.vlm.family == "llava" and self.config.fit == "pad":
            ip = self.processor.image_processor
            fill = tuple(int(round(255 * m)) for m in ip.image_mean)
            side = max(image.size)
            canvas, extent = render.fit_square(image, side, fit="pad", fill=fill)
            return canvas, extent
        return image, (0.0, 0.0, 1.0, 1.0)

    def prompt(self, query: str) -> str:
        """The chat prompt for one image and ``query`` (the model's own chat template).

        >>> # attributor.prompt("What colour is the star?") -> 'USER: <image>\\nWhat colour is the star? ASSISTANT:'
        """
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": query}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def _layouts(self, n_tokens: int, b: int, inputs: Any, extent: tuple, image: Image.Image) -> list[GridLayout]:
        family, cfg = self.vlm.family, self.model.config
        if family == "llava":
            return llava_layout(n_tokens, cfg, extent)
        if family == "llava_next":
            hw = [int(v) for v in inputs["image_sizes"][b]]
            return llava_next_layout(n_tokens, cfg, hw)
        merge = int(cfg.vision_config.spatial_merge_size)
        return qwen_vl_layout(n_tokens, [int(v) for v in inputs["image_grid_thw"][b]], merge)

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        if eos is None:
            eos = getattr(self.processor.tokenizer, "eos_token_id", None)
        return set(eos if isinstance(eos, (list, tuple)) else [eos]) - {None}

    # -- attribution -------------------------------------------------------------------------

    @torch.no_grad()
    def run(self, images: Sequence[Image.Image], queries: Sequence[str]) -> tuple[list[AttributionMap], list[str]]:
        """Attribution maps and the greedy answers they were read from, for (image, query) pairs.

        >>> # maps, answers = attributor.run([img], ["What colour is the star?"])
        """
        if len(images) != len(queries):
            raise InputError(f"got {len(images)} images but {len(queries)} queries; give one query per image")
        queries = [check_query(q) for q in queries]
        maps: list[AttributionMap] = []
        answers: list[str] = []
        for start in range(0, len(images), self.batch_size):
            m, a = self._run_batch(images[start : start + self.batch_size], queries[start : start + self.batch_size])
            maps += m
            answers += a
        return maps, answers

    def attribute(self, images: Sequence[Image.Image], queries: Sequence[str]) -> list[AttributionMap]:
        """API-VLM maps for the pairs ``(images[i], queries[i])``.

        >>> # maps = attributor.attribute([img], ["What colour is the star?"])
        """
        return self.run(images, queries)[0]

    def _run_batch(self, images: Sequence[Image.Image], queries: Sequence[str]) -> tuple[list[AttributionMap], list[str]]:
        prepared = [self._prepare(img) for img in images]
        prompts = [self.prompt(q) for q in queries]
        inputs = self.processor(text=prompts, images=[p[0] for p in prepared], padding=True, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        prompt_len = inputs["input_ids"].shape[1]
        with AttentionCapture(self.model, self.layers) as cap:
            out = self.model.generate(
                **inputs, max_new_tokens=self.config.max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None
            )
        generated = out[:, prompt_len:]
        eos = self._eos_ids()
        maps, answers = [], []
        tok = self.processor.tokenizer
        for b in range(len(images)):
            row = generated[b].tolist()
            n_steps = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            answers.append(tok.decode(row[: n_steps - (1 if row[n_steps - 1] in eos else 0)], skip_special_tokens=True).strip())
            positions = (inputs["input_ids"][b] == self.image_token_id).nonzero().flatten()
            if len(positions) == 0:
                raise InputError(f"{self.model_id!r}: no image tokens in the prompt; does its chat template place the image?")
            per_layer = []
            for layer in self.layers:
                steps = cap.scores[layer][:n_steps]
                per_layer.append(
                    torch.stack([image_span_attention(s[b], positions.to(s.device), self.config.variant) for s in steps]).mean(0)
                )
            token_values = torch.stack(per_layer).mean(0).float().cpu().numpy()
            layouts = self._layouts(len(positions), b, inputs, prepared[b][1], prepared[b][0])
            layout = layouts[-1] if self.config.grid == "highres" else layouts[0]
            raw = layout.gather(token_values)
            maps.append(AttributionMap(grid=self.postprocess(raw), extent=layout.extent, parts={"raw": raw}))
        return maps, answers

    def postprocess(self, raw: np.ndarray) -> np.ndarray:
        """min-max → enhance (if on) → mean filter → min-max (if ``renormalize``).

        >>> # attributor.postprocess(raw_grid)
        """
        c = self.config
        m = render.minmax(raw)
        if c.enhance > 0:
            m = render.enhance(m, c.enhance)
        m = render.mean_filter(m, c.kernel)
        return render.minmax(m, constant=1.0) if c.renormalize else np.clip(m, 0.0, 1.0)
