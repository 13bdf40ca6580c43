"""The :class:`Runner`: from one :class:`~attnprompt.strategies.spec.AskSpec` and the answering backend to
each (task, condition)'s plan — its configuration (what its records' hash is made of) and how to run a
chunk of it — with shared, map-caching attributors and one shared segmenter. Every executor's workers
(this process, Ray actors) and the lmms-eval plugin plan through here, so their hashes are the same.
"""

from __future__ import annotations

from typing import Any

from ..attribution.configs import METHODS
from ..files import config_hash_of
from ..regions import RegionConfig
from ..strategies.registry import STRATEGIES
from ..strategies.spec import AskSpec
from .conditions import Condition
from .tasks import Task
from .tasks.base import EvalSample
from .units import ConditionStats, Plan, UnitRun


class Runner:
    """Builds and shares the attributors (one map-caching attributor per configuration) and plans each
    (task, condition): the condition's spec is a modified copy of ``spec``
    (:meth:`~attnprompt.strategies.spec.AskSpec.for_condition`); ``loading``: how the maps' models and the
    segmenter load (a :class:`~attnprompt.models.LoadOptions`).

    >>> from attnprompt.backends import get_backend
    >>> from attnprompt.evaluation.tasks import get_task
    >>> runner = Runner(get_backend("shapes"), AskSpec.from_mapping({"kernel": 1}))
    >>> plan = runner.plan(get_task("shapes-vqa"), Condition("answer", "api", "api-clip"))
    >>> plan.config["strategy"]["map"]["kernel"], plan.config["strategy"]["max_new_tokens"]  # the task's budget
    (1, 3)
    """

    def __init__(self, backend: Any, spec: AskSpec | None = None, *, loading: Any = None) -> None:
        from ..models import LoadOptions

        self.backend = backend
        self.spec = spec or AskSpec()
        self.loading = LoadOptions.of(loading)
        self.attributors: dict[tuple, Any] = {}
        self._segmenter: Any = None

    def attributor(self, method: str, *, model: Any = None, preset: str | None = None, loading: Any = None,
                   **params: Any) -> Any:
        """A shared, map-caching attributor per configuration (``get_attributor``'s arguments)."""
        from ..attribution import get_attributor
        from ..attribution.cache import MapCache

        key = (method, model if isinstance(model, (str, type(None))) else id(model), preset, repr(loading),
               tuple(sorted((k, repr(v)) for k, v in params.items())))
        if key not in self.attributors:
            self.attributors[key] = MapCache(get_attributor(method, model=model, preset=preset, loading=loading,
                                                            **params))
        return self.attributors[key]

    def segmenter(self) -> Any:
        """The run's segmenter, built on first use and shared (its masks cache serves every baseline)."""
        if self._segmenter is None:
            from ..strategies.build import pick_segmenter

            self._segmenter = pick_segmenter(self.spec.segmenter, self.backend, self.loading)
        return self._segmenter

    def condition_spec(self, condition: Condition, max_new_tokens: int | None = None) -> AskSpec:
        """The spec of an answer condition: the run's spec with the condition's strategy, method, preset
        and form, the answer budget (the run's, else ``max_new_tokens``: the task's) and the shared segmenter."""
        spec = self.spec.for_condition(condition.strategy_name, condition.method, condition.preset, condition.form)
        spec = spec.replace(max_new_tokens=spec.max_new_tokens or max_new_tokens)
        if STRATEGIES.get(condition.strategy_name).needs.segmenter:
            spec = spec.replace(segmenter=self.segmenter())
        return spec

    def strategy(self, spec: AskSpec) -> Any:
        """The strategy ``spec`` says, with this runner's shared attributors."""
        from ..strategies.build import build_strategy

        return build_strategy(spec, self.backend, make_attributor=self.attributor, loading=self.loading)

    def map_attributor(self, condition: Condition) -> Any:
        """A map condition's attributor, with the run's parameters its method has."""
        from ..strategies.build import map_model

        model, method = self.spec.map.model, condition.method_name
        if model is None and self.backend is not None:
            model = map_model(method, None, self.backend)
        names = METHODS.config(method).parameter_names()
        own = {k: v for k, v in self.spec.map.params.items() if k in names}
        return self.attributor(method, model=model, preset=condition.preset, loading=self.loading, **own)

    def plan(self, task: Task, condition: Condition) -> Plan:
        """One condition of a task: its configuration and how to run a chunk under it."""
        if task.kind == "answer":
            strategy = self.strategy(self.condition_spec(condition, task.max_new_tokens))
            config = {"task": task.describe(), "strategy": strategy.describe(), "backend": self.backend.describe()}
            run: UnitRun = strategy.run
        else:
            attributor = self.map_attributor(condition)
            regions = self.spec.visual.regions or RegionConfig.from_preset()
            if isinstance(regions, str):
                regions = RegionConfig.from_preset(regions)
            gray, resample = self.spec.map.gray, self.spec.map.resample
            config = {"task": task.describe(), "map": attributor.describe(), "gray": gray, "resample": resample,
                      "regions": regions.to_dict()}
            run = _map_unit(attributor, gray, resample, regions)
        return Plan(condition, config, ConditionStats(condition.label, config_hash_of(config)), run)

    def cache_info(self) -> dict[str, dict[str, int]]:
        """Each shared attributor's map-cache hits and misses."""
        return {f"{a.method} {config_hash_of(a.describe())}": a.info() for a in self.attributors.values()}


def _map_unit(attributor: Any, gray: float, resample: str, regions: RegionConfig) -> UnitRun:
    from ..annotation import annotate_images

    def run(samples: list[EvalSample]) -> list[Any]:
        pairs = [(s.images[0], q) for s in samples for q in s.queries]
        flat = annotate_images(attributor, [p[0] for p in pairs], [p[1] for p in pairs],
                               suffixes=[s.suffix for s in samples for _ in s.queries], gray=gray,
                               resample=resample, regions=regions)
        out: list[Any] = []
        start = 0
        for s in samples:
            out.append(tuple(flat[start : start + len(s.queries)]))
            start += len(s.queries)
        return out

    return run


__all__ = ["Runner"]
