"""``self-reflect``: textual self-reflection (paper §4.3, Table 5), in one conversation.

Round 1 asks the question plainly; round 2 asks the model to evaluate its answer and give a new one
(the paper's prompt). The paper then deleted the evaluation sentences by hand; we ask instead, in a
third turn of the same conversation, for the new answer alone in the task's format, and keep that
reply as the final answer (:data:`~attnprompt.strategies.api_prompts.FINAL_ANSWER`)."""

from __future__ import annotations

from collections.abc import Sequence

from ..types import Result, Sample, Step
from .api_prompts import FINAL_ANSWER, SELF_REFLECT, with_suffix
from .base import Strategy


class SelfReflect(Strategy):
    """Three batched calls over one growing conversation per sample; a failed round ends that
    sample's conversation with its failure as the result.

    >>> from attnprompt.backends import get_backend
    >>> from attnprompt.shapes import make_scene
    >>> r = SelfReflect(get_backend("shapes"))(make_scene(7, n_objects=5, size=320).image, "What colour is the circle?")
    >>> [s.name for s in r.steps], r.steps[2].request.roles()
    (['answer', 'reflect', 'final'], ('user', 'assistant', 'user', 'assistant', 'user'))
    """

    name = "self-reflect"
    prompts = {"self_reflect": SELF_REFLECT, "final_answer": FINAL_ANSWER}

    def run(self, samples: Sequence[Sample]) -> list[Result]:
        steps: list[list[Step]] = [[] for _ in samples]
        live = list(range(len(samples)))
        rounds = (
            ("answer", lambda s, prev: self.request(s.images, self.prompt(s))),
            ("reflect", lambda s, prev: prev.request.then(
                prev.answer.text, SELF_REFLECT.format(question=s.question, answer=prev.answer.text))),
            ("final", lambda s, prev: prev.request.then(
                prev.answer.text, with_suffix(FINAL_ANSWER.format(question=s.question), s.suffix))),
        )
        for name, make in rounds:
            requests = [make(samples[i], steps[i][-1] if steps[i] else None) for i in live]
            for i, request, answer in zip(live, requests, self.answer(requests)):
                steps[i].append(Step(name, request, answer))
            live = [i for i in live if steps[i][-1].answer.ok]
        return [self.result(s, st) for s, st in zip(samples, steps)]
