"""hr_bench — HR-Bench (Wang et al., AAAI 2025: "Divide, Conquer and Combine: A Training-Free Framework
for High-Resolution Image Perception in Multimodal Large Language Models"): 4K and 8K images, 800 rows
each, single-instance and cross-instance questions, each question asked in several cycles with its
four options rotated (``cycle_category``).

Data: Hugging Face ``DreamMr/HR-Bench``, splits ``hrbench_4k`` / ``hrbench_8k`` (columns index,
question, answer — the letter —, category, A, B, C, D, cycle_category, image as base64). Licence: as
the release states. ``--data hr-bench-4k=PATH``: a ``save_to_disk`` folder or parquet files.

Prompt: the question, "A. opt" lines, then "\\nAnswer with the option's letter from the given choices
directly.". Scoring: the release (``hrbench/vlmeval/dataset/utils/hrbench.py``) asks an LLM judge
yes/no per row; VLMEvalKit first matches the option letter or text (``can_infer``). Here the reply is
read by V*'s strict :func:`~attnprompt.evaluation.tasks.vstar.parse_letter` (no judge). Aggregate as
``report_acc_hrbench``: accuracy within each cycle (per category and all), then the *mean over
cycles* — a question counts per cycle, not "right only if right in every cycle".
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping
from typing import Any

import numpy as np
from PIL import Image

from .base import EvalSample, Task
from .sources import benchmark_task
from .vstar import SUFFIX, parse_letter

HUB_ID = "DreamMr/HR-Bench"
CATEGORIES = ("single", "cross")


def _image(value: Any) -> Image.Image:
    if isinstance(value, Image.Image):
        return value.convert("RGB")
    return Image.open(io.BytesIO(base64.b64decode(value))).convert("RGB")


def _key(text: str) -> str:
    return "cross" if "cross" in text.lower() else "single"


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    options = [str(row[c]) for c in "ABCD" if row.get(c) not in (None, "")]
    text = str(row["question"]).strip() + "".join(f"\n{chr(65 + i)}. {o}" for i, o in enumerate(options))
    category = str(row["category"])
    return EvalSample(str(row["index"]), _image(row["image"]), text, (str(row["answer"]).strip().upper(),),
                      suffix=SUFFIX, category=category,
                      meta={"options": options, "cycle": str(row["cycle_category"]), "kind": _key(category)})


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    right = float(parse_letter(prediction, sample.meta["options"]) == sample.references[0])
    cycle = sample.meta["cycle"]
    return {"correct": right, f"cycle:{cycle}:all": right, f"cycle:{cycle}:{sample.meta['kind']}": right}


def aggregate(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Accuracy per cycle, then the mean over cycles, overall and per category (× 100).

    >>> nan = float("nan")
    >>> aggregate({"cycle:0:all": np.array([1., 1., nan, nan]), "cycle:1:all": np.array([nan, nan, 0., 1.])})
    {'accuracy': 75.0}
    """
    out: dict[str, float] = {}
    for group, name in (("all", "accuracy"), ("single", "single_instance"), ("cross", "cross_instance")):
        cycles = [np.nanmean(v) for k, v in sorted(columns.items())
                  if k.startswith("cycle:") and k.endswith(f":{group}") and np.isfinite(v).any()]
        if cycles:
            out[name] = float(np.mean(cycles) * 100)
    return out


def make(split: str) -> Any:
    def task(data: str | None = None) -> Task:
        name = "hr-bench-" + split.split("_")[1]
        return benchmark_task(name, f"HR-Bench {split.split('_')[1].upper()}", data, hub_id=HUB_ID, split=split,
                              to_sample=to_sample, score=score, aggregate=aggregate, headline="accuracy",
                              max_new_tokens=16, notes="Accuracy per cycle of rotated options, averaged over cycles.")
    return task


make_4k = make("hrbench_4k")
make_8k = make("hrbench_8k")
