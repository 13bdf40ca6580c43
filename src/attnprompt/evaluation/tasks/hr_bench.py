"""hr_bench — HR-Bench (Wang et al., AAAI 2025: "Divide, Conquer and Combine: A Training-Free Framework
for High-Resolution Image Perception in Multimodal Large Language Models"): 4K and 8K images, 800 rows
each, single-instance and cross-instance questions, each question asked in several cycles with its
four options rotated (``cycle_category``).

Data: Hugging Face ``DreamMr/HR-Bench``, read as lmms-eval reads it: config ``hrbench_version_split``,
split ``hrbench_4k`` / ``hrbench_8k`` (columns index, question, answer — the letter —, category, A, B,
C, D, cycle_category, image as base64). Licence: as the release states. ``--data hr-bench-4k=PATH``: a
``save_to_disk`` folder, parquet files, or a snapshot of the hub repository (its ``hr_bench_4k.parquet``
and ``hr_bench_8k.parquet``: the task's own file is picked).

Two tasks per resolution, one per published protocol:

- ``hr-bench-4k`` / ``hr-bench-8k`` follow the release (``hrbench/`` of DreamMr/HR-Bench, a VLMEvalKit
  fork) and VLMEvalKit's ``HRBenchDataset``, which share the prompt: "Question: …", "Options:", one
  "A. text" line per option, "Please select the correct answer from the options above. \\n"
  (:func:`~attnprompt.evaluation.judge_prompts.mcq_prompt`). Without a judge the reply is read as VLMEvalKit
  reads it with no judge ("exact matching"): :func:`~attnprompt.evaluation.metrics.can_infer`, the
  option's letter or its text; a reply it cannot read is wrong. With ``--judge``, every reply is judged
  as the release judges it (:data:`JUDGE`): its yes/no prompt, quoted, at temperature 0.2; "yes…" is
  right, "no…" wrong, anything else wrong as there (counted as unreadable).
- ``hr-bench-4k-lmms`` / ``hr-bench-8k-lmms`` follow lmms-eval's ``hrbench4k`` / ``hrbench8k``: the
  question, the "A. text" lines, "Answer the option letter directly."; the reply read by lmms-eval's copy
  of ``can_infer`` (``legacy``), and with ``--judge`` the replies it cannot read go to lmms-eval's
  option-matching judge (:data:`JUDGE_LMMS`, its prompt quoted; by default lmms-eval's model when
  ``MODEL_VERSION`` is unset, ``gpt-5-mini``), whose reply is read the same way.

Aggregate as ``report_acc_hrbench`` (VLMEvalKit) and the release: accuracy within each cycle, overall and
per category, then each summed over the cycles and divided by the number of cycles in the run — so with
``--limit``, a category missing from a cycle counts 0 there. The ``-lmms`` tasks aggregate as lmms-eval's
``hrbench_aggregate_results``: each figure the mean over the cycles that have its rows.

Where we differ: neither reference sets an answer budget (the model's default applies); 128 new tokens
here. The prompt's trailing " \\n" is dropped (a sample's suffix never ends in whitespace). The
release's judge samples with top_p 0.8 and top_k 40 through lmdeploy and names no model; here the judge's
endpoint samples as it does, and the default model is VLMEvalKit's default judge for HR-Bench
(``chatgpt-0125``). A judge reply with leading spaces is read from its first word (the release would
score it 0). lmms-eval's task crashes on a judge reply it cannot read; here that is wrong and counted as
unreadable. lmms-eval lower-cases the options before it asks its judge (its ``can_infer_text`` changes
them in place); so does :func:`judge_prompt_lmms`.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ...errors import InputError
from ..judge import JudgeSpec
from ..judge_prompts import (
    HRBENCH_JUDGE,
    HRBENCH_JUDGE_INSTRUCTION,
    MCQ_INSTRUCTION,
    MCQ_MATCH,
    MCQ_MATCH_LMMS,
    mcq_prompt,
)
from ..metrics import can_infer
from .base import EvalSample, Task
from .sources import benchmark_task, load_rows

HUB_ID = "DreamMr/HR-Bench"
#: lmms-eval's ``dataset_name`` for both resolutions (the hub copy's one config).
CONFIG = "hrbench_version_split"
SPLITS = ("hrbench_4k", "hrbench_8k")
CATEGORIES = ("single", "cross")
#: lmms-eval's instruction after the options.
SUFFIX_LMMS = "\nAnswer the option letter directly."


def _image(value: Any) -> Image.Image:
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    return Image.open(io.BytesIO(base64.b64decode(value))).convert("RGB")


def _key(text: str) -> str:
    return "cross" if "cross" in text.lower() else "single"


def _options(row: Mapping[str, Any]) -> list[str]:
    return [str(row[c]) for c in "ABCD" if row.get(c) not in (None, "")]


def _sample(row: Mapping[str, Any], text: str, suffix: str, question: str) -> EvalSample:
    category = str(row["category"])
    return EvalSample(str(row["index"]), (_image(row["image"]),), text, (str(row["answer"]).strip().upper(),),
                      suffix=suffix, category=category,
                      meta={"options": _options(row), "cycle": str(row["cycle_category"]), "kind": _key(category),
                            "question": question})


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    """The release's and VLMEvalKit's prompt (the question as given)."""
    question = str(row["question"])
    text, suffix = mcq_prompt(question, _options(row), row.get("hint") or None)
    return _sample(row, text, suffix, question)


def to_sample_lmms(row: Mapping[str, Any]) -> EvalSample:
    """lmms-eval's prompt (``hrbench_doc_to_text``: the question stripped)."""
    question = str(row["question"])
    text = question.strip() + "".join(f"\n{chr(65 + i)}. {o}" for i, o in enumerate(_options(row)))
    return _sample(row, text, SUFFIX_LMMS, question)


def _scores(right: float, meta: Mapping[str, Any]) -> dict[str, float]:
    cycle = meta["cycle"]
    return {"correct": right, f"cycle:{cycle}:all": right, f"cycle:{cycle}:{meta['kind']}": right}


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    """Right when VLMEvalKit's :func:`~attnprompt.evaluation.metrics.can_infer` reads the correct option.

    >>> s = EvalSample("1", (), "Q", ("B",), meta={"options": ["a red car", "a blue car"], "cycle": "c0",
    ...                                              "kind": "single"})
    >>> [score(r, s)["correct"] for r in ("It is B.", "a blue car.", "I choose B", "A", "Maybe")]
    [1.0, 1.0, 1.0, 0.0, 0.0]
    """
    return _scores(float(can_infer(prediction, sample.meta["options"]) == sample.references[0]), sample.meta)


def score_lmms(prediction: str, sample: EvalSample) -> dict[str, float]:
    """Right when lmms-eval's copy of ``can_infer`` reads the correct option."""
    right = can_infer(prediction, sample.meta["options"], legacy=True) == sample.references[0]
    return _scores(float(right), sample.meta)


def _cycle_means(columns: Mapping[str, np.ndarray], group: str) -> dict[str, float]:
    out = {}
    for name, values in columns.items():
        parts = name.split(":")
        if len(parts) == 3 and parts[0] == "cycle" and parts[2] == group and np.isfinite(values).any():
            out[parts[1]] = float(np.nanmean(values))
    return out


_FIGURES = (("all", "accuracy"), ("single", "single_instance"), ("cross", "cross_instance"))


def aggregate(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    """``report_acc_hrbench``: per cycle the accuracy (overall, per category); each figure the sum over
    cycles ÷ the number of cycles (× 100) — a category absent from a cycle adds 0 there.

    >>> nan = float("nan")
    >>> aggregate({"cycle:0:all": np.array([1., 0., nan]), "cycle:0:single": np.array([1., 0., nan]),
    ...            "cycle:1:all": np.array([nan, nan, 1.]), "cycle:1:cross": np.array([nan, nan, 1.])})
    {'accuracy': 75.0, 'single_instance': 25.0, 'cross_instance': 50.0}
    """
    cycles = len(_cycle_means(columns, "all"))
    out = {}
    for group, name in _FIGURES:
        means = _cycle_means(columns, group)
        if means:
            out[name] = sum(means.values()) / cycles * 100
    return out


def aggregate_lmms(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    """lmms-eval's ``hrbench_aggregate_results``: each figure the mean over the cycles that have its rows.

    >>> nan = float("nan")
    >>> aggregate_lmms({"cycle:0:all": np.array([1., 0., nan]), "cycle:0:single": np.array([1., 0., nan]),
    ...                 "cycle:1:all": np.array([nan, nan, 1.]), "cycle:1:cross": np.array([nan, nan, 1.])})
    {'accuracy': 75.0, 'single_instance': 50.0, 'cross_instance': 100.0}
    """
    out = {}
    for group, name in _FIGURES:
        means = _cycle_means(columns, group)
        if means:
            out[name] = float(np.mean(list(means.values())) * 100)
    return out


# -- the judges ---------------------------------------------------------------------------------------


def judge_prompt(prediction: str, sample: Mapping[str, Any], attempt: int) -> str:
    """The release's judge query (``build_prompt`` after ``pipeline_eval``'s instruction)."""
    meta = sample["meta"]
    letter = sample["references"][0]
    lines = "".join(f"{chr(65 + i)}. {o}\n" for i, o in enumerate(meta["options"]))
    prompt = f"{meta['question']}\nOptions:\n{lines}{MCQ_INSTRUCTION}"
    answer = f"{letter}. {meta['options'][ord(letter) - 65]}"
    return HRBENCH_JUDGE_INSTRUCTION + " " + HRBENCH_JUDGE.format(prompt=prompt, answer=answer, prediction=prediction)


def judge_parse(reply: str, sample: Mapping[str, Any]) -> dict[str, float] | None:
    """The release's ``parse_score``: a reply starting with "yes" (any case) is right, "no" wrong; else
    None (unreadable: :data:`JUDGE` scores it 0, as the release does).

    >>> s = {"meta": {"cycle": "c0", "kind": "single"}}
    >>> judge_parse("Yes.", s)["correct"], judge_parse("no, it is A", s)["correct"], judge_parse("Maybe", s)
    (1.0, 0.0, None)
    """
    said = reply.strip().lower()
    if said.startswith(("yes", "no")):
        return _scores(float(said.startswith("yes")), sample["meta"])
    return None


#: The release's judge, on every reply (``--judge``); without one the tasks score by ``can_infer``.
JUDGE = JudgeSpec("hr-bench", "gpt-3.5-turbo-0125", judge_prompt, judge_parse,
                  lambda sample: _scores(0.0, sample["meta"]), temperatures=(0.2,), max_tokens=512, optional=True)


def judge_prompt_lmms(prediction: str, sample: Mapping[str, Any], attempt: int) -> str:
    """lmms-eval's option-matching query (``HRBenchEval.build_prompt``), its options lower-cased as they
    are by then."""
    options = "".join(f"{chr(65 + i)}. {o.lower()}\n" for i, o in enumerate(sample["meta"]["options"]))
    return MCQ_MATCH + MCQ_MATCH_LMMS.format(sample["meta"]["question"], options, prediction)


def _read_lmms(reply: str, sample: Mapping[str, Any]) -> dict[str, float] | None:
    letter = can_infer(reply.strip(), sample["meta"]["options"], legacy=True)
    return None if letter is None else _scores(float(letter == sample["references"][0]), sample["meta"])


#: lmms-eval's judge: only for the replies its ``can_infer`` cannot read; the judge's reply read the same way.
JUDGE_LMMS = JudgeSpec("hr-bench-lmms", "gpt-5-mini", judge_prompt_lmms, _read_lmms,
                       lambda sample: _scores(0.0, sample["meta"]), temperatures=(0.0,), max_tokens=256,
                       settle=_read_lmms, optional=True)


# -- the data -----------------------------------------------------------------------------------------


def _own_parquet(path: Path, split: str) -> list[Path]:
    """A hub snapshot's file of this split (``hr_bench_4k.parquet`` for ``hrbench_4k``), if that is what
    ``path`` holds."""
    files = sorted(path.rglob("*.parquet")) if path.is_dir() else []
    return [p for p in files if p.name.replace("_", "").startswith(split.replace("_", ""))]


def read(name: str, data: str | None, split: str, limit: int | None) -> Sequence[Mapping[str, Any]]:
    """The first ``limit`` rows of ``split``: from the hub with lmms-eval's config, or from ``data``."""
    if data is not None and Path(data).is_dir() and (own := _own_parquet(Path(data), split)):
        return load_rows(name, str(own[0]), hub_id=HUB_ID, split=split, limit=limit)
    try:
        return load_rows(name, data, hub_id=HUB_ID, split=split, config=CONFIG, limit=limit)
    except InputError as e:
        if data is not None and Path(data).exists():
            raise
        raise InputError(f"{e} — HR-Bench is read as lmms-eval reads it: config {CONFIG!r}, split {split!r} "
                         f"(its splits: {', '.join(SPLITS)})") from None


def make(split: str, variant: str = "") -> Any:
    lmms = variant == "lmms"

    def task(data: str | None = None) -> Task:
        size = split.split("_")[1]
        name = f"hr-bench-{size}" + ("-lmms" if lmms else "")
        title = f"HR-Bench {size.upper()}" + (" (lmms-eval's prompt)" if lmms else "")
        return benchmark_task(
            name, title, data, hub_id=HUB_ID, split=split, read=lambda limit: read(name, data, split, limit),
            to_sample=to_sample_lmms if lmms else to_sample, score=score_lmms if lmms else score,
            aggregate=aggregate_lmms if lmms else aggregate, headline="accuracy", max_new_tokens=128,
            judge=JUDGE_LMMS if lmms else JUDGE, version="1" if lmms else "2",  # 2: the release's prompt, can_infer
            notes="Accuracy per cycle of rotated options, averaged over cycles; "
            + ("lmms-eval's prompt and reading." if lmms else "the release's prompt, VLMEvalKit's reading."))
    return task


make_4k = make("hrbench_4k")
make_8k = make("hrbench_8k")
make_4k_lmms = make("hrbench_4k", "lmms")
make_8k_lmms = make("hrbench_8k", "lmms")
