"""pope — POPE (Li et al., EMNLP 2023: "Evaluating Object Hallucination in Large Vision-Language
Models"): "Is there a {object} in the image?" on COCO val2014 images, three subsets by how the
absent objects were drawn (random, popular, adversarial).

Data: Hugging Face ``lmms-lab/POPE``, split ``test`` (9000 questions, 3000 per subset; columns id,
question_id, question, answer yes/no, image_source, image, category = the subset). Licence: POPE's
MIT licence; the images are COCO's (CC BY 4.0). ``--data pope=PATH``: a ``save_to_disk`` folder or
parquet files of that layout.

Prompt as LLaVA's evaluation: the question, then "\\nAnswer the question using a single word or
phrase.". Scoring as LLaVA's ``eval_pope.py`` (lmms-eval's differs: exact match, and a yes-ratio
of the ground truth): keep the text before the first ".", drop ",", split into words; "No",
"not" or "no" among them → no, else yes. Accuracy, precision, recall, F1 ("yes" positive) and the
yes-ratio of the *predictions*, per subset (the report's categories) and overall; F1 is the headline.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..metrics import pope_metrics, yes_no_scores
from .base import EvalSample, Task
from .sources import benchmark_task

HUB_ID = "lmms-lab/POPE"
SPLIT = "test"
SUFFIX = "\nAnswer the question using a single word or phrase."
SUBSETS = ("adversarial", "popular", "random")


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    category = str(row.get("category") or "")
    return EvalSample(f"{category}/{row['question_id']}", row["image"].convert("RGB"), str(row["question"]).strip(),
                      (str(row["answer"]).strip().lower(),), suffix=SUFFIX, category=category or None,
                      meta={"image_source": str(row.get("image_source", ""))})


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    return yes_no_scores(prediction, sample.references[0])


def make(data: str | None = None) -> Task:
    return benchmark_task(
        "pope", "POPE", data, hub_id=HUB_ID, split=SPLIT, to_sample=to_sample, score=score, aggregate=pope_metrics,
        headline="f1", max_new_tokens=16, notes="yes_ratio: the share of answers read as yes (LLaVA's definition).")
