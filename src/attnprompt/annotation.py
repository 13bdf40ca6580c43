"""The annotation pipeline: attribution maps → heatmaps aligned with the images → annotated images
(paper §3.3), with the regions and crop chosen from a map when asked. Below the public façade
(:mod:`attnprompt.api`) and the strategies, which both annotate through it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image

from . import render
from .attribution.base import Attributor
from .checks import check_gray, check_pairs
from .errors import InputError
from .images import reduced
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


class Views:
    """How an :class:`~attnprompt.types.Annotation`'s pictures are rendered from its map when first read (pure
    rendering: :mod:`attnprompt.render`, :mod:`attnprompt.regions`): the full-resolution ``heatmap``, ``image``
    and ``crop`` exactly as :func:`render_annotation` made them at once before, and the ``shown_image`` /
    ``shown_crop`` a request gives the answering model, made at the size its processor is handed — the input
    reduced by the integer ``image_factor`` / ``crop_factor`` (1: the full-resolution picture itself).

    >>> v = Views(0.0, "bilinear", None, 2, 1)
    >>> a = Annotation(None, None, AttributionMap(np.ones((2, 2))), {}, Image.new("RGB", (8, 6), "white"), "q",
    ...                views=v)
    >>> a.shown_image.size, a.image.size, a.heatmap.shape
    ((4, 3), (8, 6), (6, 8))
    """

    def __init__(self, gray: float, resample: str, chosen: Any, image_factor: int, crop_factor: int) -> None:
        self.gray, self.resample, self.chosen = float(gray), resample, chosen
        self.image_factor, self.crop_factor = int(image_factor), int(crop_factor)

    def heatmap(self, a: Annotation) -> np.ndarray:
        return render.upsample(a.attribution.grid, a.original.size, extent=a.attribution.extent,
                               resample=self.resample)

    def image(self, a: Annotation) -> Image.Image:
        return render.overlay(a.original, a.heatmap, gray=self.gray)

    def crop(self, a: Annotation) -> Image.Image:
        from .regions import crop_regions

        return crop_regions(a.original, self.chosen)

    def shown_image(self, a: Annotation) -> Image.Image:
        if self.image_factor == 1:
            return a.image
        small = reduced(a.original, self.image_factor)  # the processor's bounded copy, then the map at its size
        heat = render.upsample(a.attribution.grid, small.size, extent=a.attribution.extent, resample=self.resample)
        return render.overlay(small, heat, gray=self.gray)

    def preview(self, a: Annotation, side: int) -> Image.Image:
        small = a.original.reduce(max(1, max(a.original.size) // (2 * max(1, int(side)))))
        heat = render.upsample(a.attribution.grid, small.size, extent=a.attribution.extent, resample=self.resample)
        return render.overlay(small, heat, gray=self.gray)

    def shown_crop(self, a: Annotation) -> Image.Image | None:
        from .regions import crop_regions_reduced

        if self.crop_factor == 1:
            return a.crop
        # the answering model's copy of the original (made once for the request: images.sharing_reductions) may do
        copy = None if self.image_factor == 1 else (reduced(a.original, self.image_factor), self.image_factor)
        return crop_regions_reduced(a.original, self.chosen, self.crop_factor, copy)


def render_annotation(
    image: Any, query: str, amap: AttributionMap, config: dict[str, Any], *, gray: float = 0.0,
    resample: str = "bilinear", regions: RegionConfig | None = None,
    bound: Callable[[tuple[int, int]], int] | None = None,
) -> Annotation:
    """Grid map → heatmap aligned with ``image`` → annotated image (pure rendering step); with
    ``regions``, also the regions chosen from the map and their crop (:mod:`attnprompt.regions`),
    on the map's ``parts["selection"]`` when it has one (CARVE's unnormalised contrast), else on
    the heatmap. The regions' box is chosen at once (on a bounded map); the pictures are rendered when first read
    (:class:`Views`). ``bound`` says by which integer factor the answering model's processor is handed an image of
    a size (:meth:`~attnprompt.backends.base.Backend.input_factor`): the pictures a request shows are made at that
    size (``shown_image``, ``shown_crop``); None: at the image's own.

    >>> a = render_annotation(Image.new("RGB", (8, 8), "white"), "q", AttributionMap(np.ones((2, 2))), {})
    >>> a.heatmap.shape, a.crop
    ((8, 8), None)
    """
    full = dict(config)
    full.update(gray=float(gray), resample=resample, image_size=list(image.size), grid_shape=list(amap.shape))
    factor = bound or (lambda size: 1)
    heatmap = chosen = None
    if regions is not None:
        from .regions import choose_regions, reduced_size, selection_factor

        # a large image's regions are chosen on the map at a bounded size (the box is scaled back)
        reduction = selection_factor(image.size)
        frame = reduced_size(image.size, reduction)
        selection = amap.parts.get("selection")
        if selection is not None:
            heat = render.upsample(selection, frame, extent=amap.extent, resample="bilinear", clip=False)
        else:
            heat = render.upsample(amap.grid, frame, extent=amap.extent, resample=resample)
            heatmap = heat if reduction == 1 else None  # the heatmap itself: kept
        chosen = choose_regions(heat, image.size, regions, grid=_image_grid(heat, amap.shape))
        full.update(regions=regions.to_dict(), box=list(chosen.box))
    views = Views(gray, resample, chosen, factor(image.size),
                  1 if chosen is None else factor(chosen.crop_size(image.size)))
    return Annotation(None, heatmap, amap, full, image, query, box=None if chosen is None else chosen.box,
                      views=views)


def _image_grid(heat: Any, shape: tuple[int, int]) -> Any:
    """The pixel map averaged back onto a grid of the map's size laid over the image alone (the window
    rule's cells), whatever part of the model's frame the image filled."""
    pixels = Image.fromarray(np.asarray(heat, dtype=np.float32), mode="F")
    return np.asarray(pixels.resize((shape[1], shape[0]), Image.Resampling.BOX), dtype=np.float64)


def annotate_images(
    attributor: Attributor, images: Sequence[Any], queries: Sequence[str], *, gray: float = 0.0,
    resample: str = "bilinear", suffixes: Sequence[str] | None = None, regions: RegionConfig | None = None,
    bound: Callable[[tuple[int, int]], int] | None = None,
) -> list[Annotation]:
    """Annotate loaded RGB images with a built attributor: one batched attribution, then rendering
    (with ``regions``, a crop too; ``suffixes``: the task's answer formats, for methods that answer; ``bound``: the
    answering model's input reduction, :func:`render_annotation`).

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
    return [render_annotation(img, q, m, config, gray=gray, resample=resample, regions=regions, bound=bound)
            for img, q, m in zip(images, queries, maps)]
