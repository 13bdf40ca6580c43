"""One unit of evaluation work — a chunk of samples under one condition — and everything needed to run
it: the plan of a condition (:class:`Plan`, made by :class:`~attnprompt.evaluation.runner.Runner`); the
chunk policy (:func:`run_chunk`: the whole chunk at once, each sample alone if that raises); the records a
finished unit leaves in the run store; and the bookkeeping of what is done (:class:`Progress`). Every
executor (this process, its threads, Ray actors) and the lmms-eval plugin run their work through here.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from PIL import Image

from ..errors import InputError
from .conditions import Condition
from .store import Record, RecordKey
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
    unreadable: int = 0  # rows of the data that could not be read (counted in failed too)
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

    def key(self, sample: EvalSample) -> RecordKey:
        """Where ``sample``'s record of this unit is stored."""
        return RecordKey(self.task.name, str(sample.id), self.config_hash, self.condition.label)


# -- what is done --------------------------------------------------------------------------------------------


def pending(ids: Sequence[str], done: Mapping[str, bool], retry_failed: bool = False) -> list[int]:
    """The positions of ``ids`` that still need an answer: no record in ``done`` (``{id: ok}``), or a failed
    one when ``retry_failed``. The harness and the lmms-eval plugin resume by this rule.

    >>> pending(["a", "b", "c"], {"a": True, "b": False}), pending(["a", "b"], {"a": True, "b": False}, True)
    ([2], [1])
    """
    return [i for i, sid in enumerate(ids) if sid not in done or (retry_failed and not done[sid])]


def first_batch_failed(done: Mapping[str, bool], records: Sequence[Record]) -> bool:
    """Whether these records stop the run: nothing of their condition was answered yet (``done``, the store's
    records and this run's before them, holds no answer) and every one failed with an error — the server's,
    a setting's or the model's fault, not the data's (an empty answer or a bad input is the sample's own).

    >>> key = RecordKey("t", "s", "h", "plain")
    >>> first_batch_failed({}, [Record.failed(key, "connection refused")]), first_batch_failed(
    ...     {"x": True}, [Record.failed(key, "connection refused")])
    (True, False)
    """
    return bool(records) and not any(done.values()) and all(not r.ok and r.failure == "error" for r in records)


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
        shown = tuple(a.preview(THUMBNAIL_SIDE) for a in output)  # not the full-resolution overlay
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
        return Record.failed(unit.key(sample), answer.error or "no answer", answer.failure, body, seconds)
    text = answer.text.strip()  # every backend's reply, stored and scored stripped (lmms-eval's harness does)
    scores = _score(unit.task, text, sample, repr(text))
    return Record.answered(unit.key(sample), text, scores, body, seconds)


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
    return Record.answered(unit.key(sample), prediction, scores, body, seconds)


def unreadable_record(unit: Unit, sample: EvalSample) -> Record:
    """The record of a sample whose row could not be read: a failure of kind ``input``, never asked."""
    return Record.failed(unit.key(sample), str(sample.error), "input", {"sample": sample.describe()})


def _failed_record(unit: Unit, sample: EvalSample, error: BaseException) -> Record:
    text = f"{type(error).__name__}: {error}"
    return Record.failed(unit.key(sample), text, "error", {"sample": sample.describe()})
