"""Visual-prompt forms: which images a request shows for an annotated image.

A form is one small class — what it shows for an :class:`~attnprompt.types.Annotation` and whether it
needs regions chosen from the map (a crop) — registered by name in :data:`FORMS`. Strategies that show a
map ask their form; nothing else branches on a form's name. Your own:
``FORMS.register("mine", MyForm())``.

>>> [FORMS.get(name).needs_regions for name in FORMS.names()]
[False, True, True, True]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from .errors import InputError
from .registry import Registry

if TYPE_CHECKING:
    from PIL import Image

    from .types import Annotation


class Form:
    """A visual prompt. Subclasses set ``name``, ``needs_regions`` and implement :meth:`images` (the annotation's
    ``shown_image`` / ``shown_crop``: the pictures as the answering model is given them).

    :meth:`one_image` is what the form shows to a VLM that takes a single image: its last image (the
    crop for the forms that show one), which is the picture the form adds to the question.
    """

    name: ClassVar[str] = ""
    #: It shows a crop, so regions are chosen from the map (:class:`~attnprompt.regions.RegionConfig`).
    needs_regions: ClassVar[bool] = False
    #: One line for help texts.
    summary: ClassVar[str] = ""

    def images(self, annotation: Annotation) -> list[Image.Image]:
        """The images shown for one annotated image, in order."""
        raise NotImplementedError

    def one_image(self, annotation: Annotation) -> Image.Image:
        """The one image shown to a VLM that takes a single image."""
        return self.images(annotation)[-1]

    def shown(self, annotations: Sequence[Annotation], max_images: int | None = None) -> tuple[list, str | None]:
        """The images for all ``annotations`` and, when they would be more than ``max_images`` (what the
        answering VLM takes), each annotation's :meth:`one_image` instead with a note saying so.

        >>> from PIL import Image as I
        >>> from attnprompt.types import Annotation, AttributionMap
        >>> import numpy as np
        >>> img, crop = I.new("RGB", (8, 8)), I.new("RGB", (4, 4))
        >>> a = Annotation(img, np.ones((8, 8)), AttributionMap(np.ones((2, 2))), {}, img, "q", crop, (0, 0, 4, 4))
        >>> [[i.size for i in FORMS.get("crop").shown([a], limit)[0]] for limit in (None, 1)]
        [[(8, 8), (4, 4)], [(4, 4)]]
        """
        images = [image for a in annotations for image in self.images(a)]
        if max_images is None or len(images) <= max_images or len(annotations) > max_images:
            return images, None
        return [self.one_image(a) for a in annotations], f"the {'crop' if self.needs_regions else 'image'} alone"


class Overlay(Form):
    """The paper's blend: the annotated image (the heatmap over the image)."""

    name = "overlay"
    summary = "the annotated image: the paper's blend"

    def images(self, annotation: Annotation) -> list[Image.Image]:
        return [annotation.shown_image]


class Crop(Form):
    """The original and a crop of the map's regions (CARVE's and ViCrop's form)."""

    name = "crop"
    needs_regions = True
    summary = "the original and a crop of the map's regions: CARVE, ViCrop"

    def images(self, annotation: Annotation) -> list[Image.Image]:
        return [annotation.original, _crop(annotation, self)]


class Both(Form):
    """The annotated image and the crop."""

    name = "both"
    needs_regions = True
    summary = "the annotated image and the crop"

    def images(self, annotation: Annotation) -> list[Image.Image]:
        return [annotation.shown_image, _crop(annotation, self)]


class Zoom(Form):
    """The crop alone as the one image (V*/ZoomEye-style; for VLMs that answer one image best)."""

    name = "zoom"
    needs_regions = True
    summary = "the crop alone"

    def images(self, annotation: Annotation) -> list[Image.Image]:
        return [_crop(annotation, self)]


def _crop(annotation: Annotation, form: Form) -> Image.Image:
    crop = None if annotation.box is None else annotation.shown_crop
    if crop is None:
        raise InputError(f"the {form.name!r} form shows a crop, and this annotation has none; annotate with regions")
    return crop


#: The visual-prompt forms by name (objects).
FORMS = Registry("form", {"overlay": Overlay(), "crop": Crop(), "both": Both(), "zoom": Zoom()})


def get_form(name: str | Form) -> Form:
    """The form called ``name`` (a built :class:`Form` is returned as it is).

    >>> get_form("zoom").needs_regions, get_form("overlay").name
    (True, 'overlay')
    """
    if isinstance(name, Form):
        return name
    form = FORMS.get(name)
    if not isinstance(form, Form):
        raise InputError(f"form {name!r} is registered as a {type(form).__name__}, not a Form object")
    return form


def forms_help() -> str:
    """Every registered form with its one-line summary, for help texts.

    >>> forms_help().split(" | ")[-1]
    'zoom (the crop alone)'
    """
    return " | ".join(f"{name} ({get_form(name).summary})" for name in FORMS.names())
