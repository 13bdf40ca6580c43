"""The strategy contract: (samples, backend, attributor) → one :class:`~attnprompt.types.Result` each.

A strategy decides what the VLM is shown and asked, in how many requests, and which answer is
final; the backend decides who answers; the attributor (for strategies that annotate) makes the
map. Strategies work on lists of samples so that each of their steps is one batched call: many
questions through ``plain`` or ``api`` cost one attribution forward and one generate call on a
local backend.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np  # noqa: F401  (used by the doctest examples)
from PIL import Image

from ..annotation import annotate_images, region_config
from ..errors import InputError
from ..forms import get_form
from ..text import with_suffix
from ..types import Annotation, Answer, Request, Result, Sample, Step
from .spec import DEFAULT_MAX_NEW_TOKENS, AskSpec, Needs

if TYPE_CHECKING:
    from ..attribution.base import Attributor
    from ..backends.base import Backend


class Strategy(ABC):
    """How a question is asked. Subclasses set ``name`` (and ``needs`` if they show an annotated
    image) and implement :meth:`run`; the shared steps are :meth:`annotate`,
    :meth:`request`, :meth:`answer` and :meth:`result`.

    ``max_new_tokens`` is the budget of every answer; ``gray`` and ``resample`` render the maps.

    >>> from attnprompt.backends import get_backend
    >>> from attnprompt.strategies.plain import Plain
    >>> from attnprompt.shapes import make_scene
    >>> plain = Plain(get_backend("shapes"), max_new_tokens=8)
    >>> plain(make_scene(7, n_objects=5, size=320).image, "What colour is the circle?").text
    'green'
    """

    name: ClassVar[str] = ""
    #: What it takes besides the backend: an attribution map, several sources (:class:`Needs`).
    needs: ClassVar[Needs] = Needs()
    #: The visual prompt shown unless the caller chooses (:data:`FORMS`).
    default_form: ClassVar[str] = "overlay"
    #: The attribution method used unless the caller chooses.
    default_method: ClassVar[str] = "api-clip"
    #: Prompt templates the strategy sends besides its ``template``, recorded in its configuration so
    #: that a run with a changed prompt is a different run.
    prompts: ClassVar[dict[str, str]] = {}

    def __init__(self, backend: Backend, attributor: Attributor | None = None, *, spec: AskSpec | None = None,
                 **settings: Any) -> None:
        """``spec`` (an :class:`~attnprompt.strategies.spec.AskSpec`) or its flat ``settings``
        (``max_new_tokens=8``, ``form="crop"``, ``gray=64`` …): the answer's budget, the rendering of the
        map and the visual-prompt form with its regions; the strategy's own name is filled in."""
        if spec is None:
            spec = AskSpec.from_mapping({**settings, "strategy": self.name})
        elif settings:
            raise InputError(f"give the settings either as a spec or as keywords, not both ({', '.join(settings)})")
        if self.needs.map and attributor is None:
            raise InputError(f"strategy {self.name!r} shows an annotated image; give it an attribution method")
        if not self.needs.map and attributor is not None:
            raise InputError(f"strategy {self.name!r} shows no annotated image; it takes no attribution method")
        self.spec = dataclasses.replace(spec, strategy=self.name).check(type(self))
        self.backend = backend
        self.attributor = attributor
        self.max_new_tokens = self.spec.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
        self.gray, self.resample = float(self.spec.map.gray), self.spec.map.resample
        self.form = self.spec.visual.form or self.default_form
        self.visual = get_form(self.form)
        self.regions = None
        if self.needs.map and self.visual.needs_regions:
            self.regions = region_config(self.spec.visual.regions, attributor, backend.native_side())

    @abstractmethod
    def run(self, samples: Sequence[Sample]) -> list[Result]:
        """One result per sample, in order; a failed request is a failed answer, never raised."""

    def __call__(self, image: Any, question: str, *, suffix: str = "") -> Result:
        """Run on one image (a path, a PIL image or an array) and one question."""
        return self.run([Sample(image, question, suffix=suffix)])[0]

    def describe(self) -> dict[str, Any]:
        """The configuration recorded with every result: strategy, answering VLM, budget, map.

        >>> from attnprompt.backends import get_backend
        >>> from attnprompt.strategies.plain import Plain
        >>> Plain(get_backend("shapes")).describe()
        {'strategy': 'plain', 'vlm': 'shapes', 'max_new_tokens': 128}
        """
        d: dict[str, Any] = {"strategy": self.name, "vlm": self.backend.name, "max_new_tokens": self.max_new_tokens}
        texts = dict(self.prompts)
        template = getattr(self, "template", "{question}")
        if template != "{question}":
            texts["template"] = template
        if texts:
            d["prompts"] = texts
        if self.attributor is not None:
            d["map"] = {**self.attributor.describe(), "gray": self.gray, "resample": self.resample}
            d["form"] = self.form
            if self.regions is not None:
                d["regions"] = self.regions.to_dict()
        return d

    # -- shared steps --------------------------------------------------------------------------

    @staticmethod
    def prompt(sample: Sample, text: str | None = None) -> str:
        """``text`` (default: the question) followed by the sample's answer-format suffix.

        >>> Strategy.prompt(Sample((), "What colour is the star?", suffix="Answer in one word."))
        'What colour is the star? Answer in one word.'
        """
        return with_suffix(sample.question if text is None else text, sample.suffix)

    def annotate(
        self, samples: Sequence[Sample], attributor: Attributor | None = None
    ) -> list[tuple[Annotation, ...]]:
        """Every image of every sample annotated for its question, in one batched attribution (with
        the strategy's attributor, or the one given).

        >>> from attnprompt.backends import get_backend
        >>> from attnprompt.attribution import get_attributor
        >>> from attnprompt.strategies.api import Api
        >>> from attnprompt.shapes import make_scene
        >>> api = Api(get_backend("shapes"), get_attributor(model="shapes"))
        >>> [(a,)] = api.annotate([Sample(make_scene(7, n_objects=5, size=320).image, "the circle")])
        >>> a.query, a.image.size
        ('the circle', (320, 320))
        """
        attributor = attributor or self.attributor
        if attributor is None:
            raise InputError(f"strategy {self.name!r} has no attribution method to annotate with")
        pairs = [(image, s) for s in samples for image in s.images]
        flat = annotate_images(attributor, [p[0] for p in pairs], [p[1].question for p in pairs],
                               suffixes=[p[1].suffix for p in pairs], gray=self.gray, resample=self.resample,
                               regions=self.regions, bound=self.backend.input_factor)
        out, start = [], 0
        for s in samples:
            out.append(tuple(flat[start : start + len(s.images)]))
            start += len(s.images)
        return out

    def shown(self, annotations: Sequence[Annotation]) -> list[Image.Image]:
        """The images a request shows for these annotations, in the strategy's visual-prompt form
        (:mod:`attnprompt.forms`); for a VLM that takes fewer images, each annotation's one image.

        >>> from attnprompt.types import AttributionMap
        >>> img = Image.new("RGB", (8, 8)); crop = Image.new("RGB", (4, 4))
        >>> a = Annotation(img, np.ones((8, 8)), AttributionMap(np.ones((2, 2))), {}, img, "q", crop, (0, 0, 4, 4))
        >>> from attnprompt.backends import get_backend
        >>> from attnprompt.attribution import get_attributor
        >>> from attnprompt.strategies.api import Api
        >>> [i.size for i in Api(get_backend("shapes"), get_attributor(model="shapes"), form="crop").shown([a])]
        [(8, 8), (4, 4)]
        """
        return self.show(annotations)[0]

    def show(self, annotations: Sequence[Annotation]) -> tuple[list[Image.Image], dict[str, Any]]:
        """:meth:`shown` and the step's detail: the form and, when the VLM takes fewer images than the form
        shows, what it was shown instead."""
        images, note = self.visual.shown(annotations, self.backend.max_images)
        detail: dict[str, Any] = {"form": self.form}
        if note is not None:
            detail["images"] = f"{note}: {self.backend.name} takes one image"
        return images, detail

    def request(self, images: Any, prompt: str) -> Request:
        """A single-turn request with this strategy's answer budget.

        >>> from attnprompt.backends import get_backend
        >>> from attnprompt.strategies.plain import Plain
        >>> Plain(get_backend("shapes"), max_new_tokens=5).request((), "Hi.").max_new_tokens
        5
        """
        return Request.single(images, prompt, max_new_tokens=self.max_new_tokens)

    def answer(self, requests: Sequence[Request]) -> list[Answer]:
        """The backend's answers, one batched call for all ``requests`` (none: no call)."""
        requests = list(requests)
        limit = self.backend.max_images
        most = max((len(r.images) for r in requests), default=0)
        if limit is not None and most > limit:
            raise InputError(
                f"strategy {self.name!r} shows {most} images at once and {self.backend.name} takes at most {limit}; "
                "pick a strategy that shows one image, or a model that takes several"
            )
        return self.backend.answer(requests) if requests else []

    def result(self, sample: Sample, steps: Sequence[Step], final: Answer | None = None) -> Result:
        """The result for ``sample``: its steps, and the final answer (default: the last step's).

        >>> from attnprompt.backends import get_backend
        >>> from attnprompt.strategies.plain import Plain
        >>> step = Step("answer", Request.single((), "Hi."), Answer("Hello."))
        >>> Plain(get_backend("shapes")).result(Sample((), "Hi."), [step]).text
        'Hello.'
        """
        config = {**self.describe(), "suffix": sample.suffix}
        return Result(sample.question, steps[-1].answer if final is None else final, tuple(steps), config)
