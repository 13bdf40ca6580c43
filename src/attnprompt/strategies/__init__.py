"""How a VLM is asked: one small file per strategy over :class:`~attnprompt.strategies.base.Strategy`.

Strategies are looked up by name in :data:`attnprompt.config.STRATEGIES` (lazily; an unknown
name is an error that lists the valid ones).

>>> from attnprompt.config import STRATEGIES
>>> STRATEGIES.get("api").needs.map
True
"""

from __future__ import annotations

from ..config import STRATEGIES
from .base import Strategy

__all__ = ["STRATEGIES", "Strategy"]
