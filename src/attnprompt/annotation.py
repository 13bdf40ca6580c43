"""The annotation pipeline: attribution maps → heatmaps aligned with the images → annotated images
(paper §3.3), with the regions and crop chosen from a map when asked. Below the public façade
(:mod:`attnprompt.api`) and the strategies, which both annotate through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from . import render
from .attribution.base import Attributor
from .checks import check_gray, check_pairs
from .errors import InputError
from .regions import RegionConfig
from .types import Annotation, AttributionMap


def check_rendering(gray: Any, resample: Any) -> float:
    """Validate the rendering settings; returns ``gray`` as a float.

    >>> check_rendering(128, "bilinear")
    128.0
    """
    if resample not in render.RESAMPLE:
        raise InputError(f"resample must be one of {', '.join(render.RESAMPLE)}; got {resample!r}")
    return check_gray(gray)


def region_config(regions: RegionConfig | str | None, attributor: Any = None,
                  native_side: int | None = None) -> RegionConfig:
    """A :class:`~attnprompt.regions.RegionConfig`: as given, a preset by name, or the one the map's
    method suggests (ViCrop's window for the ``vicrop`` preset of carve), else CARVE's; its window
    resolved to the answering VLM's ``native_side`` where none is set (:meth:`RegionConfig.for_side`).

    >>> region_config("vicrop").rule, region_config(None).rule, region_config("vicrop", native_side=128).window
    ('window', 'attention', 128)
    """
    if not isinstance(regions, RegionConfig):
        if regions is None:
            # a method preset named after a region preset (carve's vicrop) chooses its crops that way
            preset = getattr(getattr(attributor, "config", None), "preset", None)
            regions = preset if preset in RegionConfig.PRESETS else RegionConfig.DEFAULT_PRESET
        regions = RegionConfig.from_preset(regions)
    return regions.for_side(native_side)


def render_annotation(
    image: Any, query: str, amap: AttributionMap, config: dict[str, Any], *, gray: float = 0.0,
    resample: str = "bilinear", regions: RegionConfig | None = None,
) -> Annotation:
    """Grid map → heatmap aligned with ``image`` → annotated image (pure rendering step); with
    ``regions``, also the regions chosen from the map and their crop (:mod:`attnprompt.regions`),
    on the map's ``parts["selection"]`` when it has one (CARVE's unnormalised contrast), else on
    the heatmap.

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
        from .regions import reduced_size, select_regions, selection_factor

        # a large image's regions are chosen on the map at a bounded size (the box is scaled back)
        factor = selection_factor(image.size)
        frame = reduced_size(image.size, factor)
        selection = amap.parts.get("selection")
        if selection is not None:
            heat = render.upsample(selection, frame, extent=amap.extent, resample="bilinear", clip=False)
        else:
            heat = heatmap if factor == 1 else render.upsample(amap.grid, frame, extent=amap.extent,
                                                               resample=resample)
        chosen = select_regions(heat, image, regions, grid=_image_grid(heat, amap.shape))
        crop, box = chosen.crop, chosen.box
        full.update(regions=regions.to_dict(), box=list(box))
    return Annotation(image=annotated, heatmap=heatmap, attribution=amap, config=full, original=image, query=query,
                      crop=crop, box=box)


def _image_grid(heat: Any, shape: tuple[int, int]) -> Any:
    """The pixel map averaged back onto a grid of the map's size laid over the image alone (the window
    rule's cells), whatever part of the model's frame the image filled."""
    pixels = Image.fromarray(np.asarray(heat, dtype=np.float32), mode="F")
    return np.asarray(pixels.resize((shape[1], shape[0]), Image.Resampling.BOX), dtype=np.float64)


def annotate_images(
    attributor: Attributor, images: Sequence[Any], queries: Sequence[str], *, gray: float = 0.0,
    resample: str = "bilinear", suffixes: Sequence[str] | None = None, regions: RegionConfig | None = None,
) -> list[Annotation]:
    """Annotate loaded RGB images with a built attributor: one batched attribution, then rendering
    (with ``regions``, a crop too; ``suffixes``: the task's answer formats, for methods that answer).

    >>> from attnprompt.attribution import get_attributor
    >>> from attnprompt.shapes import make_scene
    >>> image = make_scene(7, n_objects=5, size=320).image
    >>> [a] = annotate_images(get_attributor(model="shapes"), [image], ["the circle"], gray=128)
    >>> a.image.size, a.config["gray"]
    ((320, 320), 128.0)
    """
    gray = check_rendering(gray, resample)
    queries, _ = check_pairs(images, queries)
    maps = attributor.attribute(list(images), queries, suffixes=suffixes)
    config = attributor.describe()
    return [render_annotation(img, q, m, config, gray=gray, resample=resample, regions=regions)
            for img, q, m in zip(images, queries, maps)]
