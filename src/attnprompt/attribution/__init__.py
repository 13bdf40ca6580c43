"""Attribution methods: (image, query) → attribution map Ψ on the model's patch grid.

Methods are looked up lazily by name in :data:`attnprompt.config.METHODS`, so importing this
package does not import torch or transformers.
"""

from __future__ import annotations

from ..config import METHODS
from .base import Attributor

__all__ = ["METHODS", "Attributor"]
