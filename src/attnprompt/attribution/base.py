"""The Attributor interface: (image, query) pairs → attribution maps Ψ on a model's patch grid."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from PIL import Image

from ..config import MethodConfig
from ..types import AttributionMap


class Attributor(ABC):
    """Turns images and their queries into attribution maps on the model's patch grid.

    Subclasses are built from loaded objects (``__init__``) or by name (``from_pretrained``),
    and implement :meth:`attribute` for a batch of (image, query) pairs. Every map carries its
    raw grid (before normalisation) and the final one, post-processed by
    :func:`attnprompt.render.postprocess`.

    >>> from attnprompt.config import METHODS
    >>> issubclass(METHODS.get("api-clip"), Attributor)
    True
    """

    method: ClassVar[str] = ""
    config: MethodConfig
    model_id: str

    @classmethod
    @abstractmethod
    def from_pretrained(
        cls, model: Any = None, *, device: str | None = None, dtype: Any = None, preset: str | None = None,
        **params: Any,
    ) -> Attributor:
        """Load ``model`` (hub id, local directory, ``shapes``, or an already loaded model; cached)
        and configure the method on it with ``preset`` and ``params``."""

    @abstractmethod
    def attribute(self, images: Sequence[Image.Image], queries: Sequence[str]) -> list[AttributionMap]:
        """Attribution maps for the pairs ``(images[i], queries[i])``; images may repeat."""

    def describe(self) -> dict[str, Any]:
        """The full configuration of this attributor: method, model id and every parameter.

        >>> from attnprompt.attribution.clip import ClipAttributor
        >>> ClipAttributor.from_pretrained("shapes").describe()["method"]
        'api-clip'
        """
        return {"method": self.method, "model": self.model_id, **self.config.to_dict()}
