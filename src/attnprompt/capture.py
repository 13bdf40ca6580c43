"""Forward-hook capture in a context manager that always removes its hooks."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@contextmanager
def capture_outputs(modules: Mapping[str, nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output of each named module during the ``with`` block.

    The hooks are removed on exit, also when the block raises; errors are never swallowed.

    >>> lin = nn.Linear(2, 2)
    >>> with capture_outputs({"lin": lin}) as seen:
    ...     _ = lin(torch.zeros(1, 2))
    >>> tuple(seen["lin"].shape), len(lin._forward_hooks)
    ((1, 2), 0)
    """
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str) -> Callable[[nn.Module, Any, Any], None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            # Encoder layers return a tensor in transformers 5 and a tuple in older releases.
            store[name] = output[0] if isinstance(output, (tuple, list)) else output

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield store
    finally:
        for h in handles:
            h.remove()


# --------------------------------------------------------------------------------------
# Attention-row capture inside a language model, without leaving its kernel.
#
# transformers dispatches each decoder layer's attention through a registry keyed by
# ``config._attn_implementation``. We register one extra implementation per kernel the model
# runs (sdpa, eager, flash_attention_2 …) that computes every layer's output with that very
# kernel and, only for the attention modules being watched, also records the pre-softmax scores
# of the LAST query position over all keys (q·kᵀ·scale + mask), in float32. Generation keeps its
# KV cache; no layer materialises more than one B×H×kv row per step, and the outputs are the
# kernel's own, so a captured generation is the uncaptured one. Mask construction is keyed on the
# same name, so the kernel's mask function (a 4-D mask for sdpa and eager, the 2-D padding mask
# for flash attention) is registered under it too.

CAPTURE_IMPLEMENTATION = "attnprompt_capture"
_WATCHED: dict[int, AttentionCapture] = {}


def capture_implementation(kernel: str | None) -> str:
    """The name the capture registers for a model whose language model runs ``kernel`` (``sdpa`` when None);
    it keeps the kernel's name in it, so transformers' own checks ("is this flash attention?") still hold.

    >>> capture_implementation("sdpa"), capture_implementation("flash_attention_2")
    ('attnprompt_capture', 'attnprompt_capture_flash_attention_2')
    """
    kernel = kernel or "sdpa"
    return CAPTURE_IMPLEMENTATION if kernel == "sdpa" else f"{CAPTURE_IMPLEMENTATION}_{kernel}"


def _kernel_function(kernel: str, module: nn.Module) -> Any:
    """The attention function ``kernel`` names, as the module's own model would call it (eager: the function
    its modeling file defines, with whatever that family adds, e.g. soft-capping)."""
    import sys

    from transformers import AttentionInterface

    if kernel == "eager":
        found = getattr(sys.modules.get(type(module).__module__), "eager_attention_forward", None)
        if found is None:
            raise RuntimeError(f"{type(module).__name__} has no eager attention function to capture under; load the "
                               "model with attn_implementation sdpa")
        return found
    return AttentionInterface._global_mapping[kernel]


def _register_capture_implementation(kernel: str | None = "sdpa") -> str:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    kernel = kernel or "sdpa"
    name = capture_implementation(kernel)
    if kernel != "eager" and kernel not in AttentionInterface._global_mapping:
        raise RuntimeError(f"attention kernel {kernel!r} is not registered with transformers; cannot capture under it")
    if name not in AttentionInterface._global_mapping:

        def attention(module: nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                      attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                      **kwargs: Any) -> Any:
            out = _kernel_function(kernel, module)(module, query, key, value, attention_mask, dropout=dropout,
                                                   scaling=scaling, **kwargs)
            capture = _WATCHED.get(id(module))
            if capture is not None:
                capture._record(module, query, key, attention_mask, scaling, kwargs.get("sliding_window"))
            return out

        AttentionInterface.register(name, attention)
    if name not in AttentionMaskInterface._global_mapping:
        # transformers' mapping of differently typed functions infers as "function", which mypy won't call Callable
        mask = AttentionMaskInterface._global_mapping.get(kernel, sdpa_mask)
        AttentionMaskInterface.register(name, mask)  # type: ignore[arg-type]
    return name


def language_attention_modules(model: PreTrainedModel, layers: Sequence[int]) -> dict[int, nn.Module]:
    """The language model's self-attention module of each decoder layer in ``layers``.

    Recognised by ``layer_idx`` and by sharing the text config (vision attentions have
    neither), so no model-specific attribute path is needed.

    >>> from attnprompt.models import load_vlm
    >>> language_attention_modules(load_vlm("shapes").model, [2])  # doctest: +ELLIPSIS
    {2: LlamaAttention(...)}
    """
    text_config = model.config.get_text_config()
    found: dict[int, nn.Module] = {}
    for module in model.modules():
        idx: Any = getattr(module, "layer_idx", None)  # an int on a decoder layer's attention
        if idx in layers and getattr(module, "config", None) is text_config and hasattr(module, "num_key_value_groups"):
            if idx in found:
                raise RuntimeError(
                    f"two attention modules claim language-model layer {idx}; cannot capture unambiguously"
                )
            found[idx] = module
    missing = sorted(set(layers) - set(found))
    if missing:
        raise RuntimeError(f"no language-model attention module found for layer(s) {missing}")
    return found


class AttentionCapture:
    """Record last-row attention scores of chosen language-model layers during ``generate``.

    Inside the ``with`` block the language model runs a registered attention implementation that is
    the model's own kernel (sdpa, eager, flash_attention_2 …) for every layer plus, for the watched
    layers, a float32 copy of the last query row's masked pre-softmax scores. On exit the previous
    implementation is restored and the watch list emptied, also when the block raises.

    ``scores[layer]`` is a list with one float32 tensor (B, heads, kv_len) per forward call:
    call 0 is the prefill (its last row predicts generated token 1), call t the decode step
    whose query is generated token t. Masked keys hold ``-inf``.

    >>> from PIL import Image
    >>> from attnprompt.models import load_vlm
    >>> vlm = load_vlm("shapes")
    >>> inputs = vlm.processor(text=["USER: <image>\\nDescribe the image. ASSISTANT:"],
    ...                        images=[Image.new("RGB", (64, 64))], return_tensors="pt")
    >>> with AttentionCapture(vlm.model, [2]) as cap:
    ...     out = vlm.model.generate(**inputs, max_new_tokens=3, min_new_tokens=3, do_sample=False)
    >>> len(cap.scores[2]), tuple(cap.scores[2][0].shape)
    (3, (1, 4, 264))
    """

    def __init__(self, model: PreTrainedModel, layers: Sequence[int]) -> None:
        self.model = model
        self.layers = tuple(sorted(set(int(layer) for layer in layers)))
        self.scores: dict[int, list[torch.Tensor]] = {layer: [] for layer in self.layers}
        self._modules: dict[int, nn.Module] = {}
        self._previous: str | None = None

    def __enter__(self) -> AttentionCapture:
        modules = language_attention_modules(self.model, self.layers)
        busy = [i for i, m in modules.items() if id(m) in _WATCHED]
        if busy:
            raise RuntimeError(f"layer(s) {busy} of this model are already being captured")
        text_config = self.model.config.get_text_config()
        self._previous = text_config._attn_implementation
        try:
            name = _register_capture_implementation(self._previous)
            if self._previous != name:
                self.model.set_attn_implementation({"text_config": name})
            for m in modules.values():
                _WATCHED[id(m)] = self
            self._modules = modules
        except BaseException:
            self._restore()
            raise
        return self

    def _restore(self) -> None:
        for m in self._modules.values():
            if _WATCHED.get(id(m)) is self:
                del _WATCHED[id(m)]
        self._modules = {}
        if self._previous is not None and not self._previous.startswith(CAPTURE_IMPLEMENTATION):
            self.model.set_attn_implementation({"text_config": self._previous})

    def __exit__(self, *exc: Any) -> None:
        self._restore()

    def _record(self, module: Any, query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None,
                scaling: float | None, sliding_window: int | None = None) -> None:
        # module: a transformers attention module (its layer_idx and num_key_value_groups, which nn.Module's type
        # does not declare)
        from transformers.integrations.sdpa_attention import repeat_kv

        with torch.no_grad():
            q_len = query.shape[2]
            k = repeat_kv(key, module.num_key_value_groups)
            if mask is None and q_len > 1 and k.shape[2] > q_len:
                k = k[:, :, :q_len]  # prefill into an empty static cache: only the first q_len keys exist
            scale = query.shape[-1] ** -0.5 if scaling is None else scaling
            s = (query[:, :, -1:, :].float() @ k.float().transpose(-1, -2)).mul_(scale)  # B×H×1×kv
            kv = k.shape[2]
            if mask is not None and mask.dim() == 2:
                # flash attention's padding mask (B × keys seen, 1 = a real token); the last query sees every real
                # key but, in a sliding-window layer, only the window's last keys
                keep = mask[:, -kv:].bool()
                if sliding_window is not None and kv > sliding_window:
                    keep = keep.clone()
                    keep[:, : kv - sliding_window] = False
                s = s.masked_fill(~keep[:, None, None, :], float("-inf"))
            elif mask is not None:
                m = mask[:, :, -1:, :kv]
                s = s.masked_fill(~m, float("-inf")) if m.dtype == torch.bool else s + m.float()
            elif sliding_window is not None and kv > sliding_window:
                s[..., : kv - sliding_window] = float("-inf")
            self.scores[module.layer_idx].append(s[:, :, 0].clone())
