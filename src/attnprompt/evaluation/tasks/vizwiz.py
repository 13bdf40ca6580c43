"""vizwiz — VizWiz-VQA (Gurari et al., CVPR 2018: "VizWiz Grand Challenge: Answering Visual Questions
from Blind People"), validation.

Data: Hugging Face ``lmms-lab/VizWiz-VQA``, split ``val`` (4319 questions; columns question_id,
image, question, answers — 10 —, category: unanswerable, yes/no, number, other). Licence: CC BY 4.0.
``--data vizwiz=PATH``: a ``save_to_disk`` folder or parquet files of that layout.

Prompt: the question, then the paper's suffix "\\nWhen the provided information is insufficient,
respond with 'Unanswerable'.\\nAnswer the question using a single word or phrase.". VQA accuracy
exactly as TextVQA's ("unanswerable" is an ordinary answer); the ``unanswerable`` category's
accuracy is the paper's "VizWiz-Unanswerable" column (Table 6).
"""

from __future__ import annotations

from typing import Any

from .base import Task
from .sources import benchmark_task
from .textvqa import aggregate, score
from .textvqa import to_sample as _textvqa_sample

HUB_ID = "lmms-lab/VizWiz-VQA"
SPLIT = "val"
SUFFIX = ("\nWhen the provided information is insufficient, respond with 'Unanswerable'.\nAnswer the question using "
          "a single word or phrase.")


def to_sample(row: Any) -> Any:
    return _textvqa_sample(row, SUFFIX)


def make(data: str | None = None) -> Task:
    return benchmark_task(
        "vizwiz", "VizWiz-VQA", data, hub_id=HUB_ID, split=SPLIT, to_sample=to_sample, score=score,
        aggregate=aggregate, headline="accuracy", max_new_tokens=16)
