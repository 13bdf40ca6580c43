"""The attribution methods' configurations and their registry.

Each method's hyper-parameters are one frozen :class:`~attnprompt.presets.MethodConfig`: every field has
its one documented default (the default preset), named presets change some of them, unknown keys are
refused. :data:`METHODS` names each method's attributor class (imported on first use) and carries its
config class, so its presets and CLI flags are known without importing torch — and a method registered
from outside (``METHODS.register(name, target, config=...)``) works everywhere a built-in one does.

>>> "api-vlm" in METHODS, METHODS.get("carve").__name__, METHODS.config("carve").DEFAULT_PRESET
(True, 'ContrastiveAttributor', 'carve')
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from ..checks import check_choice, check_count, check_enhance, check_kernel, check_layers
from ..errors import InputError
from ..presets import MethodConfig, param
from ..registry import Registry

#: Help texts shared by several methods, written once.
LAYERS_HELP = "block(s) to read: an index (-2), a list (20,22) or a slice (-4:)"
ENHANCE_HELP = "contrast coefficient of sigmoid(coe·z-score) applied to the query map; 0 = off"
KERNEL_HELP = "odd mean-filter size on the grid (1 = none)"


def _layers_value(spec: Any) -> Any:
    # a list from JSON or Python becomes a tuple, so the frozen config stays hashable
    return tuple(spec) if isinstance(spec, list) else spec


@dataclasses.dataclass(frozen=True)
class ClipConfig(MethodConfig):
    """Hyper-parameters of API-CLIP (paper §3.1). The defaults are the ``reference`` preset: the
    authors' released code. ``paper`` follows the paper's equations; ``grounding`` (ours) keeps the
    query-specific map alone, for localisation rather than prompting.

    >>> ClipConfig.from_preset("paper").layers
    '-2:'
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        "paper": dict(layers="-2:", enhance=0.0, centering="exact", similarity="cosine"),
        "grounding": dict(layers="-2:", parts="cls", kernel=1),
    }
    DEFAULT_PRESET: ClassVar[str] = "reference"
    METHOD: ClassVar[str] = "api-clip"

    preset: str = "reference"
    layers: Any = param("-2", LAYERS_HELP + "; several blocks are summed (paper Eq. 2)")
    parts: str = param("both", "both (soft OR of the two maps) | cls (query map only) | comp (complement only)")
    enhance: float = param(5.0, ENHANCE_HELP, cli=float)
    kernel: int = param(3, KERNEL_HELP, cli=int)
    centering: str = param("cls", "LayerNorm linearisation: cls (final cls mean spread evenly; authors) | exact")
    similarity: str = param("dot", "dot (unit text embedding · ψ / ‖image embedding‖; authors) | cosine")
    comp_layer: Any = param(
        None, "block whose output residual stream feeds the complementary map (default: the deepest of --layers)"
    )
    fit: str = param("pad", "non-square images: pad (letterbox; padding cropped from the heatmap) | squash")

    def __post_init__(self) -> None:
        check_choice("parts", self.parts, ("both", "cls", "comp"))
        check_choice("centering", self.centering, ("cls", "exact"))
        check_choice("similarity", self.similarity, ("dot", "cosine"))
        check_choice("fit", self.fit, ("pad", "squash"))
        object.__setattr__(self, "enhance", check_enhance(self.enhance))
        object.__setattr__(self, "kernel", check_kernel(self.kernel))
        object.__setattr__(self, "layers", check_layers(_layers_value(self.layers)))
        check_layers(self.comp_layer)


def _check_attention_fields(config: Any) -> None:
    """The fields api-vlm and the contrastive maps share (they read the same attention): checked and
    normalised in place on the frozen ``config``."""
    check_choice("variant", config.variant, ("reference", "paper"))
    check_choice("grid", config.grid, ("highres", "base"))
    check_choice("fit", config.fit, ("pad", "processor"))
    object.__setattr__(config, "max_new_tokens", check_count("max_new_tokens", config.max_new_tokens))
    object.__setattr__(config, "kernel", check_kernel(config.kernel))
    object.__setattr__(config, "enhance", check_enhance(config.enhance))
    object.__setattr__(config, "layers", check_layers(_layers_value(config.layers), allow_fraction=True))


GRID_HELP = "tiled families: highres (the grid stitched from the tiles) | base (the thumbnail or global image)"


@dataclasses.dataclass(frozen=True)
class VlmConfig(MethodConfig):
    """Hyper-parameters of API-VLM (paper §3.2). The defaults are the ``reference`` preset: the
    authors' released code (softmax renormalised over the image tokens, enhance 5, no final
    min-max); ``paper`` takes the probabilities over all keys, no enhance, and min-max at the end.

    >>> VlmConfig.from_preset("paper").variant
    'paper'
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "reference": {},
        "paper": dict(variant="paper", enhance=0.0, renormalize=True),
    }
    DEFAULT_PRESET: ClassVar[str] = "reference"
    METHOD: ClassVar[str] = "api-vlm"

    preset: str = "reference"
    variant: str = param("reference", "reference (softmax over the image tokens; authors) | paper (over all keys)")
    layers: Any = param(
        0.5,
        "decoder layer(s) L̄: a fraction of depth (0.5 = the middle-deep layer the paper "
        "found best), an index, a list or a slice; several are averaged",
    )
    max_new_tokens: int = param(20, "greedy tokens generated for the map; their attention is averaged (M)", cli=int)
    enhance: float = param(5.0, ENHANCE_HELP, cli=float)
    kernel: int = param(3, KERNEL_HELP, cli=int)
    renormalize: bool = param(False, "min-max the map again after the filter", cli=bool)
    grid: str = param("highres", GRID_HELP)
    fit: str = param(
        "pad",
        "LLaVA-1.5: pad to a square with the mean colour first (nothing cropped) | processor (its own resize and crop)",
    )

    def __post_init__(self) -> None:
        _check_attention_fields(self)


@dataclasses.dataclass(frozen=True)
class CarveConfig(MethodConfig):
    """Hyper-parameters of the contrastive maps: CARVE (default) and ViCrop's relative attention.

    The VLM answers the task query and a general instruction (each with the task's suffix) greedily;
    at every step and chosen layer the last position's attention to the image tokens (mean over
    heads) of the task pass is divided by the general pass's at the same step (``epsilon`` keeps it
    finite), summed over layers and over steps with weight ``step + 1`` (``steps="all"``, CARVE's v4)
    or only at the first step (``steps="first"``: the prefill, as ViCrop and CARVE v1–v3).

    - ``carve`` (default) — YuyaoGe/CARVE v4: layers 20–25 of Qwen2.5-VL-7B's 28 (``0.71:0.93`` of
      the depth), 32 new tokens; its crops use CARVE's region rule (:class:`RegionConfig` ``carve``);
    - ``vicrop`` — "MLLMs know where to look" (ICLR 2025) relative attention: the prefill only, one
      mid layer (14 of LLaVA-1.5's 32, ``0.44``; their Qwen2.5-VL code reads layer 22); its crops use
      ViCrop's adaptive square window (:class:`RegionConfig` ``vicrop``).

    >>> CarveConfig.from_preset("vicrop").steps
    'first'
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "carve": {},
        "vicrop": dict(layers="0.44", steps="first", max_new_tokens=1),
    }
    DEFAULT_PRESET: ClassVar[str] = "carve"
    METHOD: ClassVar[str] = "carve"

    preset: str = "carve"
    layers: Any = param("0.71:0.93", "decoder layers whose task/general ratios are summed: fractions of depth "
                                     "(0.71:0.93 = 20–25 of 28), an index, a list or a slice")
    general: str = param("Write a general description of the image.", "the general instruction the task is "
                                                                       "contrasted with")
    max_new_tokens: int = param(32, "greedy tokens generated for each pass", cli=int)
    steps: str = param("all", "all (every step, weighted step + 1: CARVE v4) | first (the prefill only)")
    epsilon: float = param(1e-8, "λ in A_task / (A_general + λ)", cli=float)
    variant: str = param("paper", "attention rows: paper (probabilities over all keys, as both public codes) | "
                                  "reference (softmax over the image tokens)")
    enhance: float = param(0.0, ENHANCE_HELP, cli=float)
    kernel: int = param(1, KERNEL_HELP, cli=int)
    grid: str = param("highres", GRID_HELP)
    fit: str = param("pad", "LLaVA-1.5: pad to a square first (nothing cropped) | processor")

    def __post_init__(self) -> None:
        check_choice("steps", self.steps, ("all", "first"))
        _check_attention_fields(self)
        if not isinstance(self.general, str) or not self.general.strip():
            raise InputError(
                "general must be a non-empty instruction, like 'Write a general description of the image.'"
            )
        try:
            eps = float(self.epsilon)
        except (TypeError, ValueError):
            raise InputError(f"epsilon must be a number ≥ 0; got {self.epsilon!r}") from None
        if not 0 <= eps < float("inf"):
            raise InputError(f"epsilon must be a finite number ≥ 0; got {self.epsilon!r}")
        object.__setattr__(self, "epsilon", eps)




class MethodRegistry(Registry):
    """Attribution methods: name → Attributor class (``"module:Class"``, imported on first use), each with
    its configuration class (presets, parameters and CLI flags, known without importing the method).

    >>> METHODS.config("api-clip").PRESETS.keys() >= {"reference", "paper"}
    True
    >>> METHODS.config("nope")
    Traceback (most recent call last):
    attnprompt.errors.InputError: unknown method 'nope'; valid methods: api-clip, api-vlm, carve
    """

    def __init__(self, entries: dict[str, tuple[str, type[MethodConfig]]]) -> None:
        super().__init__("method", {name: target for name, (target, _) in entries.items()})
        self._configs = {name: config for name, (_, config) in entries.items()}

    def register(self, name: str, target: Any, config: type[MethodConfig] | None = None) -> None:
        """Add a method: ``target`` its Attributor class (or ``"module:Class"``), ``config`` its
        :class:`~attnprompt.presets.MethodConfig` subclass (default the class's ``config_class``).

        >>> from attnprompt.attribution.clip import ClipAttributor
        >>> r = MethodRegistry({}); r.register("mine", ClipAttributor); r.config("mine").__name__
        'ClipConfig'
        """
        if config is None:
            config = getattr(target, "config_class", None)
        if not (isinstance(config, type) and issubclass(config, MethodConfig)):
            raise InputError(f"method {name!r}: give its configuration class (config=, a MethodConfig subclass); "
                             f"got {config!r}")
        super().register(name, target)
        self._configs[name] = config

    def config(self, name: str) -> type[MethodConfig]:
        """The configuration class of method ``name`` (its presets, parameters and their defaults)."""
        if name not in self._configs:
            raise InputError(f"unknown method {name!r}; valid methods: {', '.join(self.names())}")
        return self._configs[name]

    def configs(self) -> dict[str, type[MethodConfig]]:
        """Every method's configuration class, in registration order (the CLI's flags come from these)."""
        return dict(self._configs)


#: Attribution methods: name → Attributor class, with its configuration class.
METHODS = MethodRegistry({
    "api-clip": ("attnprompt.attribution.clip:ClipAttributor", ClipConfig),
    "api-vlm": ("attnprompt.attribution.vlm_attention:VlmAttributor", VlmConfig),
    "carve": ("attnprompt.attribution.contrastive:ContrastiveAttributor", CarveConfig),
})
