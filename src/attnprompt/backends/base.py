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

    def ask(self, images: Sequence[Image.Image] | Image.Image, prompt: str, *, max_new_tokens: int = 128) -> Answer:
        """Convenience: one request.

        >>> # backend.ask(img, "What colour is the star?").text
        """
        if isinstance(images, Image.Image):
            images = (images,)
        return self.answer([Request(tuple(images), prompt, max_new_tokens=max_new_tokens)])[0]

    def close(self) -> None:
        """Release resources (threads, connections); the default has none.

        >>> # backend.close()
        """
