"""vizwiz — VizWiz-VQA (Gurari et al., CVPR 2018: "VizWiz Grand Challenge: Answering Visual Questions
from Blind People"), validation.

Data: Hugging Face ``lmms-lab/VizWiz-VQA``, split ``val`` (4319 questions; columns question_id,
image, question, answers — 10 —, category: unanswerable, yes/no, number, other). Licence: CC BY 4.0.
``--data vizwiz=PATH``: a ``save_to_disk`` folder or parquet files of that layout.

Prompt: the question, then the paper's suffix "\\nWhen the provided information is insufficient,
respond with 'Unanswerable'.\\nAnswer the question using a single word or phrase.". VQA accuracy
as VizWiz's own evaluator computes it ("unanswerable" is an ordinary answer): the prediction is
normalised as TextVQA's (:func:`~attnprompt.evaluation.metrics.normalize_vqa`), the 10 references
are compared as the annotation file gives them (not normalised); version 2 of the task. The
``unanswerable`` category's accuracy is the paper's "VizWiz-Unanswerable" column (Table 6).

Where we differ from the original: its answerability metrics (average precision, F1 of the
unanswerable prediction) are not reported; the paper's numbers come from the test server.
"""

from __future__ import annotations

from typing import Any

from ..metrics import vqa_accuracy
from .base import EvalSample, Task
from .sources import benchmark_task
from .textvqa import aggregate
from .textvqa import to_sample as _textvqa_sample

HUB_ID = "lmms-lab/VizWiz-VQA"
SPLIT = "val"
SUFFIX = ("\nWhen the provided information is insufficient, respond with 'Unanswerable'.\nAnswer the question using "
          "a single word or phrase.")


def to_sample(row: Any) -> Any:
    return _textvqa_sample(row, SUFFIX)


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    """VizWiz's VQA accuracy: the prediction normalised, the references as given.

    >>> from PIL import Image
    >>> s = EvalSample("q", Image.new("RGB", (2, 2)), "What is this?", ("Coca Cola",) * 10)
    >>> score("coca cola", s), score("Coca Cola", s)
    ({'correct': 0.0}, {'correct': 0.0})
    """
    refs = sample.references
    return {"correct": vqa_accuracy(prediction, refs, normalize_references=False) if refs else 0.0}


def make(data: str | None = None) -> Task:
    return benchmark_task(
        "vizwiz", "VizWiz-VQA", data, hub_id=HUB_ID, split=SPLIT, to_sample=to_sample, score=score,
        aggregate=aggregate, headline="accuracy", max_new_tokens=16,
        version="2")  # 2: references not normalised, as VizWiz's evaluator
