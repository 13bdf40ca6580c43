"""Synthetic "shapes" testbed: deterministic scenes of coloured shapes, unambiguous questions with
their answers, the named seed ranges (:mod:`attnprompt.shapes.splits`), and the small CLIP and VLM
trained on it that ship in ``models/`` (how they were made: ``tools/shapes_training`` in the
repository).

Only numpy and Pillow are imported here, so data generation stays cheap in worker processes.

>>> from attnprompt.shapes import make_scene, make_questions
>>> scene = make_scene(0, n_objects=4, size=112)
>>> all(qa.answer for qa in make_questions(scene, 0))
True
"""

from .questions import (
    CAPTION_TEMPLATES,
    KIND_COLOR,
    KIND_COUNT,
    KIND_EXISTS,
    KIND_LEFT_OF,
    KIND_SHAPE,
    LEFT_OF_MARGIN,
    PLURALS,
    QA,
    QUESTION_KINDS,
    caption,
    caption_templates,
    describe,
    first_word,
    make_questions,
    pointing_query,
)
from .scenes import BACKGROUND_KINDS, COLORS, SHAPES, Scene, ShapeObject, make_scene, render_shape_mask

__all__ = [
    "BACKGROUND_KINDS",
    "CAPTION_TEMPLATES",
    "COLORS",
    "KIND_COLOR",
    "KIND_COUNT",
    "KIND_EXISTS",
    "KIND_LEFT_OF",
    "KIND_SHAPE",
    "LEFT_OF_MARGIN",
    "PLURALS",
    "QA",
    "QUESTION_KINDS",
    "SHAPES",
    "Scene",
    "ShapeObject",
    "caption",
    "caption_templates",
    "describe",
    "first_word",
    "make_questions",
    "make_scene",
    "pointing_query",
    "render_shape_mask",
]
