"""API with a VLM's own attention (paper §3.2); with the answering VLM as the attribution model, g = f.

The VLM answers (image, query) greedily for up to ``max_new_tokens`` tokens. For each of the M
forward steps that produced a token (the prefill's last position, then each decode step), at
decoder layer L̄ we take the attention of that step's query position to the image tokens,
average over heads and steps, and lay the result out on the image-token grid:

    paper:      Ψ_t = (1/MH) Σ_m Σ_h softmax(s_m,h)_t           (probabilities over all keys)
    reference:  Ψ_t = (1/MH) Σ_m Σ_h softmax(s_m,h[image span])_t (renormalised over the image
                                                                  tokens only — the authors' code)

Capture keeps the model's attention kernel (SDPA, FlashAttention-2, eager) and the KV cache (see
:class:`~attnprompt.capture.AttentionCapture`).
Image-token positions come from ``input_ids == image_token_id`` and the grid from the model config
and the processor's outputs, as the model's family says (:mod:`attnprompt.families`).

Generation is :func:`attnprompt.models.generate`, the routine that also answers questions, with
the chosen layers captured. Post-processing (:func:`attnprompt.render.postprocess`): ``reference``
min-max → enhance(5) → 3×3 mean filter (no final renormalisation, as the authors); ``paper``
min-max → 3×3 mean filter → min-max.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from .. import render
from ..checks import check_pairs, parse_layers
from ..errors import InputError, ProcessorMismatchError, UnsupportedModelError
from ..families import ImageSpan, family_names
from ..families.grid import GridLayout
from ..models import LoadedVlm, bounded_input, generate, load_vlm, require_chat_template
from ..text import with_suffix
from ..types import AttributionMap, Request
from .base import Attributor
from .configs import VlmConfig


@dataclass(frozen=True)
class TokenAttention:
    """One generation's attention to the image tokens: ``values[step, layer, token]`` (the last
    position's attention at each step, mean over heads, for each captured layer in order), the
    ``layout`` of the tokens on the image, and the greedy ``answer``.

    >>> TokenAttention(np.zeros((2, 1, 4)), None, "red").values.shape
    (2, 1, 4)
    """

    values: np.ndarray
    layout: GridLayout
    answer: str


def _map_record(vlm: LoadedVlm) -> dict[str, Any]:
    """What a map's configuration records of how its VLM was loaded: :meth:`LoadedVlm.record` less the answering
    model's own image fit (a map has its own ``fit``)."""
    return {k: v for k, v in vlm.record().items() if k != "answer_fit"}


class KernelNarrowedWarning(UserWarning):
    """The mean filter was wider than an image's token grid and was narrowed to fit it."""


def image_span_attention(scores: torch.Tensor, positions: torch.Tensor, variant: str) -> torch.Tensor:
    """Head-averaged attention of one query row to the image tokens.

    ``scores``: H×kv masked pre-softmax scores; ``positions``: indices of the image tokens.
    ``paper`` takes the softmax over all keys, ``reference`` over the image tokens only.

    >>> s = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    >>> image_span_attention(s, torch.tensor([1, 2]), "paper").tolist()
    [0.25, 0.25]
    >>> image_span_attention(s, torch.tensor([1, 2]), "reference").tolist()
    [0.5, 0.5]
    """
    if variant == "paper":
        probs = torch.softmax(scores, dim=-1)[:, positions]
    else:
        probs = torch.softmax(scores[:, positions], dim=-1)
    return probs.mean(0)


class VlmAttributor(Attributor):
    """API-VLM on a stock ``transformers`` LLaVA-1.5, LLaVA-NeXT, LLaVA-OneVision, Qwen2-VL, Qwen2.5-VL, Qwen3-VL,
    InternVL (2.5, 3), Gemma 3, Idefics3 or SmolVLM (see docs/families.md). Tiled families map the high-res grid
    stitched from their tiles (``grid="highres"``, the default) or their thumbnail / base image (``grid="base"``).

    >>> from attnprompt.shapes import make_scene
    >>> attributor = VlmAttributor.from_pretrained("shapes")
    >>> [m] = attributor.attribute([make_scene(7, n_objects=5, size=320).image], ["What colour is the circle?"])
    >>> m.shape, m.raw.shape
    ((16, 16), (16, 16))
    """

    method: ClassVar[str] = "api-vlm"
    config_class = VlmConfig
    config: VlmConfig
    model_kind: ClassVar[str] = "vlm"

    def __init__(self, vlm: LoadedVlm, config: VlmConfig | None = None, *, batch_size: int = 4) -> None:
        family = vlm.family_info if vlm.family is not None else None
        if family is None:
            raise UnsupportedModelError(
                f"api-vlm cannot read the image-token layout of {vlm.model_id!r} (model_type "
                f"{vlm.model.config.model_type!r}); supported: {', '.join(family_names())}"
            )
        require_chat_template(vlm, "api-vlm")
        self.vlm = vlm
        self.family = family
        self.model = vlm.model
        self.processor = vlm.processor
        self.config = config or VlmConfig.from_preset()
        self.model_id = vlm.model_id
        self.batch_size = int(batch_size)
        self.depth = int(self.model.config.get_text_config().num_hidden_layers)
        self.layers = parse_layers(self.config.layers, self.depth, allow_fraction=True)
        self.image_token_id = family.image_token_id(self.model.config)

    @classmethod
    def load(cls, model: str | LoadedVlm | None, *, device: str | None = None, dtype: Any = None,
             loading: Any = None) -> LoadedVlm:
        """A VLM (default LLaVA-1.5-7B), loaded once as ``loading`` says (:func:`attnprompt.models.load_vlm`); the
        answering backend shares the same object.

        >>> VlmAttributor.load("shapes").family
        'llava'
        """
        if isinstance(model, LoadedVlm):
            return model
        if model is not None and not isinstance(model, str):
            raise InputError(
                f"api-vlm needs a VLM: a hub id, a local directory or 'shapes'; got {type(model).__name__}"
            )
        return load_vlm(model, device=device, dtype=dtype, loading=loading)

    def describe(self) -> dict[str, Any]:
        """Configuration with the layer(s) resolved to absolute decoder indices, and how the VLM was loaded where
        that is not the default (:meth:`attnprompt.models.LoadedVlm.record`: its dtype unless float32, its kernel …).

        >>> d = VlmAttributor.from_pretrained("shapes").describe()
        >>> d["layers"], d["depth"], d["family"]
        ([2], 4, 'llava')
        """
        d = super().describe()
        d.update(layers=list(self.layers), depth=self.depth, family=self.vlm.family)
        d.update(_map_record(self.vlm))
        return d

    # -- inputs ------------------------------------------------------------------------------

    def prepare(self, image: Image.Image) -> tuple[Image.Image, tuple[float, float, float, float]]:
        """The image as the VLM should see it, and where the original lies in it, as its family says
        (``Family.prepare``): LLaVA-1.5 with ``fit="pad"`` is padded to a square with the processor's mean colour
        (so its centre crop loses nothing); other families take the image as it is.

        >>> from PIL import Image
        >>> VlmAttributor.from_pretrained("shapes").prepare(Image.new("RGB", (20, 10)))[1]
        (0.0, 0.25, 1.0, 0.75)
        """
        return self.family.prepare(image, self.processor, self.config.fit)

    def model_input(self, image: Image.Image) -> tuple[Image.Image, tuple[float, float, float, float]]:
        """:meth:`prepare`'s image as the processor is handed it (:func:`~attnprompt.models.bounded_input`: reduced
        when it is many times the model's input), and where the original lies in it: every pixel the passes read.

        >>> from PIL import Image
        >>> VlmAttributor.from_pretrained("shapes").model_input(Image.new("RGB", (4000, 2000)))[0].size
        (572, 572)
        """
        prepared, extent = self.prepare(image)
        return bounded_input(self.vlm, prepared), extent

    def request(self, image: Image.Image, query: str) -> Request:
        """The request whose greedy answer is read: the prepared image, then the query.

        >>> from PIL import Image
        >>> VlmAttributor.from_pretrained("shapes").request(Image.new("RGB", (20, 10)), "Why?").max_new_tokens
        20
        """
        return Request.single(self.prepare(image)[0], query, max_new_tokens=self.config.max_new_tokens)

    def _layouts(self, n_tokens: int, b: int, inputs: Any, extent: tuple,
                 image_hw: Sequence[int] | None = None) -> list[GridLayout]:
        """Row ``b``'s image-token layouts, ``[base, …, highres]`` (``Family.layouts``); ``image_hw`` is the
        (prepared) image's (height, width), needed where the processor's outputs do not carry it."""
        hw = (int(image_hw[0]), int(image_hw[1])) if image_hw is not None else None
        return self.family.layouts(ImageSpan(n_tokens, inputs, b, hw, tuple(extent)), self.model.config,
                                   self.processor)

    # -- attribution -------------------------------------------------------------------------

    def token_attention(
        self, images: Sequence[Image.Image], queries: Sequence[str], *, suffixes: Sequence[str] | None = None
    ) -> list[TokenAttention]:
        """For each (image, query): the greedy answer, and at every step and chosen layer the last
        position's attention to each image token, mean over heads (``variant`` decides the softmax),
        with the grid layout of those tokens — what api-vlm averages and CARVE contrasts.

        ``suffixes`` (the task's answer-format instruction) follow the queries, as the answering VLM
        would see them. Batched ``batch_size`` at a time, left-padded: one generation with capture.

        >>> from attnprompt.shapes import make_scene
        >>> [t] = VlmAttributor.from_pretrained("shapes").token_attention(
        ...     [make_scene(7, n_objects=5, size=320).image], ["What colour is the circle?"])
        >>> t.values.shape, t.layout.shape, t.answer
        ((2, 1, 256), (16, 16), 'green')
        """
        queries, suffixes = check_pairs(images, queries, suffixes)
        prompts = [with_suffix(q, s) for q, s in zip(queries, suffixes)]
        return self.attend([self.model_input(img) for img in images], prompts)  # prepared once (a large image costs)

    def attend(self, inputs: Sequence[tuple[Image.Image, tuple]], prompts: Sequence[str], *,
               share_prefix: bool = False) -> list[TokenAttention]:
        """:meth:`token_attention` for images already made the model's input (:meth:`model_input`: the image and
        its extent) and whole prompts, ``batch_size`` rows at a time; ``share_prefix``: rows that show the very same
        image object share their prompt's prefix (:func:`~attnprompt.models.generate`), and are batched together.

        >>> from attnprompt.shapes import make_scene
        >>> a = VlmAttributor.from_pretrained("shapes")
        >>> image = a.model_input(make_scene(7, n_objects=5, size=320).image)
        >>> [t.answer for t in a.attend([image, image], ["What colour is the circle?", "What colour is the star?"],
        ...                            share_prefix=True)]
        ['green', 'red']
        """
        order = list(range(len(inputs)))
        if share_prefix:  # the rows of one image next to each other, so that a batch holds them together
            first: dict[int, int] = {}
            order.sort(key=lambda i: first.setdefault(id(inputs[i][0]), i))
        out: dict[int, TokenAttention] = {}
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            found = self._token_batch([inputs[i] for i in rows], [prompts[i] for i in rows], share_prefix)
            out.update(zip(rows, found))
        return [out[i] for i in range(len(inputs))]

    def _token_batch(self, prepared: Sequence[tuple[Image.Image, tuple]], prompts: Sequence[str],
                     share_prefix: bool = False) -> list[TokenAttention]:
        with torch.no_grad():
            extents = [e for _, e in prepared]
            requests = [Request.single(img, p, max_new_tokens=self.config.max_new_tokens)
                        for (img, _), p in zip(prepared, prompts)]
            # the images are prepared already (fit): the answering model's own fit must not pad them again
            out = generate(self.vlm, requests, capture=self.layers, fit=self.config.fit, share_prefix=share_prefix)
            results = []
            for b, n_steps in enumerate(out.steps):
                positions = (out.inputs["input_ids"][b] == self.image_token_id).nonzero().flatten()
                if len(positions) == 0:
                    raise ProcessorMismatchError(
                        f"{self.model_id!r}: no image tokens in the prompt; does its chat template place the image?"
                    )
                rows = [[out.scores[layer][s][b] for layer in self.layers] for s in range(n_steps)]
                values = torch.stack([
                    torch.stack([image_span_attention(r, positions.to(r.device), self.config.variant) for r in step])
                    for step in rows
                ])  # steps × layers × image tokens
                size = prepared[b][0].size
                layouts = self._layouts(len(positions), b, out.inputs, extents[b], (size[1], size[0]))
                layout = layouts[-1] if self.config.grid == "highres" else layouts[0]
                results.append(TokenAttention(values.double().cpu().numpy(), layout, out.texts[b]))
        return results

    def run(
        self, images: Sequence[Image.Image], queries: Sequence[str], *, suffixes: Sequence[str] | None = None
    ) -> tuple[list[AttributionMap], list[str]]:
        """Attribution maps and the greedy answers they were read from, for (image, query) pairs.

        >>> from attnprompt.shapes import make_scene
        >>> maps, answers = VlmAttributor.from_pretrained("shapes").run(
        ...     [make_scene(7, n_objects=5, size=320).image], ["What colour is the circle?"])
        >>> answers
        ['green']
        """
        found = self.token_attention(images, queries, suffixes=suffixes)
        return [self.to_map(t.values.mean((0, 1)), t.layout) for t in found], [t.answer for t in found]

    def attribute(
        self, images: Sequence[Image.Image], queries: Sequence[str], *, suffixes: Sequence[str] | None = None
    ) -> list[AttributionMap]:
        """API-VLM maps for the pairs ``(images[i], queries[i])``; ``raw`` is the mean attention to
        each image token (over heads, steps and layers) before any normalisation.

        >>> from attnprompt.shapes import make_scene
        >>> scene = make_scene(7, n_objects=5, size=320)
        >>> [m] = VlmAttributor.from_pretrained("shapes").attribute([scene.image], ["the circle"])
        >>> round(float(m.raw.sum()), 4)  # the reference variant's rows are distributions over the image tokens
        1.0
        """
        return self.run(images, queries, suffixes=suffixes)[0]

    def to_map(self, token_values: np.ndarray, layout: GridLayout) -> AttributionMap:
        """Per-token values → the map on ``layout``'s grid: raw, and post-processed.

        >>> import numpy as np
        >>> from attnprompt.families.grid import GridLayout
        >>> a = VlmAttributor.from_pretrained("shapes", kernel=1, enhance=0)
        >>> a.to_map(np.array([1.0, 3.0]), GridLayout("g", np.array([[1, 0]]))).grid.tolist()
        [[1.0, 0.0]]
        """
        raw = layout.gather(token_values)
        return AttributionMap(grid=self.postprocess(raw), raw=raw, extent=layout.extent)

    def postprocess(self, raw: np.ndarray) -> np.ndarray:
        """The configured :func:`attnprompt.render.postprocess` of a raw grid.

        >>> VlmAttributor.from_pretrained("shapes", kernel=1, enhance=0).postprocess(np.array([[1.0, 3.0]])).tolist()
        [[0.0, 1.0]]
        """
        c = self.config
        kernel = c.kernel
        if kernel > max(raw.shape):
            # the grid depends on the image (Qwen, LLaVA-NeXT): narrow the filter for this one, and say so
            kernel = max(raw.shape) - (1 - max(raw.shape) % 2)
            warnings.warn(f"kernel {c.kernel} is wider than this image's {raw.shape[0]}×{raw.shape[1]} grid; "
                          f"filtered with kernel {kernel}", KernelNarrowedWarning, stacklevel=3)
        return render.postprocess(raw, enhance=c.enhance, kernel=kernel, renormalize=c.renormalize)
