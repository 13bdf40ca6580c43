"""Evaluation: tasks × conditions (a strategy with its map, or a map method alone) →
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

import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from ..errors import EXIT_PARTIAL, InputError
from ..files import DirectoryLock, check_writable
from .conditions import conditions_for, map_conditions
from .executors import Executor
from .options import BackendOptions, ConditionOptions, EvalOptions, JudgeOptions, RunOptions, as_list
from .store import Record, RunStore
from .tasks import Task, get_task
from .tasks.base import EvalSample, score_columns
from .units import ConditionStats, Plan, Unit, first_batch_failed, pending, unreadable_record

__all__ = ["BackendOptions", "ConditionOptions", "EvalOptions", "EvalRun", "JudgeOptions", "RunOptions",
           "conditions_for", "evaluate", "map_conditions"]


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
        """Samples that got no answer in this run (each recorded as a failure, none scored)."""
        return sum(s.failed for task in self.stats.values() for s in task.values())

    def exit_code(self, strict: bool = False) -> int:
        """What the command exits with: 0 when the run completed — failures recorded and counted, said in
        the summary — else 1: nothing was answered (every sample failed, none done before), every judge
        call got no reply, or, with ``strict``, any sample failed.

        >>> run = EvalRun(Path("."), {"t": {"plain": ConditionStats("plain", "h", answered=3, failed=1)}}, {}, [], 1.0)
        >>> run.exit_code(), run.exit_code(strict=True)
        (0, 1)
        """
        stats = [s for task in self.stats.values() for s in task.values()]
        answered = sum(s.answered + s.reused for s in stats)
        judged = sum(s.judged for s in stats)
        if (strict and self.failed) or (stats and answered == 0 and self.failed):
            return EXIT_PARTIAL
        if judged and sum(s.judge_failed for s in stats) == judged:
            return EXIT_PARTIAL
        return 0

    def summary(self) -> str:
        """What happened, one line per task and condition, then the totals and what to do about failures."""
        lines = []
        for task, conditions in self.stats.items():
            for s in conditions.values():
                lines.append(f"{task} · {s.label}: {s.answered} answered, {s.reused} already recorded, "
                             f"{s.failed} failed" + (f" ({s.unreadable} rows could not be read)" if s.unreadable
                                                     else "") + _judged(s))
        hits = sum(c["hits"] for c in self.cache.values())
        misses = sum(c["misses"] for c in self.cache.values())
        lines.append(f"maps: {misses} computed, {hits} reused from the cache; {self.seconds:.0f} s")
        if self.failed:
            lines.append(f"{self.failed} samples failed, recorded as failures and left out of every score (see the "
                         "report); rerun with --retry-failed to try them again, or --strict to make failures stop "
                         "the command")
        lines += [f"wrote {p}" for p in self.reports]
        return "\n".join(lines)


def _judged(s: ConditionStats) -> str:
    if not s.judged:
        return ""
    verdicts = s.judged - s.judge_failed
    return (f"; the judge gave {verdicts} verdict{'s' if verdicts != 1 else ''} for {s.judged} answer"
            f"{'s' if s.judged != 1 else ''} ({s.judge_failed} without a reply, asked again by the next run; "
            f"{s.judge_unreadable} unreadable)")


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
    (4, ['report.md', 'cost.md', 'report.json', 'report.html', 'samples.jsonl', 'deltas.svg'])
    """
    started = time.perf_counter()
    if options is not None and settings:
        raise InputError(f"give the options either as an EvalOptions or as keywords, not both ({', '.join(settings)})")
    options = options or EvalOptions.from_settings(**settings)
    task_objects = _resolve_tasks(as_list(tasks), data)
    names = [t.name for t in task_objects]
    if len(set(names)) != len(names):
        raise InputError(f"a task is listed twice: {', '.join(names)}")
    if not task_objects:
        raise InputError("give at least one task")
    answering = any(t.kind == "answer" for t in task_objects)
    mapping = any(t.kind == "map" for t in task_objects)
    answer_conditions = options.conditions.answer_conditions(maps=mapping) if answering else []
    map_conds = options.conditions.map_conditions() if mapping else []
    options.conditions.check(answer_conditions, map_conds)  # every setting, before any model loads
    directory = Path(out)
    check_writable(directory / "report.md", "--out")
    for task in task_objects:  # data that cannot be read is an error before any model loads
        list(islice(iter(task.rows(1)), 1))

    run, judge = options.run, options.judge.build()
    resume = _resume_key(options, task_objects, answer_conditions + map_conds)
    # a run whose every record is done answers from its records: no model is loaded to find that out
    executor = _recorded(directory, resume, task_objects, run) or options.executor(answering)
    chunk = options.chunk(executor.http)
    stats: dict[str, dict[str, ConditionStats]] = {}
    try:
        with DirectoryLock(_made(directory)), RunStore(directory) as store:
            plan: dict[str, Any] = {"tasks": [], "backend": executor.backend_description}
            for task in task_objects:
                plans = executor.prepare(task, answer_conditions if task.kind == "answer" else map_conds, store)
                stats[task.name] = {label: p.stats for label, p in plans.items()}
                ids = _run_task(task, plans, store, executor, run, chunk)
                judged = None
                if task.judge is not None and judge is not None:
                    judged = {"hash": judge.config_hash_of(task.judge), "describe": judge.describe(task.judge)}
                    _judge_task(task, plans, store, (judge, judged["hash"]), ids, run)
                plan["tasks"].append({"name": task.name, "spec": task.spec, "describe": task.describe(),
                                      "data": task.data, "judge": judged, "samples": ids,
                                      "conditions": [{"label": label, "config_hash": p.config_hash}
                                                     for label, p in plans.items()]})
            plan["settings"] = {"limit": run.limit, "batch_size": options.backend.batch_size,
                                "concurrency": options.backend.concurrency, "gallery": run.gallery,
                                "executor": run.executor, **executor.describe()}
            store.set_meta("plan", plan)
            if resume is not None:
                store.set_meta(f"resume/{resume}", {"backend": plan["backend"], "tasks": {
                    t["name"]: {c["label"]: c["config_hash"] for c in t["conditions"]} for t in plan["tasks"]}})
            written: list[Path] = []
            if run.report:
                from .report import write_report

                written = write_report(directory, tasks=task_objects, store=store)
        cache = executor.cache_info()
    finally:
        executor.close()
    return EvalRun(directory, stats, cache, written, time.perf_counter() - started)


def _resume_key(options: EvalOptions, tasks: list[Task], conditions: list[Any]) -> str | None:
    """What decides every condition's configuration hash, known before any model loads: the answering VLM
    as named, the spec as given, the conditions, the tasks and this version of attnprompt. ``None`` when a
    setting is a built object (a backend, a loaded model), whose identity a name cannot carry."""
    from .. import __version__
    from ..files import config_hash_of
    from ..regions import RegionConfig

    b, spec = options.backend, options.conditions.spec
    plain = (str, int, float, bool, type(None), RegionConfig)
    given = list(spec.given().values())
    if not isinstance(b.vlm, (str, type(None))) or not all(
            isinstance(v, plain) or (isinstance(v, tuple) and all(isinstance(x, str) for x in v)) for v in given):
        return None
    return config_hash_of({"version": __version__, "vlm": b.vlm, "vlm_model": b.vlm_model,
                           "loading": {**b.loading.describe(), "device": b.loading.device, "dtype": b.loading.dtype},
                           "native_side": b.native_side, "spec": spec.describe(),
                           "conditions": [c.label for c in conditions],
                           "tasks": [{**t.describe(), "data": t.data} for t in tasks]})


def _recorded(directory: Path, resume: str | None, tasks: list[Task], run: RunOptions) -> Executor | None:
    """An executor that loads nothing, when an earlier run with the same settings (``resume``) left a
    record for every sample of every task and condition (a failed one counts as done unless
    ``retry_failed``); else ``None``."""
    from .executors import RecordedExecutor
    from .store import FILENAME

    if resume is None or not (directory / FILENAME).is_file():
        return None
    with RunStore(directory) as store:
        known = store.meta(f"resume/{resume}")
        if not known or set(known["tasks"]) != {t.name for t in tasks}:
            return None
        for task in tasks:
            ids = [s.id for s in task.stream(run.limit)[0]]
            for config_hash in known["tasks"][task.name].values():
                done = store.status(task.name, config_hash)
                if pending(ids, done, run.retry_failed):
                    return None
    return RecordedExecutor(known)


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
                judging: tuple[Any, str], ids: list[str], run: RunOptions) -> None:
    """Judge every answered record of the run's samples that this judge has no verdict on — never
    judged, or the judge gave no reply last time (the originals retry until they get one) — and, with
    ``retry_failed``, also those whose replies were unreadable; each chunk of verdicts is one
    transaction. ``judging``: the judge and its configuration's hash."""
    judge, judge_hash = judging
    retry_failed, progress = run.retry_failed, run.progress
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






def _chunks(samples: Iterable[EvalSample], size: int) -> Iterator[list[tuple[int, EvalSample]]]:
    batch: list[tuple[int, EvalSample]] = []
    for item in enumerate(samples):
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _run_task(task: Task, plans: dict[str, Plan], store: RunStore, executor: Executor, run: RunOptions,
              chunk: int) -> list[str]:
    """Run every chunk not yet in the store through the executor, ``executor.in_flight`` units at a time;
    records are written as each unit returns. Returns the ids of the task's samples, in order."""
    from tqdm.auto import tqdm

    ids: list[str] = []
    stream, total = task.stream(run.limit, run.strict)
    samples = _noting(stream, ids)
    status = {label: store.status(task.name, p.config_hash) for label, p in plans.items()}
    bar = tqdm(total=None if total is None else total * len(plans), desc=task.name, unit="answer",
               disable=not run.progress, dynamic_ncols=True)
    in_flight: dict[Future, Unit] = {}

    def finish(unit: Unit, records: list[Record], images: list, error: BaseException | None) -> None:
        stat = plans[unit.condition.label].stats
        if first_batch_failed(status[unit.condition.label], records):
            # every sample of the condition's first chunk failed: a setting, server or model problem, not the data's
            why = f"{type(error).__name__}: {error}" if error is not None else records[0].error
            raise InputError(f"{task.name} · {unit.condition.label}: every sample of the first batch failed — "
                             f"{why}") from error
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
                todo = [batch[k] for k in pending([s.id for _, s in batch], status[label], run.retry_failed)]
                p.stats.reused += len(batch) - len(todo)
                bar.update(len(batch) - len(todo))
                unreadable = [s for _, s in todo if s.error is not None]
                if unreadable:  # never asked: each is its own failure, and the run goes on
                    unit = Unit(task, p.condition, p.config_hash, unreadable, [], None)
                    finish(unit, [unreadable_record(unit, s) for s in unreadable], [], None)
                    p.stats.unreadable += len(unreadable)
                todo = [(i, s) for i, s in todo if s.error is None]
                if not todo:
                    continue
                unit = Unit(task, p.condition, p.config_hash, [s for _, s in todo], [i for i, _ in todo], p.run)
                in_flight[executor.submit(unit, run.gallery)] = unit
                while len(in_flight) >= executor.in_flight:
                    _collect(in_flight, finish, FIRST_COMPLETED)
        while in_flight:
            _collect(in_flight, finish, FIRST_COMPLETED)
    finally:
        for future in in_flight:
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
        # a judged task has its scores only after the judge; one whose judge is optional scores by its reader first
        if stat.scores and (task.judge is None or task.judge.optional):
            value = task.aggregate(score_columns(stat.scores)).get(task.headline, float("nan"))
            parts.append(f"{label} {value:.3f}")
    failed = sum(p.stats.failed for p in plans.values())
    return " | ".join(parts) + (f" | failed {failed}" if failed else "")
