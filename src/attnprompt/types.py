"""Small result types shared by every method: an attribution map on the grid, an annotation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np
from PIL import Image


def _frozen(d: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(d or {}))


@dataclass(frozen=True)
class AttributionMap:
    """An attribution map Ψ on a model's patch grid, and where the image lies in that grid.

    ``grid`` is h×w float (row-major over patches, as the model orders them). ``extent`` is
    ``(x0, y0, x1, y1)`` in fractions of the grid frame covered by the image itself (not all
    of it when the image was letterboxed to a square). ``parts`` holds intermediate maps
    (e.g. raw Ψᶜˡˢ and Ψᶜᵒᵐᵖ similarities) for inspection.

    >>> m = AttributionMap(np.zeros((2, 2)))
    >>> m.shape
    (2, 2)
    """

    grid: np.ndarray
    extent: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    parts: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "grid", np.asarray(self.grid, dtype=np.float32))
        object.__setattr__(self, "parts", _frozen(self.parts))

    @property
    def shape(self) -> tuple[int, int]:
        """Grid shape (rows, columns).

        >>> AttributionMap(np.zeros((3, 4))).shape
        (3, 4)
        """
        return tuple(self.grid.shape)  # type: ignore[return-value]


@dataclass(frozen=True)
class Annotation:
    """The result of annotating one image for one query.

    - ``image``: the annotated image Iᵃ (RGB, same size as the input);
    - ``heatmap``: Φ, H×W float32 in [0, 1], aligned pixel-for-pixel with the input;
    - ``attribution``: the final grid map Ψ that was resized into the heatmap;
    - ``config``: every parameter actually used, the model id included;
    - ``original``: the input image as RGB; ``query``: the query; ``parts``: intermediate maps.

    >>> from attnprompt.render import overlay
    >>> img = Image.new("RGB", (8, 8), "white")
    >>> a = Annotation(overlay(img, np.ones((8, 8))), np.ones((8, 8), np.float32), np.ones((2, 2)), {}, img, "q")
    >>> a.image.size
    (8, 8)
    """

    image: Image.Image
    heatmap: np.ndarray
    attribution: np.ndarray
    config: Mapping[str, Any]
    original: Image.Image
    query: str
    parts: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", _frozen(self.config))
        object.__setattr__(self, "parts", _frozen(self.parts))

    def visual(self, *, height: int = 384) -> Image.Image:
        """Side-by-side picture: original | colour heatmap | annotated, titled with the query.

        >>> img = Image.new("RGB", (8, 8), "white")
        >>> a = Annotation(img, np.ones((8, 8), np.float32), np.ones((2, 2)), {}, img, "q")
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
    ) -> None:
        """Write the annotated image (PNG unless the suffix says otherwise), and optionally the
        heatmap as a lossless ``.npy`` and the side-by-side visual; every file atomically.

        >>> import tempfile, pathlib
        >>> img = Image.new("RGB", (8, 8), "white")
        >>> a = Annotation(img, np.ones((8, 8), np.float32), np.ones((2, 2)), {}, img, "q")
        >>> d = pathlib.Path(tempfile.mkdtemp()); a.save(d / "a.png", heatmap=d / "h.npy")
        >>> sorted(p.name for p in d.iterdir())
        ['a.png', 'h.npy']
        """
        from .files import save_array, save_image

        save_image(self.image, path)
        if heatmap is not None:
            save_array(self.heatmap, heatmap)
        if visual is not None:
            save_image(self.visual(), visual)
