"""``zoom-refine``: Zoom-Refine (arXiv 2506.01663; ``xavier-yu114/Zoom-Refine``) — the VLM answers on the whole
image and gives the box of the region it needs, then, in the same conversation, is shown that region's crop
and rechecks its answer. Generation only: no map, no log-probabilities (for servers that give neither).

Theirs: the system prompt, both turns (:mod:`attnprompt.strategies.zoom_prompts`), the box format (normalised
``[x1, y1, x2, y2]`` after "Bounding box", the last one in the reply), the crop (the box grown by 0.1 of the
image's sides, :func:`~attnprompt.strategies.zoom_prompts.refine_crop_box`), and the answer: the rechecked one
when the second reply states it, else the first. Ours: the turns' multiple-choice sentences become free-form
ones followed by the task's suffix (:func:`~attnprompt.strategies.zoom_prompts.refine_first`); a reply without
an "Answer:" line is its answer as it stands (a VLM that just answers); the replies' budget is at least
:data:`REFINE_TOKENS` (both replies reason before they answer). **No box** (none in the reply, or not a box
once read): no second turn, the first answer stands, and the step says why in ``detail["box_failure"]`` —
Zoom-Refine's own fallback, recorded. A failed call is a failed answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..types import Answer, Request, Result, Sample, Step
from .base import Strategy
from .zoom_prompts import (
    ZOOM_REFINE_SYSTEM,
    parse_refine_answer,
    parse_refine_box,
    refine_crop_box,
    refine_first,
    refine_follow_up,
)

#: The least budget of each reply (Zoom-Refine allows 4096: its replies reason, then answer).
REFINE_TOKENS = 512


def _said(reply: Answer, label: str) -> str | None:
    return parse_refine_answer(reply.text, label) if reply.ok else None


class ZoomRefine(Strategy):
    """Answer and box, then the crop and a recheck (module docstring).

    >>> from attnprompt.backends import get_backend
    >>> from attnprompt.shapes import make_scene
    >>> r = ZoomRefine(get_backend("shapes"), max_new_tokens=3)(make_scene(7, n_objects=5, size=320).image,
    ...                                                        "What colour is the circle?")
    >>> [s.name for s in r.steps], "box_failure" in r.steps[0].detail  # the tiny VLM gives no box
    (['answer'], True)
    """

    name = "zoom-refine"
    prompts = {"system": ZOOM_REFINE_SYSTEM, "first": refine_first("{question}", "{suffix}"),
               "follow_up": refine_follow_up()}

    def run(self, samples: Sequence[Sample]) -> list[Result]:
        budget = max(self.max_new_tokens, REFINE_TOKENS)
        first = [Request.single(s.images, refine_first(s.question, s.suffix), max_new_tokens=budget,
                                system=ZOOM_REFINE_SYSTEM) for s in samples]
        replies = self.answer(first)
        details: list[dict[str, Any]] = []
        second: dict[int, Request] = {}
        for i, (s, reply) in enumerate(zip(samples, replies)):
            detail: dict[str, Any] = {"answer": _said(reply, "Answer")}
            if reply.ok:
                box, why = parse_refine_box(reply.text) if s.images else (None, "the question has no image")
                if box is None:
                    detail["box_failure"] = why
                else:
                    image = s.images[0]
                    pixels = refine_crop_box(box, image.size)
                    detail.update(normalised_box=list(box), crop=list(pixels))
                    second[i] = first[i].then(reply.text, refine_follow_up(), images=[image.crop(pixels)])
            details.append(detail)
        rechecked = dict(zip(second, self.answer(list(second.values()))))
        return [self._result(s, first[i], replies[i], details[i], second.get(i), rechecked.get(i))
                for i, s in enumerate(samples)]

    def _result(self, sample: Sample, request: Request, reply: Answer, detail: dict[str, Any],
                again: Request | None, recheck: Answer | None) -> Result:
        steps = [Step("answer", request, reply, detail=detail)]
        if not reply.ok:
            return self.result(sample, steps)
        answer = detail["answer"] or reply.text.strip()
        if again is not None and recheck is not None:
            said = _said(recheck, "Rechecked Answer")
            steps.append(Step("recheck", again, recheck, detail={"box": detail["crop"], "answer": said}))
            if not recheck.ok:
                return self.result(sample, steps)
            answer = said or answer  # Zoom-Refine: the rechecked answer when stated, else the first
        seconds = sum(s.answer.seconds for s in steps)
        return self.result(sample, steps, Answer(answer, seconds=seconds, model=reply.model))
