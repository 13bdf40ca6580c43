"""Typed, presettable settings: a frozen dataclass whose fields carry their one documented default,
their help text and how the CLI parses them; named presets change some fields; unknown keys are refused.

Every attribution method's configuration (:mod:`attnprompt.attribution.configs`) and the region rule
(:class:`~attnprompt.regions.RegionConfig`) are such classes; the CLI derives its flags from their fields
(:func:`cli_parameters`), so each default is written once. Nothing here imports torch.

>>> from attnprompt.attribution.configs import ClipConfig
>>> ClipConfig.from_preset("paper", kernel=5).to_dict()["kernel"]
5
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from .errors import InputError

#: Every settings class by the name it is known by (``METHOD``), for errors that say whose a parameter is.
_KNOWN: dict[str, type[MethodConfig]] = {}
_Config = TypeVar("_Config", bound="MethodConfig")


def param(default: Any, help: str, *, cli: Callable[[str], Any] | None = str) -> Any:
    """A config field with its help text and how the CLI parses it (``bool`` → ``--x/--no-x``).

    >>> param(3, "odd mean-filter size", cli=int).metadata["help"]
    'odd mean-filter size'
    """
    return dataclasses.field(default=default, metadata={"help": help, "cli": cli})




@dataclasses.dataclass(frozen=True)
class MethodConfig:
    """Base for a method's hyper-parameters: one documented default, named presets, no unknown keys.

    Subclasses declare their fields with :func:`param` (the default preset's values) and map
    the other presets' names to the fields they change in ``PRESETS``.

    >>> from attnprompt.attribution.configs import ClipConfig, VlmConfig
    >>> ClipConfig.from_preset("paper").similarity
    'cosine'
    """

    PRESETS: ClassVar[Mapping[str, Mapping[str, Any]]] = {}
    DEFAULT_PRESET: ClassVar[str] = ""
    #: The method's registry name, for messages.
    METHOD: ClassVar[str] = ""
    preset: str = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.METHOD:
            _KNOWN[cls.METHOD] = cls

    @classmethod
    def from_preset(cls: type[_Config], preset: str | None = None, **overrides: Any) -> _Config:
        """Build a config from a named preset plus explicit overrides (``None`` means "keep").

        >>> from attnprompt.attribution.configs import ClipConfig, VlmConfig
        >>> ClipConfig.from_preset("reference", kernel=5).kernel
        5
        """
        preset = preset or cls.DEFAULT_PRESET
        if preset not in cls.PRESETS:
            raise InputError(f"unknown preset {preset!r}; valid presets: {', '.join(cls.PRESETS)}")
        names = cls.parameter_names()
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            owners = {
                name: [m for m, c in _KNOWN.items() if c is not cls and name in c.parameter_names()]
                for name in unknown
            }
            whose = "; ".join(f"{n} is a parameter of {', '.join(o)}" for n, o in owners.items() if o)
            raise InputError(
                f"{cls.METHOD or cls.__name__} has no parameter {', '.join(unknown)}"
                + (f" ({whose})" if whose else "")
                + f"; valid parameters: {', '.join(sorted(names))}"
            )
        values = dict(cls.PRESETS[preset])
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(preset=preset, **values)

    @classmethod
    def parameter_names(cls) -> tuple[str, ...]:
        """The tunable fields (everything but ``preset``), in declaration order.

        >>> from attnprompt.attribution.configs import ClipConfig, VlmConfig
        >>> VlmConfig.parameter_names()[:2]
        ('variant', 'layers')
        """
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "preset")

    def to_dict(self) -> dict[str, Any]:
        """Every field as plain JSON-able values.

        >>> from attnprompt.attribution.configs import ClipConfig, VlmConfig
        >>> ClipConfig.from_preset().to_dict()["preset"]
        'reference'
        """
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_plain(x) for x in v]
    return v




@dataclasses.dataclass(frozen=True)
class CliParameter:
    """One method parameter as the CLI shows it: how to parse it, and each method's help and default.

    >>> from attnprompt.attribution.configs import METHODS
    >>> [p.name for p in cli_parameters(METHODS.configs())][:3]
    ['layers', 'parts', 'enhance']
    """

    name: str
    parse: Callable[[str], Any] | None
    helps: dict[str, str]
    defaults: dict[str, Any]

    @property
    def help(self) -> str:
        """One help line: the text (once if every method shares it) and each method's default.

        >>> from attnprompt.attribution.configs import METHODS
        >>> next(p for p in cli_parameters(METHODS.configs()) if p.name == "kernel").help
        'odd mean-filter size on the grid (1 = none) (default: api-clip 3, api-vlm 3, carve 1)'
        """
        texts = list(dict.fromkeys(self.helps.values()))
        if len(texts) == 1:
            text = texts[0] if len(self.helps) > 1 else f"{next(iter(self.helps))}: {texts[0]}"
        else:
            text = "; ".join(f"{m}: {h}" for m, h in self.helps.items())
        # a None default is described by the help text itself ("default: the deepest of --layers")
        defaults = ", ".join(f"{m} {d}" for m, d in self.defaults.items() if d is not None)
        return f"{text} (default: {defaults})" if defaults else text


def cli_parameters(configs: Mapping[str, type[MethodConfig]]) -> list[CliParameter]:
    """Every parameter of the given methods' configs, merged by name, with each method's default.

    >>> from attnprompt.attribution.configs import METHODS
    >>> kernel = next(p for p in cli_parameters(METHODS.configs()) if p.name == "kernel")
    >>> kernel.defaults, kernel.parse
    ({'api-clip': 3, 'api-vlm': 3, 'carve': 1}, <class 'int'>)
    """
    merged: dict[str, CliParameter] = {}
    for method, cls in configs.items():
        for f in dataclasses.fields(cls):
            if f.name == "preset":
                continue
            parse, help_ = f.metadata.get("cli", str), f.metadata.get("help", "")
            have = merged.get(f.name)
            if have is not None and have.parse is not parse:
                parse = str  # the same word with different types: each config parses the string itself
            helps = {**(have.helps if have else {}), method: help_}
            defaults = {**(have.defaults if have else {}), method: f.default}
            merged[f.name] = CliParameter(f.name, parse, helps, defaults)
    return list(merged.values())
