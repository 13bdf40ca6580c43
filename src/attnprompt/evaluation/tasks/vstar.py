"""vstar — V*Bench (Wu & Xie, CVPR 2024: "V*: Guided Visual Search as a Core Mechanism in Multimodal
LLMs"): 191 multiple-choice questions on high-resolution images, two categories: direct_attributes
(115) and relative_position (76).

Data: Hugging Face ``lmms-lab/vstar-bench``, split ``test`` (columns question_id, text — the question
with its options written "(A) opt (B) opt" —, label — the answer letter —, category, image).
Licence: MIT (the V* release; images under their sources' terms). ``--data vstar=PATH``: a
``save_to_disk`` folder or parquet files of that layout.

Prompt as lmms-eval's ``vstar_bench`` (``vstar_doc_to_text``): the question before "(A)", then one
line per option "A. opt", then "\\nAnswer with the option's letter from the given choices directly.";
16 new tokens. Scoring: lmms-eval's ``extract_answer_letter`` falls back to "the first A-D letter"
patterns that read "A cat" as A; here :func:`parse_letter` is stricter (see it) and refuses an
ambiguous reply (scored wrong). Accuracy per category and overall over all questions, as
lmms-eval's ``vstar_aggregate_results`` (not the mean of the two categories).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..metrics import mean_of
from .base import EvalSample, Task
from .sources import benchmark_task

HUB_ID = "lmms-lab/vstar-bench"
SPLIT = "test"
SUFFIX = "\nAnswer with the option's letter from the given choices directly."
CATEGORIES = ("direct_attributes", "relative_position")
_OPTION = re.compile(r"\(([A-D])\)\s*([^()]+?)(?=\s*\([A-D]\)|$)")


def split_options(text: str) -> tuple[str, list[str]]:
    """The question and its options from V*'s "Q? (A) x (B) y" text.

    >>> split_options("What colour is the cup? (A) red (B) blue")
    ('What colour is the cup?', ['red', 'blue'])
    """
    options = [o.strip() for _, o in _OPTION.findall(text)]
    return (text.split("(A)")[0].strip(), options) if options else (text.strip(), [])


def parse_letter(reply: str, options: Sequence[str]) -> str | None:
    """The option a reply picks, or None when it picks none or several: a bare letter, "(A)", "A.",
    "A)", "Answer: A", "The answer is (A)", or exactly one option's text.

    >>> [parse_letter(r, ["red", "blue"]) for r in ("B", "(A)", "a.", "A) red", "Answer: B", "blue", "A or B", "A cat")]
    ['B', 'A', 'A', 'A', 'B', 'B', None, None]
    """
    letters = "ABCD"[: len(options)]
    text = reply.strip().strip("*").strip()
    lead = re.match(r"^(?:the\s+)?(?:answer|option|choice)(?:\s+is)?\s*[:\-]?\s*", text, re.IGNORECASE)
    body = text[lead.end():] if lead else text
    m = re.fullmatch(rf"\(?([{letters}])\)?[.):\]]?(?:\s+(.*))?", body, re.IGNORECASE | re.DOTALL)
    if m:
        letter = m.group(1).upper()
        rest = (m.group(2) or "").strip().strip(".").lower()
        index = letters.index(letter)
        if not rest or rest == options[index].strip().lower():
            return letter
        if m.group(0)[1:2] not in ".):]" and body[:1] != "(":  # "A cat": a word, not a letter
            return None
        return letter if not any(rest == o.strip().lower() for o in options) else None
    said = body.strip().strip(".").lower()
    named = [letters[i] for i, o in enumerate(options) if said == o.strip().lower()]
    return named[0] if len(named) == 1 else None


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    question, options = split_options(str(row["text"]))
    text = question + "".join(f"\n{chr(65 + i)}. {o}" for i, o in enumerate(options))
    return EvalSample(str(row["question_id"]), row["image"].convert("RGB"), text,
                      (str(row["label"]).strip().upper(),), suffix=SUFFIX,
                      category=str(row.get("category") or "") or None, meta={"options": options})


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    return {"correct": float(parse_letter(prediction, sample.meta["options"]) == sample.references[0])}


def aggregate(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {"accuracy": mean_of("correct", 100)(columns)}


def make(data: str | None = None) -> Task:
    return benchmark_task(
        "vstar", "V*Bench", data, hub_id=HUB_ID, split=SPLIT, to_sample=to_sample, score=score, aggregate=aggregate,
        headline="accuracy", max_new_tokens=16,
        notes="Overall accuracy is over all 191 questions (lmms-eval's aggregate), not the mean of the 2 categories.")
