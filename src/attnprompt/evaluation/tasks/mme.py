"""mme — MME (Fu et al., "MME: A Comprehensive Evaluation Benchmark for Multimodal Large Language
Models", 2023): 14 subtasks of yes/no questions, two per image.

Data: Hugging Face ``lmms-lab/MME``, split ``test`` (2374 questions; columns question_id — shared by
the two questions of one image —, image, question, answer Yes/No, category). Licence: the MME
authors' terms (research use; request the data from them). ``--data mme=PATH`` reads a
``save_to_disk`` folder or parquet files of that layout.

The question ends with MME's own instruction "Please answer yes or no.", which is the paper's
suffix for MME: it is split off as the suffix, so strategies place it and quote the bare question.
Scoring as lmms-eval's ``mme`` (from Otter's): the reply lower-cased, stripped, every "." removed;
"yes"/"no" as such, "y"/"n" alone, else "yes" or "no" within its first four characters, else
"other" (wrong). Per category: over its images, accuracy·100 (per question: 0, 50 or 100) +
accuracy⁺·100 (both questions right); perception = the sum over existence, count, position, color,
posters, celebrity, scene, landmark, artwork, OCR (max 2000), cognition over
commonsense_reasoning, numerical_calculation, text_translation, code_reasoning (max 800). Also
reported: ``accuracy``, per question ×100 — the paper's "MME 85.5" for LLaVA-1.5-13B matches this
scale, not the perception score (1531 for that model). Intervals resample whole images, each draw
its own image (an image drawn twice is two images in acc⁺). As in calculation.py, an image is scored
only with both its answers: an image with a failed question leaves every metric (acc, acc⁺, the
per-question accuracy) and is counted in the report as ``partial``.

Where we differ from the original: nothing in the scoring; the original has no intervals.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from .base import EvalSample, Task
from .sources import benchmark_task

HUB_ID = "lmms-lab/MME"
SPLIT = "test"
SUFFIX = "Please answer yes or no."
PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork",
              "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
CATEGORIES = PERCEPTION + COGNITION


def parse(reply: str) -> str:
    """MME's reading of a reply: ``"yes"``, ``"no"`` or ``"other"``.

    >>> [parse(t) for t in ("Yes.", "no", "Y", "Yes, it is.", "Not really", "The answer is yes", "")]
    ['yes', 'no', 'yes', 'yes', 'no', 'other', 'other']
    """
    text = reply.lower().strip().replace(".", "")
    if text in ("yes", "no"):
        return text
    if len(text) == 1:
        return {"y": "yes", "n": "no"}.get(text, "other")
    head = text[:4]
    return "yes" if "yes" in head else "no" if "no" in head else "other"


def image_key(question_id: str) -> float:
    """A number naming the image (the question_id both its questions share), for score columns."""
    return float(int(hashlib.sha1(question_id.encode()).hexdigest()[:12], 16))


def image_of(sample_id: str) -> str:
    """The image a sample id names (its question_id): MME scores an image's two questions together.

    >>> image_of("code_reasoning/0020.png|Is the output 5?")
    'code_reasoning/0020.png'
    """
    return sample_id.split("|", 1)[0]


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    question = str(row["question"]).strip()
    bare = question[: -len(SUFFIX)].rstrip() if question.endswith(SUFFIX) else question
    return EvalSample(f"{row['question_id']}|{bare}", row["image"].convert("RGB"), bare, (str(row["answer"]),),
                      suffix=SUFFIX, category=str(row["category"]), meta={"question_id": str(row["question_id"])})


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    gold = sample.references[0].lower().strip().replace(".", "")
    return {"correct": float(parse(prediction) == gold), "image": image_key(sample.meta["question_id"]),
            "category": float(CATEGORIES.index(sample.category) if sample.category in CATEGORIES else -1)}


def aggregate(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Per category acc·100 + acc⁺·100 over its images; perception, cognition and total sums;
    and the per-question accuracy ×100."""
    correct, image, category = (np.asarray(columns[k]) for k in ("correct", "image", "category"))
    out: dict[str, float] = {}
    for k, name in enumerate(CATEGORIES):
        here = category == k
        if not here.any():
            continue
        images = np.unique(image[here])
        per_image = [correct[here & (image == i)] for i in images]
        acc = np.mean([s.mean() for s in per_image]) * 100
        acc_plus = np.mean([float(s.sum() == 2) for s in per_image]) * 100
        out[name] = float(acc + acc_plus)
    perception = sum(out.get(c, 0.0) for c in PERCEPTION)
    cognition = sum(out.get(c, 0.0) for c in COGNITION)
    return {"perception": perception, "cognition": cognition, "total": perception + cognition,
            "accuracy": float(correct.mean() * 100), **out}


def make(data: str | None = None) -> Task:
    return benchmark_task(
        "mme", "MME", data, hub_id=HUB_ID, split=SPLIT, to_sample=to_sample, score=score, aggregate=aggregate,
        headline="perception", max_new_tokens=16, cluster="image", group_of=image_of,
        notes="perception and cognition: sums of per-category accuracy·100 + accuracy⁺·100 (max 2000 / 800); "
        "accuracy: per question ×100 (the paper's MME column).")
