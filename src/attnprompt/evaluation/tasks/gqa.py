"""gqa — GQA (Hudson & Manning, CVPR 2019: "GQA: A New Dataset for Real-World Visual Reasoning and
Compositional Question Answering"), test-dev balanced: 12,578 questions on 398 images.

Data: Hugging Face ``lmms-lab/GQA``, as lmms-eval's ``gqa`` task reads it: config
``testdev_balanced_instructions``, split ``testdev`` (columns id, imageId, question, answer, fullAnswer,
types …) joined by ``imageId`` to config ``testdev_balanced_images``, split ``testdev`` (columns id, image).
Licence: CC BY 4.0 (questions); images from Visual Genome (CC BY 4.0). ``--data gqa=PATH``: a folder
holding the two configs as sub-folders named after them (``testdev_balanced_instructions/``,
``testdev_balanced_images/``), each a ``save_to_disk`` folder or parquet files — a snapshot of the hub
repository is one.

Prompt as lmms-eval's (default model kwargs): the question, then "\\nAnswer the question using a single
word or phrase."; 16 new tokens. Scoring as its ``exact_match`` metric with ``ignore_case`` and
``ignore_punctuation``: the reply and the answer lower-cased, every ``string.punctuation`` character
removed, then compared whole (:func:`normalize_gqa`); accuracy over all questions, as a fraction, and per
structural type (query, verify, logical, choose, compare) when the rows carry ``types``.

Where others differ: ViCrop's released scorer (``get_score.py``, ``get_acc_gqa``) counts a reply correct
when the VQA-normalised answer is *contained* in it, so "the cup is red" is right for "red" there and
wrong here; GQA's own evaluator also reports consistency, validity, plausibility and distribution,
which need the scene graphs and are not computed.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

from ...errors import InputError
from ..metrics import mean_of
from .base import EvalSample, Task
from .sources import benchmark_task, load_rows

HUB_ID = "lmms-lab/GQA"
SPLIT = "testdev"
QUESTIONS = "testdev_balanced_instructions"
IMAGES = "testdev_balanced_images"
SUFFIX = "\nAnswer the question using a single word or phrase."
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_gqa(text: str) -> str:
    """lmms-eval's exact-match normalisation for GQA: lower-case, ``string.punctuation`` removed (spaces
    kept), the ends stripped.

    >>> normalize_gqa(" Yes."), normalize_gqa("T-shirt"), normalize_gqa("the cup")
    ('yes', 'tshirt', 'the cup')
    """
    return text.lower().translate(_PUNCTUATION).strip()


class Joined(Sequence):
    """GQA's question rows, each with its image (looked up by ``imageId`` when the row is read): new
    mappings, the loaded rows untouched.

    >>> rows = Joined([{"imageId": "n1", "question": "Colour?"}], [{"id": "n1", "image": "pixels"}])
    >>> len(rows), rows[0]["image"]
    (1, 'pixels')
    """

    def __init__(self, questions: Sequence[Mapping[str, Any]], images: Sequence[Mapping[str, Any]]) -> None:
        self.questions, self.images = questions, images
        # a datasets.Dataset gives its column at once
        ids = cast(Any, images)["id"] if hasattr(images, "column_names") else [r["id"] for r in images]
        self.where = {str(i): n for n, i in enumerate(ids)}

    def __len__(self) -> int:
        return len(self.questions)

    def __getitem__(self, index: int) -> dict[str, Any]:  # type: ignore[override]
        row = dict(self.questions[index])
        found = self.where.get(str(row["imageId"]))
        if found is None:
            raise InputError(f"gqa: question {row.get('id')!r} names image {row['imageId']!r}, which the "
                             f"{IMAGES} part does not hold")
        return {**row, "image": self.images[found]["image"]}

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))


def read(data: str | None, limit: int | None) -> Joined:
    """The first ``limit`` questions with their images, from the hub or a local folder (see the module)."""
    if data is not None and Path(data).is_dir():
        parts = [Path(data) / QUESTIONS, Path(data) / IMAGES]
        if not all(p.exists() for p in parts):
            raise InputError(f"gqa: {data} needs the sub-folders {QUESTIONS}/ and {IMAGES}/ (save_to_disk folders "
                             "or parquet files of lmms-lab/GQA's two configs)")
        return Joined(load_rows("gqa", str(parts[0]), hub_id=HUB_ID, split=SPLIT, limit=limit),
                      load_rows("gqa", str(parts[1]), hub_id=HUB_ID, split=SPLIT))
    try:
        return Joined(load_rows("gqa", data, hub_id=HUB_ID, split=SPLIT, config=QUESTIONS, limit=limit),
                      load_rows("gqa", data, hub_id=HUB_ID, split=SPLIT, config=IMAGES))
    except InputError as e:  # the generic hint, with GQA's two parts
        raise InputError(f"{e} (for gqa: a folder holding {QUESTIONS}/ and {IMAGES}/)") from None


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    types = row.get("types") or {}
    kind = types.get("structural") if isinstance(types, Mapping) else None
    return EvalSample(str(row["id"]), row["image"].convert("RGB"), str(row["question"]).strip(),
                      (str(row["answer"]),), suffix=SUFFIX, category=str(kind) if kind else None,
                      meta={"image_id": str(row["imageId"])})


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    """1.0 when the normalised reply equals the normalised answer.

    >>> s = EvalSample("q", (), "Colour?", ("red",))
    >>> score("Red.", s), score("It is red", s)
    ({'correct': 1.0}, {'correct': 0.0})
    """
    return {"correct": float(normalize_gqa(prediction) == normalize_gqa(sample.references[0]))}


def aggregate(columns: Mapping[str, Any]) -> dict[str, float]:
    return {"accuracy": mean_of("correct")(columns)}


def make(data: str | None = None) -> Task:
    return benchmark_task(
        "gqa", "GQA test-dev balanced", data, hub_id=HUB_ID, split=SPLIT, read=lambda limit: read(data, limit),
        to_sample=to_sample, score=score, aggregate=aggregate, headline="accuracy", max_new_tokens=16,
        notes="Exact match after lower-casing and removing punctuation (lmms-eval's gqa).")
