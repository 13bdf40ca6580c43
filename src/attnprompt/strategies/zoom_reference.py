"""``zoom-oracle`` and ``zoom-centre``: rows for scale on tasks that know where the answer lies
(``Sample.region``, e.g. shapes-detail's scene box) — the region itself alone as the one image (what a
perfect crop gives), and a region of the same size at the image centre (a crop that knows nothing).
They read ground truth, so they are references in a report, not ways to ask."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputError
from ..types import Answer, Result, Sample, Step
from .base import Needs, Strategy


class ZoomOracle(Strategy):
    """The question about the sample's own region (``Sample.region``) of its first image, shown alone.

    >>> from attnprompt.backends import get_backend
    >>> from attnprompt.evaluation.tasks import get_task
    >>> s = get_task("shapes-detail").samples(1)[0]
    >>> r = ZoomOracle(get_backend("shapes"), max_new_tokens=3).run([s.sample()])[0]
    >>> r.steps[0].images[0].size, r.answer.ok
    ((224, 224), True)
    """

    name = "zoom-oracle"
    needs = Needs(truth=True)

    def box(self, sample: Sample) -> tuple[int, int, int, int]:
        if sample.region is None:
            raise InputError(f"{self.name} reads where the answer lies, and this sample gives no region; use a task "
                             "that knows it (shapes-detail)")
        x0, y0, x1, y1 = sample.region
        return x0, y0, x1, y1

    def run(self, samples: Sequence[Sample]) -> list[Result]:
        out: list[Result | None] = [None] * len(samples)
        asked, requests = [], []
        for i, s in enumerate(samples):
            if s.region is None or not s.images:
                reason = (f"{self.name} reads where the answer lies (Sample.region), which this task does not "
                          "give; it is a reference row for tasks with ground-truth regions, such as shapes-detail")
                out[i] = self.result(s, [Step("answer", self.request(list(s.images), self.prompt(s)),
                                              Answer("", ok=False, error=reason, failure="input"))])
                continue
            asked.append(i)
            requests.append(self.request([s.images[0].crop(self.box(s))], self.prompt(s)))
        for i, request, answer in zip(asked, requests, self.answer(requests)):
            detail = {"box": list(self.box(samples[i]))}
            out[i] = self.result(samples[i], [Step("answer", request, answer, detail=detail)])
        return out  # type: ignore[return-value]


class ZoomCentre(ZoomOracle):
    """A region of the size of ``Sample.region`` at the centre of the first image, shown alone.

    >>> from attnprompt.types import Sample
    >>> from PIL import Image
    >>> ZoomCentre.box(None, Sample(Image.new("RGB", (448, 448)), "q?", region=(10, 20, 234, 244)))
    (112, 112, 336, 336)
    """

    name = "zoom-centre"

    def box(self, sample: Sample) -> tuple[int, int, int, int]:
        x0, y0, x1, y1 = sample.region  # type: ignore[misc]
        w, h = sample.images[0].size
        bw, bh = x1 - x0, y1 - y0
        left, top = (w - bw) // 2, (h - bh) // 2
        return (left, top, left + bw, top + bh)
