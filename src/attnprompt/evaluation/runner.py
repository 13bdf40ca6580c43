"""The evaluation runner: tasks × conditions (a strategy with its map, or a map method alone) →
records in a resumable store → the report.

Work goes chunk by chunk through each task: for each chunk of samples, every condition answers the
samples it has no record for, in one batched strategy call (so local backends batch generation
across samples, and an HTTP backend keeps its ``concurrency`` requests in flight). Each finished
chunk is one transaction in the store; a killed run loses at most the chunks in flight, and a rerun
of the same command skips every record it finds. Maps are computed once per (image, query) for all
conditions that share an attributor configuration (:class:`~attnprompt.attribution.cache.MapCache`).
Where the chunks run is the executor's business (:mod:`attnprompt.evaluation.executors`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from ..checks import check_count
from ..errors import InputError
from ..files import DirectoryLock, check_writable
from ..regions import RegionConfig
from ..strategies.registry import STRATEGIES
from .conditions import Condition, conditions_for, map_conditions
from .executors import Executor, LocalExecutor
from .store import Record, RunStore
from .tasks import Task, get_task
from .tasks.base import EvalSample, score_columns
from .units import ConditionStats, Plan, Runner, Unit

__all__ = ["BackendOptions", "ConditionOptions", "EvalOptions", "EvalRun", "JudgeOptions", "RunOptions",
           "conditions_for", "evaluate", "map_conditions"]


# -- options ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BackendOptions:
    """Who answers: ``vlm`` (hub id, local path, ``shapes``, an http(s) URL of an OpenAI-compatible server,
    or a built backend); a server's ``vlm_model``, ``api_key`` and ``timeout`` (seconds per request);
    a local model's ``device``, ``dtype`` (the maps' models use them too) and ``batch_size``
    (generations per forward); a server's ``concurrency`` (requests in flight, default 4) and ``native_side``
    (its model's input side in pixels: ViCrop's default crop window, which a server does not say)."""

    vlm: Any = None
    vlm_model: str | None = None
    api_key: str | None = None
    timeout: float = 60.0
    device: str | None = None
    dtype: Any = None
    batch_size: int = 8
    concurrency: int | None = None
    native_side: int | None = None

    def __post_init__(self) -> None:
        check_count("batch_size", self.batch_size)

    def build(self) -> Any:
        """The backend (a local model batching ``batch_size`` answers per forward)."""
        from ..backends import get_backend

        backend = get_backend(self.vlm, vlm_model=self.vlm_model, api_key=self.api_key, timeout=self.timeout,
                              device=self.device, dtype=self.dtype, concurrency=self.concurrency,
                              native_side=self.native_side)
        if hasattr(backend, "batch_size") and backend.local_model is not None:
            backend.batch_size = int(self.batch_size)
        return backend


@dataclass(frozen=True)
class ConditionOptions:
    """The report's rows: ``strategies``, ``methods``, ``presets`` and ``forms`` (lists, or comma-separated
    strings), crossed as :func:`conditions_for` and :func:`map_conditions` say; the map's ``model``, the
    ensemble's ``sources``, the baselines' ``segmenter`` (fgvp-mask, fgvp-rbm, som: ``shapes``, ``sam`` or
    a SAM checkpoint; default ground truth beside the shapes VLM, else SAM ViT-H), map ``params``
    (``{"kernel": 1}``), the answer budget ``max_new_tokens``
    (default each task's), the rendering (``gray``, ``resample``) and the crop ``regions``."""

    strategies: Any = ("plain", "api")
    methods: Any = None
    presets: Any = None
    forms: Any = None
    model: Any = None
    sources: Sequence[str] | None = None
    segmenter: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    max_new_tokens: int | None = None
    gray: float = 0.0
    resample: str = "bilinear"
    regions: RegionConfig | str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.regions, str):
            object.__setattr__(self, "regions", RegionConfig.from_preset(self.regions))

    def answer_conditions(self) -> list[Condition]:
        found = conditions_for(_as_list(self.strategies), _as_list(self.methods) or None,
                               _as_list(self.presets) or None, _as_list(self.forms) or None)
        if self.segmenter is not None and not any(STRATEGIES.get(c.strategy).needs.segmenter for c in found):
            drawing = [n for n in STRATEGIES.names() if STRATEGIES.get(n).needs.segmenter]
            raise InputError(f"a segmenter was given, but no chosen strategy draws from masks; add one of "
                             f"{', '.join(drawing)} to the strategies, or drop the segmenter")
        return found

    def map_conditions(self) -> list[Condition]:
        return map_conditions(_as_list(self.methods) or None, _as_list(self.presets) or None)

    def runner(self, backend: Any, device: str | None, dtype: Any) -> Runner:
        """The runner that plans these conditions on ``backend``."""
        return Runner(backend, **self.runner_args(device, dtype))

    def runner_args(self, device: str | None, dtype: Any) -> dict[str, Any]:
        return dict(model=self.model, sources=self.sources, segmenter=self.segmenter, params=dict(self.params),
                    max_new_tokens=self.max_new_tokens, gray=self.gray, resample=self.resample,
                    regions=self.regions, device=device, dtype=dtype)


@dataclass(frozen=True)
class RunOptions:
    """How the run goes: the first ``limit`` samples of each task; ``chunk_size`` samples per unit
    (default 4 × the batch size, or 4 × the concurrency for a server); ``retry_failed`` (run again the
    samples whose record is a failure); ``gallery`` (pictures of what the VLM was shown, for the first N
    samples of each task); ``progress`` bars; the ``report``; and the ``executor`` (``local``, or
    ``ray`` on ``address`` with ``workers`` replicas)."""

    limit: int | None = None
    chunk_size: int | None = None
    retry_failed: bool = False
    gallery: int = 200
    progress: bool = True
    report: bool = True
    executor: str = "local"
    address: str | None = None
    workers: int | None = None

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


#: The keyword names of :func:`evaluate` → (group, field); any other keyword is a map parameter.
_FLAT = {
    **{f.name: ("backend", f.name) for f in dataclasses.fields(BackendOptions)},
    **{f.name: ("conditions", f.name) for f in dataclasses.fields(ConditionOptions) if f.name != "params"},
    **{f.name: ("run", f.name) for f in dataclasses.fields(RunOptions)},
    "judge": ("judge", "url"), "judge_model": ("judge", "model"), "judge_key_env": ("judge", "key_env"),
    "judge_concurrency": ("judge", "concurrency"),
}


@dataclass(frozen=True)
class EvalOptions:
    """Everything an evaluation is run with, in four small groups: who answers (:class:`BackendOptions`),
    the report's rows (:class:`ConditionOptions`), how the run goes (:class:`RunOptions`) and the judge
    (:class:`JudgeOptions`). :meth:`from_settings` builds one from :func:`evaluate`'s keywords.

    >>> EvalOptions.from_settings(vlm="shapes", strategies="plain", limit=4, kernel=1).conditions.params
    {'kernel': 1}
    """

    backend: BackendOptions = field(default_factory=BackendOptions)
    conditions: ConditionOptions = field(default_factory=ConditionOptions)
    run: RunOptions = field(default_factory=RunOptions)
    judge: JudgeOptions = field(default_factory=JudgeOptions)

    @classmethod
    def from_settings(cls, **settings: Any) -> EvalOptions:
        """Options from flat keywords: each group's field names (``judge``, ``judge_model``,
        ``judge_key_env``, ``judge_concurrency`` for the judge's), any other name a map parameter."""
        groups: dict[str, dict[str, Any]] = {"backend": {}, "conditions": {"params": {}}, "run": {}, "judge": {}}
        for name, value in settings.items():
            group, key = _FLAT.get(name, ("conditions", None))
            if key is None:
                groups["conditions"]["params"][name] = value
            else:
                groups[group][key] = value
        return cls(BackendOptions(**groups["backend"]), ConditionOptions(**groups["conditions"]),
                   RunOptions(**groups["run"]), JudgeOptions(**groups["judge"]))

    def executor(self, answering: bool) -> Executor:
        """Where the units run: this process, or Ray actors (each building the backend itself).
        ``answering``: whether a VLM is needed (answer tasks, or a VLM given for a map)."""
        b, run = self.backend, self.run
        needed = answering or b.vlm is not None
        if run.executor == "ray":
            from .ray_executor import RayExecutor

            return RayExecutor(backend=b if needed else None, address=run.address, workers=run.workers,
                               runner_args=self.conditions.runner_args(b.device, b.dtype))
        backend = b.build() if needed else None
        return LocalExecutor(backend, self.conditions.runner(backend, b.device, b.dtype))

    def chunk(self, http: bool) -> int:
        """Samples per unit: 4 × what runs at once (the server's concurrency, or the local batch)."""
        if self.run.chunk_size:
            return int(self.run.chunk_size)
        return 4 * int(self.backend.concurrency or 4) if http else 4 * int(self.backend.batch_size)


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
                judged = (f", {s.judged} judged ({s.judge_failed} without a reply from the judge, "
                          f"{s.judge_unreadable} unreadable)" if s.judged else "")
                lines.append(f"{task} · {s.label}: {s.answered} answered, {s.reused} already recorded, "
                             f"{s.failed} failed{judged}")
        hits = sum(c["hits"] for c in self.cache.values())
        misses = sum(c["misses"] for c in self.cache.values())
        lines.append(f"maps: {misses} computed, {hits} reused from the cache; {self.seconds:.0f} s")
        if self.failed:
            lines.append("some samples failed (see the report); rerun with --retry-failed to try them again")
        lines += [f"wrote {p}" for p in self.reports]
        return "\n".join(lines)




# -- the way in -----------------------------------------------------------------------------------------


def evaluate(tasks: str | Task | Sequence[str | Task], *, out: str | Path, options: EvalOptions | None = None,
             data: Mapping[str, str] | str | None = None, **settings: Any) -> EvalRun:
    """Run ``tasks`` with every strategy (answer tasks) or map method and preset (map tasks), store
    one record per sample and condition under ``out``, and write the report there.

    ``options`` (an :class:`EvalOptions`), or the same as keywords (``settings``, see
    :meth:`EvalOptions.from_settings`): ``vlm`` answers; ``strategies``, ``methods``, ``presets``
    and ``forms`` are crossed into the report's rows; ``limit``: the first N samples of each task;
    ``batch_size`` / ``concurrency``; ``retry_failed``; ``gallery``; ``judge`` (an OpenAI-compatible
    URL for MM-Vet and LLaVA-Bench; without it their answers are recorded and the report says they
    await one); ``executor="ray"`` (:mod:`attnprompt.evaluation.ray_executor`): records, resume and the
    report are the same; any other keyword is a map parameter (``kernel=1``). ``data``: where
    benchmarks' data is, ``{task: path or hub id}`` (or one location for a single task).

    >>> import tempfile
    >>> run = evaluate("shapes-vqa", vlm="shapes", strategies="plain", limit=4, out=tempfile.mkdtemp(),
    ...                progress=False)
    >>> run.stats["shapes-vqa"]["plain"].answered, [p.name for p in run.reports]
    (4, ['report.md', 'report.json', 'report.html', 'samples.jsonl', 'deltas.svg'])
    """
    started = time.perf_counter()
    if options is not None and settings:
        raise InputError(f"give the options either as an EvalOptions or as keywords, not both ({', '.join(settings)})")
    options = options or EvalOptions.from_settings(**settings)
    task_objects = _resolve_tasks(_as_list(tasks), data)
    names = [t.name for t in task_objects]
    if len(set(names)) != len(names):
        raise InputError(f"a task is listed twice: {', '.join(names)}")
    if not task_objects:
        raise InputError("give at least one task")
    answering = any(t.kind == "answer" for t in task_objects)
    answer_conditions = options.conditions.answer_conditions() if answering else []
    map_conds = options.conditions.map_conditions() if any(t.kind == "map" for t in task_objects) else []
    directory = Path(out)
    check_writable(directory / "report.md", "--out")
    for task in task_objects:  # data that cannot be read is an error before any model loads
        list(islice(iter(task.rows(1)), 1))

    run, judge = options.run, options.judge.build()
    executor = options.executor(answering)
    chunk = options.chunk(executor.http)
    stats: dict[str, dict[str, ConditionStats]] = {}
    try:
        with DirectoryLock(_made(directory)), RunStore(directory) as store:
            plan: dict[str, Any] = {"tasks": [], "backend": executor.backend_description}
            for task in task_objects:
                plans = executor.prepare(task, answer_conditions if task.kind == "answer" else map_conds, store)
                stats[task.name] = {label: p.stats for label, p in plans.items()}
                ids = _run_task(task, plans, store, executor, limit=run.limit, chunk=chunk,
                                retry_failed=run.retry_failed, gallery=run.gallery, progress=run.progress)
                judged = None
                if task.judge is not None and judge is not None:
                    judged = {"hash": judge.config_hash_of(task.judge), "describe": judge.describe(task.judge)}
                    _judge_task(task, plans, store, judge, judged["hash"], ids, run.retry_failed, run.progress)
                plan["tasks"].append({"name": task.name, "spec": task.spec, "describe": task.describe(),
                                      "data": task.data, "judge": judged, "samples": ids,
                                      "conditions": [{"label": label, "config_hash": p.config_hash}
                                                     for label, p in plans.items()]})
            plan["settings"] = {"limit": run.limit, "batch_size": options.backend.batch_size,
                                "concurrency": options.backend.concurrency, "gallery": run.gallery,
                                "executor": run.executor, **executor.describe()}
            store.set_meta("plan", plan)
            written: list[Path] = []
            if run.report:
                from .report import write_report

                written = write_report(directory, tasks=task_objects, store=store)
        cache = executor.cache_info()
    finally:
        executor.close()
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


def _judge_task(task: Task, plans: Mapping[str, Plan], store: RunStore,
                judge: Any, judge_hash: str, ids: list[str], retry_failed: bool, progress: bool) -> None:
    """Judge every answered record of the run's samples that this judge has no verdict on — never
    judged, or the judge gave no reply last time (the originals retry until they get one) — and, with
    ``retry_failed``, also those whose replies were unreadable; each chunk of verdicts is one
    transaction."""
    from tqdm.auto import tqdm

    position = {sid: i for i, sid in enumerate(ids)}
    for label, p in plans.items():
        stat = p.stats
        records = store.records(task.name, stat.config_hash)
        verdicts = store.judgements(task.name, stat.config_hash, judge_hash)
        todo = [r for sid, r in records.items() if sid in position and r.ok and
                (sid not in verdicts or not verdicts[sid]["ok"]
                 or (retry_failed and verdicts[sid]["scores"].get("judge_failed")))]
        todo.sort(key=lambda r: position[r.sample_id])
        bar = tqdm(total=len(todo), desc=f"{task.name} judge · {label}", unit="verdict", disable=not progress)
        for start in range(0, len(todo), 32):
            chunk = todo[start : start + 32]
            found = judge.judge(task.judge, [(r.prediction, r.record.get("sample", {})) for r in chunk])
            store.put_judgements(task.name, stat.config_hash, judge_hash,
                                 [(r.sample_id, j) for r, j in zip(chunk, found)])
            stat.judged += len(found)
            stat.judge_failed += sum(not j.ok for j in found)
            stat.judge_unreadable += sum(bool(j.ok and j.scores.get("judge_failed")) for j in found)
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




def _chunks(samples: Iterable[EvalSample], size: int) -> Iterator[list[tuple[int, EvalSample]]]:
    batch: list[tuple[int, EvalSample]] = []
    for item in enumerate(samples):
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _run_task(task: Task, plans: dict[str, Plan], store: RunStore, executor: Executor, *, limit: int | None,
              chunk: int, retry_failed: bool, gallery: int, progress: bool) -> list[str]:
    """Run every chunk not yet in the store through the executor, ``executor.in_flight`` units at a time;
    records are written as each unit returns. Returns the ids of the task's samples, in order."""
    from tqdm.auto import tqdm

    ids: list[str] = []
    stream, total = task.stream(limit)
    samples = _noting(stream, ids)
    status = {label: store.status(task.name, p.config_hash) for label, p in plans.items()}
    bar = tqdm(total=None if total is None else total * len(plans), desc=task.name, unit="answer",
               disable=not progress, dynamic_ncols=True)
    pending: dict[Future, Unit] = {}

    def finish(unit: Unit, records: list[Record], images: list, error: BaseException | None) -> None:
        stat = plans[unit.condition.label].stats
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
        bar.set_postfix_str(_running(task, plans), refresh=False)

    try:
        for batch in _chunks(samples, chunk):
            if total is None:
                bar.total = None
            for label, p in plans.items():
                done = status[label]
                todo = [(i, s) for i, s in batch if s.id not in done or (retry_failed and not done[s.id])]
                p.stats.reused += len(batch) - len(todo)
                bar.update(len(batch) - len(todo))
                if not todo:
                    continue
                unit = Unit(task, p.condition, p.config_hash, [s for _, s in todo], [i for i, _ in todo], p.run)
                pending[executor.submit(unit, gallery)] = unit
                while len(pending) >= executor.in_flight:
                    _collect(pending, finish, FIRST_COMPLETED)
        while pending:
            _collect(pending, finish, FIRST_COMPLETED)
    finally:
        for future in pending:
            future.cancel()
        bar.close()
    return ids


def _noting(samples: Iterable[EvalSample], ids: list[str]) -> Iterator[EvalSample]:
    """The samples as they come, each id noted (the run's plan records which samples it covered)."""
    for sample in samples:
        ids.append(sample.id)
        yield sample


def _collect(pending: dict[Future, Unit], finish: Callable, how: str) -> None:
    done, _ = wait(list(pending), return_when=how)
    for future in done:
        unit = pending.pop(future)
        finish(unit, *future.result())


def _running(task: Task, plans: Mapping[str, Plan]) -> str:
    """The headline so far for each condition (this run's answers), for the progress bar."""
    parts = []
    for label, p in plans.items():
        stat = p.stats
        if stat.scores and task.judge is None:  # a judged task has its scores only after the judge
            value = task.aggregate(score_columns(stat.scores)).get(task.headline, float("nan"))
            parts.append(f"{label} {value:.3f}")
    failed = sum(p.stats.failed for p in plans.values())
    return " | ".join(parts) + (f" | failed {failed}" if failed else "")
