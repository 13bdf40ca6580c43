"""Attribution methods: (image, query) → attribution map Ψ on the model's patch grid.

Methods are looked up lazily by name (see :func:`get_attributor_class`), so importing this
package does not import torch or transformers.
"""

from __future__ import annotations

from .base import METHODS, Attributor, MethodConfig, get_attributor_class, parse_layers

__all__ = ["METHODS", "Attributor", "MethodConfig", "get_attributor_class", "parse_layers"]
