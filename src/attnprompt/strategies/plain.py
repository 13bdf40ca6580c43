"""``plain``: the question (with the task's suffix) on the original image(s) — the "w/o prompt" baseline."""

from __future__ import annotations

from collections.abc import Sequence

from ..types import Result, Sample, Step
from .base import Strategy


class Plain(Strategy):
    """No prompting: the baseline every other strategy is compared with.

    >>> from attnprompt.backends import get_backend
    >>> from attnprompt.shapes import make_scene
    >>> r = Plain(get_backend("shapes"))(make_scene(7, n_objects=5, size=320).image, "What colour is the circle?")
    >>> r.text, [s.name for s in r.steps], r.steps[0].prompt
    ('green', ['answer'], 'What colour is the circle?')
    """

    name = "plain"
    #: What the VLM is asked: the question (``{question}`` is the question with the suffix).
    template = "{question}"

    def run(self, samples: Sequence[Sample]) -> list[Result]:
        requests = [self.request(s.images, self.template.format(question=self.prompt(s))) for s in samples]
        answers = self.answer(requests)
        return [self.result(s, [Step("answer", r, a)]) for s, r, a in zip(samples, requests, answers)]
