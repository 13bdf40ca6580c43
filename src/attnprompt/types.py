"""The records every part shares: maps and annotations, what a VLM is asked and answers, and
what a strategy did.

- :class:`AttributionMap` — Ψ on a model's patch grid (``grid``), the method's score before any
  normalisation (``raw``), where the image lies in the grid (``extent``) and intermediate maps;
- :class:`Annotation` — Ψ turned into a pixel heatmap Φ and an annotated image Iᵃ;
- :class:`Turn`, :class:`Request` — a conversation (one or more images, user and assistant turns)
  and the answer's token budget; :class:`Answer` — ok, or failed with the reason, and the generated
  tokens' log-probabilities when asked for (:class:`TokenLogprob`);
- :class:`Sample` — one question about one or more images, with the task's answer-format suffix;
- :class:`Step`, :class:`Result` — each request a strategy made, and the final answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from PIL import Image

from .errors import InputError

ROLES = ("user", "assistant")
#: Kinds of failed answers (see :class:`Answer`).
FAILURES = ("input", "empty", "error")
#: The most alternatives per token a request may ask for (what OpenAI's ``top_logprobs`` accepts).
MAX_TOP_LOGPROBS = 20


def _frozen(d: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class AttributionMap:
    """An attribution map Ψ on a model's patch grid, and where the image lies in that grid.

    ``grid`` is the final h×w map in [0, 1] (row-major over patches, as the model orders them);
    ``raw`` is the method's score on the same grid before any normalisation (api-clip: the query's
    cls-path similarity; api-vlm: the mean attention to each image token). ``extent`` is
    ``(x0, y0, x1, y1)`` in fractions of the grid frame covered by the image itself (not all of it
    when the image was letterboxed to a square). ``parts`` holds further intermediate maps.

    >>> m = AttributionMap(np.zeros((2, 2)))
    >>> m.shape, m.raw.shape
    ((2, 2), (2, 2))
    """

    grid: np.ndarray
    raw: np.ndarray | None = None
    extent: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    parts: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        grid = np.asarray(self.grid, dtype=np.float32)
        object.__setattr__(self, "grid", grid)
        raw = grid if self.raw is None else np.asarray(self.raw)
        object.__setattr__(self, "raw", raw)
        if raw.shape != grid.shape:
            raise ValueError(f"raw map {raw.shape} and grid {grid.shape} must have the same shape")
        object.__setattr__(self, "extent", tuple(float(v) for v in self.extent))
        object.__setattr__(self, "parts", _frozen(self.parts))

    @property
    def shape(self) -> tuple[int, int]:
        """Grid shape (rows, columns).

        >>> AttributionMap(np.zeros((3, 4))).shape
        (3, 4)
        """
        return tuple(self.grid.shape)


class Annotation:
    """The result of annotating one image for one query.

    - ``image``: the annotated image Iᵃ (RGB, same size as the input);
    - ``heatmap``: Φ, H×W float32 in [0, 1], aligned pixel-for-pixel with the input;
    - ``attribution``: the grid map Ψ (with its raw scores) that was resized into the heatmap;
    - ``config``: every parameter actually used, the model id included;
    - ``original``: the input image as RGB; ``query``: the query;
    - ``crop`` and ``box``: when regions were selected from the map (a crop visual prompt), the crop
      image and its box ``(x0, y0, x1, y1)`` in the input's pixels (x1, y1 exclusive); else None;
    - ``shown_image`` and ``shown_crop``: the annotated image and the crop as a request shows them to the answering
      model — made at the size its processor is handed (its family's bounded input,
      :func:`attnprompt.models.bounded_input`), from the map at that size; the very ``image`` and ``crop`` when
      the model takes them as they are (every image up to several times its input size).

    An annotation made by :func:`attnprompt.annotation.render_annotation` renders ``image``, ``heatmap`` and
    ``crop`` when they are first read (``views``), the same pixels as made at once: a strategy that shows an 8K
    photo's overlay to a model reading 336 pixels renders it at the model's size, and the full-resolution
    pictures only when someone asks for them (``--save-annotated``, :meth:`save`, the demo).

    >>> from attnprompt.render import overlay
    >>> img = Image.new("RGB", (8, 8), "white")
    >>> heatmap = np.ones((8, 8), np.float32)
    >>> a = Annotation(overlay(img, heatmap), heatmap, AttributionMap(np.ones((2, 2))), {}, img, "q")
    >>> a.image.size, a.shown_image is a.image
    ((8, 8), True)
    """

    __slots__ = ("attribution", "config", "original", "query", "box", "_made", "_views")
    attribution: AttributionMap
    config: Mapping[str, Any]
    original: Image.Image
    query: str
    box: tuple[int, int, int, int] | None
    _made: dict[str, Any]
    _views: Any  # attnprompt.annotation.Views (a floor above), or None

    def __init__(self, image: Image.Image | None, heatmap: np.ndarray | None, attribution: AttributionMap,
                 config: Mapping[str, Any], original: Image.Image, query: str, crop: Image.Image | None = None,
                 box: tuple[int, int, int, int] | None = None, *, views: Any = None) -> None:
        set_ = object.__setattr__
        set_(self, "attribution", attribution)
        set_(self, "config", _frozen(config))
        set_(self, "original", original)
        set_(self, "query", query)
        set_(self, "box", None if box is None else tuple(box))
        made = {k: v for k, v in (("image", image), ("heatmap", heatmap), ("crop", crop)) if v is not None}
        if views is None and ("image" not in made or "heatmap" not in made):
            raise ValueError("an annotation needs its image and heatmap, or the views that render them")
        set_(self, "_made", made)
        set_(self, "_views", views)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Annotation is immutable; cannot set {name!r}")

    def __repr__(self) -> str:
        return (f"Annotation(query={self.query!r}, size={self.original.size}, grid={self.attribution.shape}, "
                f"box={self.box})")

    def _get(self, name: str) -> Any:
        if name not in self._made:
            self._made[name] = getattr(self._views, name)(self)  # rendered once, when first read
        return self._made[name]

    @property
    def image(self) -> Image.Image:
        """The annotated image Iᵃ, the input's size (rendered when first read)."""
        return self._get("image")

    @property
    def heatmap(self) -> np.ndarray:
        """Φ, H×W float32 in [0, 1], aligned with the input (rendered when first read)."""
        return self._get("heatmap")

    @property
    def crop(self) -> Image.Image | None:
        """The crop of the regions chosen from the map (None when none were): CARVE's, at the input's scale."""
        if "crop" not in self._made and (self._views is None or self.box is None):
            return None
        return self._get("crop")

    @property
    def shown_image(self) -> Image.Image:
        """The annotated image as the answering model is given it (:attr:`image` itself unless it is reduced)."""
        return self.image if self._views is None else self._get("shown_image")

    @property
    def shown_crop(self) -> Image.Image | None:
        """The crop as the answering model is given it (:attr:`crop` itself unless it is reduced)."""
        if self._views is None or self.box is None:
            return self.crop
        return self._get("shown_crop")

    def preview(self, side: int) -> Image.Image:
        """The annotated image for a gallery, at least ``side`` pixels on its longer side and seldom much more (the
        caller shrinks it the rest of the way): the full-resolution :attr:`image` if it is made already, else
        rendered from the map at an integer reduction of the input.

        >>> img = Image.new("RGB", (4000, 3000), "white")
        >>> from attnprompt.annotation import Views
        >>> Annotation(None, None, AttributionMap(np.ones((2, 2))), {}, img, "q", views=Views(0, "bilinear", None, 1, 1)
        ...            ).preview(256).size
        (572, 429)
        """
        if self._views is None or "image" in self._made:
            return self.image
        return self._views.preview(self, side)

    def colour_heatmap(self) -> Image.Image:
        """The heatmap in colour (jet: blue low, red high), the input's size.

        >>> img = Image.new("RGB", (8, 6), "white")
        >>> a = Annotation(img, np.ones((6, 8), np.float32), AttributionMap(np.ones((2, 2))), {}, img, "q")
        >>> a.colour_heatmap().size
        (8, 6)
        """
        from .render import colorize

        return colorize(self.heatmap)

    def visual(self, *, height: int = 384) -> Image.Image:
        """Side-by-side picture: original | colour heatmap | annotated, titled with the query.

        >>> img = Image.new("RGB", (8, 8), "white")
        >>> a = Annotation(img, np.ones((8, 8), np.float32), AttributionMap(np.ones((2, 2))), {}, img, "q")
        >>> a.visual(height=8).size
        (30, 26)
        """
        from .render import visual

        return visual(self.original, self.heatmap, self.image, title=self.query, height=height)

    def save(
        self,
        path: str | Path,
        *,
        heatmap: str | Path | None = None,
        visual: str | Path | None = None,
        crop: str | Path | None = None,
    ) -> None:
        """Write the annotated image (PNG unless the suffix says otherwise), and optionally the
        heatmap as a lossless ``.npy``, the side-by-side visual and the crop: all of them or, when one
        cannot be written, none (:class:`~attnprompt.errors.OutputError`).

        >>> import tempfile, pathlib
        >>> img = Image.new("RGB", (8, 8), "white")
        >>> a = Annotation(img, np.ones((8, 8), np.float32), AttributionMap(np.ones((2, 2))), {}, img, "q")
        >>> d = pathlib.Path(tempfile.mkdtemp()); a.save(d / "a.png", heatmap=d / "h.npy")
        >>> sorted(p.name for p in d.iterdir())
        ['a.png', 'h.npy']
        """
        from .files import array_file, atomic_write_all, image_file

        files = [image_file(self.image, path)]
        if heatmap is not None:
            files.append(array_file(self.heatmap, heatmap))
        if visual is not None:
            files.append(image_file(self.visual(), visual))
        if crop is not None:
            if self.crop is None:
                from .errors import InputError

                raise InputError("this annotation selected no regions, so it has no crop; annotate with form='crop'")
            files.append(image_file(self.crop, crop))
        atomic_write_all(files)


def _images(images: Any) -> tuple[Image.Image, ...]:
    # Paths and arrays are accepted like everywhere else in the API; PIL images are kept as they
    # are (an HTTP backend may send them losslessly in their own mode).
    from .images import load_image

    if images is None:
        return ()
    if isinstance(images, (Image.Image, str)) or hasattr(images, "__fspath__") or getattr(images, "ndim", 0) >= 2:
        images = (images,)
    return tuple(i if isinstance(i, Image.Image) else load_image(i) for i in images)


@dataclass(frozen=True)
class Turn:
    """One message of a conversation: who speaks, the text, and the images it shows (user turns).

    >>> Turn("user", "What colour is the star?", (Image.new("RGB", (8, 8)),)).images[0].size
    (8, 8)
    """

    role: str
    text: str
    images: tuple[Image.Image, ...] = ()

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InputError(f"a turn's role must be one of {', '.join(ROLES)}; got {self.role!r}")
        if not isinstance(self.text, str):
            raise InputError(f"a turn's text must be a string; got {type(self.text).__name__}")
        object.__setattr__(self, "images", _images(self.images))
        if self.role == "assistant" and self.images:
            raise InputError("an assistant turn cannot show images; put them in a user turn")


@dataclass(frozen=True)
class Request:
    """What a VLM is asked: a conversation that alternates user and assistant turns and ends with
    the user, optionally after a system prompt, and the answer's token budget.

    >>> r = Request.single(Image.new("RGB", (8, 8)), "What colour is the star?", max_new_tokens=8)
    >>> len(r.images), r.prompt, r.max_new_tokens
    (1, 'What colour is the star?', 8)
    >>> r.then("red", "Are you sure?").roles()
    ('user', 'assistant', 'user')
    """

    turns: tuple[Turn, ...]
    max_new_tokens: int = 128
    system: str | None = None
    top_logprobs: int | None = None

    def __post_init__(self) -> None:
        from .checks import check_count

        turns = (self.turns,) if isinstance(self.turns, Turn) else tuple(self.turns)
        object.__setattr__(self, "turns", turns)
        object.__setattr__(self, "max_new_tokens", check_count("max_new_tokens", self.max_new_tokens))
        k = self.top_logprobs
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= MAX_TOP_LOGPROBS):
            raise InputError(f"top_logprobs must be None (no probabilities) or an integer in 0..{MAX_TOP_LOGPROBS} "
                             f"(alternatives per token); got {k!r}")
        if not turns:
            raise InputError("a request needs at least one user turn")
        expected = tuple(ROLES[i % 2] for i in range(len(turns)))
        if self.roles() != expected or turns[-1].role != "user":
            raise InputError(
                f"a conversation alternates user and assistant turns, starting and ending with the user; "
                f"got {' → '.join(self.roles())}"
            )

    @classmethod
    def single(cls, images: Any, prompt: str, *, max_new_tokens: int = 128, system: str | None = None,
               top_logprobs: int | None = None) -> Request:
        """One user turn: ``images`` (one image, a sequence, or none) then ``prompt``.

        >>> Request.single((), "Say hi.").images
        ()
        """
        return cls((Turn("user", prompt, _images(images)),), max_new_tokens=max_new_tokens, system=system,
                   top_logprobs=top_logprobs)

    def then(self, answer: str, prompt: str, images: Any = ()) -> Request:
        """The same conversation continued: the assistant said ``answer``, the user says ``prompt``.

        >>> Request.single((), "Hi.").then("Hello.", "Bye.").prompt
        'Bye.'
        """
        turns = self.turns + (Turn("assistant", answer), Turn("user", prompt, _images(images)))
        return Request(turns, max_new_tokens=self.max_new_tokens, system=self.system, top_logprobs=self.top_logprobs)

    @property
    def images(self) -> tuple[Image.Image, ...]:
        """Every image of the conversation, in order.

        >>> len(Request.single([Image.new("RGB", (8, 8))] * 2, "Compare.").images)
        2
        """
        return tuple(i for t in self.turns for i in t.images)

    @property
    def prompt(self) -> str:
        """The text of the last user turn (what is being asked now).

        >>> Request.single((), "Why?").prompt
        'Why?'
        """
        return self.turns[-1].text

    def roles(self) -> tuple[str, ...]:
        """Who speaks in each turn.

        >>> Request.single((), "Hi.").roles()
        ('user',)
        """
        return tuple(t.role for t in self.turns)


@dataclass(frozen=True)
class TokenLogprob:
    """One generated token's natural-log probability, and the most likely tokens at its position.

    ``token`` is the token as the backend spells it: a local model's vocabulary entry (``"▁Yes"``,
    ``"ĠYes"``, ``"yes"``), a server's decoded text (``" Yes"``); ``top`` holds ``(token, logprob)`` pairs,
    most likely first (the chosen token among them when it is that likely; a spelling may repeat).

    >>> t = TokenLogprob("yes", -0.1, (("yes", -0.1), ("no", -2.4)))
    >>> t.to_dict()["top"][1]
    ['no', -2.4]
    """

    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "logprob", float(self.logprob))
        object.__setattr__(self, "top", tuple((str(t), float(lp)) for t, lp in self.top))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: ``{"token", "logprob", "top": [[token, logprob], ...]}``.

        >>> TokenLogprob("a", 0.0).to_dict()
        {'token': 'a', 'logprob': 0.0, 'top': []}
        """
        return {"token": self.token, "logprob": round(self.logprob, 6),
                "top": [[t, round(lp, 6)] for t, lp in self.top]}


@dataclass(frozen=True)
class Answer:
    """What a backend returned for one request.

    ``ok`` is False when there is no answer: then ``text`` is empty, ``error`` says why — an error
    message is never returned as if it were the model's answer — and ``failure`` says what kind of
    failure it was (:data:`FAILURES`): ``input`` (the request cannot be served as it is: too long for
    the model's context, too many images …), ``empty`` (the model generated no text), ``error``
    (anything else: an exception, a network error, a timeout, a malformed response).

    ``logprobs``: one :class:`TokenLogprob` per generated token when the request asked for them
    (``Request.top_logprobs``) and the backend gave them; None otherwise.

    >>> Answer("red", ok=True).text, Answer("", ok=False, error="timed out").failure
    ('red', 'error')
    """

    text: str
    ok: bool = True
    error: str | None = None
    seconds: float = 0.0
    model: str = ""
    attempts: int = 1
    meta: Mapping[str, Any] = field(default_factory=dict)
    failure: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None

    def __post_init__(self) -> None:
        if self.logprobs is not None:
            object.__setattr__(self, "logprobs", tuple(self.logprobs))
        if self.ok and (self.failure is not None or self.error is not None):
            raise ValueError("an answer that is ok has no failure and no error")
        if not self.ok:
            if self.text:
                raise ValueError("a failed answer has no text: the reason goes in error")
            object.__setattr__(self, "failure", self.failure or "error")
            if self.failure not in FAILURES:
                raise ValueError(f"failure must be one of {', '.join(FAILURES)}; got {self.failure!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able fields (``logprobs`` only when the answer has them).

        >>> Answer("red", model="m").to_dict()["text"]
        'red'
        >>> Answer("red", logprobs=[TokenLogprob("red", -0.5)]).to_dict()["logprobs"][0]["logprob"]
        -0.5
        """
        out = {
            "text": self.text,
            "ok": self.ok,
            "error": self.error,
            "seconds": round(self.seconds, 4),
            "model": self.model,
            "attempts": self.attempts,
            "meta": dict(self.meta),
            "failure": self.failure,
        }
        if self.logprobs is not None:
            out["logprobs"] = [t.to_dict() for t in self.logprobs]
        return out


@dataclass(frozen=True)
class Sample:
    """One question to answer: the image(s), the question, and the task's answer-format suffix
    (e.g. "Answer the question using a single word or phrase."), which a strategy places where the
    paper does.

    >>> s = Sample(Image.new("RGB", (8, 8)), "What colour is the star?", suffix="Answer in one word.")
    >>> len(s.images), s.question
    (1, 'What colour is the star?')
    """

    images: tuple[Image.Image, ...]
    question: str
    suffix: str = ""
    id: str | None = None
    #: Where the answer lies in the first image, ``(x0, y0, x1, y1)``, when a task knows it (shapes-detail's
    #: scene); only the reference strategies (``zoom-oracle``, ``zoom-centre``) read it.
    region: tuple[int, int, int, int] | None = None

    def __post_init__(self) -> None:
        from .checks import check_query

        object.__setattr__(self, "images", _images(self.images))
        object.__setattr__(self, "question", check_query(self.question))
        if not isinstance(self.suffix, str):
            raise InputError(f"suffix must be a string; got {type(self.suffix).__name__}")
        # trailing space never matters; a leading line break is how the suffix is to be joined
        object.__setattr__(self, "suffix", self.suffix.rstrip().lstrip(" \t"))


@dataclass(frozen=True)
class Step:
    """One request a strategy made: what it was called, the request (images shown, prompt, earlier
    turns), the answer, the annotations that made its annotated images, if any, and ``detail``: what
    the strategy decided from it (JSON-able, e.g. ``{"verdict": "T"}``).

    >>> step = Step("answer", Request.single((), "Hi."), Answer("Hello."))
    >>> step.prompt, step.images, step.answer.text
    ('Hi.', (), 'Hello.')
    """

    name: str
    request: Request
    answer: Answer
    annotations: tuple[Annotation, ...] = ()
    detail: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "annotations", tuple(self.annotations))
        object.__setattr__(self, "detail", _frozen(self.detail))

    @property
    def images(self) -> tuple[Image.Image, ...]:
        """The images the VLM was shown in this step.

        >>> Step("a", Request.single((), "Hi."), Answer("x")).images
        ()
        """
        return self.request.images

    @property
    def prompt(self) -> str:
        """The text the VLM was asked in this step (the last user turn).

        >>> Step("a", Request.single((), "Hi."), Answer("x")).prompt
        'Hi.'
        """
        return self.request.prompt

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: turns with image sizes instead of pixels, the answer, the annotations' configs.

        >>> Step("a", Request.single((), "Hi."), Answer("x")).to_dict()["turns"]
        [{'role': 'user', 'text': 'Hi.', 'images': []}]
        """
        out = {
            "name": self.name,
            "turns": [
                {"role": t.role, "text": t.text, "images": [list(i.size) for i in t.images]} for t in self.request.turns
            ],
            "system": self.request.system,
            "max_new_tokens": self.request.max_new_tokens,
            "answer": self.answer.to_dict(),
            "annotations": [_json(dict(a.config)) for a in self.annotations],
            "detail": _json(self.detail),
        }
        if self.request.top_logprobs is not None:
            out["top_logprobs"] = self.request.top_logprobs
        return out


@dataclass(frozen=True)
class Result:
    """A strategy's answer to one question and every step that produced it.

    ``answer`` is the final answer (``answer.ok`` is False when a step it needed failed);
    ``steps`` are the requests in the order they were made; ``config`` records the strategy, the
    answering VLM and the attribution method with every parameter; ``baseline`` holds the
    ``plain`` strategy's result when the question was also asked without prompting.

    >>> r = Result("Hi?", Answer("Hello."), (Step("answer", Request.single((), "Hi?"), Answer("Hello.")),), {})
    >>> r.text, len(r.steps)
    ('Hello.', 1)
    """

    question: str
    answer: Answer
    steps: tuple[Step, ...]
    config: Mapping[str, Any]
    baseline: Result | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "steps", tuple(self.steps))
        object.__setattr__(self, "config", _frozen(self.config))

    @property
    def text(self) -> str:
        """The final answer's text ('' when it failed).

        >>> Result("q", Answer("", ok=False, error="down"), (), {}).text
        ''
        """
        return self.answer.text

    @property
    def annotation(self) -> Annotation | None:
        """The (first) annotation of the last step that showed an annotated image, if any.

        >>> Result("q", Answer("a"), (), {}).annotation is None
        True
        """
        return next((s.annotations[0] for s in reversed(self.steps) if s.annotations), None)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able (images as their sizes), e.g. for ``attnprompt ask --json``.

        >>> Result("q", Answer("a"), (), {"strategy": "plain"}).to_dict()["config"]
        {'strategy': 'plain'}
        """
        return {
            "question": self.question,
            "answer": self.answer.to_dict(),
            "steps": [s.to_dict() for s in self.steps],
            "config": _json(self.config),
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
        }


def _json(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value
