"""The strategy contract: (samples, backend, attributor) → one :class:`~attnprompt.types.Result` each.

A strategy decides what the VLM is shown and asked, in how many requests, and which answer is
final; the backend decides who answers; the attributor (for strategies that annotate) makes the
map. Strategies work on lists of samples so that each of their steps is one batched call: many
questions through ``plain`` or ``api`` cost one attribution forward and one generate call on a
local backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np  # noqa: F401  (used by the doctest examples)
from PIL import Image

from ..config import RegionConfig, check_choice, check_tokens, with_suffix
from ..errors import InputError
from ..types import Annotation, Answer, Request, Result, Sample, Step

#: Visual-prompt forms of the strategies that show a map: the paper's blend, the original and a crop
#: of the map's regions (CARVE's and ViCrop's form), or the blend and the crop.
FORMS = ("overlay", "crop", "both")


def region_config(regions: RegionConfig | str | None, attributor: Any = None) -> RegionConfig:
    """A :class:`~attnprompt.config.RegionConfig`: as given, a preset by name, or the one the map's
    method suggests (ViCrop's window for the ``vicrop`` preset of carve), else CARVE's.

    >>> region_config("vicrop").rule, region_config(None).rule
    ('window', 'attention')
    """
    if isinstance(regions, RegionConfig):
        return regions
    if regions is None:
        # a method preset named after a region preset (carve's vicrop) chooses its crops that way
        preset = getattr(getattr(attributor, "config", None), "preset", None)
        regions = preset if preset in RegionConfig.PRESETS else RegionConfig.DEFAULT_PRESET
    return RegionConfig.from_preset(regions)

if TYPE_CHECKING:
    from ..attribution.base import Attributor
    from ..backends.base import Backend


class Strategy(ABC):
    """How a question is asked. Subclasses set ``name`` (and ``needs_map`` if they show an
    annotated image) and implement :meth:`run`; the shared steps are :meth:`annotate`,
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
    #: Whether the strategy shows an annotated image (and so needs an attributor).
    needs_map: ClassVar[bool] = False
    #: Whether it takes several attribution sources (``sources=``) rather than one attributor.
    multi_source: ClassVar[bool] = False
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
        from ..api import check_rendering

        if self.needs_map and attributor is None:
            raise InputError(f"strategy {self.name!r} shows an annotated image; give it an attribution method")
        if not self.needs_map and attributor is not None:
            raise InputError(f"strategy {self.name!r} shows no annotated image; it takes no attribution method")
        if not self.needs_map and (form not in (None, "overlay") or regions is not None):
            raise InputError(f"strategy {self.name!r} shows no annotated image, so it has no visual-prompt form")
        self.backend = backend
        self.attributor = attributor
        self.max_new_tokens = check_tokens("max_new_tokens", max_new_tokens)
        self.gray = check_rendering(gray, resample)
        self.resample = resample
        self.form = form or self.default_form
        check_choice("form", self.form, FORMS)
        self.regions = None
        if self.needs_map and self.form != "overlay":
            self.regions = region_config(regions, attributor)

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
        >>> from attnprompt.api import get_attributor
        >>> from attnprompt.strategies.api import Api
        >>> from attnprompt.shapes import make_scene
        >>> api = Api(get_backend("shapes"), get_attributor(model="shapes"))
        >>> [(a,)] = api.annotate([Sample(make_scene(7, n_objects=5, size=320).image, "the circle")])
        >>> a.query, a.image.size
        ('the circle', (320, 320))
        """
        from ..api import annotate_images

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
        ViCrop's form); ``both`` each annotated image followed by its crop.

        >>> from attnprompt.types import AttributionMap
        >>> img = Image.new("RGB", (8, 8)); crop = Image.new("RGB", (4, 4))
        >>> a = Annotation(img, np.ones((8, 8)), AttributionMap(np.ones((2, 2))), {}, img, "q", crop, (0, 0, 4, 4))
        >>> from attnprompt.backends import get_backend
        >>> from attnprompt.api import get_attributor
        >>> from attnprompt.strategies.api import Api
        >>> [i.size for i in Api(get_backend("shapes"), get_attributor(model="shapes"), form="crop").shown([a])]
        [(8, 8), (4, 4)]
        """
        out: list[Image.Image] = []
        for a in annotations:
            if self.form == "overlay":
                out.append(a.image)
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
