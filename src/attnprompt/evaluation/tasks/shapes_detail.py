"""shapes-detail — small details in a large image (V*Bench-like, offline, with ground truth).

Source: the offline testbed (:mod:`attnprompt.shapes.detail`): a held-out 224-px scene of 2 objects
(:data:`attnprompt.shapes.splits.SHAPES_DETAIL`, never trained on) pasted at a random position of an
object-free cluttered canvas ``ratio`` times its side; the questions ask the colour of a named shape or
the shape of a named colour, unique in the scene and so in the canvas (the canvas holds no object).
Each sample's ``meta`` holds the named object's box and the scene's box in canvas pixels.

Registered ratios: ``shapes-detail`` (2×, a 448-px canvas) and ``shapes-detail-4x`` (896 px), each
reported on its own; :func:`detail_task` builds any other. Rows for scale, answered on the same
questions: ``zoom-oracle`` (the scene's own region alone: what a perfect crop gives) and
``zoom-centre`` (a region of the same size at the image centre: a crop that knows nothing). Scored by
exact one-word match (the reply's first word); per-kind accuracy is the report's per-category table;
intervals resample scenes (two questions share one).

With distractors: ``shapes-detail-crowded-4x`` and ``-8x`` (:func:`crowded_task`, :mod:`attnprompt.shapes.crowded`)
hide the scene (seeds :data:`attnprompt.shapes.splits.CROWDED`) among other held-out scenes, loose coloured
shapes and colour blobs, none of which carries the attribute the question names, so the named object is
unique in the canvas while everything else around it is colourful; each question has its own canvas. Their
``meta`` also holds ``named`` (the attribute the question names: ``{"shape": …}`` or ``{"color": …}``) and
the number of distractor scenes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from ...shapes import make_questions, make_scene
from ...shapes.crowded import make_crowded
from ...shapes.detail import make_detail
from ...shapes.questions import KIND_COLOR, KIND_SHAPE
from ...shapes.splits import CROWDED, CROWDED_DISTRACTORS, SHAPES_DETAIL, TUNING, TUNING_DISTRACTORS, SeedRange
from ..metrics import first_word_match, mean_of
from .base import EvalSample, Task, rows_from

#: Questions per task unless a limit says fewer: enough that a difference of 0.1 lies outside the 95 %
#: paired interval (the interval's half-width is at most about 0.07 at 400).
QUESTIONS = 400
SCENE_SIZE = 224
KINDS = (KIND_COLOR, KIND_SHAPE)


def questions(seed: int, ratio: int) -> Iterator[dict[str, Any]]:
    """One detail scene's questions (a colour and a shape question where the scene supports them)."""
    detail = make_detail(seed, ratio=ratio, scene_size=SCENE_SIZE)
    rng = np.random.default_rng([seed, 7])
    for qa in make_questions(detail.scene, rng, kinds=KINDS, per_kind=1):
        yield {"seed": seed, "detail": detail, "qa": qa}


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    """A row → its sample: the canvas, the question, the answer; the boxes in ``meta``.

    >>> s = TASK.samples(1)[0]
    >>> s.images[0].size, s.meta["ratio"], s.references[0] in ("red", "circle", "star") or True
    ((448, 448), 2, True)
    """
    qa, detail = row["qa"], row["detail"]
    obj = detail.scene.objects[qa.targets[0]]
    return EvalSample(f"{row['seed']}/{qa.kind}", detail.image, qa.question, (qa.answer,), category=qa.kind,
                      meta={"seed": row["seed"], "ratio": detail.ratio, "box": list(detail.box_of(obj)),
                            "scene_box": list(detail.scene_box)})


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    return {"correct": first_word_match(prediction, sample.references), "scene": float(sample.meta["seed"])}


def aggregate(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {"accuracy": mean_of("correct")(columns)}


def detail_task(ratio: int = 2, name: str | None = None) -> Task:
    """The shapes-detail task at canvas/scene ``ratio``.

    >>> detail_task(3).name, len(detail_task(3).samples(4))
    ('shapes-detail-3x', 4)
    """
    name = name or f"shapes-detail-{ratio}x"

    def rows(limit: int | None) -> list[dict[str, Any]]:
        return rows_from(SHAPES_DETAIL.seeds(), lambda seed: questions(seed, ratio),
                         QUESTIONS if limit is None else min(limit, QUESTIONS))

    return Task(name, f"attnprompt.shapes.detail, seeds {SHAPES_DETAIL.start}…, a {ratio * SCENE_SIZE}-px canvas "
                f"({ratio}× the {SCENE_SIZE}-px scene), {QUESTIONS} questions", rows, to_sample, score, aggregate,
                headline="accuracy", max_new_tokens=3, cluster="scene", row_notes=REFERENCE_NOTES)


#: What the reference rows are, said under a report's table only when they are in it.
REFERENCE_NOTES = {"zoom-oracle": "zoom-oracle: the scene's own region alone (a perfect crop).",
                   "zoom-centre": "zoom-centre: a region of the scene's size at the image centre, for scale."}


def crowded_questions(seed: int, ratio: int, distractors: SeedRange = CROWDED_DISTRACTORS) -> Iterator[dict[str, Any]]:
    """One crowded scene's questions (as :func:`questions`), each with its own canvas, free of what it names."""
    scene = make_scene(seed, n_objects=2, size=SCENE_SIZE)
    rng = np.random.default_rng([seed, 7])
    for qa in make_questions(scene, rng, kinds=KINDS, per_kind=1):
        obj = scene.objects[qa.targets[0]]
        named = {"shape": obj.shape} if qa.kind == KIND_COLOR else {"color": obj.color}
        crowded = make_crowded(seed, ratio, scene_size=SCENE_SIZE, avoid_shape=named.get("shape"),
                               avoid_color=named.get("color"), distractors=distractors)
        yield {"seed": seed, "crowded": crowded, "qa": qa, "named": named}


def crowded_sample(row: Mapping[str, Any]) -> EvalSample:
    """A crowded row → its sample: the canvas, the question, the answer; boxes and what is named in ``meta``.

    >>> s = CROWDED_4X.samples(1)[0]
    >>> s.images[0].size, s.meta["ratio"], sorted(s.meta["named"]) in (["color"], ["shape"])
    ((896, 896), 4, True)
    """
    qa, crowded = row["qa"], row["crowded"]
    obj = crowded.scene.objects[qa.targets[0]]
    return EvalSample(f"{row['seed']}/{qa.kind}", crowded.image, qa.question, (qa.answer,), category=qa.kind,
                      meta={"seed": row["seed"], "ratio": crowded.ratio, "box": list(crowded.box_of(obj)),
                            "scene_box": list(crowded.scene_box), "named": dict(row["named"]),
                            "distractor_scenes": len(crowded.distractors)})


def crowded_task(ratio: int = 4, name: str | None = None, seeds: tuple[SeedRange, SeedRange] = (
        CROWDED, CROWDED_DISTRACTORS)) -> Task:
    """The crowded shapes-detail task at canvas/scene ``ratio`` (≥ 2); ``seeds``: the target scenes' range and
    the distractor scenes' (the tuning variant takes training-range seeds, :data:`~attnprompt.shapes.splits.TUNING`).

    >>> crowded_task(3).name, len(crowded_task(3).samples(2))
    ('shapes-detail-crowded-3x', 2)
    """
    name = name or f"shapes-detail-crowded-{ratio}x"
    targets, others = seeds

    def rows(limit: int | None) -> list[dict[str, Any]]:
        return rows_from(targets.seeds(), lambda seed: crowded_questions(seed, ratio, others),
                         QUESTIONS if limit is None else min(limit, QUESTIONS))

    return Task(name, f"attnprompt.shapes.crowded, seeds {targets.start}…, a {ratio * SCENE_SIZE}-px canvas "
                f"({ratio}× the {SCENE_SIZE}-px scene) crowded with other scenes, loose shapes and colour blobs, "
                f"{QUESTIONS} questions", rows, crowded_sample, score, aggregate, headline="accuracy",
                max_new_tokens=3, cluster="scene",
                notes="Distractors never carry the attribute the question names (the named object is unique in the "
                      "canvas).", row_notes=REFERENCE_NOTES)


TASK = detail_task(2, "shapes-detail")
TASK_4X = detail_task(4, "shapes-detail-4x")
CROWDED_4X = crowded_task(4, "shapes-detail-crowded-4x")
CROWDED_8X = crowded_task(8, "shapes-detail-crowded-8x")
#: For choosing defaults only (auto's gate): the 4× crowded task on training-range seeds, never reported.
TUNING_CROWDED_4X = crowded_task(4, "tuning-shapes-detail-crowded-4x", (TUNING, TUNING_DISTRACTORS))
