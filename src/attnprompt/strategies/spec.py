"""How one question is asked, as one frozen value: :class:`AskSpec` — the strategy, its map
(:class:`MapSpec`), its visual prompt (:class:`VisualPrompt`), the segmenter and the answer budget.

Every entry point builds one spec and passes it whole: the CLI with :meth:`AskSpec.from_flags`, Python
keywords, lmms-eval's ``--model_args`` and the demo's widgets with :meth:`AskSpec.from_mapping`. It is
checked once against what the strategy takes (its :class:`Needs`, :meth:`AskSpec.check`), and an
evaluation's conditions are modified copies of one spec (:meth:`AskSpec.for_condition`).

A setting is a field with its help text, how the CLI parses it and which strategies take it
(:func:`setting`): the CLI's flags, the flat keyword names and the checks all come from the fields, so a
new setting is a field here plus the code that uses it.

>>> spec = AskSpec.from_mapping({"strategy": "carve", "preset": "vicrop", "form": "zoom", "kernel": 1})
>>> spec.check().map.method, spec.map.params, spec.visual.form
('carve', {'kernel': 1}, 'zoom')
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..attribution.configs import METHODS
from ..checks import check_count, check_gray
from ..errors import InputError
from ..forms import FORMS, get_form
from ..regions import RegionConfig
from ..search import check_budget, check_confidence, check_order, check_skip
from .registry import STRATEGIES

#: The answer budget when none is given (a task's own budget wins in an evaluation).
DEFAULT_MAX_NEW_TOKENS = 128
#: Resampling filters from a map's grid to the image's pixels.
RESAMPLE = ("nearest", "bilinear", "bicubic", "lanczos")
#: zoom-search's budget of VLM calls per question, and the share of map mass under which it skips a window,
#: and auto's gate: chosen on the testbed (``docs/research/zoom-methods.md``).
DEFAULT_SEARCH_BUDGET = 40
DEFAULT_SEARCH_SKIP = 0.2
DEFAULT_GATE_THRESHOLD = 0.95
#: Prefix of a map parameter whose name a spec uses itself (``map_max_new_tokens``: api-vlm's own
#: generation length beside the answer's ``max_new_tokens``).
MAP_PREFIX = "map_"


@dataclass(frozen=True)
class Needs:
    """What a strategy takes besides its backend and answer budget, declared once on its class
    (``needs = Needs(map=True)``): the spec's checks, the harness, the CLI and the demo ask it rather than
    branch on the strategy's kind.

    - ``map``: it shows images annotated with an attribution map, so it takes the map's method, model,
      preset and parameters, the rendering (``gray``, ``resample``) and a visual-prompt ``form`` with its
      ``regions``;
    - ``sources``: it shows one map per attribution source (``sources``), not one method and model;
    - ``truth``: it reads the task's ground truth (``Sample.region``): a row for scale, not a way to ask
      (the demo and ``ask`` leave it out);
    - ``segmenter``: it draws its visual prompt from a segmenter's masks (FGVP, SoM);
    - ``settings``: the names of the spec's strategy-specific settings it takes (fields declared with
      ``takes="own"``).

    >>> Needs(map=True).crossed, Needs(map=True, sources=True).crossed, Needs().crossed
    (True, False, False)
    """

    map: bool = False
    sources: bool = False
    truth: bool = False
    segmenter: bool = False
    settings: frozenset[str] = frozenset()

    @property
    def crossed(self) -> bool:
        """Whether the harness runs it once per map method, preset and form (one map per image)."""
        return self.map and not self.sources

    def takes(self, name: str, takes: str) -> bool:
        """Whether a strategy with these needs takes the setting ``name``, which is taken by ``takes``:
        ``all`` strategies, those with a ``map``, those with one map (``one-map``: not ``sources``), the
        ``sources`` strategy, the ``segmenter`` ones, or those naming it in ``settings`` (``own``).

        >>> Needs(map=True, sources=True).takes("method", "one-map"), Needs().takes("max_new_tokens", "all")
        (False, True)
        """
        return {"all": True, "map": self.map, "one-map": self.map and not self.sources,
                "sources": self.sources, "segmenter": self.segmenter, "own": name in self.settings}[takes]


def setting(default: Any, help: str, *, takes: str = "all", parse: Callable[[str], Any] | None = str,
            flag: bool = True, check: Callable[[Any], Any] | None = None) -> Any:
    """A spec field: its default, help text, which strategies take it (:meth:`Needs.takes`), how the CLI
    parses it (``None``: no flag of its own), whether it has a flag, and ``check``: a given value's check
    (returns it normalised, raises :class:`~attnprompt.errors.InputError`), run by :meth:`AskSpec.check` (a
    text value, as lmms-eval's model arguments give it, is parsed first).

    >>> setting(3, "how many", parse=int).metadata["takes"]
    'all'
    """
    return field(default=default, metadata={"help": help, "takes": takes, "parse": parse, "flag": flag,
                                            "check": check})


def _check_search_confidence(value: Any) -> str:
    if value not in ("answer", "zoomeye"):
        raise InputError(f"search_confidence must be answer or zoomeye; got {value!r}")
    return str(value)


def _check_probability(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise InputError(f"gate_threshold is a probability in [0, 1]; got {value!r}")
    return float(value)


def _check_gate_zoom(value: Any) -> str:
    def fits(needs: Needs) -> bool:  # auto hands it its one map, or none
        return not (needs.truth or needs.segmenter or needs.sources)

    zooms = [n for n in STRATEGIES.names() if n not in ("auto", "plain") and fits(STRATEGIES.get(n).needs)]
    if value not in zooms:
        raise InputError(f"gate_zoom is the strategy auto answers with when it zooms: one of {', '.join(zooms)}; "
                         f"got {value!r}")
    return str(value)


def _sources(value: Any) -> tuple[Any, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(s.strip() for s in value.split(",") if s.strip())
    return tuple(value)


def _parse_sources(text: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in text.split(",") if s.strip())


@dataclass(frozen=True)
class MapSpec:
    """The attribution map a strategy shows: ``method`` (default the strategy's), its ``model`` (default:
    the paper's CLIP for api-clip, the answering VLM for api-vlm and carve), ``preset`` and ``params`` (the
    method's parameters), the rendering (``gray``, ``resample``) and, for the ensemble, its ``sources``."""

    method: str | None = setting(None, "attribution method (default: the strategy's own: api-clip; carve for "
                                 "--strategy carve)", takes="one-map")
    model: Any = setting(None, "the method's model: hub id, local checkpoint directory, or 'shapes' (embedded, "
                         "offline); default the paper's CLIP for api-clip (the shapes CLIP beside the shapes VLM), "
                         "the answering VLM itself for api-vlm and carve", takes="one-map")
    preset: str | None = setting(None, "named parameter set of the method (default its own: reference; carve for "
                                 "carve)", takes="map")
    params: Mapping[str, Any] = field(default_factory=dict)
    gray: float = setting(0.0, "level masked pixels fade to, 0–255 (default 0 = black)", takes="map", parse=float)
    resample: str = setting("bilinear", "grid → pixels: " + " | ".join(RESAMPLE) + " (default bilinear)",
                            takes="map")
    sources: tuple[Any, ...] | None = setting(None, "ensemble: the attribution sources, comma-separated "
                                              "method:model (default: api-clip with the paper's CLIP, api-vlm "
                                              "with the answering VLM)", takes="sources", parse=_parse_sources)

    def __post_init__(self) -> None:
        # a copy (a plain dict, so that a spec pickles to Ray's workers); never mutated after this
        object.__setattr__(self, "params", dict(self.params))
        object.__setattr__(self, "sources", _sources(self.sources))


@dataclass(frozen=True)
class VisualPrompt:
    """What the VLM is shown of an annotated image: the ``form`` (a name in :data:`~attnprompt.forms.FORMS`,
    default the strategy's) and, for forms that show a crop, how its ``regions`` are chosen (a
    :class:`~attnprompt.regions.RegionConfig` or a preset name; default the map method's rule)."""

    form: str | None = setting(None, "the visual prompt of strategies that show a map (default the strategy's: "
                               "crop for carve, else overlay)", takes="map")
    regions: RegionConfig | str | None = setting(None, "how a crop is chosen from the map", takes="map", flag=False)


@dataclass(frozen=True)
class AskSpec:
    """Every setting of how one question is asked (see the module docstring).

    >>> AskSpec().strategy, AskSpec(strategy="plain").check().max_new_tokens
    ('api', None)
    """

    strategy: str = setting("api", "how the VLM is asked", flag=False)
    map: MapSpec = field(default_factory=MapSpec)
    visual: VisualPrompt = field(default_factory=VisualPrompt)
    segmenter: Any = setting(None, "fgvp-mask, fgvp-rbm, som: where the masks come from: shapes (the testbed's "
                             "ground truth) | sam (SAM ViT-H, facebook/sam-vit-huge) | a SAM hub id or local "
                             "directory (default: shapes beside the shapes VLM, else sam)", takes="segmenter")
    max_new_tokens: int | None = setting(None, "the answer's token budget", parse=int, flag=False)
    # searched and gated zooms (zoom-search, auto; issue 38)
    search_budget: int = setting(DEFAULT_SEARCH_BUDGET, "zoom-search, auto: VLM calls per question the search "
                                 f"may make (default {DEFAULT_SEARCH_BUDGET})", takes="own", parse=int,
                                 check=check_budget)
    search_order: str = setting("map", "zoom-search, auto: who orders the visits: map (the attribution map, "
                                "default) | zoomeye (the VLM's own confidences, ZoomEye's)", takes="own",
                                check=check_order)
    search_confidence: str | None = setting(None, "zoom-search, auto: how a window is scored: answer (its answer's "
                                            "probability, checked by the VLM's own existence question) | zoomeye "
                                            "(ZoomEye's yes/no prompts); default answer for the shapes VLM, else "
                                            "zoomeye", takes="own", check=_check_search_confidence)
    search_threshold: float = setting(0.6, "zoom-search, auto: the confidence in [-1, 1] that stops the search "
                                      "(ZoomEye's tau; default 0.6)", takes="own", parse=float, check=check_confidence)
    search_skip: float = setting(DEFAULT_SEARCH_SKIP, "zoom-search, auto, map order: windows holding less than "
                                 f"this share of their parent's map mass are never asked about (default "
                                 f"{DEFAULT_SEARCH_SKIP})", takes="own", parse=float, check=check_skip)
    gate_threshold: float = setting(DEFAULT_GATE_THRESHOLD, "auto: zoom when plain's first answer token is less "
                                    f"probable than this (default {DEFAULT_GATE_THRESHOLD}, chosen on training "
                                    "seeds)", takes="own", parse=float, check=_check_probability)
    gate_zoom: str = setting("zoom-search", "auto: the strategy that answers when it zooms (default zoom-search)",
                             takes="own", check=_check_gate_zoom)

    # -- building -------------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, settings: Mapping[str, Any]) -> AskSpec:
        """A spec from flat keywords (Python, lmms-eval's model arguments, the demo's widgets): each field's
        name (``strategy``, ``method``, ``form``, ``regions``, ``max_new_tokens`` …); any other name is a
        map parameter (``kernel=1``; ``map_max_new_tokens`` for api-vlm's own budget). ``None`` means
        "not given".

        >>> AskSpec.from_mapping({"method": "api-vlm", "map_max_new_tokens": 4, "gray": 64}).map.params
        {'max_new_tokens': 4}
        """
        places = _places()
        parts: dict[str, dict[str, Any]] = {"": {}, "map": {}, "visual": {}}
        params: dict[str, Any] = {}
        for name, value in settings.items():
            if value is None:
                continue
            if name in places:
                parts[places[name]][name] = value
            else:
                params[name.removeprefix(MAP_PREFIX)] = value
        return cls(map=MapSpec(params=params, **parts["map"]), visual=VisualPrompt(**parts["visual"]), **parts[""])

    @classmethod
    def from_flags(cls, args: Any, *, skip: Sequence[str] = ()) -> AskSpec:
        """A spec from the CLI's parsed flags (an ``argparse.Namespace``): every field with a flag, the
        method parameters (``--kernel``; ``--map-max-new-tokens``) and the regions (``--regions``,
        ``--region-top`` …); ``skip``: names read elsewhere (``eval``'s crossed lists)."""
        given = {name: getattr(args, name) for name in _places() if name not in skip and hasattr(args, name)}
        for config in METHODS.configs().values():
            for name in config.parameter_names():
                for dest in (name, MAP_PREFIX + name):
                    if getattr(args, dest, None) is not None:
                        given[dest] = getattr(args, dest)
        given["regions"] = regions_from_flags(args)
        return cls.from_mapping(given)

    def replace(self, **settings: Any) -> AskSpec:
        """A copy with the flat settings given changed (``None`` clears one).

        >>> AskSpec(strategy="api").replace(strategy="carve", preset="vicrop").map.preset
        'vicrop'
        """
        places = _places()
        parts: dict[str, dict[str, Any]] = {"": {}, "map": {}, "visual": {}}
        for name, value in settings.items():
            if name not in places:
                raise InputError(f"{name!r} is not a setting of how a question is asked; settings: "
                                 f"{', '.join(places)}")
            parts[places[name]][name] = value
        return dataclasses.replace(self, map=dataclasses.replace(self.map, **parts["map"]),
                                   visual=dataclasses.replace(self.visual, **parts["visual"]), **parts[""])

    # -- what was given ------------------------------------------------------------------------

    def given(self) -> dict[str, Any]:
        """The flat settings that differ from their defaults, and the map parameters, by name.

        >>> AskSpec.from_mapping({"strategy": "api", "kernel": 1, "gray": 9}).given()
        {'gray': 9, 'kernel': 1}
        """
        out = {name: value for name, value, default, _ in self._fields() if value != default}
        out.update(self.map.params)
        return out

    def _fields(self) -> Iterator[tuple[str, Any, Any, str]]:
        """(name, value, default, takes) of every flat setting but ``strategy``."""
        for obj in (self, self.map, self.visual):
            for f in dataclasses.fields(obj):
                if "takes" in f.metadata and f.name != "strategy":
                    yield f.name, getattr(obj, f.name), f.default, f.metadata["takes"]

    def refused(self, needs: Needs) -> list[str]:
        """The given settings a strategy with ``needs`` does not take (map parameters count as the map's).

        >>> AskSpec.from_mapping({"kernel": 1, "segmenter": "shapes", "max_new_tokens": 8}).refused(Needs())
        ['segmenter', 'kernel']
        """
        out = [name for name, value, default, takes in self._fields()
               if value != default and not needs.takes(name, takes)]
        return out + ([] if needs.map else sorted(self.map.params))

    def narrowed(self, needs: Needs) -> AskSpec:
        """This spec without the settings a strategy with ``needs`` does not take (an evaluation holds one
        spec for all its strategies; each condition keeps what its strategy takes)."""
        drop = set(self.refused(needs))
        out = self.replace(**{name: default for name, _, default, _ in self._fields() if name in drop})
        if not needs.map and out.map.params:
            out = dataclasses.replace(out, map=dataclasses.replace(out.map, params={}))
        return out

    # -- checks ----------------------------------------------------------------------------------

    def check(self, cls: Any = None) -> AskSpec:
        """This spec checked once against its strategy, normalised: the strategy known; every setting given
        taken by it (else one error naming them and what would take them); the form known and the method's
        preset and parameters valid — all before any model loads. Returns the normalised spec (the map's
        method resolved to the strategy's default, regions as a :class:`~attnprompt.regions.RegionConfig`).
        ``cls``: the strategy class (default the one registered under the spec's strategy).

        >>> AskSpec(strategy="plain", map=MapSpec(model="shapes")).check()  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        attnprompt.errors.InputError: strategy 'plain' uses no attribution map, but map settings were given (model); ...
        """
        cls = cls or STRATEGIES.get(self.strategy)
        _refuse(self.strategy, cls.needs, self.refused(cls.needs), self)
        checked = self._checked_values()
        if checked != self:
            return checked.check(cls)
        if self.max_new_tokens is not None:
            check_count("max_new_tokens", self.max_new_tokens)
        if not cls.needs.map:
            return self
        check_gray(self.map.gray)
        if self.map.resample not in RESAMPLE:
            raise InputError(f"resample must be one of {', '.join(RESAMPLE)}; got {self.map.resample!r}")
        form = get_form(self.visual.form or cls.default_form)
        regions = self.visual.regions
        if isinstance(regions, str):
            regions = RegionConfig.from_preset(regions)
        elif regions is not None and not isinstance(regions, RegionConfig):
            raise InputError(f"regions is a preset name ({', '.join(RegionConfig.PRESETS)}) or a RegionConfig; got "
                             f"{type(regions).__name__}")
        if regions is not None and not form.needs_regions:
            raise InputError(f"regions choose a crop, and the form {form.name!r} shows none; pick a form that does "
                             f"({', '.join(n for n in FORMS.names() if get_form(n).needs_regions)})")
        method = self.map.method
        if not cls.needs.sources:
            method = method or cls.default_method
            METHODS.config(method).from_preset(self.map.preset, **self.map.params)  # bad parameters fail here
        visual = dataclasses.replace(self.visual, regions=regions)
        return dataclasses.replace(self, map=dataclasses.replace(self.map, method=method), visual=visual)

    def _checked_values(self) -> AskSpec:
        """This spec with its given values of the settings that declare a ``check`` checked and normalised."""
        changes = {}
        for f in dataclasses.fields(self):
            value, check = getattr(self, f.name), f.metadata.get("check")
            if check is None or value == f.default:
                continue
            parse = f.metadata["parse"]
            if isinstance(value, str) and parse not in (None, str):
                try:
                    value = parse(value)
                except ValueError:
                    raise InputError(f"{f.name} is {value!r}; give a {parse.__name__}") from None
            changes[f.name] = check(value)
        return dataclasses.replace(self, **changes)

    def for_condition(self, strategy: str, method: str | None = None, preset: str | None = None,
                      form: str | None = None) -> AskSpec:
        """One evaluation condition's spec: this one with the condition's strategy, method, preset and form,
        keeping only what that strategy takes (:meth:`narrowed`), checked.

        >>> base = AskSpec.from_mapping({"kernel": 1, "segmenter": "shapes"})
        >>> [s.given() for s in (base.for_condition("plain"), base.for_condition("som"))]
        [{}, {'segmenter': 'shapes'}]
        """
        spec = self.replace(strategy=strategy, method=method or self.map.method, preset=preset or self.map.preset,
                            form=form or self.visual.form)
        cls = STRATEGIES.get(strategy)
        if not get_form(spec.visual.form or cls.default_form).needs_regions:
            spec = spec.replace(regions=None)  # the conditions with a crop choose it so; the others show none
        return spec.narrowed(cls.needs).check()

    def unused_by(self, strategies: Sequence[str]) -> list[str]:
        """The given settings that none of ``strategies`` takes (an evaluation refuses them).

        >>> AskSpec.from_mapping({"segmenter": "shapes"}).unused_by(["plain", "api"])
        ['segmenter']
        """
        refused = [set(self.refused(STRATEGIES.get(s).needs)) for s in strategies]
        return [name for name in self.given() if all(name in r for r in refused)] if refused else []

    def describe(self) -> dict[str, Any]:
        """The settings as given, JSON-able (what a run was asked to do; the hashed configuration is the
        built strategy's :meth:`~attnprompt.strategies.base.Strategy.describe`, which resolves models).

        >>> AskSpec(strategy="plain").describe()
        {'strategy': 'plain'}
        """
        out: dict[str, Any] = {"strategy": self.strategy}
        for name, value in self.given().items():
            if isinstance(value, RegionConfig):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = [v if isinstance(v, (str, int, float)) else type(v).__name__ for v in value]
            elif not isinstance(value, (str, int, float, bool, list, dict, type(None))):
                value = type(value).__name__
            out[name] = value
        return out


def _places() -> dict[str, str]:
    """Each flat setting name → the part of the spec that holds it (``""`` the spec itself)."""
    out = {}
    for part, cls in (("", AskSpec), ("map", MapSpec), ("visual", VisualPrompt)):
        out.update({f.name: part for f in dataclasses.fields(cls) if "takes" in f.metadata})
    return out


def spec_fields() -> list[tuple[str, Mapping[str, Any], Any]]:
    """(name, metadata, default) of every flat setting that has its own CLI flag, in declaration order.

    >>> [name for name, _, _ in spec_fields()][:3]
    ['segmenter', 'search_budget', 'search_order']
    """
    out: list[tuple[str, Mapping[str, Any], Any]] = []
    for cls in (AskSpec, MapSpec, VisualPrompt):
        out += [(f.name, f.metadata, f.default) for f in dataclasses.fields(cls)
                if "takes" in f.metadata and f.metadata["flag"]]
    return out


def regions_from_flags(args: Any) -> RegionConfig | None:
    """``--regions PRESET`` and the ``--region-*`` flags as a :class:`~attnprompt.regions.RegionConfig`
    (``None`` when none is given: the method's own rule)."""
    fields = {name: getattr(args, f"region_{name}") for name in RegionConfig.parameter_names()
              if getattr(args, f"region_{name}", None) is not None}
    preset = getattr(args, "regions", None)
    if preset is None and not fields:
        return None
    return RegionConfig.from_preset(preset, **fields)


def _refuse(strategy: str, needs: Needs, refused: list[str], spec: AskSpec) -> None:
    """One error for the settings a strategy does not take, saying which strategies would."""
    if not refused:
        return

    def taking(test: Callable[[Needs], bool]) -> str:
        return ", ".join(n for n in STRATEGIES.names() if test(STRATEGIES.get(n).needs))

    if "segmenter" in refused:
        raise InputError(f"strategy {strategy!r} draws nothing from masks, so it takes no segmenter; the strategies "
                         f"that do: {taking(lambda n: n.segmenter)}")
    own = [name for name, _, _, takes in spec._fields() if takes == "own" and name in refused]
    if own:
        raise InputError(f"strategy {strategy!r} does not take {', '.join(own)}; the strategies that do: "
                         f"{taking(lambda n: bool(set(own) & n.settings))}")
    if "sources" in refused:
        raise InputError(f"sources are the ensemble strategy's attribution maps; strategy {strategy!r} uses "
                         "method and model")
    if not needs.map:
        if {"form", "regions"} & set(refused) and not set(refused) - {"form", "regions"}:
            raise InputError(f"strategy {strategy!r} shows no annotated image, so it has no visual-prompt form")
        names = sorted(set(refused) - {"form", "regions"})
        raise InputError(f"strategy {strategy!r} uses no attribution map, but map settings were given "
                         f"({', '.join(names)}); drop them, or pick a strategy that annotates "
                         f"({taking(lambda n: n.map)})")
    raise InputError(f"strategy {strategy!r} does not take {', '.join(refused)}")
