"""API with CLIP (paper §3.1): decompose the image embedding into per-patch contributions.

For a block l, the attention output at the cls position splits exactly over key tokens t:

    [MSA_l(Z)]_cls = Σ_t ( Σ_h A^{l,h}_{cls,t} · V^{l,h}_t · W_o^{l,h} + B_l / T ) ≜ Σ_t η^l_t

Each η^l_t is mapped into the joint image–text space by 𝓛, the final LayerNorm linearised
with the statistics of the final cls token, followed by the visual projection. Then

    Ψᶜˡˢ_t  = sim( Σ_{l∈layers} 𝓛(η^l_t), T̂ )      (patch tokens only; the cls key is dropped)
    Ψᶜᵒᵐᵖ_t = 1 − sim( 𝓛(Z_t), T̂ )                  (Z_t: residual stream of patch t after the
                                                      deepest chosen block)
    Ψ       = Ψᶜˡˢ + Ψᶜᵒᵐᵖ − Ψᶜˡˢ·Ψᶜᵒᵐᵖ             (soft OR, after normalisation)

Cost: one SDPA forward of each tower. The attention row of the cls query is recomputed from
the captured q/k/v projections of the chosen blocks; the largest intermediate is T×D per
image and block (never tokens × tokens × heads × dim).

Three presets (see :class:`~attnprompt.attribution.configs.ClipConfig`):

- ``reference`` (default) — the authors' released code: one block at depth −2; LayerNorm
  linearised by subtracting the final cls token's mean spread evenly over the T terms; a dot
  product with the unit text embedding scaled by the image embedding's norm; Ψᶜˡˢ min-max →
  enhance(coefficient 5); Ψᶜᵒᵐᵖ = (max − s)/(max − min); 3×3 mean filter on both; soft OR;
  min-max.
- ``paper`` — the paper's equations: the sum over blocks L'..L (from depth −2 to the last);
  exact per-term centring; cosine similarity; no enhance; same filter, soft OR, min-max.
- ``grounding`` — not from the paper: Ψᶜˡˢ alone over blocks L−2..L, no filter. It answers
  "where is the thing the query names" (pointing) rather than "what should stay visible"
  (prompting): Ψᶜᵒᵐᵖ keeps every object visible by design, and assumes "register" patches
  that a small model may lack (see the shapes pointing benchmark).

The final LayerNorm's bias β is an image-independent term of the decomposition (like
Z⁰_cls in Eq. 1); it is added once to whole tokens (Ψᶜᵒᵐᵖ) and not to the η terms.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image

from .. import render
from ..capture import capture_outputs
from ..checks import check_kernel, check_pairs, parse_layers
from ..errors import InputError
from ..models import LoadedClip, load_clip
from ..types import AttributionMap
from .base import Attributor
from .configs import ClipConfig


class TruncationWarning(UserWarning):
    """A query was longer than the text tower's context and was cut.

    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", TruncationWarning)  # silence it where long queries are expected
    """


def cls_contributions(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out_weight: torch.Tensor,
    out_bias: torch.Tensor | None,
    num_heads: int,
    scale: float,
) -> torch.Tensor:
    """η_t: the cls output of one attention block, split over key tokens (paper Eq. 4).

    ``q``, ``k``, ``v`` are the block's projected queries/keys/values (B×T×D, heads
    concatenated); ``out_weight`` is the out-projection (D×D, ``nn.Linear`` layout).
    Returns B×T×D with ``η.sum(1) == attention_output[:, 0]`` exactly.

    >>> B, T, D = 1, 5, 8
    >>> q, k, v = torch.randn(3, B, T, D).unbind(0)
    >>> eta = cls_contributions(q, k, v, torch.eye(D), torch.zeros(D), 2, 0.5)
    >>> tuple(eta.shape)
    (1, 5, 8)
    """
    b, t, d = k.shape
    hd = d // num_heads
    q_cls = q[:, 0].reshape(b, num_heads, hd)
    kh = k.reshape(b, t, num_heads, hd)
    vh = v.reshape(b, t, num_heads, hd)
    attn = torch.softmax(torch.einsum("bhd,bthd->bht", q_cls, kh) * scale, dim=-1)  # B×H×T
    weighted = (attn.transpose(1, 2).unsqueeze(-1) * vh).reshape(b, t, d)  # B×T×D
    eta = weighted @ out_weight.T
    if out_bias is not None:
        eta = eta + out_bias / t
    return eta


class ClipAttributor(Attributor):
    """API-CLIP on a stock ``transformers`` ``CLIPModel`` of any size.

    >>> from attnprompt.shapes import make_scene
    >>> attributor = ClipAttributor.from_pretrained("shapes")
    >>> [m] = attributor.attribute([make_scene(7, n_objects=5, size=320).image], ["the red star"])
    >>> m.shape, float(m.grid.max())
    ((24, 24), 1.0)
    """

    method: ClassVar[str] = "api-clip"
    config_class = ClipConfig
    config: ClipConfig

    def __init__(self, clip: LoadedClip, config: ClipConfig | None = None, *, batch_size: int = 16) -> None:
        self.clip = clip
        self.model = clip.model
        self.config = config or ClipConfig.from_preset()
        self.model_id = clip.model_id
        self.batch_size = int(batch_size)
        vc = self.model.config.vision_config
        self.depth = int(vc.num_hidden_layers)
        self.layers = parse_layers(self.config.layers, self.depth)
        self.comp_layer = (
            max(self.layers) if self.config.comp_layer is None else parse_layers(self.config.comp_layer, self.depth)[0]
        )
        self.image_size = int(vc.image_size)
        self.grid = self.image_size // int(vc.patch_size)
        check_kernel(self.config.kernel, (self.grid, self.grid))
        self.context = int(self.model.config.text_config.max_position_embeddings)

    @classmethod
    def load(cls, model: str | LoadedClip | None, *, device: str | None = None, dtype: Any = None,
             loading: Any = None) -> LoadedClip:
        """A CLIP (default the paper's ViT-L/14-336), loaded once as ``loading`` says
        (:func:`attnprompt.models.load_clip`).

        >>> ClipAttributor.load("shapes").model_id
        'shapes'
        """
        if isinstance(model, LoadedClip):
            return model
        if model is not None and not isinstance(model, str):
            raise InputError(
                f"api-clip needs a CLIP: a hub id, a local directory or 'shapes'; got {type(model).__name__}"
            )
        return load_clip(model, device=device, dtype=dtype, loading=loading)

    def describe(self) -> dict[str, Any]:
        """Configuration with layers resolved to absolute block indices, and how the CLIP was loaded where that is
        not the default (:meth:`attnprompt.models.LoadedClip.record`).

        >>> d = ClipAttributor.from_pretrained("shapes").describe()
        >>> d["model"], d["layers"], d["comp_layer"], d["depth"]
        ('shapes', [4], 4, 6)
        """
        d = super().describe()
        d.update(layers=list(self.layers), comp_layer=self.comp_layer, depth=self.depth, grid=[self.grid, self.grid])
        d.update(self.clip.record())
        return d

    # -- inputs -------------------------------------------------------------------------

    def _device(self) -> torch.device:
        return next(self.model.parameters()).device

    def preprocess(self, images: Sequence[Image.Image]) -> tuple[torch.Tensor, list[tuple[float, float, float, float]]]:
        """Images → normalised pixel tensor (B×3×S×S) and each image's extent in the grid frame."""
        s = self.image_size
        mean = np.asarray(self.clip.image_mean, np.float32)
        std = np.asarray(self.clip.image_std, np.float32)
        r, g, b = (int(round(255 * m)) for m in self.clip.image_mean)
        arrays, extents = [], []
        for img in images:
            canvas, extent = render.fit_square(img, s, fit=self.config.fit, fill=(r, g, b))
            arr = (np.asarray(canvas, np.float32) / 255.0 - mean) / std
            arrays.append(arr.transpose(2, 0, 1))
            extents.append(extent)
        pixel_values = torch.from_numpy(np.stack(arrays))
        return pixel_values.to(self._device(), self.model.dtype), extents

    def encode_text(self, queries: Sequence[str]) -> torch.Tensor:
        """Unit text embeddings T̂ (Q×E); queries past the context are truncated with a warning."""
        from ..models import quiet_transformers

        tok = self.clip.tokenizer
        with quiet_transformers():  # its "indexing errors" warning: we truncate, and say so below
            full = tok(list(queries), add_special_tokens=True)["input_ids"]
        for q, ids in zip(queries, full):
            if len(ids) > self.context:
                warnings.warn(
                    f"query truncated to CLIP's {self.context}-token context: {len(ids) - self.context} "
                    f"token(s) dropped from {q[:60]!r}{'…' if len(q) > 60 else ''}",
                    TruncationWarning,
                    stacklevel=3,
                )
        enc = tok(list(queries), padding=True, truncation=True, max_length=self.context, return_tensors="pt")
        enc = {k: v.to(self._device()) for k, v in enc.items()}
        out = self.model.get_text_features(**enc)
        emb = out.pooler_output if hasattr(out, "pooler_output") else out
        emb = emb.to(self._compute_dtype())
        return emb / emb.norm(dim=-1, keepdim=True)

    def _compute_dtype(self) -> torch.dtype:
        # fp16/bf16 models still decompose in fp32: the terms are small differences of big numbers.
        return torch.float64 if self.model.dtype == torch.float64 else torch.float32

    # -- the decomposition ---------------------------------------------------------------

    def image_terms(self, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
        """One vision forward → per-patch joint-space vectors for Ψᶜˡˢ and Ψᶜᵒᵐᵖ.

        Returns ``psi`` (B×N×E: Σ_l 𝓛(η^l_t) over patch tokens), ``comp`` (B×N×E: 𝓛(Z_t)),
        ``image_embed`` (B×E, the model's own image embedding) and ``eta`` (per block,
        B×T×D, cls key included), ``attn_out`` (per block, the real attention output B×T×D).
        """
        vm = self.model.vision_model
        blocks = vm.encoder.layers
        watch: dict[str, torch.nn.Module] = {}
        for l in self.layers:
            att = blocks[l].self_attn
            watch.update({f"q{l}": att.q_proj, f"k{l}": att.k_proj, f"v{l}": att.v_proj, f"a{l}": att})
        watch[f"z{self.comp_layer}"] = blocks[self.comp_layer]
        with capture_outputs(watch) as seen:
            out = vm(pixel_values=pixel_values)
        cdt = self._compute_dtype()
        last = out.last_hidden_state.to(cdt)
        ln = vm.post_layernorm
        proj = self.model.visual_projection.weight.to(cdt)  # E×D
        gamma, beta = ln.weight.to(cdt), ln.bias.to(cdt)
        cls_final = last[:, 0]  # B×D, before the final LayerNorm
        mu = cls_final.mean(-1)
        sigma = torch.sqrt(cls_final.var(-1, unbiased=False) + ln.eps)
        image_embed = self.model.visual_projection(vm.post_layernorm(out.last_hidden_state[:, 0])).to(cdt)

        def linear(x: torch.Tensor) -> torch.Tensor:  # Λ: the linear part of 𝓛
            return ((x * gamma) / sigma[:, None, None]) @ proj.T

        etas, attn_outs = {}, {}
        psi = None
        for l in self.layers:
            att = blocks[l].self_attn
            eta = cls_contributions(
                seen[f"q{l}"].to(cdt),
                seen[f"k{l}"].to(cdt),
                seen[f"v{l}"].to(cdt),
                att.out_proj.weight.to(cdt),
                None if att.out_proj.bias is None else att.out_proj.bias.to(cdt),
                att.num_heads,
                att.scale,
            )
            etas[l], attn_outs[l] = eta, seen[f"a{l}"].to(cdt)
            t = eta.shape[1]
            if self.config.centering == "exact":
                centred = eta - eta.mean(-1, keepdim=True)
            else:
                centred = eta - (mu / t)[:, None, None]
            term = linear(centred[:, 1:])
            psi = term if psi is None else psi + term

        z = seen[f"z{self.comp_layer}"].to(cdt)[:, 1:]
        if self.config.centering == "exact":
            zc = z - z.mean(-1, keepdim=True)
        else:
            zc = z - mu[:, None, None]
        comp = linear(zc) + beta @ proj.T
        return {"psi": psi, "comp": comp, "image_embed": image_embed, "eta": etas, "attn_out": attn_outs}

    def similarities(self, vectors: torch.Tensor, image_embed: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """sim(vectors_t, T̂) for one image: cosine, or dot/‖image embedding‖ (N vectors → N)."""
        if self.config.similarity == "cosine":
            return (vectors @ text) / vectors.norm(dim=-1).clamp_min(1e-12)
        return (vectors @ text) / image_embed.norm().clamp_min(1e-12)

    def combine(self, s_cls: np.ndarray | None, s_comp: np.ndarray | None) -> np.ndarray:
        """Raw similarity grids → final Ψ: each one post-processed (Ψᶜᵒᵐᵖ = 1 − sim, so inverted;
        enhance on Ψᶜˡˢ only, as the authors), soft OR, min-max.

        >>> attributor = ClipAttributor.from_pretrained("shapes", kernel=1)
        >>> attributor.combine(np.array([[0.0, 2.0]]), np.array([[1.0, 1.0]])).tolist()
        [[0.0, 1.0]]
        """
        c = self.config
        maps = []
        if s_cls is not None:
            maps.append(render.postprocess(s_cls, enhance=c.enhance, kernel=c.kernel))
        if s_comp is not None:
            maps.append(render.postprocess(s_comp, kernel=c.kernel, invert=True))
        merged = maps[0] if len(maps) == 1 else render.soft_or(maps[0], maps[1])
        # A constant map carries no preference: leave the whole image visible.
        return render.minmax(merged, constant=1.0)

    @torch.inference_mode()
    def attribute(
        self, images: Sequence[Image.Image], queries: Sequence[str], *, suffixes: Sequence[str] | None = None
    ) -> list[AttributionMap]:
        """API-CLIP maps for the pairs ``(images[i], queries[i])``.

        Distinct images are encoded once per batch (pass the same object to reuse it with
        several queries); all queries go through the text tower in one batch; ``suffixes`` (answer
        formats) are not CLIP's business and are ignored. ``raw`` is the
        cls-path similarity Ψᶜˡˢ before normalisation (with ``parts="comp"``: the negated
        complement similarity, so that for both a higher score means "keep").

        >>> from attnprompt.shapes import make_scene
        >>> image = make_scene(7, n_objects=5, size=320).image
        >>> a, b = ClipAttributor.from_pretrained("shapes").attribute([image, image], ["the red star", "the circle"])
        >>> bool((a.raw != b.raw).any())
        True
        """
        queries, _ = check_pairs(images, queries, suffixes)
        if not queries:
            return []
        unique_q = list(dict.fromkeys(queries))
        text = self.encode_text(unique_q)
        q_index = {q: i for i, q in enumerate(unique_q)}
        order: dict[int, int] = {}
        distinct: list[Image.Image] = []
        for img in images:
            if id(img) not in order:
                order[id(img)] = len(distinct)
                distinct.append(img)
        want_cls = self.config.parts in ("both", "cls")
        want_comp = self.config.parts in ("both", "comp")
        n = self.grid
        results: list[AttributionMap | None] = [None] * len(images)
        for start in range(0, len(distinct), self.batch_size):
            chunk = distinct[start : start + self.batch_size]
            pixel_values, extents = self.preprocess(chunk)
            terms = self.image_terms(pixel_values)
            for i, (img, q) in enumerate(zip(images, queries)):
                b = order[id(img)] - start
                if not 0 <= b < len(chunk):
                    continue
                t_hat = text[q_index[q]]
                s_cls = self.similarities(terms["psi"][b], terms["image_embed"][b], t_hat).reshape(n, n)
                s_comp = self.similarities(terms["comp"][b], terms["image_embed"][b], t_hat).reshape(n, n)
                s_cls_np = s_cls.float().cpu().numpy()
                s_comp_np = s_comp.float().cpu().numpy()
                grid = self.combine(s_cls_np if want_cls else None, s_comp_np if want_comp else None)
                results[i] = AttributionMap(
                    grid=grid, raw=s_cls_np if want_cls else -s_comp_np, extent=extents[b],
                    parts={"cls_similarity": s_cls_np, "comp_similarity": s_comp_np},
                )
        return [r for r in results if r is not None]
