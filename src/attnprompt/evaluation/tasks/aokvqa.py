"""aokvqa — A-OKVQA (Schwenk et al., ECCV 2022: "A-OKVQA: A Benchmark for Visual Question Answering using
World Knowledge"), validation, multiple choice: 1,145 questions on COCO images, four choices each.

Data: Hugging Face ``HuggingFaceM4/A-OKVQA``, split ``validation`` (columns image, question_id, question,
choices — four strings —, correct_choice_idx, direct_answers, difficult_direct_answer, rationales).
Licence: the hub copy's card states none; the authors' repository (allenai/aokvqa) is MIT (code); images
from COCO 2017 (their owners' terms). ``--data aokvqa=PATH``: a ``save_to_disk`` folder or parquet files of that layout.

Prompt: the question, one line per choice "A. choice", then "\\nAnswer with the option's letter from the
given choices directly." (the multiple-choice form V*'s task uses); 16 new tokens. Scoring: the reply read
by V*'s strict :func:`~attnprompt.evaluation.tasks.vstar.parse_letter` (a letter in any of its forms or
exactly one choice's text; anything ambiguous is wrong), against ``correct_choice_idx``; accuracy × 100,
and per ``difficult_direct_answer`` (``difficult`` / ``not difficult``).

How ViCrop evaluated A-OKVQA differs: its released code (``run.py``, ``get_score.py`` of "MLLMs Know Where
to Look", ICLR 2025) asks the open question with "Answer the question using a single word or phrase."
and scores the reply against the annotators' answers with VQA-style accuracy, 100 · min(1, 0.3 · matches)
— the direct-answer setting, not multiple choice. Its A-OKVQA figures are therefore not comparable with
this task's; the multiple-choice setting here is A-OKVQA's own MC evaluation (accuracy of the chosen option).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ..metrics import mean_of
from .base import EvalSample, Task
from .sources import benchmark_task
from .vstar import SUFFIX, parse_letter

HUB_ID = "HuggingFaceM4/A-OKVQA"
SPLIT = "validation"


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    choices = [str(c) for c in row["choices"]]
    text = str(row["question"]).strip() + "".join(f"\n{chr(65 + i)}. {c}" for i, c in enumerate(choices))
    hard = row.get("difficult_direct_answer")
    return EvalSample(str(row["question_id"]), row["image"].convert("RGB"), text,
                      ("ABCD"[int(row["correct_choice_idx"])],), suffix=SUFFIX,
                      category=None if hard is None else ("difficult" if hard else "not difficult"),
                      meta={"options": choices})


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    """1.0 when the reply picks the correct choice (:func:`~attnprompt.evaluation.tasks.vstar.parse_letter`).

    >>> s = EvalSample("q", (), "Which?\\nA. tea\\nB. milk", ("B",), meta={"options": ["tea", "milk"]})
    >>> [score(r, s)["correct"] for r in ("B", "(b)", "milk", "A", "A or B")]
    [1.0, 1.0, 1.0, 0.0, 0.0]
    """
    return {"correct": float(parse_letter(prediction, sample.meta["options"]) == sample.references[0])}


def aggregate(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {"accuracy": mean_of("correct", 100)(columns)}


def make(data: str | None = None) -> Task:
    return benchmark_task(
        "aokvqa", "A-OKVQA val (multiple choice)", data, hub_id=HUB_ID, split=SPLIT, to_sample=to_sample,
        score=score, aggregate=aggregate, headline="accuracy", max_new_tokens=16,
        notes="Multiple choice, V*'s strict letter parser; ViCrop scored the direct answers instead.")
