"""The public Python API: annotate images for queries."""

from __future__ import annotations

from typing import Any, Sequence

from . import render
from .attribution.base import Attributor, get_attributor_class
from .images import ImageLike, load_image
from .types import Annotation, AttributionMap

_RENDER_KEYS = ("gray", "resample")


def get_attributor(
    method: str = "api-clip",
    *,
    model: str | Attributor | None = None,
    device: str | None = None,
    dtype: Any = None,
    preset: str | None = None,
    **params: Any,
) -> Attributor:
    """Build (or pass through) an attributor; the underlying model is loaded once and cached.

    >>> attributor = get_attributor("api-clip", model="shapes", kernel=1)  # doctest: +SKIP
    """
    if isinstance(model, Attributor):
        if params or preset:
            raise ValueError("give parameters when building the attributor, not alongside a built one")
        return model
    cls = get_attributor_class(method)
    return cls.from_pretrained(model, device=device, dtype=dtype, preset=preset, **params)


def render_annotation(
    image: Any, query: str, amap: AttributionMap, config: dict[str, Any], *, gray: float = 0.0, resample: str = "bilinear"
) -> Annotation:
    """Grid map → heatmap aligned with ``image`` → annotated image (pure rendering step).

    >>> import numpy as np
    >>> from PIL import Image
    >>> a = render_annotation(Image.new("RGB", (8, 8), "white"), "q", AttributionMap(np.ones((2, 2))), {})
    >>> a.heatmap.shape
    (8, 8)
    """
    heatmap = render.upsample(amap.grid, image.size, extent=amap.extent, resample=resample)
    annotated = render.overlay(image, heatmap, gray=gray)
    full = dict(config)
    full.update(gray=float(gray), resample=resample, image_size=list(image.size), grid_shape=list(amap.shape))
    return Annotation(
        image=annotated, heatmap=heatmap, attribution=amap.grid, config=full, original=image, query=query, parts=amap.parts
    )


def annotate(
    image: ImageLike,
    query: str,
    *,
    method: str = "api-clip",
    model: str | Attributor | None = None,
    preset: str | None = None,
    gray: float = 0.0,
    resample: str = "bilinear",
    device: str | None = None,
    dtype: Any = None,
    **params: Any,
) -> Annotation:
    """Annotate ``image`` for ``query``: attribution map → heatmap → overlay (API, paper §3).

    ``model`` is a hub id, a local checkpoint directory, an embedded name (``"shapes"``) or a
    built attributor; ``preset`` and ``params`` set the method's hyper-parameters (see
    ``ClipConfig`` for api-clip); ``gray`` is the level masked pixels fade to (0 = black).

    >>> ann = annotate("scene.png", "What colour is the star?", model="shapes")  # doctest: +SKIP
    >>> ann.image.save("annotated.png"); ann.heatmap.shape  # doctest: +SKIP
    (224, 224)
    """
    [ann] = annotate_batch(
        [image], [query], method=method, model=model, preset=preset, gray=gray, resample=resample,
        device=device, dtype=dtype, **params,
    )
    return ann


def annotate_batch(
    images: Sequence[ImageLike],
    queries: Sequence[str],
    *,
    method: str = "api-clip",
    model: str | Attributor | None = None,
    preset: str | None = None,
    gray: float = 0.0,
    resample: str = "bilinear",
    device: str | None = None,
    dtype: Any = None,
    **params: Any,
) -> list[Annotation]:
    """Annotate many (image, query) pairs in one batched forward of the model.

    The same image path or object may appear several times with different queries; it is
    loaded and encoded once.

    >>> anns = annotate_batch(["a.png", "a.png"], ["the star", "the circle"], model="shapes")  # doctest: +SKIP
    """
    if len(images) != len(queries):
        raise ValueError(f"got {len(images)} images but {len(queries)} queries; give one query per image")
    if not 0.0 <= float(gray) <= 255.0:
        from .errors import InputError

        raise InputError(f"gray must be a level in [0, 255]; got {gray!r}")
    if resample not in render.RESAMPLE:
        from .errors import InputError

        raise InputError(f"resample must be one of {', '.join(render.RESAMPLE)}; got {resample!r}")
    attributor = get_attributor(method, model=model, device=device, dtype=dtype, preset=preset, **params)
    loaded: dict[Any, Any] = {}
    rgb = []
    for img in images:
        key = img if isinstance(img, (str, bytes)) or hasattr(img, "__fspath__") else id(img)
        if key not in loaded:
            loaded[key] = load_image(img)
        rgb.append(loaded[key])
    maps = attributor.attribute(rgb, list(queries))
    config = attributor.describe()
    return [
        render_annotation(img, q.strip(), m, config, gray=gray, resample=resample) for img, q, m in zip(rgb, queries, maps)
    ]
