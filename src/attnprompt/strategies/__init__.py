"""How a VLM is asked: one small file per strategy over :class:`~attnprompt.strategies.base.Strategy`.

Strategies are looked up by name in :data:`attnprompt.strategies.registry.STRATEGIES` (lazily; an unknown
name is an error that lists the valid ones).

>>> from attnprompt.strategies.registry import STRATEGIES
>>> STRATEGIES.get("api").needs.map
True
"""

from __future__ import annotations

from .base import Strategy
from .registry import STRATEGIES
from .spec import AskSpec, MapSpec, Needs, VisualPrompt

__all__ = ["STRATEGIES", "AskSpec", "MapSpec", "Needs", "Strategy", "VisualPrompt"]
