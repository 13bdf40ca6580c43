"""A map cache around any attributor: the same (image, query, suffix) is attributed once.

Strategies and visual-prompt forms that share a map — ``api`` as an overlay and as a crop,
``api-evaluate`` beside ``api`` — then pay for it once. The key is the image's pixels (not the
object), the query and the suffix; the wrapped attributor's configuration is fixed, so it is
implied. Thread-safe: the wrapped attributor runs one batch at a time (attention capture patches
the model while it runs).
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from PIL import Image

from ..types import AttributionMap
from .base import Attributor


def image_digest(image: Image.Image) -> str:
    """A digest of an image's pixels, size and mode: equal for the same picture loaded twice.

    >>> image_digest(Image.new("RGB", (2, 2))) == image_digest(Image.new("RGB", (2, 2)))
    True
    """
    h = hashlib.sha1(image.tobytes())
    h.update(f"{image.size}{image.mode}".encode())
    return h.hexdigest()


class MapCache(Attributor):
    """Wraps ``inner``; :meth:`attribute` computes only the pairs it has not seen (up to
    ``max_entries`` kept, least recently used dropped). ``info()`` counts hits and misses.

    >>> from attnprompt.attribution import get_attributor
    >>> from attnprompt.shapes import make_scene
    >>> cached = MapCache(get_attributor(model="shapes"))
    >>> image = make_scene(7, n_objects=5, size=320).image
    >>> _ = cached.attribute([image], ["the circle"]); _ = cached.attribute([image.copy()], ["the circle"])
    >>> cached.info()
    {'hits': 1, 'misses': 1, 'size': 1}
    """

    def __init__(self, inner: Attributor, *, max_entries: int = 4096) -> None:
        self.inner = inner
        self.method = inner.method  # type: ignore[misc]  # the wrapped method's name, per instance
        self.model_kind = inner.model_kind  # type: ignore[misc]
        self.config = inner.config
        self.model_id = inner.model_id
        self.max_entries = int(max_entries)
        self._maps: OrderedDict[tuple, AttributionMap] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    @classmethod
    def load(cls, model: Any, *, device: str | None = None, dtype: Any = None) -> Any:
        raise TypeError("MapCache wraps a built attributor; build the attributor, then wrap it")

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def info(self) -> dict[str, int]:
        """Maps answered from the cache (``hits``), computed (``misses``), kept (``size``)."""
        return {"hits": self.hits, "misses": self.misses, "size": len(self._maps)}

    def __getattr__(self, name: str) -> Any:
        # anything else the wrapped method offers (its grid, layers, cache_info …)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def attribute(
        self, images: Sequence[Image.Image], queries: Sequence[str], *, suffixes: Sequence[str] | None = None
    ) -> list[AttributionMap]:
        suffixes = list(suffixes) if suffixes is not None else [""] * len(queries)
        keys = [(image_digest(i), q, s) for i, q, s in zip(images, queries, suffixes)]
        with self._lock:
            found: dict[tuple, AttributionMap] = {}
            todo: dict[tuple, int] = {}
            for index, key in enumerate(keys):
                if key in self._maps:
                    self._maps.move_to_end(key)
                    found[key] = self._maps[key]
                    self.hits += 1
                elif key in todo:
                    self.hits += 1  # asked twice in one call: computed once
                else:
                    todo[key] = index
                    self.misses += 1
            if todo:
                picked = list(todo.values())
                maps = self.inner.attribute([images[i] for i in picked], [queries[i] for i in picked],
                                            suffixes=[suffixes[i] for i in picked])
                for key, m in zip(todo, maps):
                    found[key] = self._maps[key] = m
                while len(self._maps) > self.max_entries:
                    self._maps.popitem(last=False)
            return [found[k] for k in keys]
