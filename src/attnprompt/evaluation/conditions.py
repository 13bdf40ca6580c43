"""The rows of a report: a strategy with its map settings (answer tasks), or a map method with a
preset (map tasks) — which strategies are crossed with which methods, presets and forms is each
strategy's :class:`~attnprompt.strategies.base.Needs`' to say."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..attribution.configs import METHODS
from ..errors import InputError
from ..strategies.registry import STRATEGIES


@dataclass(frozen=True)
class Condition:
    """One row of the report: a strategy with its map settings (``answer`` tasks), or a map method
    with a preset (``map`` tasks).

    >>> Condition("answer", "api", "api-clip", None, "crop").label
    'api (api-clip, crop)'
    >>> Condition("map", None, "api-clip", "grounding").label
    'api-clip (grounding)'
    """

    kind: str
    strategy: str | None = None
    method: str | None = None
    preset: str | None = None
    form: str | None = None

    @property
    def label(self) -> str:
        if self.kind == "map":
            return f"{self.method} ({self.preset})"
        extra = [p for p in (None if self.method == self.strategy else self.method, self.preset, self.form) if p]
        return f"{self.strategy} ({', '.join(extra)})" if extra else str(self.strategy)

    @property
    def strategy_name(self) -> str:
        """The strategy of an answer condition (a map condition has none: a ValueError).

        >>> Condition("answer", "plain").strategy_name
        'plain'
        """
        if self.strategy is None:
            raise ValueError(f"the {self.kind} condition {self.label} has no strategy")
        return self.strategy

    @property
    def method_name(self) -> str:
        """The method of a map condition, or of an answer condition that shows a map (else a ValueError).

        >>> Condition("map", None, "api-clip", "grounding").method_name
        'api-clip'
        """
        if self.method is None:
            raise ValueError(f"the {self.kind} condition {self.label} has no map method")
        return self.method


def conditions_for(strategies: Sequence[str], methods: Sequence[str] | None = None,
                   presets: Sequence[str] | None = None, forms: Sequence[str] | None = None) -> list[Condition]:
    """Every strategy; each one that shows a map crossed with the given methods (default its own),
    presets and visual-prompt forms. A preset goes only with the methods that have it (a method with
    none of them keeps its default), so ``--strategy plain,api,carve --preset vicrop`` is API-CLIP's
    ``api`` beside ViCrop's crop; a preset no crossed method has is an error.

    >>> [c.label for c in conditions_for(["plain", "api"], methods=["api-clip", "api-vlm"])]
    ['plain', 'api (api-clip)', 'api (api-vlm)']
    >>> [c.label for c in conditions_for(["api", "carve"], presets=["vicrop"])]
    ['api (api-clip)', 'carve (vicrop)']
    """
    out = []
    used: set[str] = set()
    crossed: set[str] = set()
    for name in strategies:
        cls = STRATEGIES.get(name)
        if not cls.needs.crossed:
            out.append(Condition("answer", name, preset=None))
            continue
        for method in methods or [cls.default_method]:
            crossed.add(method)
            own = METHODS.config(method).PRESETS
            fitting = [p for p in presets or () if p in own]
            used.update(fitting)
            for preset in fitting if fitting else [None]:
                for form in forms if forms else [None]:
                    out.append(Condition("answer", name, method, preset, form))
    unused = [p for p in presets or () if p not in used]
    if unused and crossed:
        valid = {m: list(METHODS.config(m).PRESETS) for m in sorted(crossed)}
        raise InputError(f"no chosen method has the preset(s) {', '.join(map(repr, unused))}; presets: {valid}")
    return _unique(out)


def map_conditions(methods: Sequence[str] | None = None, presets: Sequence[str] | None = None) -> list[Condition]:
    """Map methods (default api-clip) crossed with presets (default every preset of each method; a
    preset only for the methods that have it).

    >>> [c.label for c in map_conditions()]
    ['api-clip (reference)', 'api-clip (paper)', 'api-clip (grounding)']
    """
    out = []
    for method in methods or ["api-clip"]:
        own = METHODS.config(method).PRESETS
        out += [Condition("map", None, method, p) for p in (presets or own) if p in own]
    for p in presets or ():
        if not any(p in METHODS.config(m).PRESETS for m in methods or ["api-clip"]):
            valid = {m: list(METHODS.config(m).PRESETS) for m in methods or ["api-clip"]}
            raise InputError(f"no chosen method has a preset {p!r}; presets: {valid}")
    return _unique(out)


def _unique(items: list[Condition]) -> list[Condition]:
    seen: dict[str, Condition] = {}
    for c in items:
        seen.setdefault(c.label, c)
    return list(seen.values())


