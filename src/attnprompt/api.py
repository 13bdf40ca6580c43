"""The public Python API: annotate images for queries, and ask VLMs about them with a strategy.

The same words mean the same thing in every function and on the command line: ``method`` is
the attribution method (``api-clip``, ``api-vlm``) and ``model`` its model; ``vlm`` is who
answers; ``strategy`` how it is asked; ``max_new_tokens`` the answer's token budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from . import render
from .attribution.base import Attributor
from .config import METHODS, STRATEGIES, RegionConfig, check_gray, check_pairs, check_query
from .errors import InputError
from .images import ImageLike, load_image
from .types import Annotation, AttributionMap, Result, Sample


def get_attributor(
    method: str = "api-clip",
    *,
    model: Any = None,
    device: str | None = None,
    dtype: Any = None,
    preset: str | None = None,
    **params: Any,
) -> Attributor:
    """Build (or pass through) an attributor; the underlying model is loaded once and cached.

    ``model`` is a hub id, a local checkpoint directory, an embedded name (``"shapes"``), an
    already loaded model, or a built attributor (returned as it is).

    >>> get_attributor("api-clip", model="shapes", kernel=1).config.kernel
    1
    """
    if isinstance(model, Attributor):
        if params or preset:
            raise InputError(
                f"parameters {sorted(params) + (['preset'] if preset else [])} were given with an already built "
                "attributor; give them when building it instead"
            )
        return model
    cls = METHODS.get(method)
    return cls.from_pretrained(model, device=device, dtype=dtype, preset=preset, **params)


def render_annotation(
    image: Any, query: str, amap: AttributionMap, config: dict[str, Any], *, gray: float = 0.0,
    resample: str = "bilinear", regions: RegionConfig | None = None,
) -> Annotation:
    """Grid map → heatmap aligned with ``image`` → annotated image (pure rendering step); with
    ``regions``, also the regions chosen from the map and their crop (:mod:`attnprompt.regions`),
    on the map's ``parts["selection"]`` when it has one (CARVE's unnormalised contrast), else on
    the heatmap.

    >>> import numpy as np
    >>> from PIL import Image
    >>> a = render_annotation(Image.new("RGB", (8, 8), "white"), "q", AttributionMap(np.ones((2, 2))), {})
    >>> a.heatmap.shape, a.crop
    ((8, 8), None)
    """
    heatmap = render.upsample(amap.grid, image.size, extent=amap.extent, resample=resample)
    annotated = render.overlay(image, heatmap, gray=gray)
    full = dict(config)
    full.update(gray=float(gray), resample=resample, image_size=list(image.size), grid_shape=list(amap.shape))
    crop = box = None
    if regions is not None:
        from .regions import select_regions

        selection = amap.parts.get("selection")
        heat = heatmap if selection is None else render.upsample(selection, image.size, extent=amap.extent,
                                                                 resample="bilinear", clip=False)
        chosen = select_regions(heat, image, regions, grid=_image_grid(heat, amap.shape))
        crop, box = chosen.crop, chosen.box
        full.update(regions=regions.to_dict(), box=list(box))
    return Annotation(image=annotated, heatmap=heatmap, attribution=amap, config=full, original=image, query=query,
                      crop=crop, box=box)


def _image_grid(heat: Any, shape: tuple[int, int]) -> Any:
    """The pixel map averaged back onto a grid of the map's size laid over the image alone (the window
    rule's cells), whatever part of the model's frame the image filled."""
    import numpy as np
    from PIL import Image

    pixels = Image.fromarray(np.asarray(heat, dtype=np.float32), mode="F")
    return np.asarray(pixels.resize((shape[1], shape[0]), Image.Resampling.BOX), dtype=np.float64)


def check_rendering(gray: Any, resample: Any) -> float:
    """Validate the rendering settings; returns ``gray`` as a float.

    >>> check_rendering(128, "bilinear")
    128.0
    """
    if resample not in render.RESAMPLE:
        raise InputError(f"resample must be one of {', '.join(render.RESAMPLE)}; got {resample!r}")
    return check_gray(gray)


def annotate_images(
    attributor: Attributor, images: Sequence[Any], queries: Sequence[str], *, gray: float = 0.0,
    resample: str = "bilinear", suffixes: Sequence[str] | None = None, regions: RegionConfig | None = None,
) -> list[Annotation]:
    """Annotate loaded RGB images with a built attributor: one batched attribution, then rendering
    (with ``regions``, a crop too; ``suffixes``: the task's answer formats, for methods that answer).

    >>> from attnprompt.shapes import make_scene
    >>> image = make_scene(7, n_objects=5, size=320).image
    >>> [a] = annotate_images(get_attributor(model="shapes"), [image], ["the circle"], gray=128)
    >>> a.image.size, a.config["gray"]
    ((320, 320), 128.0)
    """
    gray = check_rendering(gray, resample)
    queries = [check_query(q) for q in queries]
    maps = attributor.attribute(list(images), queries, suffixes=suffixes)
    config = attributor.describe()
    return [render_annotation(img, q, m, config, gray=gray, resample=resample, regions=regions)
            for img, q, m in zip(images, queries, maps)]


def annotate(
    image: ImageLike,
    query: str,
    *,
    method: str = "api-clip",
    model: Any = None,
    preset: str | None = None,
    gray: float = 0.0,
    resample: str = "bilinear",
    regions: Any = None,
    device: str | None = None,
    dtype: Any = None,
    **params: Any,
) -> Annotation:
    """Annotate ``image`` for ``query``: attribution map → heatmap → overlay (API, paper §3).

    ``model`` is a hub id, a local checkpoint directory, an embedded name (``"shapes"``) or a
    built attributor; ``preset`` and ``params`` set the method's hyper-parameters (see
    :class:`~attnprompt.config.ClipConfig`, :class:`~attnprompt.config.VlmConfig`,
    :class:`~attnprompt.config.CarveConfig`); ``gray`` is the level masked pixels fade to (0 =
    black); ``regions`` (``True`` for the method's own rule, ``"carve"``, ``"vicrop"`` or a
    :class:`~attnprompt.config.RegionConfig`) also selects regions: ``.crop`` and ``.box``.

    >>> from attnprompt.shapes import make_scene
    >>> ann = annotate(make_scene(7, n_objects=5, size=320).image, "What colour is the circle?", model="shapes",
    ...                regions=True)
    >>> ann.heatmap.shape, ann.config["method"], ann.crop is not None
    ((320, 320), 'api-clip', True)
    """
    [ann] = annotate_batch(
        [image], [query], method=method, model=model, preset=preset, gray=gray, resample=resample, regions=regions,
        device=device, dtype=dtype, **params,
    )
    return ann


def annotate_batch(
    images: Sequence[ImageLike],
    queries: Sequence[str],
    *,
    method: str = "api-clip",
    model: Any = None,
    preset: str | None = None,
    gray: float = 0.0,
    resample: str = "bilinear",
    regions: Any = None,
    device: str | None = None,
    dtype: Any = None,
    **params: Any,
) -> list[Annotation]:
    """Annotate many (image, query) pairs in one batched forward of the model.

    The same image path or object may appear several times with different queries; it is
    loaded and encoded once.

    >>> from attnprompt.shapes import make_scene
    >>> image = make_scene(7, n_objects=5, size=320).image
    >>> anns = annotate_batch([image, image], ["the star", "the circle"], model="shapes")
    >>> [a.query for a in anns]
    ['the star', 'the circle']
    """
    queries, _ = check_pairs(images, queries)
    check_rendering(gray, resample)
    loaded: dict[Any, Any] = {}
    rgb = []
    for img in images:  # images and queries first: a bad one fails before a model loads
        key = img if isinstance(img, (str, bytes)) or hasattr(img, "__fspath__") else id(img)
        if key not in loaded:
            loaded[key] = load_image(img)
        rgb.append(loaded[key])
    attributor = get_attributor(method, model=model, device=device, dtype=dtype, preset=preset, **params)
    chosen = None
    if regions is not None and regions is not False:
        from .strategies.base import region_config

        chosen = region_config(None if regions is True else regions, attributor)
    return annotate_images(attributor, rgb, queries, gray=gray, resample=resample, regions=chosen)


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
    from .models import is_embedded_location

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
    **params: Any,
) -> Any:
    """The strategy ``strategy`` on ``backend`` (a built :class:`~attnprompt.backends.base.Backend`),
    with its attribution map(s) built as :func:`ask` describes; map settings given to a strategy
    that shows no annotated image are an error. ``make_attributor`` (default :func:`get_attributor`,
    same arguments) builds each map's attributor — the evaluation runner passes one that shares them.

    >>> from attnprompt.backends import get_backend
    >>> build_strategy("api-evaluate", get_backend("shapes"), kernel=1).describe()["map"]["kernel"]
    1
    """
    cls = STRATEGIES.get(strategy)
    method = method or cls.default_method
    map_params = {k.removeprefix("map_"): v for k, v in params.items()}
    common: dict[str, Any] = dict(max_new_tokens=max_new_tokens, gray=gray, resample=resample)
    if sources is not None and not getattr(cls, "multi_source", False):
        raise InputError(f"sources are the ensemble strategy's attribution maps; strategy {strategy!r} uses "
                         "method and model")
    if not cls.needs_map:
        if model is not None or preset is not None or map_params:
            given = sorted(map_params) + [k for k, v in (("model", model), ("preset", preset)) if v is not None]
            annotating = [n for n in STRATEGIES.names() if STRATEGIES.get(n).needs_map]
            raise InputError(
                f"strategy {strategy!r} uses no attribution map, but map settings were given ({', '.join(given)}); "
                f"drop them, or pick a strategy that annotates ({', '.join(annotating)})"
            )
        if form not in (None, "overlay") or regions is not None:
            raise InputError(f"strategy {strategy!r} shows no annotated image, so it has no visual-prompt form")
        return cls(backend, **common)
    common.update(form=form, regions=regions)
    if getattr(cls, "multi_source", False):
        if sources is None and backend.local_model is None:
            raise InputError("ensemble's default sources read api-vlm from the answering VLM, which is a server; "
                             "give the sources (--sources api-clip:ID,api-vlm:PATH or sources=[...])")
        built = [_source(s, backend, preset, map_params, device, dtype, make_attributor or get_attributor)
                 for s in (sources if sources is not None else ("api-clip", "api-vlm"))]
        return cls(backend, sources=built, **common)
    attributor = (make_attributor or get_attributor)(method, model=map_model(method, model, backend), preset=preset,
                                                     device=device, dtype=dtype, **map_params)
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


def ask(
    image: ImageLike,
    question: str,
    *,
    vlm: Any = None,
    strategy: str = "api",
    method: str | None = None,
    model: Any = None,
    preset: str | None = None,
    suffix: str = "",
    max_new_tokens: int = 128,
    gray: float = 0.0,
    resample: str = "bilinear",
    compare: bool = False,
    sources: Sequence[Any] | None = None,
    form: str | None = None,
    regions: Any = None,
    device: str | None = None,
    dtype: Any = None,
    **params: Any,
) -> Result:
    """Ask a VLM about an image with a strategy (default ``api``: annotate, then ask about the
    annotated image); returns a :class:`~attnprompt.types.Result` whose steps show what the VLM saw.

    - who answers: ``vlm`` — a hub id, a local directory, ``"shapes"``, an OpenAI-compatible URL,
      or a backend from :func:`attnprompt.backends.get_backend` (for a server's model name, API key,
      timeout); ``device``/``dtype`` for local models;
    - how it is asked: ``strategy`` (see ``attnprompt.config.STRATEGIES``), ``suffix`` (the task's
      answer-format instruction, placed by the strategy), ``max_new_tokens`` (the answer's budget),
      ``compare`` (also ask with ``plain``: the result's ``baseline``);
    - the map, for strategies that annotate: ``method`` (default the strategy's: api-clip, carve for
      ``carve``), its ``model`` (default: the paper's CLIP — the shapes CLIP beside the shapes VLM —
      for api-clip; the answering VLM itself for api-vlm and carve),
      ``preset`` and ``params``; a method parameter whose name ``ask`` uses itself is given with a
      ``map_`` prefix (``map_max_new_tokens``: api-vlm's own generation length); ``gray``, ``resample``;
      for ``ensemble``, ``sources``: ``"method:model"`` strings or built attributors (default api-clip
      and api-vlm as above; with a server as the answering VLM they must be given), each taking the
      parameters its method has; ``form`` (``overlay``, ``crop``, ``both``: the visual prompt, default
      the strategy's) and ``regions`` (how a crop is chosen: ``carve``, ``vicrop`` or a
      :class:`~attnprompt.config.RegionConfig`; default the method's).

    >>> from attnprompt.shapes import make_scene
    >>> r = ask(make_scene(7, n_objects=5, size=320).image, "What colour is the circle?", vlm="shapes", compare=True)
    >>> r.text, r.baseline.text, r.steps[0].images[0] is r.annotation.image
    ('green', 'green', True)
    """
    from .backends import get_backend
    from .strategies.plain import Plain

    cls = STRATEGIES.get(strategy)
    sample = Sample(load_image(image), question, suffix=suffix)  # before any model loads
    backend = get_backend(vlm, device=device, dtype=dtype)
    chosen = build_strategy(strategy, backend, method=method, model=model, preset=preset, sources=sources,
                            max_new_tokens=max_new_tokens, gray=gray, resample=resample, form=form, regions=regions,
                            device=device, dtype=dtype, **params)
    result = chosen.run([sample])[0]
    if compare and cls is not Plain:
        baseline = Plain(backend, max_new_tokens=max_new_tokens).run([sample])[0]
        result = dataclasses.replace(result, baseline=baseline)
    return result
