"""aokvqa — A-OKVQA (Schwenk et al., ECCV 2022: "A-OKVQA: A Benchmark for Visual Question Answering using
World Knowledge"), validation: 1,145 questions on COCO images, four choices and ten direct answers each.

Data: Hugging Face ``HuggingFaceM4/A-OKVQA``, split ``validation`` (columns image, question_id, question,
choices — four strings —, correct_choice_idx, direct_answers, difficult_direct_answer, rationales).
Licence: the hub copy's card states none; the authors' repository (allenai/aokvqa) is MIT (code); images
from COCO 2017 (their owners' terms). ``--data aokvqa=PATH``: a ``save_to_disk`` folder or parquet files of
that layout.

Two tasks, one per published protocol (there is no lmms-eval task):

- ``aokvqa``: multiple choice as VLMEvalKit evaluates its ``A-OKVQA`` (``ImageMCQDataset``): the prompt
  "Question: …", "Options:", one "A. choice" line each, "Please select the correct answer from the options
  above. \\n" (:func:`~attnprompt.evaluation.judge_prompts.mcq_prompt`; the trailing " \\n" dropped, as from
  every suffix); 128 new tokens (VLMEvalKit leaves the budget to the model). The reply read by
  :func:`~attnprompt.evaluation.metrics.can_infer` (the letter or the choice's text); a reply it cannot
  read is wrong without a judge — VLMEvalKit's "exact matching".
  With ``--judge``, those replies go to VLMEvalKit's option-matching judge (:data:`JUDGE`, its prompt
  quoted; ``chatgpt-0125`` by default, temperature 0), whose reply is read by ``can_infer`` too; after
  three unreadable replies VLMEvalKit draws a random letter among the choices and "Z" — here drawn from a
  generator seeded by the sample's id (so a rerun scores alike), counted as unreadable. Accuracy × 100,
  and per ``difficult_direct_answer`` (``difficult`` / ``not difficult``). Version 2 of the task (version
  1: the V* letter suffix and a strict letter parser, no published protocol).
- ``aokvqa-da``: the direct answers as ViCrop evaluated A-OKVQA ("MLLMs Know Where to Look", ICLR 2025:
  ``run.py``, ``get_score.py``): the open question with " Answer the question using a single word or
  phrase." (after a space), 20 new tokens, the reply scored against the ten direct answers by
  :func:`~attnprompt.evaluation.metrics.vicrop_accuracy`, 100 · min(1, 0.3 · matches), averaged. Hold it
  against ViCrop's A-OKVQA column.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..judge import JudgeSpec
from ..judge_prompts import MCQ_MATCH, MCQ_MATCH_VLMEVALKIT, mcq_prompt
from ..metrics import can_infer, mean_of, option_letters, vicrop_accuracy
from .base import EvalSample, Task
from .sources import benchmark_task

HUB_ID = "HuggingFaceM4/A-OKVQA"
SPLIT = "validation"
#: ViCrop's instruction after the question (joined with a space).
SUFFIX_DA = "Answer the question using a single word or phrase."


def _category(row: Mapping[str, Any]) -> str | None:
    hard = row.get("difficult_direct_answer")
    return None if hard is None else ("difficult" if hard else "not difficult")


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    choices = [str(c) for c in row["choices"]]
    question = str(row["question"])
    text, suffix = mcq_prompt(question, choices)
    return EvalSample(str(row["question_id"]), row["image"].convert("RGB"), text,
                      ("ABCD"[int(row["correct_choice_idx"])],), suffix=suffix, category=_category(row),
                      meta={"options": choices, "question": question})


def _right(letter: str | None, sample: Mapping[str, Any] | EvalSample) -> dict[str, float]:
    references = sample.references if isinstance(sample, EvalSample) else sample["references"]
    return {"correct": float(letter == references[0])}


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    """1.0 when :func:`~attnprompt.evaluation.metrics.can_infer` reads the correct choice.

    >>> s = EvalSample("q", (), "Which?", ("B",), meta={"options": ["tea", "milk"]})
    >>> [score(r, s)["correct"] for r in ("B", "(B)", "milk", "It is B.", "A", "tea or milk")]
    [1.0, 1.0, 1.0, 1.0, 0.0, 0.0]
    """
    return _right(can_infer(prediction, sample.meta["options"]), sample)


def aggregate(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {"accuracy": mean_of("correct", 100)(columns)}


def _settle(prediction: str, sample: Mapping[str, Any]) -> dict[str, float] | None:
    letter = can_infer(prediction, sample["meta"]["options"])
    return None if letter is None else _right(letter, sample)


def judge_prompt(prediction: str, sample: Mapping[str, Any], attempt: int) -> str:
    """VLMEvalKit's option-matching query (``build_prompt`` with ``build_option_str``'s options)."""
    lines = "".join(f"{chr(65 + i)}. {o}\n" for i, o in enumerate(sample["meta"]["options"]))
    options = "There are several options: \n" + lines
    return MCQ_MATCH + MCQ_MATCH_VLMEVALKIT.format(sample["meta"]["question"], options, prediction)


def _random_pick(sample: Mapping[str, Any]) -> dict[str, float]:
    letters = list(option_letters(sample["meta"]["options"])) + ["Z"]
    return _right(random.Random(f"aokvqa:{sample['id']}").choice(letters), sample)


#: VLMEvalKit's judge: only for replies ``can_infer`` cannot read; three tries, then a (seeded) random letter.
JUDGE = JudgeSpec("vlmevalkit-mcq", "gpt-3.5-turbo-0125", judge_prompt, _settle, _random_pick,
                  temperatures=(0.0, 0.0, 0.0), max_tokens=1024, settle=_settle, optional=True)


def to_sample_da(row: Mapping[str, Any]) -> EvalSample:
    return EvalSample(str(row["question_id"]), row["image"].convert("RGB"), str(row["question"]).strip(),
                      tuple(str(a) for a in row["direct_answers"]), suffix=SUFFIX_DA, category=_category(row))


def score_da(prediction: str, sample: EvalSample) -> dict[str, float]:
    """ViCrop's direct-answer accuracy (:func:`~attnprompt.evaluation.metrics.vicrop_accuracy`).

    >>> score_da("Fall.", EvalSample("q", (), "Season?", ["fall"] * 2 + ["autumn"] * 8))
    {'accuracy': 0.6}
    """
    return {"accuracy": vicrop_accuracy(prediction, sample.references)}


def aggregate_da(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {"accuracy": mean_of("accuracy", 100)(columns)}


def make(data: str | None = None) -> Task:
    return benchmark_task(
        "aokvqa", "A-OKVQA val (multiple choice)", data, hub_id=HUB_ID, split=SPLIT, to_sample=to_sample,
        score=score, aggregate=aggregate, headline="accuracy", max_new_tokens=128, judge=JUDGE,
        version="2",  # 2: VLMEvalKit's prompt and can_infer
        notes="Multiple choice as VLMEvalKit (its prompt, can_infer, its judge with --judge).")


def make_da(data: str | None = None) -> Task:
    return benchmark_task(
        "aokvqa-da", "A-OKVQA val (direct answers)", data, hub_id=HUB_ID, split=SPLIT, to_sample=to_sample_da,
        score=score_da, aggregate=aggregate_da, headline="accuracy", correct="accuracy", max_new_tokens=20,
        notes="ViCrop's direct-answer scoring: 100 · min(1, 0.3 · matching annotators).")
