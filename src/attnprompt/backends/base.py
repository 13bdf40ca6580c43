"""The interface every answering backend implements, and the request/answer records."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

from PIL import Image


@dataclass(frozen=True)
class Request:
    """One question to a VLM: images (in order, any number) and a text prompt.

    >>> Request((Image.new("RGB", (8, 8)),), "What colour is the star?").max_new_tokens
    128
    """

    images: tuple[Image.Image, ...]
    prompt: str
    max_new_tokens: int = 128
    system: str | None = None

    def __post_init__(self) -> None:
        # Paths and arrays are accepted like everywhere else in the API; PIL images are kept as
        # they are (an HTTP backend may send them losslessly in their own mode).
        from ..images import load_image

        images = (self.images,) if isinstance(self.images, Image.Image) else tuple(self.images)
        object.__setattr__(self, "images", tuple(i if isinstance(i, Image.Image) else load_image(i) for i in images))


@dataclass(frozen=True)
class Answer:
    """What a backend returned for one request.

    ``ok`` is False when the backend failed (network error, timeout, malformed response,
    exception): then ``text`` is empty and ``error`` says why — an error message is never
    returned as if it were the model's answer.

    >>> Answer("red", ok=True).text, Answer("", ok=False, error="timed out").error
    ('red', 'timed out')
    """

    text: str
    ok: bool = True
    error: str | None = None
    seconds: float = 0.0
    model: str = ""
    attempts: int = 1
    meta: dict[str, Any] = field(default_factory=dict)


class Backend(ABC):
    """Answers requests; implementations: local transformers VLM, OpenAI-compatible HTTP.

    >>> issubclass(Backend, ABC)
    True
    """

    #: A short id recorded with every result (model id or URL + model name).
    name: str = ""

    @abstractmethod
    def answer(self, requests: Sequence[Request]) -> list[Answer]:
        """Answers, one per request, in order; failures are Answers with ``ok=False``.

        >>> # backend.answer([Request((img,), "What colour is the star?")])
        """

    def ask(self, images: Any, prompt: str, *, max_new_tokens: int = 128) -> Answer:
        """Convenience: one request; ``images`` is one image (path, PIL image, array) or a sequence.

        >>> # backend.ask(img, "What colour is the star?").text
        """
        if isinstance(images, (Image.Image, str)) or hasattr(images, "__fspath__") or getattr(images, "ndim", 0) >= 2:
            images = (images,)
        return self.answer([Request(tuple(images), prompt, max_new_tokens=max_new_tokens)])[0]

    def close(self) -> None:
        """Release resources (threads, connections); the default has none.

        >>> # backend.close()
        """
