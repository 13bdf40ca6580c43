"""A strategy by name on a backend, with the attribution map(s) it shows built as its
:class:`~attnprompt.strategies.base.Needs` say: the one builder behind :func:`attnprompt.ask`, the
evaluation harness, the lmms-eval plugin and the demo.
"""

from __future__ import annotations

from typing import Any

from ..attribution import Attributor, get_attributor
from ..attribution.configs import METHODS
from ..errors import InputError
from .registry import STRATEGIES
from .spec import MAP_PREFIX, AskSpec


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


def pick_segmenter(segmenter: Any, backend: Any, loading: Any = None) -> Any:
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
    from ..models import LoadOptions

    options = LoadOptions.of(loading)
    return get_segmenter(segmenter, device=options.device,
                         dtype=None if options.dtype == "auto" else options.dtype)


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


def build_strategy(spec: AskSpec | str, backend: Any, *, make_attributor: Any = None, loading: Any = None,
                   **settings: Any) -> Any:
    """The strategy ``spec`` says (an :class:`~attnprompt.strategies.spec.AskSpec`, or a strategy's name with
    its settings as keywords) on ``backend`` (a built :class:`~attnprompt.backends.base.Backend`), with its
    attribution map(s) and segmenter built as :func:`attnprompt.ask` describes. The spec is checked first:
    settings the strategy does not take are an error. ``make_attributor`` (default
    :func:`~attnprompt.attribution.get_attributor`, same arguments) builds each map's attributor — the
    evaluation runner passes one that shares them; ``loading``: how the maps' models and the segmenter load
    (a :class:`~attnprompt.models.LoadOptions`; ``device=`` / ``dtype=`` keywords are read into it).

    >>> from attnprompt.backends import get_backend
    >>> build_strategy("api-evaluate", get_backend("shapes"), kernel=1).describe()["map"]["kernel"]
    1
    """
    from ..models import LoadOptions

    loading = LoadOptions.of(loading, device=settings.pop("device", None), dtype=settings.pop("dtype", None))
    if isinstance(spec, str):
        spec = AskSpec.from_mapping({**settings, "strategy": spec})
    elif settings:
        raise InputError(f"give the settings either in the spec or as keywords, not both ({', '.join(settings)})")
    cls = STRATEGIES.get(spec.strategy)
    spec = spec.check(cls)
    needs = cls.needs
    if needs.segmenter:
        return cls(backend, segmenter=pick_segmenter(spec.segmenter, backend, loading), spec=spec)
    if not needs.map:
        return cls(backend, spec=spec)
    make = make_attributor or get_attributor
    m = spec.map
    if needs.sources:
        if m.sources is None and backend.local_model is None:
            raise InputError("ensemble's default sources read api-vlm from the answering VLM, which is a server; "
                             "give the sources (--sources api-clip:ID,api-vlm:PATH or sources=[...])")
        built = [_source(s, backend, m.preset, dict(m.params), loading, make)
                 for s in (m.sources if m.sources is not None else ("api-clip", "api-vlm"))]
        return cls(backend, sources=built, spec=spec)
    params = {k.removeprefix(MAP_PREFIX): v for k, v in m.params.items()}
    method = m.method or cls.default_method  # check() has set it so
    attributor = make(method, model=map_model(method, m.model, backend), preset=m.preset, loading=loading, **params)
    return cls(backend, attributor, spec=spec)


def _source(source: Any, backend: Any, preset: str | None, params: dict[str, Any], loading: Any,
            make_attributor: Any) -> Attributor:
    """One ensemble source: a built attributor, or "method:model" with the parameters its method has."""
    if isinstance(source, Attributor):
        return source
    method, model = parse_source(source)
    config = METHODS.get(method).config_class
    own = {k: v for k, v in params.items() if k in config.parameter_names()}  # a kernel for all, a variant for one
    return make_attributor(method, model=map_model(method, model, backend), loading=loading,
                           preset=preset if preset in config.PRESETS else None, **own)
