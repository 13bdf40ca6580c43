"""vstar — V*Bench (Wu & Xie, CVPR 2024: "V*: Guided Visual Search as a Core Mechanism in Multimodal
LLMs"): 191 multiple-choice questions on high-resolution images, two categories: direct_attributes
(115) and relative_position (76).

Data: Hugging Face ``lmms-lab/vstar-bench``, split ``test`` (columns question_id, text — the question
with its options —, label — the answer letter —, category, image). Licence: MIT (the V* release;
images under their sources' terms). ``--data vstar=PATH``: a ``save_to_disk`` folder or parquet files
of that layout. ``text`` comes in two layouts, both read (:func:`split_options`): the options inline,
"Q? (A) x (B) y", and the original release's, one option per line followed by an instruction line,
"Q?\\n(A) x\\n(B) y\\nAnswer with the option's letter from the given choices directly." — the release's
instruction is dropped, so it is asked once.

Prompt as lmms-eval's ``vstar_bench`` (``vstar_doc_to_text``): the question before "(A)", one line per
option "A. opt", then "\\nAnswer with the option's letter from the given choices directly."; 16 new
tokens. Scoring: the reply read as lmms-eval's ``extract_answer_letter`` reads it, less its misreads
("Answer: D" read as A, "It is red." as D …), plus a reply that is exactly an option's text
(:func:`~attnprompt.evaluation.metrics.parse_letter`, which lists every difference). Accuracy per
category and overall over all questions, as lmms-eval's ``vstar_aggregate_results`` (not the mean of the
two categories). Version 2 of the task: both layouts, this reader.

Where lmms-eval differs on the release's layout: its option pattern runs to the end of the text, so the
last option becomes "leather\\nAnswer with …" and the instruction is asked twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..metrics import mean_of, parse_letter
from .base import EvalSample, Task
from .sources import benchmark_task

HUB_ID = "lmms-lab/vstar-bench"
SPLIT = "test"
SUFFIX = "\nAnswer with the option's letter from the given choices directly."
CATEGORIES = ("direct_attributes", "relative_position")
# an option runs to the next "(X)", the end of its line, or the end of the text
_OPTION = re.compile(r"\(([A-D])\)[ \t]*([^()\n]+?)(?=\s*\([A-D]\)|[ \t]*\n|\s*$)")


def split_options(text: str) -> tuple[str, list[str]]:
    """The question and its options from V*'s text, in either layout: inline, or one option per line
    (a line after the last option, the release's instruction, is not an option).

    >>> split_options("What colour is the cup? (A) red (B) blue")
    ('What colour is the cup?', ['red', 'blue'])
    >>> split_options("What is it made of?\\n(A) rubber\\n(B) leather\\nAnswer with the option's letter.")
    ('What is it made of?', ['rubber', 'leather'])
    """
    options = [o.strip() for _, o in _OPTION.findall(text)]
    return (text.split("(A)")[0].strip(), options) if options else (text.strip(), [])


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    question, options = split_options(str(row["text"]))
    text = question + "".join(f"\n{chr(65 + i)}. {o}" for i, o in enumerate(options))
    return EvalSample(str(row["question_id"]), row["image"].convert("RGB"), text,
                      (str(row["label"]).strip().upper(),), suffix=SUFFIX,
                      category=str(row.get("category") or "") or None, meta={"options": options})


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    """1.0 when :func:`~attnprompt.evaluation.metrics.parse_letter` reads the correct letter.

    >>> s = EvalSample("q", (), "Made of?", ("D",), meta={"options": ["rubber", "cotton", "wool", "leather"]})
    >>> [score(r, s)["correct"] for r in ("I think it is D", "It's D", "D - leather", "leather", "Answer: A")]
    [1.0, 1.0, 1.0, 1.0, 0.0]
    """
    return {"correct": float(parse_letter(prediction, sample.meta["options"]) == sample.references[0])}


def aggregate(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {"accuracy": mean_of("correct", 100)(columns)}


def make(data: str | None = None) -> Task:
    return benchmark_task(
        "vstar", "V*Bench", data, hub_id=HUB_ID, split=SPLIT, to_sample=to_sample, score=score, aggregate=aggregate,
        headline="accuracy", max_new_tokens=16, version="2",  # 2: both text layouts, lmms-eval's reader
        notes="Overall accuracy is over all 191 questions (lmms-eval's aggregate), not the mean of the 2 categories.")
