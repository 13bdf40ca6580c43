"""mmvet — MM-Vet (Yu et al., ICML 2024: "MM-Vet: Evaluating Large Multimodal Models for Integrated
Capabilities"): 218 open questions needing recognition, OCR, knowledge, language generation,
spatial awareness and math, graded by a GPT judge.

Data: Hugging Face ``lmms-lab/MMVet``, split ``test`` (columns question_id, image, question, answer
with ``<AND>`` / ``<OR>``, capability — comma-separated), or the original release folder
(``mm-vet.json`` + ``images/``, from github.com/yuweihao/MM-Vet): ``--data mmvet=PATH``. Licence:
CC BY-NC 4.0.

The question is asked raw (the paper adds no suffix). Graded as ``mm-vet_evaluator.py``: the
few-shot prompt (:data:`~attnprompt.evaluation.judge_prompts.MMVET_PROMPT`) + "\\n" + question | answer (with
spaces around <AND>/<OR>) | prediction | (trailing space), one user message to ``gpt-4-0613`` by
default, max_tokens 3, temperature 0; the score is the reply's first space-separated token as a
number in [0, 1]. A reply that is not: again with "\\nPredict the correctness of the answer (digit): "
appended, at temperatures 0, 0.5, 1.0, 1.5; then 0.0, as the original (whose sixth call, at 2.0, is
never read). Total = mean × 100; per capability the mean × 100 over the questions that need it.

Judge failures: only a reply that cannot be read after every attempt scores 0.0 (the report counts
these as unreadable). A judge call that got no reply (an HTTP error three times in a run) is no
verdict: the original sleeps and retries on API errors, so the answer is left unscored, counted and
listed, and the next run asks again.

Where we differ from the original: a call with no reply is retried by the next run rather than in
a loop within this one; intervals resample questions (each has its own image).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..judge import JudgeSpec
from ..judge_prompts import MMVET_PROMPT, MMVET_RETRY
from ..metrics import mean_of
from .base import EvalSample, Task
from .sources import benchmark_task

HUB_ID = "lmms-lab/MMVet"
SPLIT = "test"


def original(folder: Path) -> list[dict[str, Any]] | None:
    """Rows from the original release: ``mm-vet.json`` (id → question, answer, capability list,
    imagename) and its ``images/`` folder; None when ``folder`` is not that."""
    from PIL import Image

    meta = folder / "mm-vet.json"
    if not meta.is_file():
        return None
    items = json.loads(meta.read_text(encoding="utf-8"))
    return [{"question_id": k, "image": Image.open(folder / "images" / v["imagename"]), "question": v["question"],
             "answer": v["answer"], "capability": ",".join(v["capability"])} for k, v in items.items()]


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    capability = row.get("capability") or ""
    capabilities = [c.strip() for c in (capability.split(",") if isinstance(capability, str) else capability)]
    return EvalSample(str(row["question_id"]), row["image"].convert("RGB"), str(row["question"]),
                      (str(row["answer"]),), category=tuple(c for c in capabilities if c))


def judge_prompt(prediction: str, sample: Mapping[str, Any], attempt: int) -> str:
    """The query of attempt ``attempt`` (0: the plain one; later: with the retry sentence)."""
    answer = sample["references"][0].replace("<AND>", " <AND> ").replace("<OR>", " <OR> ")
    query = MMVET_PROMPT + "\n" + " | ".join([sample["question"], answer, prediction, ""])
    return query if attempt == 0 else query + MMVET_RETRY


def judge_parse(reply: str, sample: Mapping[str, Any]) -> dict[str, float] | None:
    """The score: the reply's first space-separated token, a number in [0, 1]; else None.

    >>> judge_parse("0.7", {}), judge_parse("1.0 because", {}), judge_parse("seven", {}), judge_parse("1.5", {})
    ({'score': 0.7}, {'score': 1.0}, None, None)
    """
    try:
        value = float(reply.split(" ")[0].strip())
    except ValueError:
        return None
    return {"score": value} if 0.0 <= value <= 1.0 else None


JUDGE = JudgeSpec("mm-vet", "gpt-4-0613", judge_prompt, judge_parse, lambda sample: {"score": 0.0},
                  temperatures=(0.0, 0.0, 0.5, 1.0, 1.5), max_tokens=3)


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    return {}  # the judge scores


def aggregate(columns: Mapping[str, Any]) -> dict[str, float]:
    out = {"score": mean_of("score", 100.0)(columns)}
    if "judge_failed" in columns:
        out["judge_failures"] = float(sum(columns["judge_failed"]))
    return out


def make(data: str | None = None) -> Task:
    return benchmark_task(
        "mmvet", "MM-Vet", data, hub_id=HUB_ID, split=SPLIT, original=original, to_sample=to_sample, score=score,
        aggregate=aggregate, headline="score", correct="score", max_new_tokens=1024, judge=JUDGE,
        notes="score: the judge's mean × 100 (per capability in the categories); judge failures score 0.0, as the "
        "original.")
