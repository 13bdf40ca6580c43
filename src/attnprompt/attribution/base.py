"""The Attributor interface, typed method configs with named presets, and layer parsing."""

from __future__ import annotations

import dataclasses
import importlib
import numbers
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Mapping, Sequence

from PIL import Image

from ..errors import InputError
from ..types import AttributionMap

#: method name → "module:Class", resolved on first use so unused methods cost nothing to import.
METHODS: dict[str, str] = {
    "api-clip": "attnprompt.attribution.clip:ClipAttributor",
    "api-vlm": "attnprompt.attribution.vlm_attention:VlmAttributor",
}


def get_attributor_class(method: str) -> type["Attributor"]:
    """Return the Attributor class registered under ``method``.

    >>> get_attributor_class("api-clip").__name__
    'ClipAttributor'
    """
    try:
        target = METHODS[method]
    except KeyError:
        raise InputError(f"unknown method {method!r}; valid methods: {', '.join(sorted(METHODS))}") from None
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Base for a method's hyper-parameters: one documented default, named presets, no unknown keys.

    Subclasses declare fields with the defaults of their default preset, and ``PRESETS``
    mapping preset names to the fields they change.

    >>> from attnprompt.attribution.clip import ClipConfig
    >>> ClipConfig.from_preset("paper").similarity
    'cosine'
    """

    PRESETS: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    DEFAULT_PRESET: ClassVar[str] = ""
    preset: str = ""

    @classmethod
    def from_preset(cls, preset: str | None = None, **overrides: Any):
        """Build a config from a named preset plus explicit overrides (``None`` means "keep").

        >>> from attnprompt.attribution.clip import ClipConfig
        >>> ClipConfig.from_preset("reference", kernel=5).kernel
        5
        """
        preset = preset or cls.DEFAULT_PRESET
        if preset not in cls.PRESETS:
            raise InputError(f"unknown preset {preset!r}; valid presets: {', '.join(cls.PRESETS)}")
        names = {f.name for f in dataclasses.fields(cls)} - {"preset"}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise InputError(
                f"unknown parameter(s) {', '.join(unknown)} for {cls.__name__}; "
                f"valid parameters: {', '.join(sorted(names))}"
            )
        values = dict(cls.PRESETS[preset])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(preset=preset, **values)

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-able values.

        >>> from attnprompt.attribution.clip import ClipConfig
        >>> ClipConfig.from_preset().to_dict()["preset"]
        'reference'
        """
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v


class Attributor(ABC):
    """Turns images and their queries into attribution maps on the model's patch grid.

    Subclasses are built from loaded objects (``__init__``) or by name (``from_pretrained``),
    and implement :meth:`attribute` for a batch of (image, query) pairs.

    >>> issubclass(get_attributor_class("api-clip"), Attributor)
    True
    """

    method: ClassVar[str] = ""
    config: MethodConfig
    model_id: str

    @abstractmethod
    def attribute(self, images: Sequence[Image.Image], queries: Sequence[str]) -> list[AttributionMap]:
        """Attribution maps for the pairs ``(images[i], queries[i])``; images may repeat.

        >>> # see ClipAttributor.attribute for a runnable example
        """

    def describe(self) -> dict[str, Any]:
        """The full configuration of this attributor, model id included.

        >>> # e.g. {'method': 'api-clip', 'model': 'shapes', 'preset': 'reference', ...}
        """
        return {"method": self.method, "model": self.model_id, **self.config.to_dict()}


def check_kernel(kernel: Any) -> int:
    """A mean-filter size: an odd integer ≥ 1 (1 = no filter).

    >>> check_kernel(3)
    3
    """
    if isinstance(kernel, bool) or not isinstance(kernel, numbers.Integral) or kernel < 1 or kernel % 2 == 0:
        raise InputError(f"kernel must be an odd integer ≥ 1 (1 = no filter); got {kernel!r}")
    return int(kernel)


def check_enhance(enhance: Any) -> float:
    """An enhance coefficient: a finite number ≥ 0 (0 = off).

    >>> check_enhance("5")
    5.0
    """
    try:
        e = float(enhance)
    except (TypeError, ValueError):
        raise InputError(f"enhance must be a number ≥ 0 (0 = off); got {enhance!r}") from None
    if not (e >= 0 and e < float("inf")):
        raise InputError(f"enhance must be a finite number ≥ 0 (0 = off); got {enhance!r}")
    return e


def check_choice(name: str, value: Any, valid: Sequence[str]) -> None:
    """Raise a clear error unless ``value`` is one of ``valid``.

    >>> check_choice("parts", "cls", ("both", "cls", "comp"))
    """
    if value not in valid:
        raise InputError(f"{name} must be one of {', '.join(valid)}; got {value!r}")


def check_query(query: Any) -> str:
    """Validate one query: a non-blank string. Returns it stripped.

    >>> check_query("  What colour is the star? ")
    'What colour is the star?'
    """
    if not isinstance(query, str):
        raise InputError(f"query must be a string, got {type(query).__name__}")
    q = query.strip()
    if not q:
        raise InputError("query is empty or only whitespace; give a question or a phrase naming what to look at")
    return q


def parse_layers(spec: Any, depth: int, *, allow_fraction: bool = False) -> tuple[int, ...]:
    """Resolve a layer specification to sorted absolute block indices in ``[0, depth)``.

    Accepts an int (negative counts from the end: -1 is the last block), a sequence of ints,
    a string ``"-2"``, ``"20,22"`` or a slice ``"-4:"`` / ``"10:14"`` (Python slice semantics),
    and, with ``allow_fraction``, a float in (0, 1) meaning that fraction of the depth.

    >>> parse_layers(-2, 24), parse_layers("-3:", 24), parse_layers("1,3", 4), parse_layers(0.5, 40, allow_fraction=True)
    ((22,), (21, 22, 23), (1, 3), (20,))
    """
    def bad(why: str) -> InputError:
        extra = ", or a fraction of depth in (0, 1) like 0.5" if allow_fraction else ""
        return InputError(
            f"invalid layers {spec!r}: {why}; the model has {depth} blocks — give an index in "
            f"[-{depth}, {depth - 1}], a list like '20,22' or a slice like '-4:'{extra}"
        )

    def one(i: int) -> int:
        j = i + depth if i < 0 else i
        if not 0 <= j < depth:
            raise bad(f"index {i} is out of range")
        return j

    if isinstance(spec, bool):
        raise bad("not a layer index")
    if isinstance(spec, float):
        if not allow_fraction:
            raise bad("fractions are not accepted here")
        if not 0.0 < spec < 1.0:
            raise bad("a fraction must lie strictly between 0 and 1")
        return (min(depth - 1, int(round(spec * depth))),)
    if isinstance(spec, int):
        return (one(spec),)
    if isinstance(spec, str):
        s = spec.strip()
        if ":" in s:
            parts = s.split(":")
            if len(parts) != 2:
                raise bad("a slice has the form start:stop")
            try:
                start = int(parts[0]) if parts[0].strip() else None
                stop = int(parts[1]) if parts[1].strip() else None
            except ValueError:
                raise bad("slice bounds must be integers") from None
            idx = tuple(range(depth)[slice(start, stop)])
            if not idx:
                raise bad("the slice selects no block")
            return idx
        items = [x for x in s.split(",") if x.strip()]
        if not items:
            raise bad("empty")
        out = []
        for x in items:
            try:
                out.append(int(x))
            except ValueError:
                if allow_fraction and len(items) == 1:
                    try:
                        return parse_layers(float(x), depth, allow_fraction=True)
                    except ValueError:
                        pass
                raise bad(f"{x.strip()!r} is not an integer") from None
        return tuple(sorted({one(i) for i in out}))
    if isinstance(spec, Sequence):
        if not spec:
            raise bad("empty")
        out = []
        for x in spec:
            if isinstance(x, bool) or not isinstance(x, int):
                raise bad(f"{x!r} is not an integer")
            out.append(one(x))
        return tuple(sorted(set(out)))
    raise bad(f"unsupported type {type(spec).__name__}")
