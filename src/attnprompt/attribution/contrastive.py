"""CARVE (and ViCrop's relative attention): the task's attention contrasted with a general instruction's.

A wrapper around :class:`~attnprompt.attribution.vlm_attention.VlmAttributor`, as captum's
NoiseTunnel wraps any method: the inner attributor generates greedily for the task query and for
the general instruction ("Write a general description of the image.", both with the task's
answer-format suffix) and reads, at every step and chosen layer, the last position's attention to
the image tokens (mean over heads). Then, per token,

    map = Σ_s w_s Σ_l A_task[s, l] / (A_general[s, l] + λ),   s < min(steps of the two passes)

with w_s = s + 1 (``steps="all"``, CARVE v4) or only s = 0 (``steps="first"``). Summing on the token
grid and upsampling once equals upsampling every term (bilinear resizing is linear).

Fast: the KV cache and the model's attention kernel stay (one row of scores per captured layer per step), the task and
general passes run in one batch, and the general pass is cached per (image, model, settings), so
many questions about one image pay for it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from .. import render
from ..checks import check_pairs
from ..images import image_key
from ..models import LoadedVlm
from ..text import with_suffix
from ..types import AttributionMap
from .base import Attributor
from .cache import LRU
from .configs import CarveConfig, VlmConfig
from .vlm_attention import VlmAttributor, _map_record


def contrast(task: np.ndarray, general: np.ndarray, *, steps: str = "all", epsilon: float = 1e-8) -> np.ndarray:
    """The contrastive per-token map from two passes' ``values[step, layer, token]``: the ratio at
    each paired step and layer, summed over layers, then over steps with weight step + 1 (``all``)
    or at the first step alone (``first``).

    >>> task = np.array([[[2.0, 1.0]], [[4.0, 1.0]]]); general = np.array([[[1.0, 1.0]], [[2.0, 2.0]]])
    >>> contrast(task, general, epsilon=0).tolist(), contrast(task, general, steps="first", epsilon=0).tolist()
    ([6.0, 2.0], [2.0, 1.0])
    """
    n = min(len(task), len(general))
    ratio = (task[:n] / (general[:n] + epsilon)).sum(1)  # steps × tokens
    weights = np.arange(1, n + 1, dtype=np.float64) if steps == "all" else np.eye(1, n)[0]
    return (weights[:, None] * ratio).sum(0)


class ContrastiveAttributor(Attributor):
    """CARVE's contrastive map (``preset="carve"``) or ViCrop's relative attention (``"vicrop"``) on
    any family api-vlm supports. ``raw`` is the contrast before normalisation; ``parts["selection"]``
    is the same, for choosing regions (a crop) as the public codes do, on the unnormalised map.

    >>> from attnprompt.shapes import make_scene
    >>> carve = ContrastiveAttributor.from_pretrained("shapes")
    >>> scene = make_scene(7, n_objects=5, size=320).image
    >>> [m] = carve.attribute([scene], ["What colour is the circle?"])
    >>> m.shape, carve.cache_info()
    ((16, 16), {'hits': 0, 'misses': 1, 'size': 1})
    >>> _ = carve.attribute([scene], ["What shape is the green object?"]); carve.cache_info()["hits"]
    1
    """

    method: ClassVar[str] = "carve"
    config_class = CarveConfig
    config: CarveConfig
    model_kind: ClassVar[str] = "vlm"

    def __init__(self, vlm: LoadedVlm, config: CarveConfig | None = None, *, batch_size: int = 4,
                 cache_size: int = 128, share_prefix: bool = True) -> None:
        self.config = config or CarveConfig.from_preset()
        #: The task and general passes of one image share its encoding and their prompt's prefix
        #: (:func:`~attnprompt.models.shared_prefix`); False runs them as a plain batch (the same maps, to rounding).
        self.share_prefix = bool(share_prefix)
        c = self.config
        # with the first step only (ViCrop), the prefill is all that is read: generate one token
        tokens = 1 if c.steps == "first" else c.max_new_tokens
        self.inner = VlmAttributor(
            vlm,
            VlmConfig(variant=c.variant, layers=c.layers, max_new_tokens=tokens, enhance=0.0, kernel=1, grid=c.grid,
                      fit=c.fit),
            batch_size=batch_size,
        )
        self.model_id = vlm.model_id
        self._general = LRU(cache_size)

    @classmethod
    def load(cls, model: str | LoadedVlm | None, *, device: str | None = None, dtype: Any = None,
             loading: Any = None) -> LoadedVlm:
        """A VLM (default LLaVA-1.5-7B), loaded once as ``loading`` says; the answering backend shares the same
        object.

        >>> ContrastiveAttributor.load("shapes").family
        'llava'
        """
        return VlmAttributor.load(model, device=device, dtype=dtype, loading=loading)

    def describe(self) -> dict[str, Any]:
        """Configuration with the layers resolved to absolute decoder indices.

        >>> d = ContrastiveAttributor.from_pretrained("shapes").describe()
        >>> d["method"], d["layers"], d["depth"], d["steps"]
        ('carve', [3], 4, 'all')
        """
        d = super().describe()
        d.update(layers=list(self.inner.layers), depth=self.inner.depth, family=self.inner.vlm.family)
        d.update(_map_record(self.inner.vlm))
        return d

    def cache_info(self) -> dict[str, int]:
        """General passes answered from the cache (``hits``), computed (``misses``) and kept (``size``)."""
        return self._general.info()

    def attribute(
        self, images: Sequence[Image.Image], queries: Sequence[str], *, suffixes: Sequence[str] | None = None
    ) -> list[AttributionMap]:
        """Contrastive maps for the pairs ``(images[i], queries[i])``: the task passes and the general
        passes not yet cached run as one batched generation."""
        queries, suffixes = check_pairs(images, queries, suffixes)
        made: dict[int, tuple] = {}
        for img in images:  # what the passes read, made once per image (one object: the rows share its prefix)
            if id(img) not in made:
                made[id(img)] = self.inner.model_input(img)
        inputs = [made[id(img)] for img in images]
        keys = [self._key(img, s) for (img, _), s in zip(inputs, suffixes)]
        general, missing = self._general.lookup(keys)  # this call's general passes, whatever the cache evicts
        first = {key: keys.index(key) for key in missing}
        asked = list(queries) + [self.config.general] * len(missing)
        found = self.inner.attend(
            inputs + [inputs[first[k]] for k in missing],
            [with_suffix(q, s) for q, s in zip(asked, suffixes + [suffixes[first[k]] for k in missing])],
            share_prefix=self.share_prefix,
        )
        passes = dict(zip(missing, found[len(images):]))
        general.update(passes)
        self._general.store(passes)
        maps = []
        for task, key in zip(found[: len(images)], keys):
            values = contrast(task.values, general[key].values, steps=self.config.steps,
                              epsilon=self.config.epsilon)
            raw = task.layout.gather(values)
            grid = render.postprocess(raw, enhance=self.config.enhance, kernel=self.config.kernel)
            maps.append(AttributionMap(grid=grid, raw=raw, extent=task.layout.extent, parts={"selection": raw}))
        return maps

    def _key(self, image: Image.Image, suffix: str) -> tuple:
        # the pixels the passes read (the model's input, not the object: the same picture loaded twice is one entry;
        # a bounded copy for a large image, so an 8K photo's key is cheap: image_key), the model and every setting
        # the general pass depends on
        c = self.config
        return (image_key(image), self.model_id, c.general, suffix, self.inner.config.max_new_tokens,
                c.variant, self.inner.layers, c.grid, c.fit)
