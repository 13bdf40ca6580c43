"""A map cache around any attributor: the same (image, query, suffix) is attributed once.

Strategies and visual-prompt forms that share a map — ``api`` as an overlay and as a crop,
``api-evaluate`` beside ``api`` — then pay for it once. The key is the image's pixels (not the
object: :func:`~attnprompt.images.image_key`, a sample and a checksum of every pixel), the query and the suffix;
the wrapped attributor's configuration is fixed, so it is implied. Thread-safe: the wrapped attributor runs one
batch at a time (attention capture patches the model while it runs).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from PIL import Image

from ..images import image_key
from ..types import AttributionMap
from .base import Attributor


class LRU:
    """A bounded store that forgets the least recently used entry, counting what it answered (``hits``)
    and what had to be computed (``misses``) — the map cache's and CARVE's general-pass cache's.

    >>> cache = LRU(2)
    >>> found, missing = cache.lookup(["a", "b", "a"]); missing
    ['a', 'b']
    >>> cache.store({"a": 1, "b": 2}); cache.lookup(["a", "c"])[0], cache.info()
    ({'a': 1}, {'hits': 2, 'misses': 3, 'size': 2})
    """

    def __init__(self, max_entries: int) -> None:
        self.max_entries = int(max_entries)
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self.hits = self.misses = 0

    def lookup(self, keys: Sequence[Any]) -> tuple[dict[Any, Any], list[Any]]:
        """The entries held for ``keys`` (each made most recent), and the keys missing, each once (a key
        asked twice in one call is computed once: the second asking counts as a hit)."""
        found: dict[Any, Any] = {}
        missing: dict[Any, None] = {}
        for key in keys:
            if key in self._items:
                self._items.move_to_end(key)
                found[key] = self._items[key]
                self.hits += 1
            elif key in missing:
                self.hits += 1
            else:
                missing[key] = None
                self.misses += 1
        return found, list(missing)

    def store(self, items: Mapping[Any, Any]) -> None:
        """Keep ``items``, forgetting the least recently used beyond ``max_entries``."""
        self._items.update(items)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def info(self) -> dict[str, int]:
        """Answered from the store (``hits``), computed (``misses``), kept (``size``)."""
        return {"hits": self.hits, "misses": self.misses, "size": len(self._items)}


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
        self._maps = LRU(max_entries)
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model: Any, *, device: str | None = None, dtype: Any = None, loading: Any = None) -> Any:
        raise TypeError("MapCache wraps a built attributor; build the attributor, then wrap it")

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def info(self) -> dict[str, int]:
        """Maps answered from the cache (``hits``), computed (``misses``), kept (``size``)."""
        return self._maps.info()

    def __getattr__(self, name: str) -> Any:
        # anything else the wrapped method offers (its grid, layers, cache_info …)
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def attribute(
        self, images: Sequence[Image.Image], queries: Sequence[str], *, suffixes: Sequence[str] | None = None
    ) -> list[AttributionMap]:
        suffixes = list(suffixes) if suffixes is not None else [""] * len(queries)
        keys = [(image_key(i), q, s) for i, q, s in zip(images, queries, suffixes)]
        with self._lock:
            found, missing = self._maps.lookup(keys)
            if missing:
                first = {key: keys.index(key) for key in missing}
                picked = [first[key] for key in missing]
                maps = self.inner.attribute([images[i] for i in picked], [queries[i] for i in picked],
                                            suffixes=[suffixes[i] for i in picked])
                made = dict(zip(missing, maps))
                found.update(made)
                self._maps.store(made)
            return [found[k] for k in keys]
