"""``api``: the same question on the annotated image(s) — Attention Prompting on Image (paper §3)."""

from __future__ import annotations

from collections.abc import Sequence

from ..images import sharing_reductions
from ..types import Result, Sample, Step
from .base import Needs, Strategy


class Api(Strategy):
    """Annotate each image for the question with the attributor's map, then ask about the
    annotated image(s) instead of the original. With api-vlm on the answering VLM itself this is
    the paper's g = f case. ``form`` chooses the visual prompt (:mod:`attnprompt.forms`): the blend
    (``overlay``, the paper's), the original with a crop of the map's regions (``crop``), the blend with the
    crop (``both``) or the crop alone (``zoom``); a VLM that takes one image is shown the crop alone.

    >>> from attnprompt.attribution import get_attributor
    >>> from attnprompt.backends import get_backend
    >>> from attnprompt.shapes import make_scene
    >>> r = Api(get_backend("shapes"), get_attributor(model="shapes"))(
    ...     make_scene(7, n_objects=5, size=320).image, "What colour is the circle?")
    >>> r.text, r.steps[0].images[0] is r.annotation.image, r.config["map"]["method"]
    ('green', True, 'api-clip')
    """

    name = "api"
    needs = Needs(map=True)
    #: What the VLM is asked about the annotated image (``{question}`` is the question with the suffix).
    template = "{question}"

    def run(self, samples: Sequence[Sample]) -> list[Result]:
        with sharing_reductions():  # the map, the pictures shown and the answer read one bounded copy of a photo
            return self._run(samples)

    def _run(self, samples: Sequence[Sample]) -> list[Result]:
        annotated = self.annotate(samples)
        shown = [self.show(anns) for anns in annotated]
        requests = [self.request(images, self.template.format(question=self.prompt(s)))
                    for s, (images, _) in zip(samples, shown)]
        answers = self.answer(requests)
        return [self.result(s, [Step("answer", r, a, anns, detail=detail)])
                for s, r, a, anns, (_, detail) in zip(samples, requests, answers, annotated, shown)]
