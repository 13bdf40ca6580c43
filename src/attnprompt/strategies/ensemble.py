"""``ensemble``: several annotated images, one per attribution source, shown together with the question
(paper §9.1, Table 9: API-CLIP's and API-LLaVA's annotated images given to GPT-4V at once)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from ..types import Result, Sample, Step
from .base import Needs, Strategy

if TYPE_CHECKING:
    from ..attribution.base import Attributor
    from ..backends.base import Backend


class Ensemble(Strategy):
    """Each source annotates every image (one batched attribution per source); the VLM then sees all
    the annotated images, in the order of ``sources``, with the question (and suffix) as it is.

    >>> from attnprompt.attribution import get_attributor
    >>> from attnprompt.backends import get_backend
    >>> from attnprompt.shapes import make_scene
    >>> backend = get_backend("shapes")
    >>> sources = [get_attributor("api-clip", model="shapes"), get_attributor("api-vlm", model=backend.local_model)]
    >>> r = Ensemble(backend, sources=sources)(make_scene(7, n_objects=5, size=320).image, "What colour is the circle?")
    >>> len(r.steps[0].images), [a.config["method"] for a in r.steps[0].annotations]
    (2, ['api-clip', 'api-vlm'])
    """

    name = "ensemble"
    needs = Needs(map=True, sources=True)

    def __init__(self, backend: Backend, attributor: Attributor | None = None, *,
                 sources: Sequence[Attributor] = (), **kwargs: Any) -> None:
        sources = tuple(sources) or ((attributor,) if attributor is not None else ())
        if len(sources) < 1:
            raise InputError("strategy 'ensemble' needs its attribution sources (sources=[…], --sources)")
        super().__init__(backend, sources[0], **kwargs)
        self.sources = sources

    def describe(self) -> dict[str, Any]:
        """The configuration, with every source's map.

        >>> from attnprompt.attribution import get_attributor
        >>> from attnprompt.backends import get_backend
        >>> clip = get_attributor(model="shapes")
        >>> [m["method"] for m in Ensemble(get_backend("shapes"), sources=[clip, clip]).describe()["maps"]]
        ['api-clip', 'api-clip']
        """
        d = super().describe()
        d.pop("map", None)
        d["maps"] = [{**a.describe(), "gray": self.gray, "resample": self.resample} for a in self.sources]
        return d

    def run(self, samples: Sequence[Sample]) -> list[Result]:
        per_source = [self.annotate(samples, source) for source in self.sources]
        shown = [tuple(a for anns in per_sample for a in anns) for per_sample in zip(*per_source)]
        requests = [self.request(self.shown(anns), self.prompt(s)) for s, anns in zip(samples, shown)]
        answers = self.answer(requests)
        return [self.result(s, [Step("answer", r, a, anns)])
                for s, r, a, anns in zip(samples, requests, answers, shown)]
