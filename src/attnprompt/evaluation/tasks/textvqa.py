"""textvqa — TextVQA (Singh et al., CVPR 2019: "Towards VQA Models That Can Read"), validation.

Data: Hugging Face ``lmms-lab/textvqa``, split ``validation`` (5000 questions; columns question_id,
question, image, answers — 10 annotators' —, ocr_tokens …). Licence: CC BY 4.0 (annotations);
images from Open Images (CC BY 2.0). ``--data textvqa=PATH``: a ``save_to_disk`` folder or parquet
files of that layout.

Prompt: the question, then "\\nAnswer the question using a single word or phrase." (the paper's
suffix; no OCR tokens — the paper's 48.3 for LLaVA-1.5-13B is the setting without them). VQA
accuracy as the EvalAI evaluation: prediction and every reference normalised
(:func:`~attnprompt.evaluation.metrics.normalize_vqa`), then the mean over references i of
min(1, #{j ≠ i: reference j = prediction} / 3); reported as a fraction.

Where we differ from the original: nothing known — this is LLaVA's ``m4c_evaluator`` (EvalAI's answer
processor, its 120-entry contraction table key for key). GT-Vision-Lab's VQAv2 ``vqaEval.py``
differs (it cleans only the references' punctuation, and only when they are not all identical;
other punctuation and ’ in its contractions); it is not TextVQA's scorer, so it is not followed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..metrics import mean_of, vqa_accuracy
from .base import EvalSample, Task
from .sources import benchmark_task

HUB_ID = "lmms-lab/textvqa"
SPLIT = "validation"
SUFFIX = "\nAnswer the question using a single word or phrase."


def to_sample(row: Mapping[str, Any], suffix: str = SUFFIX) -> EvalSample:
    return EvalSample(str(row["question_id"]), row["image"].convert("RGB"), str(row["question"]).strip(),
                      tuple(str(a) for a in row["answers"]), suffix=suffix,
                      category=str(row["category"]) if row.get("category") else None)


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    return {"correct": vqa_accuracy(prediction, sample.references) if sample.references else 0.0}


def aggregate(columns: Mapping[str, Any]) -> dict[str, float]:
    return {"accuracy": mean_of("correct")(columns)}


def make(data: str | None = None) -> Task:
    return benchmark_task(
        "textvqa", "TextVQA", data, hub_id=HUB_ID, split=SPLIT, to_sample=to_sample, score=score,
        aggregate=aggregate, headline="accuracy", max_new_tokens=16)
