"""``zoom-search``: search the image for the window that answers the question, and answer from it — ZoomEye's
tree search (Shen et al., EMNLP 2025), with a budget of VLM calls and the attribution map as its prior.

The search core is :mod:`attnprompt.search` (the tree, ZoomEye's priority and stopping rule, our budget and
map order); how a window is scored is :mod:`attnprompt.strategies.search_confidence`. Per question:

1. in ``map`` order, the strategy's map (any method: api-clip, api-vlm, carve/vicrop) for the question — its
   mass orders the visits, windows under ``search_skip`` of their parent's mass are never asked about;
   in ``zoomeye`` order, the VLM's own confidences order them (no map is made);
2. the search, probes of all questions batched into one backend call a round;
3. the answer from the chosen window: alone (form ``zoom``) or after the original (``crop``); the whole image
   when no window reached the threshold. With the ``answer`` confidence the chosen window's answer was given
   while scoring it, so the zoom form asks nothing more.

The step's ``detail`` holds the whole search (``detail["search"]``, the format of
``docs/research/zoom-methods.md``: every node scored, its scores, the visit order and the path), the window
shown (``box``) and the VLM calls the answer cost (``calls``: probes, targets and the final answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import render
from ..errors import InputError
from ..search import Search, SearchResult, SearchSettings, check_native_side, run_searches
from ..types import Answer, Request, Result, Sample, Step
from .base import Needs, Strategy
from .search_confidence import CONFIDENCES, Searched

#: The side of the grid the map prior is kept at (its mass per window is what the search reads).
PRIOR_SIDE = 64
#: The settings zoom-search takes (``auto`` passes them on).
SEARCH_SETTINGS = frozenset({"search_budget", "search_order", "search_confidence", "search_threshold",
                             "search_skip"})


def default_confidence(backend: Any) -> str:
    """``answer`` for the shapes testbed VLM (it knows only its own phrasings), ``zoomeye`` for any other.

    >>> from attnprompt.backends import get_backend
    >>> default_confidence(get_backend("shapes"))
    'answer'
    """
    from ..models import is_embedded_location

    local = backend.local_model
    return "answer" if local is not None and is_embedded_location(local.location, "vlm") else "zoomeye"


class ZoomSearch(Strategy):
    """Search, then answer from the chosen window (module docstring).

    >>> from attnprompt.backends import get_backend
    >>> from attnprompt.attribution import get_attributor
    >>> from attnprompt.evaluation.tasks import get_task
    >>> s = get_task("shapes-detail").samples(1)[0].sample()
    >>> zs = ZoomSearch(get_backend("shapes"), get_attributor("carve", model="shapes", preset="vicrop"),
    ...                 max_new_tokens=3)
    >>> d = zs.run([s])[0].steps[-1].detail
    >>> d["calls"] <= zs.budget, d["search"]["order"], d["search"]["visits"][0]
    (True, 'map', 0)
    """

    name = "zoom-search"
    needs = Needs(map=True, settings=SEARCH_SETTINGS)
    default_form = "zoom"
    #: The forms it answers in: the window alone, or after the original.
    forms = ("zoom", "crop")
    default_method = "carve"

    def __init__(self, backend: Any, attributor: Any = None, **kwargs: Any) -> None:
        super().__init__(backend, attributor, **kwargs)
        if self.form not in self.forms:
            raise InputError(f"zoom-search answers from the window it found: alone (form zoom) or after the original "
                             f"(form crop); got form {self.form!r}")
        side = backend.native_side()
        if side is None:
            raise InputError(f"zoom-search needs the answering model's native side (its smallest window): give "
                             f"--native-side N (native_side=N) for the server {backend.name}")
        self.native_side = check_native_side(side)
        spec = self.spec
        self.order, self.budget = spec.search_order, spec.search_budget
        self.threshold, self.skip = spec.search_threshold, spec.search_skip
        self.confidence = CONFIDENCES[spec.search_confidence or default_confidence(backend)](
            backend, self.max_new_tokens, self.name)
        least = self.confidence.setup_calls + self._reserved(False) + 1
        if self.budget < least:
            raise InputError(f"zoom-search with the {self.confidence.name} confidence and the {self.form} form needs "
                             f"a budget of at least {least} VLM calls per question (the search's own calls, and "
                             f"{least - 1} to prepare and answer); got {self.budget}")

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["search"] = {"budget": self.budget, "order": self.order, "confidence": self.confidence.name,
                       "threshold": self.threshold, "native_side": self.native_side}
        if self.order == "map":
            d["search"]["skip"] = self.skip
        if self.confidence.prompts:
            d["prompts"] = {**d.get("prompts", {}), **self.confidence.prompts}
        return d

    def run(self, samples: Sequence[Sample]) -> list[Result]:
        return self.search(samples)

    def search(self, samples: Sequence[Sample], first: Sequence[Answer | None] | None = None) -> list[Result]:
        """:meth:`run`, reusing ``first``: answers already given to each sample's question on its whole image
        (``auto``'s plain answers, asked with log-probabilities), so the root's answer is not asked again."""
        out: list[Result | None] = [None] * len(samples)
        todo = [i for i, s in enumerate(samples) if s.images]
        for i in set(range(len(samples))) - set(todo):
            reason = "zoom-search searches an image, and this question has none"
            out[i] = self.result(samples[i], [Step("answer", Request.single((), self.prompt(samples[i])),
                                                   Answer("", ok=False, error=reason, failure="input"))])
        questions = [Searched(samples[i], samples[i].images[0].convert("RGB"), self.prompt(samples[i]),
                              first=None if first is None else first[i]) for i in todo]
        if not questions:
            return out  # type: ignore[return-value]
        before = self.confidence.prepare(questions)
        priors = self._priors(questions) if self.order == "map" else [None] * len(questions)
        searches = [Search(q.image.size, self._settings(q, before), prior=prior, key=k)
                    for k, (q, prior) in enumerate(zip(questions, priors))]
        found = run_searches(searches, lambda probes: self.confidence.score(probes, questions))
        for i, result in zip(todo, self._answers(questions, found, before)):
            out[i] = result
        return out  # type: ignore[return-value]

    def _reserved(self, first: bool) -> int:
        """Calls kept out of the search's budget: the final answer, unless it can be one the search was given
        (the zoom form's answer on the chosen window, or on the whole image when ``first`` is known)."""
        return 0 if self.confidence.keeps_answers and self.form == "zoom" and first else 1

    def _settings(self, q: Searched, before: int) -> SearchSettings:
        # the whole image is plain's answer (auto's gate weighs it): the search looks below it
        budget = self.budget - before - self._reserved(q.first is not None)
        return SearchSettings(budget=max(1, budget), native_side=self.native_side, order=self.order, root=False,
                              threshold=self.threshold, skip=self.skip, **self.confidence.settings(q, self.order))

    def _priors(self, questions: Sequence[Searched]) -> list[np.ndarray]:
        """Each question's map on a small grid over its image (one batched attribution)."""
        # the map order only, which has its attributor (never None here)
        maps = self.attributor.attribute([q.image for q in questions], [q.sample.question for q in questions],  # type: ignore[union-attr]
                                         suffixes=[q.sample.suffix for q in questions])
        return [render.upsample(m.grid, (PRIOR_SIDE, PRIOR_SIDE), extent=m.extent) for m in maps]

    def _answers(self, questions: Sequence[Searched], found: Sequence[SearchResult], before: int) -> list[Result]:
        """The answer from each search's window: the answer given while scoring it, or one request more."""
        asked: list[tuple[Request, Answer | None, int]] = []
        for q, r in zip(questions, found):
            node = r.chosen if r.chosen is not None else 0
            window = q.image if node == 0 else q.image.crop(r.view)
            images = [window] if self.form == "zoom" or node == 0 else [q.image, window]
            said = q.said.get(node)
            if said is not None and len(images) == 1:
                asked.append((said[0], said[1], 0))
            elif node == 0 and q.first is not None:
                asked.append((Request.single(images, q.prompt, max_new_tokens=self.max_new_tokens), q.first, 0))
            else:
                asked.append((Request.single(images, q.prompt, max_new_tokens=self.max_new_tokens), None, 1))
        new = iter(self.answer([request for request, answer, _ in asked if answer is None]))
        results = []
        for q, r, (request, answer, extra) in zip(questions, found, asked):
            answer = answer if answer is not None else next(new)
            detail: dict[str, Any] = {"form": self.form, "calls": r.calls + before + extra,
                                      "search": self._record(q, r)}
            if r.chosen not in (None, 0):
                detail["box"] = list(r.view)
            results.append(self.result(q.sample, [Step("answer", request, answer, detail=detail)]))
        return results

    def _record(self, q: Searched, r: SearchResult) -> dict[str, Any]:
        """The search's step detail, with how windows were scored and what was said on each."""
        d = r.to_detail()
        d["visits"] = r.visits
        d["confidence"] = self.confidence.name
        if q.targets:
            d["targets"] = list(q.targets)
        if q.said:
            d["said"] = {str(node): [a.text if a.ok else None, c] for node, (_, a, c) in sorted(q.said.items())}
        return d
