"""The strategy contract: (samples, backend, attributor) → one :class:`~attnprompt.types.Result` each.

A strategy decides what the VLM is shown and asked, in how many requests, and which answer is
final; the backend decides who answers; the attributor (for strategies that annotate) makes the
map. Strategies work on lists of samples so that each of their steps is one batched call: many
questions through ``plain`` or ``api`` cost one attribution forward and one generate call on a
local backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np  # noqa: F401  (used by the doctest examples)
from PIL import Image

from ..annotation import annotate_images, check_rendering, region_config
from ..checks import check_choice, check_count
from ..errors import InputError
from ..forms import FORMS
from ..regions import RegionConfig
from ..text import with_suffix
from ..types import Annotation, Answer, Request, Result, Sample, Step


@dataclass(frozen=True)
class Needs:
    """What a strategy takes besides its backend and answer budget, declared once on its class
    (``needs = Needs(map=True)``): the builder, the harness, the CLI and the demo ask it rather than
    branch on the strategy's kind.

    - ``map``: it shows images annotated with an attribution map, so it takes the map's method,
      model, preset and parameters, the rendering (``gray``, ``resample``) and a visual-prompt
      ``form`` with its ``regions``;
    - ``sources``: it shows one map per attribution source (``sources=``), not one method and model.

    >>> Needs(map=True).crossed, Needs(map=True, sources=True).crossed, Needs().crossed
    (True, False, False)
    """

    map: bool = False
    sources: bool = False
    #: It reads the task's ground truth (``Sample.region``): a row for scale, not a way to ask (the demo and
    #: ``ask`` leave it out).
    truth: bool = False
    #: It draws its visual prompt from a segmenter's masks (FGVP, SoM), so it takes ``segmenter``.
    segmenter: bool = False

    @property
    def crossed(self) -> bool:
        """Whether the harness runs it once per map method, preset and form (one map per image)."""
        return self.map and not self.sources

    def select(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Of the keyword arguments of :func:`~attnprompt.strategies.build.build_strategy`, those this
        strategy takes (the harness and the demo hold one set of settings for every strategy; a method
        parameter is anything that is not a build setting).

        >>> Needs().select({"method": "api-clip", "kernel": 1, "max_new_tokens": 8})
        {'max_new_tokens': 8}
        >>> sorted(Needs(map=True, sources=True).select({"method": "api-clip", "sources": ["api-clip"], "kernel": 1}))
        ['kernel', 'sources']
        >>> Needs(segmenter=True).select({"segmenter": "shapes", "method": "api-clip", "kernel": 1})
        {'segmenter': 'shapes'}
        """
        out = {}
        for key, value in settings.items():
            if key in ALWAYS:
                out[key] = value
            elif key == "segmenter":
                if self.segmenter:
                    out[key] = value
            elif not self.map:
                continue
            elif key == "sources":
                if self.sources:
                    out[key] = value
            elif key in ("method", "model"):
                if not self.sources:
                    out[key] = value
            else:  # preset, rendering, form, regions, the method's parameters
                out[key] = value
        return out


#: Build settings every strategy takes.
ALWAYS = frozenset({"max_new_tokens", "device", "dtype", "make_attributor"})

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

    def __init__(
        self,
        backend: Backend,
        attributor: Attributor | None = None,
        *,
        max_new_tokens: int = 128,
        gray: float = 0.0,
        resample: str = "bilinear",
        form: str | None = None,
        regions: RegionConfig | str | None = None,
    ) -> None:
        if self.needs.map and attributor is None:
            raise InputError(f"strategy {self.name!r} shows an annotated image; give it an attribution method")
        if not self.needs.map and attributor is not None:
            raise InputError(f"strategy {self.name!r} shows no annotated image; it takes no attribution method")
        if not self.needs.map and (form not in (None, "overlay") or regions is not None):
            raise InputError(f"strategy {self.name!r} shows no annotated image, so it has no visual-prompt form")
        self.backend = backend
        self.attributor = attributor
        self.max_new_tokens = check_count("max_new_tokens", max_new_tokens)
        self.gray = check_rendering(gray, resample)
        self.resample = resample
        self.form = form or self.default_form
        check_choice("form", self.form, FORMS)
        self.regions = None
        if self.needs.map and self.form != "overlay":
            self.regions = region_config(regions, attributor, backend.native_side())

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
                               regions=self.regions)
        out, start = [], 0
        for s in samples:
            out.append(tuple(flat[start : start + len(s.images)]))
            start += len(s.images)
        return out

    def shown(self, annotations: Sequence[Annotation]) -> list[Image.Image]:
        """The images a request shows for these annotations, in the strategy's visual-prompt form:
        ``overlay`` the annotated images; ``crop`` each original followed by its crop (CARVE's and
        ViCrop's form); ``both`` each annotated image followed by its crop; ``zoom`` the crop alone.

        >>> from attnprompt.types import AttributionMap
        >>> img = Image.new("RGB", (8, 8)); crop = Image.new("RGB", (4, 4))
        >>> a = Annotation(img, np.ones((8, 8)), AttributionMap(np.ones((2, 2))), {}, img, "q", crop, (0, 0, 4, 4))
        >>> from attnprompt.backends import get_backend
        >>> from attnprompt.attribution import get_attributor
        >>> from attnprompt.strategies.api import Api
        >>> [i.size for i in Api(get_backend("shapes"), get_attributor(model="shapes"), form="crop").shown([a])]
        [(8, 8), (4, 4)]
        """
        out: list[Image.Image] = []
        for a in annotations:
            if self.form == "overlay":
                out.append(a.image)
            elif self.form == "zoom":
                out.append(a.crop)
            else:
                out += [a.original if self.form == "crop" else a.image, a.crop]
        return out

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
