"""llava-bench — LLaVA-Bench (In-the-Wild) (Liu et al., NeurIPS 2023: "Visual Instruction Tuning"):
60 questions on 24 images — conversation, detailed description, complex reasoning — each answer
rated by a GPT judge against a GPT-4 reference answer.

Data: Hugging Face ``lmms-lab/llava-bench-in-the-wild``, split ``train`` (columns question_id, image,
question, gpt_answer, caption, category conv / detail / complex), or the original release folder
(``questions.jsonl``, ``context.jsonl``, ``answers_gpt4.jsonl``, ``images/``, from the Hugging Face
dataset ``liuhaotian/llava-bench-in-the-wild``): ``--data llava-bench=PATH``. Licence: the images'
own (see the dataset card); questions and answers under LLaVA's terms (research use).

The question is asked raw. Graded as LLaVA's ``eval_gpt_review_bench.py``: system "You are a
helpful and precise assistant for checking the quality of the answer.", the user message
"[Context]\\n{captions}\\n\\n[Question]\\n{q}\\n\\n[Assistant 1]\\n{reference}\\n\\n[End of Assistant
1]\\n\\n[Assistant 2]\\n{prediction}\\n\\n[End of Assistant 2]\\n\\n[System]\\n{rule}\\n\\n", model
``gpt-4-0314`` by default, temperature 0.2, max_tokens 1024. The first line of the reply, commas
made spaces, split on single spaces, must be exactly two numbers (reference, answer); else both are
−1 and, as the original, enter the means. Relative score per category and over all: mean(answer) /
mean(reference) × 100, each mean rounded to 3 decimals first (the original then rounds to 1).

Judge failures: only an unreadable reply scores −1/−1 (the report counts these as unreadable). A
judge call that got no reply is no verdict — the original retries until it gets one — so the answer
is left unscored, counted and listed, and the next run asks again.

Intervals resample images (60 questions on 24 images; the image is named by its pixels), not
questions. Where we differ from the original: a call with no reply is retried by the next run
rather than forever within this one; the original has no intervals.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..judge import JudgeSpec
from ..judge_prompts import LLAVA_BENCH_RULE, LLAVA_BENCH_SYSTEM
from .base import EvalSample, Task
from .sources import benchmark_task

HUB_ID = "lmms-lab/llava-bench-in-the-wild"
SPLIT = "train"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def original(folder: Path) -> list[dict[str, Any]] | None:
    """Rows from the original release (questions, contexts, GPT-4 answers, images); None when
    ``folder`` is not that."""
    from PIL import Image

    files = [folder / f for f in ("questions.jsonl", "context.jsonl", "answers_gpt4.jsonl")]
    if not all(f.is_file() for f in files):
        return None
    questions, contexts, answers = (_jsonl(f) for f in files)
    captions = {c["image"]: c["caption"] for c in contexts}
    by_id = {a["question_id"]: a["text"] for a in answers}
    return [{"question_id": q["question_id"], "image": Image.open(folder / "images" / q["image"]),
             "question": q["text"], "gpt_answer": by_id[q["question_id"]], "caption": captions[q["image"]],
             "category": q["category"]} for q in questions]


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    caption = row.get("caption") or ""
    caption = "\n".join(caption) if isinstance(caption, (list, tuple)) else str(caption)
    picture = row["image"].convert("RGB")
    # the hub copy names no image: its pixels do (2–3 questions share each of the 24)
    key = hashlib.sha1(f"{picture.size}".encode() + picture.tobytes()).hexdigest()[:12]
    return EvalSample(str(row["question_id"]), picture, str(row["question"]), (str(row["gpt_answer"]),),
                      category=str(row["category"]), meta={"caption": caption, "image_key": key})


def judge_prompt(prediction: str, sample: Mapping[str, Any], attempt: int) -> str:
    role = "Assistant"
    return (f"[Context]\n{sample['meta']['caption']}\n\n[Question]\n{sample['question']}\n\n"
            f"[{role} 1]\n{sample['references'][0]}\n\n[End of {role} 1]\n\n"
            f"[{role} 2]\n{prediction}\n\n[End of {role} 2]\n\n[System]\n{LLAVA_BENCH_RULE}\n\n")


def judge_parse(reply: str, sample: Mapping[str, Any]) -> dict[str, float] | None:
    """The two scores on the reply's first line (reference, answer); None when it is not two numbers.

    >>> judge_parse("8 9\\nBoth are good.", {}), judge_parse("8,9", {}), judge_parse("8, 9", {})
    ({'reference': 8.0, 'score': 9.0}, {'reference': 8.0, 'score': 9.0}, None)
    """
    parts = reply.split("\n")[0].replace(",", " ").split(" ")
    if len(parts) != 2:
        return None
    try:
        return {"reference": float(parts[0]), "score": float(parts[1])}
    except ValueError:
        return None


#: One attempt: the original does not ask again for an unreadable reply; it scores it −1, −1.
JUDGE = JudgeSpec("llava-bench", "gpt-4-0314", judge_prompt, judge_parse,
                  lambda sample: {"reference": -1.0, "score": -1.0}, temperatures=(0.2,), max_tokens=1024,
                  system=LLAVA_BENCH_SYSTEM)


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    # the judge scores; this only names the image, so that intervals resample images
    key = sample.meta.get("image_key")
    return {"image": float(int(key, 16))} if key else {}


def aggregate(columns: Mapping[str, Any]) -> dict[str, float]:
    reference = round(float(np.mean(columns["reference"])), 3)
    answer = round(float(np.mean(columns["score"])), 3)
    out = {"relative": answer / reference * 100 if reference else float("nan"), "answer_score": answer * 10,
           "reference_score": reference * 10}
    if "judge_failed" in columns:
        out["judge_failures"] = float(np.sum(columns["judge_failed"]))
    return out


def make(data: str | None = None) -> Task:
    return benchmark_task(
        "llava-bench", "LLaVA-Bench in the wild", data, hub_id=HUB_ID, split=SPLIT, original=original,
        to_sample=to_sample, score=score, aggregate=aggregate, headline="relative", correct="score",
        max_new_tokens=1024, judge=JUDGE, cluster="image",
        notes="relative: mean(answer score) / mean(GPT-4 reference score) × 100; answer_score and "
        "reference_score: the means × 10 (the original's later summary); an unreadable verdict scores "
        "−1, −1 and is counted in the means, as the original; intervals resample the 24 images.")
