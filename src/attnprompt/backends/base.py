"""The interface every answering backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..types import Answer, Request

if TYPE_CHECKING:
    from ..models import LoadedVlm


class Backend(ABC):
    """Answers requests; implementations: local transformers VLM, OpenAI-compatible HTTP.

    A request is a conversation (:class:`~attnprompt.types.Request`: images and user/assistant
    turns); every backend takes several images and several turns.
    """

    #: A short id recorded with every result (model id or URL + model name).
    name: str = ""
    #: The most images one request may show (None: no known limit); strategies that show several
    #: at once (ensemble) check it before asking.
    max_images: int | None = None

    @abstractmethod
    def answer(self, requests: Sequence[Request]) -> list[Answer]:
        """Answers, one per request, in order; failures are Answers with ``ok=False``."""

    @property
    def local_model(self) -> LoadedVlm | None:
        """The loaded model when it runs in this process (its attention can be read), else None.

        >>> from attnprompt.backends.openai_http import OpenAIBackend
        >>> OpenAIBackend("http://localhost:8000", "m").local_model is None
        True
        """
        return None

    def native_side(self) -> int | None:
        """The side in pixels of the image the answering model sees natively (ViCrop's default crop window):
        a local model's family says it (:meth:`attnprompt.families.Family.native_side`); a server's model has
        no processor here, so an HTTP backend says only what it was given (``native_side=``); None if unknown.

        >>> from attnprompt.backends.local import LocalVLM
        >>> LocalVLM.from_pretrained("shapes").native_side()
        128
        """
        vlm = self.local_model
        family = vlm.family_info if vlm is not None else None
        return None if vlm is None or family is None else int(family.native_side(vlm.model.config, vlm.processor))

    def input_factor(self, size: tuple[int, int]) -> int:
        """The integer factor by which an image of ``size`` (W, H) is reduced before the answering model's processor
        gets it (:func:`attnprompt.models.input_factor`): a strategy makes the pictures it shows at that size, not
        at full resolution. 1 — the image as it is — for a model without a known processor (a server's).

        >>> from attnprompt.backends.local import LocalVLM
        >>> LocalVLM.from_pretrained("shapes").input_factor((7680, 4320))
        8
        """
        from ..models import input_factor

        vlm = self.local_model
        return 1 if vlm is None else input_factor(vlm, size)

    def describe(self) -> dict[str, Any]:
        """What identifies this backend's answers in a run's configuration (its name, and the settings
        that change what it says).

        >>> from attnprompt.backends.openai_http import OpenAIBackend
        >>> OpenAIBackend("http://localhost:8000", "m").describe()["temperature"]
        0.0
        """
        return {"name": self.name}

    def ask(self, images: Any, prompt: str, *, max_new_tokens: int = 128) -> Answer:
        """One single-turn request: ``images`` (one image, a path, an array, or a sequence) and ``prompt``.

        >>> from attnprompt.backends.local import LocalVLM
        >>> LocalVLM.from_pretrained("shapes").ask((), "Describe the image.", max_new_tokens=2).ok
        True
        """
        return self.answer([Request.single(images, prompt, max_new_tokens=max_new_tokens)])[0]

    def close(self) -> None:  # noqa: B027  (optional: most backends hold nothing to release)
        """Release resources (threads, connections); the default has none.
        """
