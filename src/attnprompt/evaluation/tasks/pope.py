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
yes-ratio of the *predictions*. Per subset, every one of them, as ``eval_pope.py`` prints them
(``random_f1``, ``popular_accuracy`` …); the headline ``f1`` and the unprefixed metrics are pooled
over the subsets' questions (9000), which the original does not print — quote the per-subset ones
to compare with a paper. Intervals resample images (``image_source``): an image carries 6
questions per subset and the same images recur in the three subsets, so rows are not independent.

Where we differ from the original: the pooled figures are ours (the original has only per-subset
ones); records stored before the per-subset columns existed give only the pooled figures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

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


def _key(text: str) -> float:
    # a number naming a string, for score columns (which hold numbers only)
    return float(int(hashlib.sha1(text.encode()).hexdigest()[:12], 16))


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    subset = sample.category if sample.category in SUBSETS else None
    return {**yes_no_scores(prediction, sample.references[0]),
            "subset": float(SUBSETS.index(subset)) if subset else -1.0,
            "image": _key(sample.meta.get("image_source") or sample.id)}


def aggregate(columns: Mapping[str, Any]) -> dict[str, float]:
    """Pooled accuracy, precision, recall, F1 and yes-ratio, then each subset's as ``{subset}_{metric}``.

    >>> cols = {"pred_yes": np.array([1, 0, 1, 1]), "gold_yes": np.array([1, 0, 0, 1]),
    ...         "subset": np.array([2, 2, 1, 1])}
    >>> m = aggregate(cols)
    >>> m["accuracy"], m["random_accuracy"], m["popular_precision"], "adversarial_f1" in m
    (0.75, 1.0, 0.5, False)
    """
    out = dict(pope_metrics(columns))
    if "subset" in columns:
        subset = np.asarray(columns["subset"])
        for k, name in enumerate(SUBSETS):
            here = subset == k
            if here.any():
                part = pope_metrics({c: np.asarray(columns[c])[here] for c in ("pred_yes", "gold_yes")})
                out.update({f"{name}_{metric}": value for metric, value in part.items()})
    return out


def make(data: str | None = None) -> Task:
    return benchmark_task(
        "pope", "POPE", data, hub_id=HUB_ID, split=SPLIT, to_sample=to_sample, score=score, aggregate=aggregate,
        headline="f1", max_new_tokens=16, cluster="image",
        notes="f1 (headline) and the unprefixed metrics: pooled over the subsets; {subset}_{metric}: each "
        "subset's, as LLaVA's eval_pope prints them. yes_ratio: the share of answers read as yes (LLaVA's "
        "definition). Intervals resample images (6 questions per image per subset, the same images in each).")
