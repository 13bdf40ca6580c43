"""A strategy by name on a backend, with the attribution map(s) it shows built as its
:class:`~attnprompt.strategies.base.Needs` say: the one builder behind :func:`attnprompt.ask`, the
evaluation harness, the lmms-eval plugin and the demo.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..attribution import Attributor, get_attributor
from ..attribution.configs import METHODS
from ..errors import InputError
from .registry import STRATEGIES


def map_model(method: str, model: Any, backend: Any) -> Any:
    """The attribution model to use when ``model`` is not given: for a method that reads a VLM's
    attention (api-vlm, carve) the answering VLM itself (g = f; it must run locally), for api-clip
    the shapes CLIP beside the shapes VLM; otherwise the method's own default (``None``).

    >>> from attnprompt.backends import get_backend
    >>> map_model("api-clip", None, get_backend("shapes"))
    'shapes'
    """
    if model is not None:
        return model
    from ..models import is_embedded_location

    local = backend.local_model
    if METHODS.get(method).model_kind == "vlm":
        if local is None:
            raise InputError(
                f"{method} reads a VLM's attention, and the answering VLM is a server; pass the attribution model "
                "(--model ID|PATH, a local LLaVA/Qwen2-VL checkpoint) or use --method api-clip"
            )
        return local
    if method == "api-clip" and local is not None and is_embedded_location(local.location, "vlm"):
        return "shapes"
    return None


def pick_segmenter(segmenter: Any, backend: Any, device: str | None = None, dtype: Any = None) -> Any:
    """The segmenter to use: the one given (built, or a name / SAM checkpoint); when none is, the
    testbed's ground truth (``shapes``) beside the shapes VLM, else SAM ViT-H (``facebook/sam-vit-huge``).

    >>> from attnprompt.backends import get_backend
    >>> pick_segmenter(None, get_backend("shapes")).name
    'shapes'
    """
    from ..segmenters import get_segmenter

    if segmenter is None:
        from ..models import is_embedded_location

        local = backend.local_model
        shapes = local is not None and is_embedded_location(local.location, "vlm")
        segmenter = "shapes" if shapes else "sam"
    return get_segmenter(segmenter, device=device, dtype=dtype)


def parse_source(source: str) -> tuple[str, str | None]:
    """``"method:model"`` → (method, model); ``"method"`` alone → (method, None: its default model).

    >>> parse_source("api-clip:openai/clip-vit-large-patch14-336"), parse_source("api-vlm")
    (('api-clip', 'openai/clip-vit-large-patch14-336'), ('api-vlm', None))
    """
    if not isinstance(source, str) or not source.strip():
        raise InputError(f"an attribution source is 'method:model' (or 'method'); got {source!r}")
    method, sep, model = source.strip().partition(":")
    if method not in METHODS:
        raise InputError(f"attribution source {source!r}: unknown method {method!r}; valid methods: "
                         f"{', '.join(METHODS.names())}")
    return method, (model.strip() or None) if sep else None


def build_strategy(
    strategy: str,
    backend: Any,
    *,
    method: str | None = None,
    model: Any = None,
    preset: str | None = None,
    sources: Sequence[Any] | None = None,
    max_new_tokens: int = 128,
    gray: float = 0.0,
    resample: str = "bilinear",
    form: str | None = None,
    regions: Any = None,
    device: str | None = None,
    dtype: Any = None,
    make_attributor: Any = None,
    segmenter: Any = None,
    **params: Any,
) -> Any:
    """The strategy ``strategy`` on ``backend`` (a built :class:`~attnprompt.backends.base.Backend`),
    with its attribution map(s) built as :func:`attnprompt.ask` describes; map settings given to a
    strategy that shows no annotated image are an error. ``make_attributor`` (default
    :func:`~attnprompt.attribution.get_attributor`, same arguments) builds each map's attributor —
    the evaluation runner passes one that shares them. ``segmenter`` (strategies that draw from masks:
    fgvp-mask, fgvp-rbm, som) is a built segmenter or what :func:`~attnprompt.segmenters.get_segmenter`
    takes; default the testbed's ground truth beside the shapes VLM, else SAM ViT-H.

    >>> from attnprompt.backends import get_backend
    >>> build_strategy("api-evaluate", get_backend("shapes"), kernel=1).describe()["map"]["kernel"]
    1
    """
    cls = STRATEGIES.get(strategy)
    needs = cls.needs
    method = method or cls.default_method
    map_params = {k.removeprefix("map_"): v for k, v in params.items()}
    common: dict[str, Any] = dict(max_new_tokens=max_new_tokens, gray=gray, resample=resample)
    if segmenter is not None and not needs.segmenter:
        drawing = [n for n in STRATEGIES.names() if STRATEGIES.get(n).needs.segmenter]
        raise InputError(f"strategy {strategy!r} draws nothing from masks, so it takes no segmenter; the strategies "
                         f"that do: {', '.join(drawing)}")
    if sources is not None and not needs.sources:
        raise InputError(f"sources are the ensemble strategy's attribution maps; strategy {strategy!r} uses "
                         "method and model")
    if not needs.map:
        if model is not None or preset is not None or map_params:
            given = sorted(map_params) + [k for k, v in (("model", model), ("preset", preset)) if v is not None]
            annotating = [n for n in STRATEGIES.names() if STRATEGIES.get(n).needs.map]
            raise InputError(
                f"strategy {strategy!r} uses no attribution map, but map settings were given ({', '.join(given)}); "
                f"drop them, or pick a strategy that annotates ({', '.join(annotating)})"
            )
        if form not in (None, "overlay") or regions is not None:
            raise InputError(f"strategy {strategy!r} shows no annotated image, so it has no visual-prompt form")
        if needs.segmenter:
            return cls(backend, segmenter=pick_segmenter(segmenter, backend, device, dtype), **common)
        return cls(backend, **common)
    common.update(form=form, regions=regions)
    make = make_attributor or get_attributor
    if needs.sources:
        if sources is None and backend.local_model is None:
            raise InputError("ensemble's default sources read api-vlm from the answering VLM, which is a server; "
                             "give the sources (--sources api-clip:ID,api-vlm:PATH or sources=[...])")
        built = [_source(s, backend, preset, map_params, device, dtype, make)
                 for s in (sources if sources is not None else ("api-clip", "api-vlm"))]
        return cls(backend, sources=built, **common)
    attributor = make(method, model=map_model(method, model, backend), preset=preset, device=device, dtype=dtype,
                      **map_params)
    return cls(backend, attributor, **common)


def _source(source: Any, backend: Any, preset: str | None, params: dict[str, Any], device: str | None,
            dtype: Any, make_attributor: Any) -> Attributor:
    """One ensemble source: a built attributor, or "method:model" with the parameters its method has."""
    if isinstance(source, Attributor):
        return source
    method, model = parse_source(source)
    config = METHODS.get(method).config_class
    own = {k: v for k, v in params.items() if k in config.parameter_names()}  # a kernel for all, a variant for one
    return make_attributor(method, model=map_model(method, model, backend), device=device, dtype=dtype,
                           preset=preset if preset in config.PRESETS else None, **own)
