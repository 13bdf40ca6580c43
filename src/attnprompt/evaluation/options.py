"""What an evaluation is run with, in four small groups: who answers (:class:`BackendOptions`), the report's
rows (:class:`ConditionOptions`: the crossed lists and one :class:`~attnprompt.strategies.spec.AskSpec`
for everything else), how the run goes (:class:`RunOptions`) and the judge (:class:`JudgeOptions`).
:meth:`EvalOptions.from_settings` builds them from :func:`~attnprompt.evaluation.runner.evaluate`'s
keywords.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..checks import check_count
from ..errors import InputError
from ..strategies.registry import STRATEGIES
from ..strategies.spec import AskSpec
from .conditions import Condition, conditions_for, map_conditions
from .executors import Executor, LocalExecutor


@dataclass(frozen=True)
class BackendOptions:
    """Who answers: ``vlm`` (hub id, local path, ``shapes``, an http(s) URL of an OpenAI-compatible server,
    or a built backend); a server's ``vlm_model``, ``api_key`` and ``timeout`` (seconds per request);
    how a local model loads — ``loading`` (a :class:`~attnprompt.models.LoadOptions`, or ``device`` and ``dtype``
    alone), the maps' models too — and its ``batch_size``
    (generations per forward); a server's ``concurrency`` (requests in flight, default 4) and ``native_side``
    (its model's input side in pixels: ViCrop's default crop window, which a server does not say)."""

    vlm: Any = None
    vlm_model: str | None = None
    api_key: str | None = None
    timeout: float = 60.0
    device: str | None = None
    dtype: Any = None
    loading: Any = None
    batch_size: int = 8
    concurrency: int | None = None
    native_side: int | None = None

    def __post_init__(self) -> None:
        from ..models import LoadOptions

        check_count("batch_size", self.batch_size)
        # one LoadOptions, whichever way it was given (an unknown setting or a clash fails here, before loading)
        object.__setattr__(self, "loading", LoadOptions.of(self.loading, device=self.device, dtype=self.dtype))

    def build(self) -> Any:
        """The backend (a local model batching ``batch_size`` answers per forward)."""
        from ..backends import get_backend

        return get_backend(self.vlm, vlm_model=self.vlm_model, api_key=self.api_key, timeout=self.timeout,
                           loading=self.loading, concurrency=self.concurrency,
                           native_side=self.native_side, batch_size=self.batch_size)


@dataclass(frozen=True)
class ConditionOptions:
    """The report's rows: ``strategies``, ``methods``, ``presets`` and ``forms`` (lists, or comma-separated
    strings), crossed as :func:`conditions_for` and :func:`map_conditions` say; everything else about how a
    question is asked — the map's model and parameters, the ensemble's sources, the baselines' segmenter,
    the answer budget (default each task's), the rendering and the crop's regions — is one ``spec``, of
    which each condition is a modified copy."""

    strategies: Any = ("plain", "api")
    methods: Any = None
    presets: Any = None
    forms: Any = None
    spec: AskSpec = field(default_factory=AskSpec)

    def answer_conditions(self, maps: bool = False) -> list[Condition]:
        """The answer tasks' rows; a setting that no chosen strategy takes is an error (``maps``: the run has
        map tasks too, which take the map's settings)."""
        found = conditions_for(as_list(self.strategies), as_list(self.methods) or None,
                               as_list(self.presets) or None, as_list(self.forms) or None)
        unused = self.spec.unused_by(list(dict.fromkeys(c.strategy_name for c in found)))
        if maps:
            unused = [n for n in unused if n not in ("model", "gray", "resample", "regions", *self.spec.map.params)]
        if "segmenter" in unused:
            drawing = [n for n in STRATEGIES.names() if STRATEGIES.get(n).needs.segmenter]
            raise InputError(f"a segmenter was given, but no chosen strategy draws from masks; add one of "
                             f"{', '.join(drawing)} to the strategies, or drop the segmenter")
        if unused:
            raise InputError(f"{', '.join(unused)} {'was' if len(unused) == 1 else 'were'} given, but no chosen "
                             f"strategy takes {'it' if len(unused) == 1 else 'them'} (strategies: "
                             f"{', '.join(as_list(self.strategies))}); drop {'it' if len(unused) == 1 else 'them'}, "
                             "or add a strategy that does")
        return found

    def map_conditions(self) -> list[Condition]:
        """The map tasks' rows."""
        return map_conditions(as_list(self.methods) or None, as_list(self.presets) or None)

    def check(self, answer: list[Condition], maps: list[Condition]) -> None:
        """Every condition's settings checked as its spec will be built — before any model loads."""
        from ..attribution.configs import METHODS

        for c in answer:
            self.spec.for_condition(c.strategy_name, c.method, c.preset, c.form)
        for c in maps:
            config = METHODS.config(c.method_name)
            config.from_preset(c.preset, **{k: v for k, v in self.spec.map.params.items()
                                            if k in config.parameter_names()})


@dataclass(frozen=True)
class RunOptions:
    """How the run goes: the first ``limit`` samples of each task; ``chunk_size`` samples per unit
    (default 4 × the batch size, or 4 × the concurrency for a server); ``retry_failed`` (run again the
    samples whose record is a failure); ``gallery`` (pictures of what the VLM was shown, for the first N
    samples of each task); ``progress`` bars; the ``report``; the ``executor`` (``local``, or ``ray`` on
    ``address`` with ``workers`` replicas); ``strict``: a row that cannot be read stops the run (without
    it, the row is recorded as that sample's failure and the run goes on), and the command exits non-zero
    when any sample failed."""

    limit: int | None = None
    chunk_size: int | None = None
    retry_failed: bool = False
    gallery: int = 200
    progress: bool = True
    report: bool = True
    executor: str = "local"
    address: str | None = None
    workers: int | None = None
    strict: bool = False

    def __post_init__(self) -> None:
        if self.limit is not None:
            check_count("limit", self.limit)
        if self.chunk_size is not None:
            check_count("chunk_size", self.chunk_size)
        check_count("gallery", self.gallery, minimum=0)
        if self.executor not in ("local", "ray"):
            raise InputError(f"executor is {self.executor!r}; valid: local, ray")
        if self.executor == "local" and (self.address is not None or self.workers is not None):
            given = [n for n, v in (("address", self.address), ("workers", self.workers)) if v is not None]
            raise InputError(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for the Ray executor; add "
                             "--executor ray (executor='ray' in Python)")
        if self.workers is not None:
            check_count("workers", self.workers)


@dataclass(frozen=True)
class JudgeOptions:
    """The judge of the tasks a judge scores (MM-Vet, LLaVA-Bench): ``url`` of an OpenAI-compatible
    endpoint (or a built :class:`~attnprompt.evaluation.judge.Judge`), its ``model`` (default the
    original's), the environment variable ``key_env`` holding its key, ``concurrency``."""

    url: Any = None
    model: str | None = None
    key_env: str = "OPENAI_API_KEY"
    concurrency: int = 4

    def build(self) -> Any:
        """The judge, or ``None`` without a URL."""
        from .judge import Judge

        if self.url is None or isinstance(self.url, Judge):
            return self.url
        return Judge(self.url, self.model, api_key_env=self.key_env, concurrency=self.concurrency)


#: The keyword names of :func:`evaluate` → (group, field); any other keyword is part of the spec.
_FLAT = {
    **{f.name: ("backend", f.name) for f in dataclasses.fields(BackendOptions)},
    **{f.name: ("conditions", f.name) for f in dataclasses.fields(ConditionOptions) if f.name != "spec"},
    **{f.name: ("run", f.name) for f in dataclasses.fields(RunOptions)},
    "judge": ("judge", "url"), "judge_model": ("judge", "model"), "judge_key_env": ("judge", "key_env"),
    "judge_concurrency": ("judge", "concurrency"),
}


@dataclass(frozen=True)
class EvalOptions:
    """Everything an evaluation is run with (see the module docstring).

    >>> EvalOptions.from_settings(vlm="shapes", strategies="plain,api", limit=4, kernel=1).conditions.spec.map.params
    {'kernel': 1}
    """

    backend: BackendOptions = field(default_factory=BackendOptions)
    conditions: ConditionOptions = field(default_factory=ConditionOptions)
    run: RunOptions = field(default_factory=RunOptions)
    judge: JudgeOptions = field(default_factory=JudgeOptions)

    @classmethod
    def from_settings(cls, spec: AskSpec | None = None, **settings: Any) -> EvalOptions:
        """Options from flat keywords: each group's field names (``judge``, ``judge_model``,
        ``judge_key_env``, ``judge_concurrency`` for the judge's); any other name is a setting of the spec
        (:meth:`~attnprompt.strategies.spec.AskSpec.from_mapping`: ``model``, ``segmenter``, ``kernel`` …),
        or give the ``spec`` built."""
        groups: dict[str, dict[str, Any]] = {"backend": {}, "conditions": {}, "run": {}, "judge": {}}
        rest: dict[str, Any] = {}
        for name, value in settings.items():
            found = _FLAT.get(name)
            if found is None:
                rest[name] = value
            else:
                groups[found[0]][found[1]] = value
        if spec is not None and rest:
            raise InputError(f"give the settings either in the spec or as keywords, not both ({', '.join(rest)})")
        if "strategy" in rest or "method" in rest or "preset" in rest or "form" in rest:
            raise InputError("an evaluation crosses lists: give strategies=, methods=, presets=, forms=")
        groups["conditions"]["spec"] = spec if spec is not None else AskSpec.from_mapping(rest)
        return cls(BackendOptions(**groups["backend"]), ConditionOptions(**groups["conditions"]),
                   RunOptions(**groups["run"]), JudgeOptions(**groups["judge"]))

    def runner_args(self) -> dict[str, Any]:
        """How each process builds its :class:`~attnprompt.evaluation.runner.Runner` (the spec and where the
        maps' models load)."""
        return dict(spec=self.conditions.spec, loading=self.backend.loading)

    def executor(self, answering: bool) -> Executor:
        """Where the units run: this process, or Ray actors (each building the backend itself).
        ``answering``: whether a VLM is needed (answer tasks, or a VLM given for a map)."""
        from .runner import Runner

        b, run = self.backend, self.run
        needed = answering or b.vlm is not None
        if run.executor == "ray":
            from .ray_executor import RayExecutor

            return RayExecutor(backend=b if needed else None, address=run.address, workers=run.workers,
                               runner_args=self.runner_args())
        backend = b.build() if needed else None
        return LocalExecutor(backend, Runner(backend, **self.runner_args()))

    def chunk(self, http: bool) -> int:
        """Samples per unit: 4 × what runs at once (the server's concurrency, or the local batch)."""
        if self.run.chunk_size:
            return int(self.run.chunk_size)
        return 4 * int(self.backend.concurrency or 4) if http else 4 * int(self.backend.batch_size)


def as_list(value: Any) -> list[Any]:
    """A comma-separated string, a sequence or one item, as a list.

    >>> as_list("plain, api"), as_list(None), as_list(["a"])
    (['plain', 'api'], [], ['a'])
    """
    from .tasks import Task

    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, (Task, AskSpec)):
        return [value]
    if isinstance(value, Sequence):
        return list(value)
    return list(value)
