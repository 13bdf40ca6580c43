"""``fgvp-mask``, ``fgvp-rbm`` and ``som``: the segmentation-based visual prompts the API paper compares
with (Table 1) — the question, unchanged, about the image annotated from a segmenter's masks. "The
only difference among the experiments with FGVP, SoM and our method is the annotated image" (API,
appendix): the prompt is :class:`~attnprompt.strategies.plain.Plain`'s, and the annotation knows nothing
of the question.

Which masks: FGVP's released code prompts one candidate at a time and lets CLIP pick the candidate
that matches a referring expression; a VQA question is not a referring expression, and the API paper
calls FGVP's prompts query-invariant ("whatever the text query is, an image's visual prompting results
are the same"), so here FGVP marks *every* mask of its automatic mask generation at once (their
union): green at alpha 0.5 inside (Mask), or Gaussian blur outside (RBM). SoM numbers every mask of
SAM's automatic mask generation, as its demo does, on the image resized to a shorter side of 640.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from PIL import Image

from ..errors import InputError
from ..segmenters import FGVP_SETTINGS, SOM_SETTINGS, MaskSettings, Segmentation, Segmenter, fgvp_mask, fgvp_rbm, som
from ..segmenters.drawing import som_size
from ..types import Result, Sample, Step
from .base import Needs, Strategy


class SegmentationPrompt(Strategy):
    """The shared steps: segment every image of every sample in one call (cached per image), draw
    the prompt, ask the question about the drawn images. Subclasses set ``settings`` (the masks'
    :class:`~attnprompt.segmenters.MaskSettings`) and :meth:`draw`."""

    needs = Needs(segmenter=True)
    settings: ClassVar[MaskSettings] = SOM_SETTINGS
    template = "{question}"

    def __init__(self, backend: Any, *, segmenter: Segmenter, **kwargs: Any) -> None:
        super().__init__(backend, **kwargs)
        if not isinstance(segmenter, Segmenter):
            raise InputError(f"strategy {self.name!r} takes a built Segmenter (get_segmenter); got "
                             f"{type(segmenter).__name__}")
        self.segmenter = segmenter

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "segmenter": {**self.segmenter.describe(), **self.settings.to_dict()}}

    def size(self, image: Image.Image) -> tuple[int, int]:
        """The size the prompt is drawn (and the image segmented) at: the image's own."""
        return image.size

    def draw(self, image: Image.Image, segmentation: Segmentation) -> Image.Image:
        """The annotated image (at :meth:`size`) from the image's segmentation."""
        raise NotImplementedError

    def run(self, samples: Sequence[Sample]) -> list[Result]:
        images = [image for s in samples for image in s.images]
        sizes = [self.size(image) for image in images]
        segmentations = iter(self.segmenter.segment(images, self.settings, sizes=sizes))
        requests, counts = [], []
        for s in samples:
            drawn, n = [], []
            for image in s.images:
                seg = next(segmentations)
                shown = image.convert("RGB")
                if shown.size != seg.image_size:
                    shown = shown.resize(seg.image_size, Image.Resampling.BICUBIC)
                drawn.append(self.draw(shown, seg))
                n.append(len(seg))
            requests.append(self.request(drawn, self.template.format(question=self.prompt(s))))
            counts.append(n)
        answers = self.answer(requests)
        return [self.result(s, [Step("answer", r, a, detail={"masks": n})])
                for s, r, a, n in zip(samples, requests, answers, counts)]


class FgvpMask(SegmentationPrompt):
    """FGVP (Mask): every mask filled green (0, 255, 0) at alpha 0.5, FGVP's masks (its automatic mask
    generation settings: 16² points, IoU 0.86, stability 0.92, offset 0.7, regions ≥ 400 px).

    >>> from attnprompt.backends import get_backend
    >>> from attnprompt.segmenters import get_segmenter
    >>> from attnprompt.shapes import make_scene
    >>> scene = make_scene(7, n_objects=5, size=320)
    >>> fgvp = FgvpMask(get_backend("shapes"), segmenter=get_segmenter("shapes"))
    >>> r = fgvp(scene.image, "What colour is the circle?")
    >>> r.steps[0].detail["masks"], r.steps[0].images[0].getpixel(scene.objects[0].center)[1] > 128
    ([5], True)
    """

    name = "fgvp-mask"
    settings = FGVP_SETTINGS

    def draw(self, image: Image.Image, segmentation: Segmentation) -> Image.Image:
        return fgvp_mask(image, [segmentation.union(image.size)])


class FgvpRbm(FgvpMask):
    """FGVP (RBM, reverse blur mask): the image blurred outside every mask (Gaussian, σ 100 at CLIP's
    336-px side), the original inside."""

    name = "fgvp-rbm"

    def draw(self, image: Image.Image, segmentation: Segmentation) -> Image.Image:
        return fgvp_rbm(image, [segmentation.union(image.size)])


class Som(SegmentationPrompt):
    """Set-of-Mark: the image at a shorter side of 640, every mask of SAM's default automatic mask
    generation tinted (alpha 0.1), outlined and numbered by decreasing area (:func:`~attnprompt.segmenters.som`)."""

    name = "som"
    settings = SOM_SETTINGS

    def size(self, image: Image.Image) -> tuple[int, int]:
        return som_size(image.size)

    def draw(self, image: Image.Image, segmentation: Segmentation) -> Image.Image:
        return som(image, [segmentation.mask(i, image.size) for i in range(len(segmentation))])
