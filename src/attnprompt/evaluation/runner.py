"""The evaluation runner: tasks × conditions (a strategy with its map, or a map method alone) →
records in a resumable store → the report.

Work goes chunk by chunk through each task: for each chunk of samples, every condition answers the
samples it has no record for, in one batched strategy call (so local backends batch generation
across samples, and an HTTP backend keeps its ``concurrency`` requests in flight). Each finished
chunk is one transaction in the store; a killed run loses at most the chunks in flight, and a rerun
of the same command skips every record it finds. Maps are computed once per (image, query) for all
conditions that share an attributor configuration (:class:`~attnprompt.attribution.cache.MapCache`).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from PIL import Image

from ..config import METHOD_CONFIGS, STRATEGIES, RegionConfig
from ..errors import InputError
from ..files import DirectoryLock, check_writable, config_hash_of
from .store import Record, RunStore
from .tasks import Task, get_task
from .tasks.base import EvalSample, score_columns

#: Pictures kept per record for the report's gallery: the longest side, in pixels.
THUMBNAIL_SIDE = 256


class ScoringError(InputError):
    """A task's scorer failed on a reply: the task's bug or its data's, never the model's failure."""


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


def conditions_for(strategies: Sequence[str], methods: Sequence[str] | None = None,
                   presets: Sequence[str] | None = None, forms: Sequence[str] | None = None) -> list[Condition]:
    """Every strategy; each one that shows a map crossed with the given methods (default its own),
    presets and visual-prompt forms.

    >>> [c.label for c in conditions_for(["plain", "api"], methods=["api-clip", "api-vlm"])]
    ['plain', 'api (api-clip)', 'api (api-vlm)']
    """
    out = []
    for name in strategies:
        cls = STRATEGIES.get(name)
        if not cls.needs_map or getattr(cls, "multi_source", False):
            out.append(Condition("answer", name, preset=None))
            continue
        for method in methods or [cls.default_method]:
            for preset in presets or [None]:
                for form in forms or [None]:
                    out.append(Condition("answer", name, method, preset, form))
    return _unique(out)


def map_conditions(methods: Sequence[str] | None = None, presets: Sequence[str] | None = None) -> list[Condition]:
    """Map methods (default api-clip) crossed with presets (default every preset of each method; a
    preset only for the methods that have it).

    >>> [c.label for c in map_conditions()]
    ['api-clip (reference)', 'api-clip (paper)', 'api-clip (grounding)']
    """
    out = []
    for method in methods or ["api-clip"]:
        if method not in METHOD_CONFIGS:
            raise InputError(f"unknown method {method!r}; valid methods: {', '.join(METHOD_CONFIGS)}")
        own = METHOD_CONFIGS[method].PRESETS
        out += [Condition("map", None, method, p) for p in (presets or own) if p in own]
    for p in presets or ():
        if not any(p in METHOD_CONFIGS[m].PRESETS for m in methods or ["api-clip"]):
            valid = {m: list(METHOD_CONFIGS[m].PRESETS) for m in methods or ["api-clip"]}
            raise InputError(f"no chosen method has a preset {p!r}; presets: {valid}")
    return _unique(out)


def _unique(items: list[Condition]) -> list[Condition]:
    seen: dict[str, Condition] = {}
    for c in items:
        seen.setdefault(c.label, c)
    return list(seen.values())


@dataclass
class ConditionStats:
    """What one (task, condition) did in this run."""

    label: str
    config_hash: str
    answered: int = 0
    failed: int = 0
    reused: int = 0
    judged: int = 0
    judge_failed: int = 0
    scores: list[dict[str, float]] = field(default_factory=list)


@dataclass
class EvalRun:
    """What :func:`evaluate` did: per task and condition, the records answered now, failed, reused
    from earlier runs; the map cache's hits; and the report files written."""

    directory: Path
    stats: dict[str, dict[str, ConditionStats]]
    cache: dict[str, dict[str, int]]
    reports: list[Path]
    seconds: float

    @property
    def failed(self) -> int:
        return sum(s.failed for task in self.stats.values() for s in task.values())

    def summary(self) -> str:
        lines = []
        for task, conditions in self.stats.items():
            for s in conditions.values():
                judged = f", {s.judged} judged ({s.judge_failed} judge failures)" if s.judged else ""
                lines.append(f"{task} · {s.label}: {s.answered} answered, {s.reused} already recorded, "
                             f"{s.failed} failed{judged}")
        hits = sum(c["hits"] for c in self.cache.values())
        misses = sum(c["misses"] for c in self.cache.values())
        lines.append(f"maps: {misses} computed, {hits} reused from the cache; {self.seconds:.0f} s")
        if self.failed:
            lines.append("some samples failed (see the report); rerun with --retry-failed to try them again")
        lines += [f"wrote {p}" for p in self.reports]
        return "\n".join(lines)


class Runner:
    """Builds and shares the attributors, builds each (task, condition)'s strategy, and runs the
    chunks; :func:`evaluate` is the way in."""

    def __init__(self, backend: Any, *, model: Any = None, sources: Sequence[str] | None = None,
                 params: Mapping[str, Any] | None = None, max_new_tokens: int | None = None, gray: float = 0.0,
                 resample: str = "bilinear", regions: RegionConfig | None = None, device: str | None = None,
                 dtype: Any = None) -> None:
        self.backend = backend
        self.model = model
        self.sources = sources
        self.params = dict(params or {})
        self.max_new_tokens = max_new_tokens
        self.gray, self.resample, self.regions = gray, resample, regions
        self.device, self.dtype = device, dtype
        self.attributors: dict[tuple, Any] = {}

    def attributor(self, method: str, *, model: Any = None, preset: str | None = None, device: Any = None,
                   dtype: Any = None, **params: Any) -> Any:
        """A shared, map-caching attributor per configuration (``get_attributor``'s arguments)."""
        from ..api import get_attributor
        from ..attribution.cache import MapCache

        key = (method, model if isinstance(model, (str, type(None))) else id(model), preset, device, str(dtype),
               tuple(sorted((k, repr(v)) for k, v in params.items())))
        if key not in self.attributors:
            self.attributors[key] = MapCache(get_attributor(method, model=model, preset=preset, device=device,
                                                            dtype=dtype, **params))
        return self.attributors[key]

    def strategy(self, condition: Condition, task: Task) -> Any:
        from ..api import build_strategy

        cls = STRATEGIES.get(condition.strategy)
        own = {} if not cls.needs_map else dict(self.params)
        map_args: dict[str, Any] = {}
        if cls.needs_map:
            map_args = dict(method=condition.method, model=self.model, preset=condition.preset, form=condition.form,
                            regions=self.regions, gray=self.gray, resample=self.resample)
            if getattr(cls, "multi_source", False):
                map_args.update(method=None, sources=self.sources)
        budget = self.max_new_tokens or task.max_new_tokens
        return build_strategy(condition.strategy, self.backend, max_new_tokens=budget, device=self.device,
                              dtype=self.dtype, make_attributor=self.attributor, **map_args, **own)

    def map_attributor(self, condition: Condition) -> Any:
        from ..api import map_model

        model = self.model
        if model is None and self.backend is not None:
            model = map_model(condition.method, None, self.backend)
        own = {k: v for k, v in self.params.items() if k in METHOD_CONFIGS[condition.method].parameter_names()}
        return self.attributor(condition.method, model=model, preset=condition.preset, device=self.device,
                               dtype=self.dtype, **own)

    def cache_info(self) -> dict[str, dict[str, int]]:
        return {f"{a.method} {config_hash_of(a.describe())}": a.info() for a in self.attributors.values()}


# -- one unit of work: a chunk of samples under one condition ------------------------------------------


@dataclass
class Unit:
    task: Task
    condition: Condition
    config_hash: str
    samples: list[EvalSample]
    indices: list[int]
    run: Callable[[list[EvalSample]], list[tuple[Any, Mapping[str, Any]]]]


def _answer_unit(strategy: Any, task: Task) -> Callable[[list[EvalSample]], list[tuple[Any, Mapping[str, Any]]]]:
    def run(samples: list[EvalSample]) -> list[tuple[Any, Mapping[str, Any]]]:
        results = strategy.run([s.sample() for s in samples])
        return [(r, {}) for r in results]

    return run


def _map_unit(attributor: Any, gray: float, resample: str, regions: RegionConfig | None) -> Callable:
    from ..api import annotate_images

    chosen = regions or RegionConfig.from_preset()

    def run(samples: list[EvalSample]) -> list[tuple[Any, Mapping[str, Any]]]:
        pairs = [(s.images[0], q) for s in samples for q in s.queries]
        flat = annotate_images(attributor, [p[0] for p in pairs], [p[1] for p in pairs],
                               suffixes=[s.suffix for s in samples for _ in s.queries], gray=gray,
                               resample=resample, regions=chosen)
        out, start = [], 0
        for s in samples:
            out.append((tuple(flat[start : start + len(s.queries)]), {}))
            start += len(s.queries)
        return out

    return run


def _thumbnail(image: Image.Image) -> bytes:
    small = image.convert("RGB")
    small.thumbnail((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _records(unit: Unit, outputs: list[tuple[Any, Mapping[str, Any]]], seconds: float,
             gallery: int) -> tuple[list[Record], list[tuple[str, str, str, str, bytes]]]:
    records, images = [], []
    each = seconds / max(1, len(unit.samples))
    for sample, index, (output, _) in zip(unit.samples, unit.indices, outputs):
        keep = index < gallery
        if unit.task.kind == "answer":
            record = _answer_record(unit, sample, output, each)
            shown = output.steps[-1].images if output.steps else ()
        else:
            record = _map_record(unit, sample, output, each)
            shown = tuple(a.image for a in output)
        records.append(record)
        if keep:
            images += [(unit.task.name, sample.id, unit.config_hash, f"shown{i}", _thumbnail(img))
                       for i, img in enumerate(shown)]
            images += [(unit.task.name, sample.id, "", f"original{i}", _thumbnail(img))
                       for i, img in enumerate(sample.images)]
    return records, images


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
    scores = _score(unit.task, answer.text, sample, repr(answer.text))
    return Record(unit.task.name, sample.id, unit.config_hash, unit.condition.label, True, answer.text, None, None,
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


def _failed_records(unit: Unit, samples: list[EvalSample], error: BaseException) -> list[Record]:
    text = f"{type(error).__name__}: {error}"
    return [Record(unit.task.name, s.id, unit.config_hash, unit.condition.label, False, "", text, "error", None,
                   {"sample": s.describe()}, 0.0) for s in samples]


def run_unit(unit: Unit, gallery: int) -> tuple[list[Record], list, BaseException | None]:
    """Run one chunk under one condition. If the batch raises, each sample is tried alone, so one bad
    sample fails alone; the exception is returned when every sample raised (likely not the data's
    fault: the caller decides)."""
    start = time.perf_counter()
    try:
        outputs = unit.run(unit.samples)
        records, images = _records(unit, outputs, time.perf_counter() - start, gallery)
        return records, images, None
    except ScoringError:
        raise
    except Exception as e:  # noqa: BLE001  # retried one by one below
        first: BaseException = e
    records, images, errors = [], [], 0
    for sample, index in zip(unit.samples, unit.indices):
        alone = Unit(unit.task, unit.condition, unit.config_hash, [sample], [index], unit.run)
        start = time.perf_counter()
        try:
            r, i = _records(alone, unit.run([sample]), time.perf_counter() - start, gallery)
        except ScoringError:
            raise
        except Exception as e:  # noqa: BLE001  # recorded as this sample's failure, never scored
            r, i = _failed_records(alone, [sample], e), []
            errors += 1
        records += r
        images += i
    return records, images, first if errors == len(unit.samples) else None


# -- the way in -----------------------------------------------------------------------------------------


def evaluate(
    tasks: str | Task | Sequence[str | Task],
    *,
    out: str | Path,
    vlm: Any = None,
    strategies: str | Sequence[str] = ("plain", "api"),
    methods: str | Sequence[str] | None = None,
    presets: str | Sequence[str] | None = None,
    forms: str | Sequence[str] | None = None,
    model: Any = None,
    sources: Sequence[str] | None = None,
    limit: int | None = None,
    batch_size: int = 8,
    concurrency: int | None = None,
    chunk_size: int | None = None,
    retry_failed: bool = False,
    max_new_tokens: int | None = None,
    gray: float = 0.0,
    resample: str = "bilinear",
    regions: RegionConfig | str | None = None,
    gallery: int = 200,
    progress: bool = True,
    report: bool = True,
    device: str | None = None,
    dtype: Any = None,
    vlm_model: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    data: Mapping[str, str] | str | None = None,
    judge: Any = None,
    judge_model: str | None = None,
    judge_key_env: str = "OPENAI_API_KEY",
    judge_concurrency: int = 4,
    executor: str = "local",
    address: str | None = None,
    workers: int | None = None,
    **params: Any,
) -> EvalRun:
    """Run ``tasks`` with every strategy (answer tasks) or map method and preset (map tasks), store
    one record per sample and condition under ``out``, and write the report there.

    ``vlm`` answers (hub id, local path, ``shapes``, an http(s) URL of an OpenAI-compatible server,
    or a built backend); ``strategies``, ``methods``, ``presets`` and ``forms`` are lists (or
    comma-separated strings) crossed as :func:`conditions_for` and :func:`map_conditions` say;
    ``params`` are map parameters (``kernel=1``). ``limit``: the first N samples of each task.
    ``batch_size``: generations per forward on a local VLM; ``concurrency``: requests in flight on a
    server. ``retry_failed``: run again the samples whose record is a failure. ``gallery``: keep
    pictures of what the VLM was shown for the first N samples of each task, for the report.
    ``data``: where benchmarks' data is, ``{task: path or hub id}`` (or one location for a single
    task). ``judge``: an OpenAI-compatible URL (or a built :class:`~attnprompt.evaluation.judge.Judge`)
    for the tasks a judge scores (MM-Vet, LLaVA-Bench), ``judge_model`` its model (default the
    original's), the key read from the environment variable ``judge_key_env``; without a judge their
    answers are recorded and the report says they await one. ``executor="ray"``: the chunks run on a
    Ray cluster (``address``: ``auto``, ``ray://…``, default ``$RAY_ADDRESS`` or a local Ray), on
    ``workers`` model replicas (default one per GPU, else one per CPU), each loading the VLM itself;
    records, resume and the report are the same (:mod:`attnprompt.integrations.ray_executor`).

    >>> import tempfile
    >>> run = evaluate("shapes-vqa", vlm="shapes", strategies="plain", limit=4, out=tempfile.mkdtemp(),
    ...                progress=False)
    >>> run.stats["shapes-vqa"]["plain"].answered, [p.name for p in run.reports]
    (4, ['report.md', 'report.json', 'report.html', 'samples.jsonl', 'deltas.svg'])
    """
    started = time.perf_counter()
    task_objects = _resolve_tasks(_as_list(tasks), data)
    names = [t.name for t in task_objects]
    if len(set(names)) != len(names):
        raise InputError(f"a task is listed twice: {', '.join(names)}")
    if not task_objects:
        raise InputError("give at least one task")
    if limit is not None and (int(limit) != limit or limit < 1):
        raise InputError(f"limit is {limit!r}; give a whole number of samples, at least 1")
    if int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size is {batch_size!r}; give a whole number, at least 1")
    if int(gallery) != gallery or gallery < 0:
        raise InputError(f"gallery is {gallery!r}; give a whole number of samples, 0 or more")
    strategy_names = _as_list(strategies)
    method_names, preset_names, form_names = _as_list(methods) or None, _as_list(presets) or None, \
        _as_list(forms) or None
    answer_conditions = conditions_for(strategy_names, method_names, preset_names, form_names) \
        if any(t.kind == "answer" for t in task_objects) else []
    map_conds = map_conditions(method_names, preset_names) if any(t.kind == "map" for t in task_objects) else []
    if isinstance(regions, str):
        regions = RegionConfig.from_preset(regions)
    directory = Path(out)
    check_writable(directory / "report.md", "--out")
    for task in task_objects:  # data that cannot be read is an error before any model loads
        list(islice(iter(task.rows(1)), 1))

    if executor not in ("local", "ray"):
        raise InputError(f"executor is {executor!r}; valid: local, ray")
    if executor == "local" and (address is not None or workers is not None):
        given = [n for n, v in (("address", address), ("workers", workers)) if v is not None]
        raise InputError(f"{' and '.join(given)} {'is' if len(given) == 1 else 'are'} for the Ray executor; add "
                         "--executor ray (executor='ray' in Python)")
    backend_args = dict(vlm_model=vlm_model, api_key=api_key, timeout=timeout, device=device, dtype=dtype,
                        concurrency=concurrency)
    runner_args = dict(model=model, sources=sources, params=params, max_new_tokens=max_new_tokens, gray=gray,
                       resample=resample, regions=regions, device=device, dtype=dtype)
    engine = backend = runner = None
    if executor == "ray":
        from ..integrations.ray_executor import RayExecutor

        engine = RayExecutor(vlm=vlm if answer_conditions or vlm is not None else None, backend_args=backend_args,
                             runner_args=runner_args, batch_size=int(batch_size), address=address, workers=workers)
        http = engine.http
    else:
        if answer_conditions or vlm is not None:
            from ..backends import get_backend

            backend = get_backend(vlm, **backend_args)
            if hasattr(backend, "batch_size") and backend.local_model is not None:
                backend.batch_size = int(batch_size)
        http = backend is not None and backend.local_model is None
        runner = Runner(backend, **runner_args)
    in_flight = engine.in_flight if engine is not None else (2 if http else 1)
    concurrent = int(concurrency or 4) if http else 1
    chunk = chunk_size or (4 * concurrent if http else 4 * int(batch_size))
    judge_obj = _judge(judge, judge_model, judge_key_env, judge_concurrency)

    stats: dict[str, dict[str, ConditionStats]] = {}
    try:
        with DirectoryLock(_made(directory)), RunStore(directory) as store:
            plan: dict[str, Any] = {"tasks": [], "backend": engine.backend_description if engine is not None
                                    else None if backend is None else backend.describe()}
            for task in task_objects:
                conditions = answer_conditions if task.kind == "answer" else map_conds
                units = engine.prepare(task, conditions, store) if engine is not None else \
                    _prepare(task, conditions, runner, store, backend)
                stats[task.name] = {label: s for label, (_, s, _) in units.items()}
                ids = _run_task(task, units, store, limit=limit, chunk=chunk, workers=in_flight,
                                retry_failed=retry_failed, gallery=gallery, progress=progress,
                                submit=engine.submit if engine is not None else None)
                judged = None
                if task.judge is not None and judge_obj is not None:
                    judged = {"hash": judge_obj.config_hash_of(task.judge), "describe": judge_obj.describe(task.judge)}
                    _judge_task(task, units, store, judge_obj, judged["hash"], ids, retry_failed, progress)
                plan["tasks"].append({"name": task.name, "spec": task.spec, "describe": task.describe(),
                                      "data": task.data, "judge": judged, "samples": ids,
                                      "conditions": [{"label": label, "config_hash": s.config_hash}
                                                     for label, (_, s, _) in units.items()]})
            plan["settings"] = {"limit": limit, "batch_size": batch_size, "concurrency": concurrency,
                                "gallery": gallery, "executor": executor}
            if engine is not None:
                plan["settings"]["workers"] = f"{engine.workers} ({engine.device})"
            store.set_meta("plan", plan)
            written: list[Path] = []
            if report:
                from .report import write_report

                written = write_report(directory, tasks=task_objects, store=store)
        cache = engine.cache_info() if engine is not None else runner.cache_info()
    finally:
        if engine is not None:
            engine.close()
    return EvalRun(directory, stats, cache, written, time.perf_counter() - started)


def _resolve_tasks(names: list[Any], data: Mapping[str, str] | str | None) -> list[Task]:
    """Tasks by name, each with its data location when ``data`` names one."""
    from .tasks import TASKS

    if isinstance(data, str):
        takes = [t for t in names if isinstance(t, str) and t in TASKS and not isinstance(TASKS.get(t), Task)]
        if len(takes) != 1:
            raise InputError("one data location for several benchmarks is ambiguous; give task=PATH for each "
                             f"(tasks that read data here: {', '.join(takes) or 'none'})")
        data = {takes[0]: data}
    data = dict(data or {})
    unknown = [k for k in data if k not in [t for t in names if isinstance(t, str)]]
    if unknown:
        raise InputError(f"data given for {', '.join(unknown)}, which {'is' if len(unknown) == 1 else 'are'} not "
                         "among the tasks")
    return [get_task(t, data=data.get(t)) if isinstance(t, str) else get_task(t) for t in names]


def _judge(judge: Any, model: str | None, key_env: str, concurrency: int) -> Any:
    from .judge import Judge

    if judge is None or isinstance(judge, Judge):
        return judge
    return Judge(judge, model, api_key_env=key_env, concurrency=concurrency)


def _judge_task(task: Task, units: Mapping[str, tuple[Condition, ConditionStats, Callable]], store: RunStore,
                judge: Any, judge_hash: str, ids: list[str], retry_failed: bool, progress: bool) -> None:
    """Judge every answered record of the run's samples that this judge has not judged (and, with
    ``retry_failed``, those it failed on); each chunk of verdicts is one transaction."""
    from tqdm.auto import tqdm

    position = {sid: i for i, sid in enumerate(ids)}
    for label, (_, stat, _) in units.items():
        records = store.records(task.name, stat.config_hash)
        verdicts = store.judgements(task.name, stat.config_hash, judge_hash)
        todo = [r for sid, r in records.items() if sid in position and r.ok and
                (sid not in verdicts or (retry_failed and not verdicts[sid]["ok"]))]
        todo.sort(key=lambda r: position[r.sample_id])
        bar = tqdm(total=len(todo), desc=f"{task.name} judge · {label}", unit="verdict", disable=not progress)
        for start in range(0, len(todo), 32):
            chunk = todo[start : start + 32]
            found = judge.judge(task.judge, [(r.prediction, r.record.get("sample", {})) for r in chunk])
            store.put_judgements(task.name, stat.config_hash, judge_hash,
                                 [(r.sample_id, j) for r, j in zip(chunk, found)])
            stat.judged += len(found)
            stat.judge_failed += sum(not j.ok for j in found)
            bar.update(len(found))
        bar.close()


def _made(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, Task):
        return [value]
    return list(value)


def plan_condition(task: Task, condition: Condition, runner: Runner, backend: Any) -> tuple[dict[str, Any], Callable]:
    """One condition of a task: its configuration (what its records' hash is made of) and how to run a
    chunk of samples under it. The Ray workers call this too, so their hashes are the driver's."""
    if task.kind == "answer":
        strategy = runner.strategy(condition, task)
        config = {"task": task.describe(), "strategy": strategy.describe(), "backend": backend.describe()}
        return config, _answer_unit(strategy, task)
    attributor = runner.map_attributor(condition)
    regions = runner.regions or RegionConfig.from_preset()
    config = {"task": task.describe(), "map": attributor.describe(), "gray": runner.gray,
              "resample": runner.resample, "regions": regions.to_dict()}
    return config, _map_unit(attributor, runner.gray, runner.resample, runner.regions)


def _prepare(task: Task, conditions: list[Condition], runner: Runner, store: RunStore,
             backend: Any) -> dict[str, tuple[Condition, ConditionStats, Callable]]:
    """Per condition: its configuration hash (recorded in the store) and how to run a chunk."""
    out = {}
    for condition in conditions:
        config, run = plan_condition(task, condition, runner, backend)
        config_hash = config_hash_of(config)
        store.put_config(config_hash, task.name, condition.label, config)
        out[condition.label] = (condition, ConditionStats(condition.label, config_hash), run)
    return out


def _chunks(samples: Iterable[EvalSample], size: int) -> Iterator[list[tuple[int, EvalSample]]]:
    batch: list[tuple[int, EvalSample]] = []
    for item in enumerate(samples):
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _iter_samples(task: Task, limit: int | None, ids: list[str]) -> tuple[Iterator[EvalSample], int | None]:
    rows = task.rows(limit)
    total = len(rows) if hasattr(rows, "__len__") else None  # type: ignore[arg-type]
    if total is not None and limit is not None:
        total = min(total, limit)

    def gen() -> Iterator[EvalSample]:
        seen: set[str] = set()
        for row in rows:
            sample = task.to_sample(row)
            if sample.id in seen:
                raise InputError(f"task {task.name!r}: sample id {sample.id!r} occurs twice; ids must be unique")
            seen.add(sample.id)
            ids.append(sample.id)
            yield sample
            if limit is not None and len(ids) >= limit:
                return

    return gen(), total


def _run_task(task: Task, units: dict[str, tuple[Condition, ConditionStats, Callable]], store: RunStore, *,
              limit: int | None, chunk: int, workers: int, retry_failed: bool, gallery: int,
              progress: bool, submit: Callable[[Unit, int], Future] | None = None) -> list[str]:
    """Run every chunk not yet in the store, ``workers`` at a time: inline, on threads (a server
    backend), or through ``submit`` (the Ray executor); records are written as each chunk returns."""
    from tqdm.auto import tqdm

    ids: list[str] = []
    samples, total = _iter_samples(task, limit, ids)
    status = {label: store.status(task.name, s.config_hash) for label, (_, s, _) in units.items()}
    bar = tqdm(total=None if total is None else total * len(units), desc=task.name, unit="answer",
               disable=not progress, dynamic_ncols=True)
    pool = None
    if submit is None and workers > 1:
        pool = ThreadPoolExecutor(workers, thread_name_prefix="attnprompt-eval")
        submit = partial(pool.submit, run_unit)
    pending: dict[Future, Unit] = {}

    def finish(unit: Unit, records: list[Record], images: list, error: BaseException | None) -> None:
        stat = units[unit.condition.label][1]
        if error is not None and stat.answered == 0 and not any(status[unit.condition.label].values()):
            # every sample of the condition's first chunk raised: a setting or model problem, not the data's
            raise InputError(f"{task.name} · {unit.condition.label}: every sample of the first batch failed — "
                             f"{type(error).__name__}: {error}") from error
        store.put(records, images)
        for r in records:
            status[unit.condition.label][r.sample_id] = r.ok
            stat.answered += r.ok
            stat.failed += not r.ok
            if r.ok:
                stat.scores.append(dict(r.scores or {}))
        bar.update(len(records))
        bar.set_postfix_str(_running(task, units), refresh=False)

    try:
        for batch in _chunks(samples, chunk):
            if total is None:
                bar.total = None
            for label, (condition, stat, run) in units.items():
                done = status[label]
                todo = [(i, s) for i, s in batch if s.id not in done or (retry_failed and not done[s.id])]
                stat.reused += len(batch) - len(todo)
                bar.update(len(batch) - len(todo))
                if not todo:
                    continue
                unit = Unit(task, condition, stat.config_hash, [s for _, s in todo], [i for i, _ in todo], run)
                if submit is None:
                    finish(unit, *run_unit(unit, gallery))
                    continue
                pending[submit(unit, gallery)] = unit
                while len(pending) >= workers:
                    _collect(pending, finish, FIRST_COMPLETED)
        while pending:
            _collect(pending, finish, FIRST_COMPLETED)
    finally:
        for future in pending:
            future.cancel()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return ids


def _collect(pending: dict[Future, Unit], finish: Callable, how: str) -> None:
    done, _ = wait(list(pending), return_when=how)
    for future in done:
        unit = pending.pop(future)
        finish(unit, *future.result())


def _running(task: Task, units: Mapping[str, tuple[Condition, ConditionStats, Callable]]) -> str:
    """The headline so far for each condition (this run's answers), for the progress bar."""
    parts = []
    for label, (_, stat, _) in units.items():
        if stat.scores and task.judge is None:  # a judged task has its scores only after the judge
            value = task.aggregate(score_columns(stat.scores)).get(task.headline, float("nan"))
            parts.append(f"{label} {value:.3f}")
    failed = sum(s.failed for _, s, _ in units.values())
    return " | ".join(parts) + (f" | failed {failed}" if failed else "")
