"""shapes-vqa — the question kinds the shapes VLM was trained on, on held-out scenes.

Source: the offline testbed (:mod:`attnprompt.shapes`): scenes from the ``shapes-vqa`` seed range
(:data:`attnprompt.shapes.splits.SHAPES_VQA`, never trained on), 4–6 objects at 224 px, one question
of each kind per scene where the scene supports it — colour of a named shape, shape of a named
colour, counting, existence (absent objects included), left/right. Scored by exact one-word match
(the reply's first word); per-kind accuracy is the report's per-category table. No answer-format
suffix: the shapes VLM knows only its own words.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

import numpy as np

from ...shapes import make_questions, make_scene
from ...shapes.splits import SHAPES_VQA, TUNING, SeedRange
from ..metrics import first_word_match, mean_of
from .base import EvalSample, Task, rows_from

#: Scenes in the task (about 7 questions each) unless a limit says fewer questions.
SCENES = 200
SIZE = 224


def questions(seed: int) -> Iterator[dict[str, Any]]:
    """One scene's questions, in order."""
    rng = np.random.default_rng(seed)
    scene = make_scene(seed, n_objects=int(rng.integers(4, 7)), size=SIZE)
    seen: dict[str, int] = {}
    for qa in make_questions(scene, rng, per_kind=1):
        yield {"seed": seed, "scene": scene, "qa": qa, "k": seen.setdefault(qa.kind, 0)}
        seen[qa.kind] += 1


def rows(limit: int | None, seeds: SeedRange = SHAPES_VQA) -> list[dict[str, Any]]:
    """The first ``limit`` questions, scene after scene (the default scenes' questions without a limit)."""
    return rows_from(seeds.seeds(seeds.size if limit is not None else SCENES), questions, limit)


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    qa = row["qa"]
    return EvalSample(f"{row['seed']}/{qa.kind}/{row['k']}", row["scene"].image, qa.question, (qa.answer,),
                      category=qa.kind, meta={"seed": row["seed"], "targets": list(qa.targets)})


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    return {"correct": first_word_match(prediction, sample.references)}


def aggregate(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {"accuracy": mean_of("correct")(columns)}


TASK = Task("shapes-vqa", f"attnprompt.shapes, seeds {SHAPES_VQA.start}… ({SCENES} scenes by default)", rows,
            to_sample, score, aggregate, headline="accuracy", max_new_tokens=3)
#: For choosing defaults only (auto's gate): the same questions on training-range seeds, never reported.
TUNING_TASK = Task("tuning-shapes-vqa", f"attnprompt.shapes, TRAINING-range seeds {TUNING.start}… ({SCENES} scenes by "
                   "default), for tuning only", partial(rows, seeds=TUNING), to_sample, score, aggregate,
                   headline="accuracy", max_new_tokens=3)
