"""``api-evaluate``: "API + reflection via evaluation" (paper §4.3, Table 5, the best row). The VLM
first judges, on the annotated image, whether the visible regions suffice to answer ("T") or not
("F"); then answers on the annotated image after "T", on the original after "F" — and, our rule,
after a verdict it does not state clearly (recorded as ``unparseable``)."""

from __future__ import annotations

from collections.abc import Sequence

from ..types import Request, Result, Sample, Step
from .api_prompts import EVALUATE, parse_verdict
from .base import Needs, Strategy


class ApiEvaluate(Strategy):
    """Two batched calls: every sample's evaluation, then every sample's answer on the image its
    verdict chose. A failed evaluation call fails the result (an empty reply is unparseable).

    >>> from attnprompt.attribution import get_attributor
    >>> from attnprompt.backends import get_backend
    >>> from attnprompt.shapes import make_scene
    >>> r = ApiEvaluate(get_backend("shapes"), get_attributor(model="shapes"))(
    ...     make_scene(7, n_objects=5, size=320).image, "What colour is the circle?")
    >>> [s.name for s in r.steps], r.steps[1].detail["image"] in ("annotated", "original")
    (['evaluate', 'answer'], True)
    """

    name = "api-evaluate"
    prompts = {"evaluate": EVALUATE}
    needs = Needs(map=True)

    def run(self, samples: Sequence[Sample]) -> list[Result]:
        annotated = self.annotate(samples)
        checks = [self.request(self.shown(anns), EVALUATE.format(question=s.question))
                  for s, anns in zip(samples, annotated)]
        verdicts = self.answer(checks)
        finals: list[tuple[Sample, list[Step], Request | None]] = []
        pending: list[Request] = []
        for s, anns, check, reply in zip(samples, annotated, checks, verdicts):
            if not reply.ok and reply.failure != "empty":
                finals.append((s, [Step("evaluate", check, reply, anns)], None))
                continue
            verdict = parse_verdict(reply.text) if reply.ok else None
            label = verdict or "unparseable"
            images = self.shown(anns) if verdict == "T" else list(s.images)
            step = Step("evaluate", check, reply, anns, detail={"verdict": label})
            request = self.request(images, self.prompt(s))
            finals.append((s, [step], request))
            pending.append(request)
        answers = iter(self.answer(pending))
        results = []
        for s, steps, asked in finals:
            if asked is not None:
                image = "annotated" if steps[0].detail["verdict"] == "T" else "original"
                shown = steps[0].annotations if image == "annotated" else ()
                steps.append(Step("answer", asked, next(answers), shown, detail={"image": image}))
            results.append(self.result(s, steps))
        return results
