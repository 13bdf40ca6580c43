"""Method configurations, validators and the lazy registries of methods and strategies.

Each method's hyper-parameters are one frozen dataclass: every field has its one documented
default (the default preset), named presets change some of them, and unknown keys are refused.
The CLI derives its flags from these fields (:func:`cli_parameters`), so a default is written
once. Nothing here imports torch: ``attnprompt --help`` stays instant.

>>> "api-vlm" in METHODS, METHODS.get("carve").__name__
(True, 'ContrastiveAttributor')
>>> ClipConfig.from_preset("paper", kernel=5).to_dict()["kernel"]
5
"""

from __future__ import annotations

import dataclasses
import importlib
import numbers
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from .errors import InputError

# -- validators --------------------------------------------------------------------------


def check_kernel(kernel: Any, grid: tuple[int, int] | None = None) -> int:
    """A mean-filter size: an odd integer ≥ 1 (1 = no filter), and, given the map's grid, no wider
    than the grid (a wider one averages the whole map into one value).

    >>> check_kernel(3)
    3
    >>> check_kernel(1001, (24, 24))
    Traceback (most recent call last):
    attnprompt.errors.InputError: kernel 1001 is wider than the 24×24 grid it filters; give an odd kernel up to 23
    """
    if isinstance(kernel, bool) or not isinstance(kernel, numbers.Integral) or kernel < 1 or kernel % 2 == 0:
        raise InputError(f"kernel must be an odd integer ≥ 1 (1 = no filter); got {kernel!r}")
    if grid is not None and kernel > max(grid):
        largest = max(grid) - (1 - max(grid) % 2)
        raise InputError(
            f"kernel {kernel} is wider than the {grid[0]}×{grid[1]} grid it filters; give an odd kernel up to {largest}"
        )
    return int(kernel)


def check_enhance(enhance: Any) -> float:
    """An enhance coefficient: a finite number ≥ 0 (0 = off).

    >>> check_enhance("5")
    5.0
    """
    try:
        e = float(enhance)
    except (TypeError, ValueError):
        raise InputError(f"enhance must be a number ≥ 0 (0 = off); got {enhance!r}") from None
    if not (e >= 0 and e < float("inf")):
        raise InputError(f"enhance must be a finite number ≥ 0 (0 = off); got {enhance!r}")
    return e


def check_count(name: str, value: Any, minimum: int = 1) -> int:
    """A whole number of at least ``minimum`` (a token budget, a batch size, a limit …), by its name.

    >>> check_count("max_new_tokens", 20), check_count("gallery", 0, minimum=0)
    (20, 0)
    >>> check_count("batch_size", 2.5)
    Traceback (most recent call last):
    attnprompt.errors.InputError: batch_size must be an integer ≥ 1; got 2.5
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name} must be an integer ≥ {minimum}; got {value!r}")
    return int(value)


def check_choice(name: str, value: Any, valid: Sequence[str]) -> None:
    """Raise a clear error unless ``value`` is one of ``valid``.

    >>> check_choice("parts", "all", ("both", "cls", "comp"))
    Traceback (most recent call last):
    attnprompt.errors.InputError: parts must be one of both, cls, comp; got 'all'
    """
    if value not in valid:
        raise InputError(f"{name} must be one of {', '.join(valid)}; got {value!r}")


def check_query(query: Any) -> str:
    """Validate one query or question: a non-blank string. Returns it stripped.

    >>> check_query("  What colour is the star? ")
    'What colour is the star?'
    """
    if not isinstance(query, str):
        raise InputError(f"query must be a string, got {type(query).__name__}")
    q = query.strip()
    if not q:
        raise InputError("query is empty or only whitespace; give a question or a phrase naming what to look at")
    bad = next((i for i, c in enumerate(q) if unicodedata.category(c) == "Cc" and c not in "\t\n\r"), None)
    if bad is not None:
        raise InputError(
            f"query holds the control character U+{ord(q[bad]):04X} at position {bad}; remove it (tokenizers and "
            "servers treat such characters differently)"
        )
    return q


def check_pairs(images: Sequence[Any], queries: Sequence[Any],
                suffixes: Sequence[str] | None = None) -> tuple[list[str], list[str]]:
    """One query per image and one answer-format suffix per query: the queries checked
    (:func:`check_query`) and the suffixes (``""`` each when none are given).

    >>> check_pairs(["img"], [" the star "])
    (['the star'], [''])
    >>> check_pairs(["a", "b"], ["q"])
    Traceback (most recent call last):
    attnprompt.errors.InputError: got 2 images but 1 queries; give one query per image
    """
    if len(images) != len(queries):
        raise InputError(f"got {len(images)} images but {len(queries)} queries; give one query per image")
    suffixes = list(suffixes) if suffixes is not None else [""] * len(queries)
    if len(suffixes) != len(queries):
        raise InputError(f"got {len(suffixes)} suffixes for {len(queries)} queries; give one per query")
    return [check_query(q) for q in queries], suffixes


def with_suffix(text: str, suffix: str | None) -> str:
    """``text`` followed by the task's answer-format suffix (if any): after a space, or as it is when
    the suffix starts with a line break (MMMU's "\\n\\nAnswer with the option's letter …").

    >>> with_suffix("Is there a dog?", "Please answer yes or no."), with_suffix("Is there a dog?", "")
    ('Is there a dog? Please answer yes or no.', 'Is there a dog?')
    >>> with_suffix("A or B?", "\\n\\nAnswer with the letter.")
    'A or B?\\n\\nAnswer with the letter.'
    """
    if not suffix:
        return text
    return f"{text}{suffix}" if suffix.startswith("\n") else f"{text} {suffix}"


def check_gray(gray: Any) -> float:
    """The level masked pixels fade to: a number in [0, 255] (0 = black).

    >>> check_gray(128)
    128.0
    """
    try:
        g = float(gray)
    except (TypeError, ValueError):
        raise InputError(f"gray must be a level in [0, 255]; got {gray!r}") from None
    if not 0.0 <= g <= 255.0:
        raise InputError(f"gray must be a level in [0, 255]; got {gray!r}")
    return g


def parse_layers(spec: Any, depth: int, *, allow_fraction: bool = False) -> tuple[int, ...]:
    """Resolve a layer specification to sorted absolute block indices in ``[0, depth)``.

    Accepts an int (negative counts from the end: -1 is the last block), a sequence of ints,
    a string ``"-2"``, ``"20,22"`` or a slice ``"-4:"`` / ``"10:14"`` (Python slice semantics),
    and, with ``allow_fraction``, a fraction of the depth in (0, 1) as a float or a string
    (``0.5``, ``"0.5"``) or a slice of fractions (``"0.71:0.93"``: blocks round(0.71·depth) up to
    round(0.93·depth), exclusive — 20 to 25 of 28), so one setting fits models of any depth.

    >>> parse_layers(-2, 24), parse_layers("-3:", 24), parse_layers("1,3", 4)
    ((22,), (21, 22, 23), (1, 3))
    >>> parse_layers("0.5", 40, allow_fraction=True), parse_layers("0.71:0.93", 28, allow_fraction=True)
    ((20,), (20, 21, 22, 23, 24, 25))
    """

    def bad(why: str) -> InputError:
        extra = ", or a fraction of depth in (0, 1) like 0.5" if allow_fraction else ""
        return InputError(
            f"invalid layers {spec!r}: {why}; the model has {depth} blocks — give an index in "
            f"[-{depth}, {depth - 1}], a list like '20,22' or a slice like '-4:'{extra}"
        )

    def one(i: int) -> int:
        j = i + depth if i < 0 else i
        if not 0 <= j < depth:
            raise bad(f"index {i} is out of range")
        return j

    if isinstance(spec, bool):
        raise bad("not a layer index")
    if isinstance(spec, float):
        if not allow_fraction:
            raise bad("fractions are not accepted here")
        if not 0.0 < spec < 1.0:
            raise bad("a fraction must lie strictly between 0 and 1")
        return (min(depth - 1, int(round(spec * depth))),)
    if isinstance(spec, numbers.Integral):
        return (one(int(spec)),)
    if isinstance(spec, str):
        s = spec.strip()
        if ":" in s:
            parts = s.split(":")
            if len(parts) != 2:
                raise bad("a slice has the form start:stop")
            if allow_fraction and "." in s:
                try:
                    lo, hi = (float(p) if p.strip() else None for p in parts)
                except ValueError:
                    raise bad("fraction bounds must be numbers") from None
                if any(f is not None and not 0.0 <= f <= 1.0 for f in (lo, hi)):
                    raise bad("fraction bounds must lie between 0 and 1")
                start = 0 if lo is None else int(round(lo * depth))
                stop = depth if hi is None else int(round(hi * depth))
                idx = tuple(range(start, min(stop, depth)))
                if not idx:
                    raise bad(f"the fractions select no block of {depth}")
                return idx
            try:
                start = int(parts[0]) if parts[0].strip() else None
                stop = int(parts[1]) if parts[1].strip() else None
            except ValueError:
                raise bad("slice bounds must be integers") from None
            for bound in (start, stop):  # Python would clamp them silently
                if bound is not None and not -depth <= bound <= depth:
                    raise bad(f"the slice bound {bound} reaches past the model's {depth} blocks")
            idx = tuple(range(depth)[slice(start, stop)])
            if not idx:
                raise bad("the slice selects no block")
            return idx
        items = [x.strip() for x in s.split(",") if x.strip()]
        if not items:
            raise bad("empty")
        if len(items) == 1 and allow_fraction and "." in items[0]:
            try:
                fraction = float(items[0])
            except ValueError:
                raise bad(f"{items[0]!r} is not a number") from None
            return parse_layers(fraction, depth, allow_fraction=True)
        out = []
        for x in items:
            try:
                out.append(int(x))
            except ValueError:
                raise bad(f"{x!r} is not an integer") from None
        return tuple(sorted({one(i) for i in out}))
    if isinstance(spec, Sequence):
        if not spec:
            raise bad("empty")
        out = []
        for x in spec:
            if isinstance(x, bool) or not isinstance(x, numbers.Integral):
                raise bad(f"{x!r} is not an integer")
            out.append(one(int(x)))
        return tuple(sorted(set(out)))
    raise bad(f"unsupported type {type(spec).__name__}")


#: Visual-prompt forms of the strategies that show a map: the paper's blend, the original and a crop
#: of the map's regions (CARVE's and ViCrop's form), the blend and the crop, or the crop alone as the one
#: image (``zoom``: V*/ZoomEye-style, and for VLMs that answer one image best).
FORMS = ("overlay", "crop", "both", "zoom")

#: ViCrop's window base when no answering VLM says its input side (LLaVA-1.5's 336, the paper's).
FALLBACK_WINDOW = 336


# -- configs -------------------------------------------------------------------------------


def param(default: Any, help: str, *, cli: Callable[[str], Any] | None = str) -> Any:
    """A config field with its help text and how the CLI parses it (``bool`` → ``--x/--no-x``).

    >>> param(3, "odd mean-filter size", cli=int).metadata["help"]
    'odd mean-filter size'
    """
    return dataclasses.field(default=default, metadata={"help": help, "cli": cli})


#: Help texts shared by several methods, written once.
LAYERS_HELP = "block(s) to read: an index (-2), a list (20,22) or a slice (-4:)"
ENHANCE_HELP = "contrast coefficient of sigmoid(coe·z-score) applied to the query map; 0 = off"
KERNEL_HELP = "odd mean-filter size on the grid (1 = none)"


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Base for a method's hyper-parameters: one documented default, named presets, no unknown keys.

    Subclasses declare their fields with :func:`param` (the default preset's values) and map
    the other presets' names to the fields they change in ``PRESETS``.

    >>> ClipConfig.from_preset("paper").similarity
    'cosine'
    """

    PRESETS: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    DEFAULT_PRESET: ClassVar[str] = ""
    #: The method's registry name, for messages.
    METHOD: ClassVar[str] = ""
    preset: str = ""

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides: Any):
        """Build a config from a named preset plus explicit overrides (``None`` means "keep").

        >>> ClipConfig.from_preset("reference", kernel=5).kernel
        5
        """
        preset = preset or cls.DEFAULT_PRESET
        if preset not in cls.PRESETS:
            raise InputError(f"unknown preset {preset!r}; valid presets: {', '.join(cls.PRESETS)}")
        names = cls.parameter_names()
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            owners = {
                name: [m for m, c in METHOD_CONFIGS.items() if c is not cls and name in c.parameter_names()]
                for name in unknown
            }
            whose = "; ".join(f"{n} is a parameter of {', '.join(o)}" for n, o in owners.items() if o)
            raise InputError(
                f"{cls.METHOD or cls.__name__} has no parameter {', '.join(unknown)}"
                + (f" ({whose})" if whose else "")
                + f"; valid parameters: {', '.join(sorted(names))}"
            )
        values = dict(cls.PRESETS[preset])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(preset=preset, **values)

    @classmethod
    def parameter_names(cls) -> tuple[str, ...]:
        """The tunable fields (everything but ``preset``), in declaration order.

        >>> VlmConfig.parameter_names()[:2]
        ('variant', 'layers')
        """
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "preset")

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-able values.

        >>> ClipConfig.from_preset().to_dict()["preset"]
        'reference'
        """
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


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
        object.__setattr__(self, "layers", _layers_value(self.layers))


def _check_attention_fields(config: Any) -> None:
    """The fields api-vlm and the contrastive maps share (they read the same attention): checked and
    normalised in place on the frozen ``config``."""
    check_choice("variant", config.variant, ("reference", "paper"))
    check_choice("grid", config.grid, ("highres", "base"))
    check_choice("fit", config.fit, ("pad", "processor"))
    object.__setattr__(config, "max_new_tokens", check_count("max_new_tokens", config.max_new_tokens))
    object.__setattr__(config, "kernel", check_kernel(config.kernel))
    object.__setattr__(config, "enhance", check_enhance(config.enhance))
    object.__setattr__(config, "layers", _layers_value(config.layers))


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


@dataclasses.dataclass(frozen=True)
class RegionConfig(MethodConfig):
    """How regions are chosen from a heatmap for a crop (any map: api-clip, api-vlm, carve).

    - ``carve`` (default) — YuyaoGe/CARVE: keep the ``top`` fraction of pixels (ties included),
      label 4-connected components, keep the ``max(min_regions, ⌊top·n⌋)`` with the largest
      attention sum (``rule="attention"``; ``size``: the largest; ``remove-small``: all but those
      under ``min_size`` of the kept pixels), zero the pixels outside them, crop to their bounding
      box and upscale the crop (LANCZOS) by max(W/w, H/h);
    - ``vicrop`` — "MLLMs know where to look": a square window of ``window``·r pixels for r in
      1, 1.2 … 2, placed where the map's sum is largest, the r whose best window stands out most
      from its neighbours; the plain crop, not masked, not upscaled.

    >>> RegionConfig.from_preset("vicrop").rule
    'window'
    """

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "carve": {},
        "vicrop": dict(rule="window", keep_outside=True, upscale=False),
    }
    DEFAULT_PRESET: ClassVar[str] = "carve"
    METHOD: ClassVar[str] = "regions"

    preset: str = "carve"
    rule: str = param("attention", "attention | size | remove-small (connected components) | window (ViCrop)")
    top: float = param(0.2, "fraction of the pixels kept before the components are labelled", cli=float)
    min_regions: int = param(3, "components kept at least (CARVE keeps max(this, ⌊top·n⌋))", cli=int)
    min_size: float = param(0.001, "remove-small: a component under this fraction of the kept pixels goes",
                            cli=float)
    keep_outside: bool = param(False, "keep the pixels outside the kept regions in the crop (CARVE zeroes them)",
                               cli=bool)
    upscale: bool = param(True, "upscale the crop by max(W/w, H/h) with LANCZOS, as CARVE", cli=bool)
    window: int | None = param(None, "window rule: the base side in pixels; default the answering VLM's native "
                                     "input side (336 LLaVA-1.5, 224 Qwen-VL, 128 the shapes VLM; 336 if unknown)",
                               cli=int)
    max_share: float = param(1.0, "ours, not CARVE's: a box over this share of the image is cut down to a "
                                  "square around the kept region with the most attention, so the crop stays a "
                                  "zoom (1 = off, CARVE's behaviour)", cli=float)

    def __post_init__(self) -> None:
        check_choice("rule", self.rule, ("attention", "size", "remove-small", "window"))
        for name, value, low, high in (("top", self.top, 0.0, 1.0), ("min_size", self.min_size, 0.0, 1.0)):
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise InputError(f"{name} must be a number in (0, 1]; got {value!r}") from None
            if not low < v <= high and not (name == "min_size" and v == 0):
                raise InputError(f"{name} must be a number in (0, 1]; got {value!r}")
            object.__setattr__(self, name, v)
        object.__setattr__(self, "min_regions", check_count("min_regions", self.min_regions))
        if self.window is not None:
            object.__setattr__(self, "window", check_count("window", self.window))
        try:
            share = float(self.max_share)
        except (TypeError, ValueError):
            share = -1.0
        if not 0.0 < share <= 1.0:
            raise InputError(f"max_share must be a number in (0, 1]; got {self.max_share!r}")
        object.__setattr__(self, "max_share", share)

    def for_side(self, native_side: int | None) -> RegionConfig:
        """This configuration with its window resolved: as set, else the answering VLM's ``native_side``
        (for the window rule), else :data:`FALLBACK_WINDOW`.

        >>> RegionConfig.from_preset("vicrop").for_side(128).window, RegionConfig().for_side(128).window
        (128, 336)
        """
        if self.window is not None:
            return self
        side = native_side if self.rule == "window" and native_side else FALLBACK_WINDOW
        return dataclasses.replace(self, window=int(side))

    def to_dict(self) -> dict[str, Any]:
        # max_share at its default (off) is left out so that runs stored before it existed keep their hashes
        d = super().to_dict()
        if d.get("max_share") == 1.0:
            d.pop("max_share")
        return d


# -- registries ----------------------------------------------------------------------------


class Registry:
    """Names → ``"module:attribute"`` targets, imported on first use; an unknown name is an
    :class:`~attnprompt.errors.InputError` listing the valid ones.

    >>> r = Registry("colour", {"red": "attnprompt.render:colorize"})
    >>> r.get("red").__name__
    'colorize'
    >>> r.get("blue")
    Traceback (most recent call last):
    attnprompt.errors.InputError: unknown colour 'blue'; valid colours: red
    """

    def __init__(self, kind: str, targets: Mapping[str, str], *, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or kind + "s"
        self._targets = dict(targets)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order.

        >>> STRATEGIES.names()[:3]
        ('plain', 'step-by-step', 'api')
        """
        return tuple(self._targets)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def register(self, name: str, target: str) -> None:
        """Add ``name`` → ``"module:attribute"`` (your own method or strategy).

        >>> r = Registry("colour", {})
        >>> r.register("red", "attnprompt.render:colorize"); r.names()
        ('red',)
        """
        if not isinstance(target, str) or target.count(":") != 1:
            raise InputError(f"{self.kind} target {target!r} must look like 'package.module:Name'")
        self._targets[name] = target

    def get(self, name: str) -> Any:
        """The object registered under ``name``, imported now.

        >>> METHODS.get("api-clip").__name__
        'ClipAttributor'
        """
        try:
            target = self._targets[name]
        except (KeyError, TypeError):
            raise InputError(f"unknown {self.kind} {name!r}; valid {self.plural}: {', '.join(self._targets)}") from None
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)


#: Attribution methods: name → Attributor class.
METHODS = Registry(
    "method",
    {
        "api-clip": "attnprompt.attribution.clip:ClipAttributor",
        "api-vlm": "attnprompt.attribution.vlm_attention:VlmAttributor",
        "carve": "attnprompt.attribution.contrastive:ContrastiveAttributor",
    },
)

#: The configuration class of each built-in method (the CLI reads them without importing torch).
METHOD_CONFIGS: dict[str, type[MethodConfig]] = {"api-clip": ClipConfig, "api-vlm": VlmConfig, "carve": CarveConfig}

#: Answering strategies: name → Strategy class.
STRATEGIES = Registry(
    "strategy",
    {
        "plain": "attnprompt.strategies.plain:Plain",
        "step-by-step": "attnprompt.strategies.step_by_step:StepByStep",
        "api": "attnprompt.strategies.api:Api",
        "api-reemphasize": "attnprompt.strategies.reemphasize:ApiReemphasize",
        "api-evaluate": "attnprompt.strategies.evaluate:ApiEvaluate",
        "self-reflect": "attnprompt.strategies.reflect:SelfReflect",
        "ensemble": "attnprompt.strategies.ensemble:Ensemble",
        "carve": "attnprompt.strategies.carve:Carve",
        # the API paper's segmentation baselines (Table 1), from a segmenter's masks
        "fgvp-mask": "attnprompt.strategies.baselines:FgvpMask",
        "fgvp-rbm": "attnprompt.strategies.baselines:FgvpRbm",
        "som": "attnprompt.strategies.baselines:Som",
        # rows for scale on tasks that know where the answer lies (they read ground truth)
        "zoom-oracle": "attnprompt.strategies.zoom_reference:ZoomOracle",
        "zoom-centre": "attnprompt.strategies.zoom_reference:ZoomCentre",
    },
    plural="strategies",
)


@dataclasses.dataclass(frozen=True)
class CliParameter:
    """One method parameter as the CLI shows it: how to parse it, and each method's help and default.

    >>> [p.name for p in cli_parameters()][:3]
    ['layers', 'parts', 'enhance']
    """

    name: str
    parse: Callable[[str], Any] | None
    helps: dict[str, str]
    defaults: dict[str, Any]

    @property
    def help(self) -> str:
        """One help line: the text (once if every method shares it) and each method's default.

        >>> next(p for p in cli_parameters() if p.name == "kernel").help
        'odd mean-filter size on the grid (1 = none) (default: api-clip 3, api-vlm 3, carve 1)'
        """
        texts = list(dict.fromkeys(self.helps.values()))
        if len(texts) == 1:
            text = texts[0] if len(self.helps) > 1 else f"{next(iter(self.helps))}: {texts[0]}"
        else:
            text = "; ".join(f"{m}: {h}" for m, h in self.helps.items())
        # a None default is described by the help text itself ("default: the deepest of --layers")
        defaults = ", ".join(f"{m} {d}" for m, d in self.defaults.items() if d is not None)
        return f"{text} (default: {defaults})" if defaults else text


def cli_parameters(configs: Mapping[str, type[MethodConfig]] = METHOD_CONFIGS) -> list[CliParameter]:
    """Every parameter of the given methods' configs, merged by name, with each method's default.

    >>> kernel = next(p for p in cli_parameters() if p.name == "kernel")
    >>> kernel.defaults, kernel.parse
    ({'api-clip': 3, 'api-vlm': 3, 'carve': 1}, <class 'int'>)
    """
    merged: dict[str, CliParameter] = {}
    for method, cls in configs.items():
        for f in dataclasses.fields(cls):
            if f.name == "preset":
                continue
            parse, help_ = f.metadata.get("cli", str), f.metadata.get("help", "")
            have = merged.get(f.name)
            if have is not None and have.parse is not parse:
                parse = str  # the same word with different types: each config parses the string itself
            helps = {**(have.helps if have else {}), method: help_}
            defaults = {**(have.defaults if have else {}), method: f.default}
            merged[f.name] = CliParameter(f.name, parse, helps, defaults)
    return list(merged.values())
