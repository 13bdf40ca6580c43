"""What a benchmark is: a loader of rows, a pure row → sample function, a per-sample score and a
corpus aggregate, and which of the aggregate's figures is the headline.

A task file (one per benchmark, next to this one) builds one :class:`Task` and names its source in
the docstring. The loaded rows are never mutated: ``to_sample`` builds a new :class:`EvalSample`.

Two kinds of task: ``answer`` tasks score a strategy's final answer (``score(prediction, sample)``);
``map`` tasks score attribution maps, one per query of the sample (``score(annotations, sample)``),
and are run for map methods rather than strategies.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain, islice
from typing import Any

import numpy as np
from PIL import Image

from ...checks import check_count
from ...errors import InputError
from ...types import Sample

#: The kinds of task: scored on a strategy's answer, or on attribution maps.
KINDS = ("answer", "map")


@dataclass(frozen=True)
class EvalSample:
    """One evaluation item: a stable ``id`` (unique within its task), the image(s), the question,
    the answer-format ``suffix`` a strategy places, the ``references`` a metric compares with, the
    ``category`` (or categories) a report breaks results down by, and ``meta``: anything else the
    score needs (JSON-able values are recorded with the sample; ``truth`` holds what is not, such
    as a mask). Map tasks ask one map per entry of ``queries`` (default: the question).

    >>> s = EvalSample("q1", Image.new("RGB", (4, 4)), "What colour is the star?", references=("red",))
    >>> s.sample().question, s.categories, s.queries
    ('What colour is the star?', (), ('What colour is the star?',))
    """

    id: str
    images: tuple[Image.Image, ...]
    question: str
    references: tuple[str, ...] = ()
    suffix: str = ""
    category: str | tuple[str, ...] | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    queries: tuple[str, ...] = ()
    truth: Any = None
    #: Why this sample's row could not be read (an undecodable line, an unreadable image, a missing column):
    #: such a sample is never asked; each condition records it as a failure of kind ``input``.
    error: str | None = None

    @classmethod
    def broken(cls, id: str, error: str) -> EvalSample:
        """The sample of a row that could not be read, and why.

        >>> EvalSample.broken("row 3", "not JSON").error
        'not JSON'
        """
        return cls(id, (), "(a row that could not be read)", error=error)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise InputError(f"a sample id is a non-empty string; got {self.id!r}")
        images = (self.images,) if isinstance(self.images, Image.Image) else tuple(self.images)
        object.__setattr__(self, "images", images)
        object.__setattr__(self, "references", tuple(str(r) for r in self.references))
        object.__setattr__(self, "queries", tuple(self.queries) or (self.question,))

    @property
    def categories(self) -> tuple[str, ...]:
        """The sample's categories (none, one, or several, e.g. MM-Vet's capabilities)."""
        if self.category is None:
            return ()
        return (self.category,) if isinstance(self.category, str) else tuple(self.category)

    def sample(self) -> Sample:
        """What a strategy answers: the images, the question and the suffix."""
        return Sample(self.images, self.question, suffix=self.suffix, id=self.id, region=self.region)

    @property
    def region(self) -> tuple[int, int, int, int] | None:
        """Where the answer lies in the first image (``meta["scene_box"]``), for the reference strategies.

        >>> EvalSample("a", Image.new("RGB", (4, 4)), "q?", meta={"scene_box": [0, 0, 2, 2]}).region
        (0, 0, 2, 2)
        """
        region = self.meta.get("scene_box")
        return None if region is None else tuple(int(v) for v in region)  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        """JSON-able: everything but the pixels and ``truth`` (image sizes instead).

        >>> EvalSample("a", Image.new("RGB", (4, 3)), "q?", ("x",)).describe()["images"]
        [[4, 3]]
        """
        return {"id": self.id, "question": self.question, "suffix": self.suffix, "references": list(self.references),
                "categories": list(self.categories), "images": [list(i.size) for i in self.images],
                "queries": list(self.queries), "meta": dict(self.meta)}


@dataclass(frozen=True)
class Task:
    """A benchmark as Python data.

    - ``name``: how it is asked for (``--task NAME``); ``source``: where its data comes from;
    - ``rows(limit)``: the loaded rows (the first ``limit``, or all); never mutated;
    - ``to_sample(row)``: a pure function → :class:`EvalSample`;
    - ``score``: per sample → ``{score name: number}`` — ``(prediction, sample)`` for an ``answer``
      task, ``(annotations, sample)`` for a ``map`` task (one annotation per query);
    - ``aggregate(columns)``: score columns (name → array over samples) → ``{metric: value}``;
    - ``headline``: the metric a report's main table shows; ``correct``: the per-sample score the
      report's gallery compares between strategies;
    - ``max_new_tokens``: the answer budget the task needs; ``version``: bump it when rows or scoring
      change, so no stored record of the old version is reused.

    >>> from attnprompt.evaluation.metrics import exact_match, mean_of
    >>> t = Task("tiny", "two rows in code", lambda limit: [{"q": "Colour?", "a": "red"}][:limit],
    ...          lambda row: EvalSample(row["q"], Image.new("RGB", (4, 4)), row["q"], (row["a"],)),
    ...          lambda pred, s: {"correct": exact_match(pred, s.references)},
    ...          lambda cols: {"accuracy": mean_of("correct")(cols)}, headline="accuracy")
    >>> t.evaluate_predictions({"Colour?": "Red."})
    {'accuracy': 1.0}
    """

    name: str
    source: str
    rows: Callable[[int | None], Iterable[Mapping[str, Any]]]
    to_sample: Callable[[Mapping[str, Any]], EvalSample]
    score: Callable[[Any, EvalSample], Mapping[str, float]]
    aggregate: Callable[[Mapping[str, np.ndarray]], Mapping[str, float]]
    headline: str
    correct: str = "correct"
    kind: str = "answer"
    max_new_tokens: int = 128
    version: str = "1"
    higher_is_better: bool = True
    #: Targets or reading notes shown under the task's table in the report.
    notes: str = ""
    #: Notes on particular rows, by strategy name, shown only when such a row is in the report.
    row_notes: Mapping[str, str] = field(default_factory=dict)
    #: A score column naming each sample's cluster (MME: the image, whose two questions are scored
    #: together): bootstrap intervals then resample whole clusters.
    cluster: str | None = None
    #: Sample id → the group it is scored with, for tasks whose original scores a group only whole
    #: (MME: both questions of an image, or neither): a failure in a group removes the whole group
    #: from every metric, and the report counts the samples so removed.
    group_of: Callable[[str], str] | None = None
    #: How a judge model scores an answer (:class:`~attnprompt.evaluation.judge.JudgeSpec`), for tasks
    #: scored by a GPT judge; their ``score`` gives what needs no judge (often nothing).
    judge: Any = None
    #: Where the data was read from (a hub id or a local path), recorded in the report.
    data: str | None = None
    #: How to build this task again (a registered name, ``path.py:NAME``, or a generic spec); set
    #: by whoever resolves it, recorded with the run so ``attnprompt report`` finds it.
    spec: Any = None
    #: A row → the id its sample would have, to name a row that cannot be read (default "row N").
    row_id: Callable[[Mapping[str, Any]], str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise InputError(f"task {self.name!r}: kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError("a task needs a name")

    def samples(self, limit: int | None = None, strict: bool = True) -> list[EvalSample]:
        """The first ``limit`` samples (all by default), ids checked unique; a row that cannot be read is an
        error (``strict``, as befits code that asks for the samples) or a broken sample (as a run treats it).

        >>> from attnprompt.evaluation.tasks import get_task
        >>> [s.id for s in get_task("shapes-vqa").samples(2)]
        ['200000/color/0', '200000/shape/0']
        """
        return list(self.stream(limit, strict)[0])

    def stream(self, limit: int | None = None, strict: bool = False) -> tuple[Iterator[EvalSample], int | None]:
        """The first ``limit`` samples one at a time (a large dataset is never all in memory; ids checked
        unique as they come), and how many there are when the rows can say (``None`` otherwise). A row
        that cannot be read becomes a :meth:`EvalSample.broken` sample (recorded as that sample's failure,
        and the run goes on), or with ``strict`` an error that stops the run.

        >>> from attnprompt.evaluation.tasks import get_task
        >>> samples, total = get_task("shapes-vqa").stream(3)
        >>> total, next(samples).id
        (3, '200000/color/0')
        """
        if limit is not None:
            check_count("limit", limit)
        rows = self.rows(limit)
        total = len(rows) if hasattr(rows, "__len__") else None  # type: ignore[arg-type]
        if total is not None and limit is not None:
            total = min(total, limit)

        def each() -> Iterator[EvalSample]:
            seen: set[str] = set()
            for number, row in enumerate(rows):
                sample = self._sample(row, number, strict)
                if sample.id in seen:
                    raise InputError(f"task {self.name!r}: sample id {sample.id!r} occurs twice; ids must be unique")
                seen.add(sample.id)
                yield sample
                if limit is not None and len(seen) >= limit:
                    return

        return each(), total

    def _sample(self, row: Mapping[str, Any], number: int, strict: bool) -> EvalSample:
        try:
            return self.to_sample(row)
        except Exception as e:  # noqa: BLE001  # the row's fault (its data), recorded as the sample's failure
            why = f"{type(e).__name__}: {e}" if not isinstance(e, InputError) else str(e)
            if strict:
                raise InputError(f"task {self.name!r}, row {number}: {why} (an eval without --strict records such a "
                                 "row as that sample's failure and goes on)") from e
            try:
                ident = self.row_id(row) if self.row_id is not None else f"row {number}"
            except Exception:  # noqa: BLE001  # a row too broken to name
                ident = f"row {number}"
            return EvalSample.broken(ident, why)

    def describe(self) -> dict[str, Any]:
        """What identifies the task's data and scoring in a run's configuration."""
        # not where the data was read from: the same dataset moved elsewhere keeps its records
        return {"name": self.name, "version": self.version, "source": self.source, "kind": self.kind,
                "headline": self.headline}

    def evaluate_predictions(self, predictions: Mapping[str, str], limit: int | None = None) -> dict[str, float]:
        """Score ``{sample id: prediction}`` with this task's metric (an answer task), with no model:
        how a user re-scores outputs they already have; each reply is stripped first, as in a run. Samples
        without a prediction are skipped (with ``group_of``, their whole group: MME's image is scored with
        both answers or not at all)."""
        if self.kind != "answer" or (self.judge is not None and not self.judge.optional):
            raise InputError(f"task {self.name!r} is scored by {'a judge' if self.judge else 'its maps'}, "
                             "not from the answers alone")
        samples = self.samples(limit)
        if self.group_of is not None:  # a group is scored whole or not at all (MME's image)
            broken = {self.group_of(s.id) for s in samples if s.id not in predictions}
            samples = [s for s in samples if self.group_of(s.id) not in broken]
        rows = [dict(self.score(predictions[s.id].strip(), s)) for s in samples if s.id in predictions]
        return dict(self.aggregate(score_columns(rows)))


def rows_from(seeds: Iterable[int], expand: Callable[[int], Iterable[dict[str, Any]]],
              limit: int | None) -> list[dict[str, Any]]:
    """The first ``limit`` rows (all by default) of ``expand(seed)`` for seed after seed: a task whose
    rows come from generated scenes, several per scene.

    >>> rows_from(range(5), lambda s: [{"seed": s, "k": 0}, {"seed": s, "k": 1}], 3)
    [{'seed': 0, 'k': 0}, {'seed': 0, 'k': 1}, {'seed': 1, 'k': 0}]
    """
    return list(islice(chain.from_iterable(expand(seed) for seed in seeds), limit))


def score_columns(rows: Sequence[Mapping[str, float]]) -> dict[str, np.ndarray]:
    """Per-sample score dicts → one array per score name (the form aggregates take).

    >>> score_columns([{"c": 1.0}, {"c": 0.0}])["c"]
    array([1., 0.])
    """
    names = sorted({k for r in rows for k in r})
    return {k: np.array([float(r.get(k, np.nan)) for r in rows], dtype=float) for k in names}
