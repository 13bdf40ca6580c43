"""The Attributor interface: (image, query) pairs → attribution maps Ψ on a model's patch grid."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from PIL import Image

from ..presets import MethodConfig
from ..types import AttributionMap


class Attributor(ABC):
    """Turns images and their queries into attribution maps on the model's patch grid.

    Subclasses are built from loaded objects (``__init__``) or by name (``from_pretrained``),
    and implement :meth:`attribute` for a batch of (image, query) pairs. Every map carries its
    raw grid (before normalisation) and the final one, post-processed by
    :func:`attnprompt.render.postprocess`.

    >>> from attnprompt.attribution import get_attributor
    >>> from PIL import Image
    >>> [m.grid.ndim for m in get_attributor("api-clip", model="shapes").attribute([Image.new("RGB", (64, 64))],
    ...                                                                             ["the circle"])]
    [2]
    """

    method: ClassVar[str] = ""
    #: What the method runs on: a "clip" or a "vlm" (whose attention it reads; by default the answering one).
    model_kind: ClassVar[str] = "clip"
    config_class: ClassVar[type[MethodConfig]]
    config: MethodConfig
    model_id: str

    @classmethod
    def from_pretrained(
        cls, model: Any = None, *, device: str | None = None, dtype: Any = None, preset: str | None = None,
        loading: Any = None, **params: Any,
    ) -> Attributor:
        """Load ``model`` (hub id, local directory, ``shapes``, or an already loaded model; cached;
        default the method's own) as ``loading`` says (a :class:`~attnprompt.models.LoadOptions`, or its
        ``device`` / ``dtype`` as keywords) and configure the method on it with ``preset`` and ``params``.

        >>> from attnprompt.attribution.clip import ClipAttributor
        >>> ClipAttributor.from_pretrained("shapes", kernel=1).config.kernel
        1
        """
        config = cls.config_class.from_preset(preset, **params)
        # every method's constructor takes (the loaded model, its config); the abstract base declares none
        return cls(cls.load(model, device=device, dtype=dtype, loading=loading), config)  # type: ignore[call-arg]

    @classmethod
    @abstractmethod
    def load(cls, model: Any, *, device: str | None = None, dtype: Any = None, loading: Any = None) -> Any:
        """The loaded model the method runs on: ``model`` itself when already loaded, else loaded
        (cached) from a hub id, a local directory or an embedded name, as ``loading`` says."""

    @abstractmethod
    def attribute(
        self, images: Sequence[Image.Image], queries: Sequence[str], *, suffixes: Sequence[str] | None = None
    ) -> list[AttributionMap]:
        """Attribution maps for the pairs ``(images[i], queries[i])``; images may repeat. ``suffixes``
        are the task's answer-format instructions: methods that generate an answer (api-vlm, carve)
        append them to the query as the answering VLM sees it; api-clip reads the query alone."""

    def describe(self) -> dict[str, Any]:
        """The full configuration of this attributor: method, model id and every parameter.

        >>> from attnprompt.attribution.clip import ClipAttributor
        >>> ClipAttributor.from_pretrained("shapes").describe()["method"]
        'api-clip'
        """
        return {"method": self.method, "model": self.model_id, **self.config.to_dict()}
