"""One unit of evaluation work — a chunk of samples under one condition — and everything needed to run
it: the :class:`Runner` that builds each condition's strategy (or map attributor) with shared, map-caching
attributors; the chunk policy (:func:`run_chunk`: the whole chunk at once, each sample alone if that
raises); and the records a finished unit leaves in the run store. Every executor (this process, its
threads, Ray actors) and the lmms-eval plugin run their work through here.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from PIL import Image

from ..attribution.configs import METHODS
from ..errors import InputError
from ..files import config_hash_of
from ..regions import RegionConfig
from ..strategies.registry import STRATEGIES
from .conditions import Condition
from .store import Record
from .tasks import Task
from .tasks.base import EvalSample

#: Pictures kept per record for the report's gallery: the longest side, in pixels.
THUMBNAIL_SIDE = 256

T = TypeVar("T")
R = TypeVar("R")


class ScoringError(InputError):
    """A task's scorer failed on a reply: the task's bug or its data's, never the model's failure."""


@dataclass
class ConditionStats:
    """What one (task, condition) did in this run."""

    label: str
    config_hash: str
    answered: int = 0
    failed: int = 0
    reused: int = 0
    judged: int = 0
    judge_failed: int = 0  # no reply from the judge: unscored, asked again by the next run
    judge_unreadable: int = 0  # replies it could not read: scored by the original's fallback
    scores: list[dict[str, float]] = field(default_factory=list)


#: How a condition answers a chunk: samples → one output each (a strategy's results, a map task's annotations).
UnitRun = Callable[[list[EvalSample]], list[Any]]


@dataclass
class Plan:
    """One condition of one task, ready to run: its configuration (what its records' hash is made of),
    that hash, and how to run a chunk (``None`` where another process runs it: the Ray actors)."""

    condition: Condition
    config: dict[str, Any]
    stats: ConditionStats
    run: UnitRun | None = None

    @property
    def config_hash(self) -> str:
        return self.stats.config_hash


@dataclass
class Unit:
    """A chunk of ``samples`` (at positions ``indices`` of the task) to run under one condition."""

    task: Task
    condition: Condition
    config_hash: str
    samples: list[EvalSample]
    indices: list[int]
    run: UnitRun | None


class Runner:
    """Builds and shares the attributors (one map-caching attributor per configuration) and plans each
    (task, condition): its configuration and how to run a chunk of it."""

    def __init__(self, backend: Any, *, model: Any = None, sources: Sequence[str] | None = None, segmenter: Any = None,
                 params: Mapping[str, Any] | None = None, max_new_tokens: int | None = None, gray: float = 0.0,
                 resample: str = "bilinear", regions: RegionConfig | None = None, device: str | None = None,
                 dtype: Any = None) -> None:
        self.backend = backend
        self.model = model
        self.sources = sources
        self.segmenter_spec = segmenter
        self._segmenter: Any = None
        self.params = dict(params or {})
        self.max_new_tokens = max_new_tokens
        self.gray, self.resample, self.regions = gray, resample, regions
        self.device, self.dtype = device, dtype
        self.attributors: dict[tuple, Any] = {}

    def attributor(self, method: str, *, model: Any = None, preset: str | None = None, device: Any = None,
                   dtype: Any = None, **params: Any) -> Any:
        """A shared, map-caching attributor per configuration (``get_attributor``'s arguments)."""
        from ..attribution import get_attributor
        from ..attribution.cache import MapCache

        key = (method, model if isinstance(model, (str, type(None))) else id(model), preset, device, str(dtype),
               tuple(sorted((k, repr(v)) for k, v in params.items())))
        if key not in self.attributors:
            self.attributors[key] = MapCache(get_attributor(method, model=model, preset=preset, device=device,
                                                            dtype=dtype, **params))
        return self.attributors[key]

    def segmenter(self) -> Any:
        """The run's segmenter, built on first use and shared (its masks cache serves every baseline)."""
        if self._segmenter is None:
            from ..strategies.build import pick_segmenter

            self._segmenter = pick_segmenter(self.segmenter_spec, self.backend, self.device, self.dtype)
        return self._segmenter

    def strategy(self, condition: Condition, max_new_tokens: int) -> Any:
        """The condition's strategy, built with the run's settings that it takes
        (:meth:`~attnprompt.strategies.base.Needs.select`)."""
        from ..strategies.build import build_strategy

        settings = dict(method=condition.method, model=self.model, preset=condition.preset, form=condition.form,
                        regions=self.regions, gray=self.gray, resample=self.resample, sources=self.sources,
                        device=self.device, dtype=self.dtype, make_attributor=self.attributor, **self.params)
        needs = STRATEGIES.get(condition.strategy).needs
        if needs.segmenter:
            settings["segmenter"] = self.segmenter()
        chosen = needs.select(settings)
        return build_strategy(condition.strategy, self.backend, max_new_tokens=max_new_tokens, **chosen)

    def map_attributor(self, condition: Condition) -> Any:
        """A map condition's attributor, with the run's parameters its method has."""
        from ..strategies.build import map_model

        model = self.model
        if model is None and self.backend is not None:
            model = map_model(condition.method, None, self.backend)
        own = {k: v for k, v in self.params.items() if k in METHODS.config(condition.method).parameter_names()}
        return self.attributor(condition.method, model=model, preset=condition.preset, device=self.device,
                               dtype=self.dtype, **own)

    def plan(self, task: Task, condition: Condition) -> Plan:
        """One condition of a task: its configuration and how to run a chunk under it. Every executor's
        workers plan the same way, so their hashes are the driver's."""
        if task.kind == "answer":
            strategy = self.strategy(condition, self.max_new_tokens or task.max_new_tokens)
            config = {"task": task.describe(), "strategy": strategy.describe(), "backend": self.backend.describe()}
            run: UnitRun = strategy.run
        else:
            attributor = self.map_attributor(condition)
            regions = self.regions or RegionConfig.from_preset()
            config = {"task": task.describe(), "map": attributor.describe(), "gray": self.gray,
                      "resample": self.resample, "regions": regions.to_dict()}
            run = _map_unit(attributor, self.gray, self.resample, regions)
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
        out, start = [], 0
        for s in samples:
            out.append(tuple(flat[start : start + len(s.queries)]))
            start += len(s.queries)
        return out

    return run


# -- the chunk policy --------------------------------------------------------------------------------------


def run_chunk(work: Callable[[list[T]], list[R]], items: list[T], *,
              fatal: tuple[type[BaseException], ...] = ()) -> tuple[list[R | Exception], Exception | None]:
    """``work`` on the whole chunk; if that raises, on each item alone, so one bad item fails alone.
    Returns one output per item (or the exception its work raised) and, when every item raised, the
    first error (likely a setting's or the model's fault, not the data's: the caller decides).
    Exceptions of the ``fatal`` types are never caught.

    >>> def half(xs):
    ...     if 0 in xs:
    ...         raise ZeroDivisionError("division by zero")
    ...     return [1 / x for x in xs]
    >>> run_chunk(half, [2, 4])
    ([0.5, 0.25], None)
    >>> outs, error = run_chunk(half, [2, 0]); outs[0], type(outs[1]).__name__, error
    (0.5, 'ZeroDivisionError', None)
    """
    try:
        return list(work(items)), None
    except fatal:
        raise
    except Exception as e:  # noqa: BLE001  # retried one by one below
        first = e
    outs: list[R | Exception] = []
    for item in items:
        try:
            outs.extend(work([item]))
        except fatal:
            raise
        except Exception as e:  # noqa: BLE001  # this item's failure, never its answer
            outs.append(e)
    return outs, first if all(isinstance(o, Exception) for o in outs) else None


def run_unit(unit: Unit, gallery: int) -> tuple[list[Record], list, BaseException | None]:
    """Run one chunk under one condition (:func:`run_chunk`: a sample whose answer or record cannot be
    made fails alone, recorded with its error); returns the records, the gallery's pictures, and the
    error when every sample failed. A scorer that fails is raised: the task's bug, not the model's."""
    if unit.run is None:
        raise InputError(f"{unit.task.name} · {unit.condition.label}: this unit is run by another process")
    run = unit.run

    def work(items: list[tuple[EvalSample, int]]) -> list[tuple[Record, list]]:
        start = time.perf_counter()
        outputs = run([s for s, _ in items])
        each = (time.perf_counter() - start) / max(1, len(items))
        return [_record(unit, sample, index, output, each, gallery) for (sample, index), output in zip(items, outputs)]

    items = list(zip(unit.samples, unit.indices))
    outs, error = run_chunk(work, items, fatal=(ScoringError,))
    records, images = [], []
    for (sample, _), out in zip(items, outs):
        if isinstance(out, Exception):
            records.append(_failed_record(unit, sample, out))
        else:
            records.append(out[0])
            images += out[1]
    return records, images, error


def _thumbnail(image: Image.Image) -> bytes:
    # resized from the image itself (a thumbnail() of a converted copy would first copy it whole: 100 MB at 8K)
    w, h = image.size
    scale = min(1.0, THUMBNAIL_SIDE / max(w, h))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = (image if size == (w, h) else image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)).convert("RGB")
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _record(unit: Unit, sample: EvalSample, index: int, output: Any, seconds: float,
            gallery: int) -> tuple[Record, list[tuple[str, str, str, str, bytes]]]:
    """One sample's record and, for the first ``gallery`` samples, the pictures of what was shown."""
    if unit.task.kind == "answer":
        record = _answer_record(unit, sample, output, seconds)
        shown = output.steps[-1].images if output.steps else ()
    else:
        record = _map_record(unit, sample, output, seconds)
        shown = tuple(a.image for a in output)
    images = []
    if index < gallery:
        images += [(unit.task.name, sample.id, unit.config_hash, f"shown{i}", _thumbnail(img))
                   for i, img in enumerate(shown)]
        images += [(unit.task.name, sample.id, "", f"original{i}", _thumbnail(img))
                   for i, img in enumerate(sample.images)]
    return record, images


def _answer_record(unit: Unit, sample: EvalSample, result: Any, seconds: float) -> Record:
    steps = []
    for step in result.steps:
        d = step.to_dict()
        d["annotations"] = [{"box": list(a.box) if a.box is not None else None} for a in step.annotations]
        steps.append(d)
    body = {"sample": sample.describe(), "prompts": [s.prompt for s in result.steps], "steps": steps}
    answer = result.answer
    if not answer.ok:
        return Record(unit.task.name, sample.id, unit.config_hash, unit.condition.label, False, "",
                      answer.error or "no answer", answer.failure, None, body, seconds)
    text = answer.text.strip()  # every backend's reply, stored and scored stripped (lmms-eval's harness does)
    scores = _score(unit.task, text, sample, repr(text))
    return Record(unit.task.name, sample.id, unit.config_hash, unit.condition.label, True, text, None, None,
                  scores, body, seconds)


def _score(task: Task, output: Any, sample: EvalSample, shown: str) -> dict[str, float]:
    try:
        return {k: float(v) for k, v in task.score(output, sample).items()}
    except Exception as e:  # a scorer that fails is the task's bug or its data's: say which sample
        raise ScoringError(f"task {task.name!r} could not score sample {sample.id!r} ({shown}): "
                           f"{type(e).__name__}: {e}") from e


def _map_record(unit: Unit, sample: EvalSample, annotations: Sequence[Any], seconds: float) -> Record:
    from .pointing import peak

    peaks = [list(peak(a.heatmap)) for a in annotations]
    body = {"sample": sample.describe(), "prompts": list(sample.queries), "peaks": peaks,
            "boxes": [list(a.box) if a.box is not None else None for a in annotations]}
    scores = _score(unit.task, annotations, sample, "its maps")
    prediction = "; ".join(f"peak at {p[0]},{p[1]}" for p in peaks)
    return Record(unit.task.name, sample.id, unit.config_hash, unit.condition.label, True, prediction, None, None,
                  scores, body, seconds)


def _failed_record(unit: Unit, sample: EvalSample, error: BaseException) -> Record:
    text = f"{type(error).__name__}: {error}"
    return Record(unit.task.name, sample.id, unit.config_hash, unit.condition.label, False, "", text, "error", None,
                  {"sample": sample.describe()}, 0.0)
