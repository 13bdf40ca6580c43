"""docvqa — DocVQA (Mathew et al., WACV 2021: "DocVQA: A Dataset for VQA on Document Images"), validation:
5,349 questions on 1,286 scanned document pages, several reference answers each.

Data: Hugging Face ``lmms-lab/DocVQA``, config ``DocVQA``, split ``validation`` (columns questionId,
question, question_types, image, docId, ucsf_document_id, ucsf_document_page_no, answers, data_split).
Licence: the dataset's terms of use (Robust Reading Competition registration; documents from the UCSF
Industry Documents Library). ``--data docvqa=PATH``: a ``save_to_disk`` folder or parquet files of that
layout.

Prompt as lmms-eval's ``docvqa_val`` (default model kwargs): the question, then "\\nAnswer the question
using a single word or phrase."; 32 new tokens, as its template (``_default_template_docvqa_yaml``).
Scoring: ANLS (average normalised Levenshtein similarity) with threshold 0.5, as lmms-eval's ``anls``
metric — the Robust Reading Competition's definition, see :func:`anls` — on the reply stripped of
surrounding whitespace, as lmms-eval strips every reply before scoring (here the harness does, for every
backend: "1998\\n" against "1999" is 0.75, not 0.80); reported as a fraction (the mean over questions),
and per question type. Version 2 of the task (version 1: 128 new tokens).

Where others differ: ViCrop's released scorer (``get_score.py``, ``evaluate_docvqa``) counts a reply
correct when it contains a reference or is contained in one — an accuracy, not ANLS — so its DocVQA
figures are not comparable with this task's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..metrics import mean_of
from .base import EvalSample, Task
from .sources import benchmark_task

HUB_ID = "lmms-lab/DocVQA"
CONFIG = "DocVQA"
SPLIT = "validation"
SUFFIX = "\nAnswer the question using a single word or phrase."
THRESHOLD = 0.5


def levenshtein(a: str, b: str) -> int:
    """The edit distance between two strings (insertions, deletions, substitutions; each costs 1).

    >>> levenshtein("kitten", "sitting"), levenshtein("", "abc"), levenshtein("same", "same")
    (3, 3, 0)
    """
    if len(a) > len(b):
        a, b = b, a
    row = list(range(len(a) + 1))
    for j, cb in enumerate(b, 1):
        previous, row[0] = row[0], j
        for i, ca in enumerate(a, 1):
            previous, row[i] = row[i], min(row[i] + 1, row[i - 1] + 1, previous + (ca != cb))
    return row[-1]


def anls(prediction: str, references: Sequence[str], threshold: float = THRESHOLD) -> float:
    """ANLS of one reply: 1 − the smallest normalised edit distance to a reference, 0 when that
    similarity is below ``threshold``. Both sides are compared lower-cased with their whitespace
    collapsed; the distance is divided by the longer of the two *as given* (the RRC script's and
    lmms-eval's rule, so surrounding spaces lengthen the denominator). No references score 0.

    >>> anls("Dr. Smith", ["dr. smith"]), anls("1999", ["1998"]), anls("1.5 kg", ["1.5kg", "2"])
    (1.0, 0.75, 0.8333333333333334)
    >>> anls("cat", ["dog"]), anls("ab", ["abcd"])
    (0.0, 0.5)
    """
    pred = " ".join(prediction.strip().lower().split())
    distances = []
    for reference in references:
        ref = " ".join(reference.strip().lower().split())
        longest = max(len(reference.upper()), len(prediction.upper()))
        distances.append(0.0 if longest == 0 else levenshtein(ref, pred) / longest)
    if not distances:
        return 0.0
    similarity = 1.0 - min(distances)
    return similarity if similarity >= threshold else 0.0


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    kinds = [str(k) for k in (row.get("question_types") or [])]
    return EvalSample(str(row["questionId"]), row["image"].convert("RGB"), str(row["question"]).strip(),
                      tuple(str(a) for a in row["answers"]), suffix=SUFFIX, category=tuple(kinds) or None,
                      meta={"doc_id": str(row.get("docId", ""))})


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    """``anls``: the reply's :func:`anls` against the sample's references.

    >>> score("$ 2,000", EvalSample("q", (), "Total?", ("$2,000",)))
    {'anls': 0.8571428571428572}
    """
    return {"anls": anls(prediction, sample.references)}


def aggregate(columns: Mapping[str, Any]) -> dict[str, float]:
    return {"anls": mean_of("anls")(columns)}


def make(data: str | None = None) -> Task:
    return benchmark_task(
        "docvqa", "DocVQA val", data, hub_id=HUB_ID, split=SPLIT, config=CONFIG, to_sample=to_sample,
        score=score, aggregate=aggregate, headline="anls", correct="anls", max_new_tokens=32,
        version="2",  # 2: 32 new tokens, stripped replies
        notes="ANLS, threshold 0.5 (lmms-eval's docvqa_val); ViCrop scored containment accuracy instead.")
