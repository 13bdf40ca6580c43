"""Attribution methods: (image, query) → attribution map Ψ on the model's patch grid.

Methods are looked up lazily by name in :data:`attnprompt.attribution.configs.METHODS`, so importing this
package does not import torch or transformers.
"""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .base import Attributor
from .configs import METHODS

__all__ = ["METHODS", "Attributor", "get_attributor"]


def get_attributor(
    method: str = "api-clip",
    *,
    model: Any = None,
    device: str | None = None,
    dtype: Any = None,
    preset: str | None = None,
    loading: Any = None,
    **params: Any,
) -> Attributor:
    """Build (or pass through) an attributor; the underlying model is loaded once and cached, as ``loading``
    (a :class:`~attnprompt.models.LoadOptions`; ``device`` / ``dtype`` are its fields as keywords) says.

    ``model`` is a hub id, a local checkpoint directory, an embedded name (``"shapes"``), an
    already loaded model, or a built attributor (returned as it is).

    >>> get_attributor("api-clip", model="shapes", kernel=1).config.kernel
    1
    """
    if isinstance(model, Attributor):
        if params or preset:
            raise InputError(
                f"parameters {sorted(params) + (['preset'] if preset else [])} were given with an already built "
                "attributor; give them when building it instead"
            )
        return model
    cls = METHODS.get(method)
    return cls.from_pretrained(model, device=device, dtype=dtype, preset=preset, loading=loading, **params)
