"""``auto``: zoom only when unsure — answer ``plain`` first, with the answer's token probabilities; when its
first token is less probable than ``gate_threshold``, answer with a zoom strategy instead (``gate_zoom``:
``zoom-search`` by default, any strategy that shows a map or none). The gate's default threshold was chosen
on the shapes testbed's *training* seeds (``docs/research/zoom-methods.md``), never on evaluation seeds.

The idea is LookWise's and AdaFocus's (a confidence decides *when* to look closer); the rule — the first answer
token's probability under a threshold — is ours. With ``zoom-search`` and the ``answer`` confidence the plain
answer is the search's answer on the whole image, so it is not asked again.

Steps: ``plain`` (its detail says the gate: ``{"gate": {"confidence", "threshold", "zoom"}}``), then, when it
zoomed, the zoom strategy's steps, whose answer is the final one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..confidence import first_token_probability
from ..types import Answer, Request, Result, Sample, Step
from .base import Needs, Strategy
from .registry import STRATEGIES
from .search_confidence import TOP_LOGPROBS
from .zoom_search import SEARCH_SETTINGS, ZoomSearch


class Auto(Strategy):
    """Plain first, a zoom strategy when plain is unsure (module docstring).

    >>> from attnprompt.backends import get_backend
    >>> from attnprompt.attribution import get_attributor
    >>> from attnprompt.shapes import make_scene
    >>> auto = Auto(get_backend("shapes"), get_attributor("carve", model="shapes", preset="vicrop"),
    ...             max_new_tokens=3, gate_threshold=0.0)
    >>> r = auto(make_scene(7, n_objects=5, size=320).image, "What colour is the circle?")
    >>> [s.name for s in r.steps], r.steps[0].detail["gate"]["zoom"]  # never unsure under a threshold of 0
    (['plain'], False)
    """

    name = "auto"
    needs = Needs(map=True, settings=SEARCH_SETTINGS | {"gate_threshold", "gate_zoom"})
    default_form = "zoom"
    default_method = "carve"
    forms = ZoomSearch.forms

    def __init__(self, backend: Any, attributor: Any = None, **kwargs: Any) -> None:
        super().__init__(backend, attributor, **kwargs)
        self.threshold = self.spec.gate_threshold
        zoom = STRATEGIES.get(self.spec.gate_zoom)
        spec = self.spec.replace(strategy=self.spec.gate_zoom).narrowed(zoom.needs)
        self.zoom = zoom(backend, attributor if zoom.needs.map else None, spec=spec)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "gate": {"threshold": self.threshold, "zoom": self.zoom.describe()}}

    def run(self, samples: Sequence[Sample]) -> list[Result]:
        requests = [Request.single(s.images, self.prompt(s), max_new_tokens=self.max_new_tokens,
                                   top_logprobs=TOP_LOGPROBS) for s in samples]
        answers = self.answer(requests)
        sure = [first_token_probability(a, needed_by=self.name) if a.ok else None for a in answers]
        # unsure, or no answer at all: zoom (a failed call says nothing of the image)
        zoom = [i for i, p in enumerate(sure) if p is None or p < self.threshold]
        picked = [samples[i] for i in zoom]
        if isinstance(self.zoom, ZoomSearch):
            zoomed = self.zoom.search(picked, first=[answers[i] if answers[i].ok else None for i in zoom])
        else:
            zoomed = self.zoom.run(picked) if picked else []
        by = dict(zip(zoom, zoomed))
        out = []
        for i, (s, request, answer, p) in enumerate(zip(samples, requests, answers, sure)):
            gate = {"confidence": None if p is None else round(p, 6), "threshold": self.threshold, "zoom": i in by}
            steps = [Step("plain", request, answer, detail={"gate": gate})]
            final: Answer = answer
            if i in by:
                steps += list(by[i].steps)
                final = by[i].answer
            out.append(self.result(s, steps, final))
        return out
