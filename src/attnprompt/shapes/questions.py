"""Captions and unambiguous question/answer pairs for shapes scenes.

Every question generated here has exactly one correct answer given the scene's objects:
questions that would need an object to be singled out are only asked when the description
used picks out exactly one object, and left/right questions need a clear horizontal gap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..text import first_word
from .scenes import (
    COLORS,
    SHAPES,
    Scene,
    ShapeObject,
    make_scene,  # noqa: F401  (used by the doctest examples)
)

__all__ = [
    "CAPTION_TEMPLATES",
    "KIND_COLOR",
    "KIND_COUNT",
    "KIND_EXISTS",
    "KIND_LEFT_OF",
    "KIND_SHAPE",
    "LEFT_OF_MARGIN",
    "PLURALS",
    "QA",
    "QUESTION_KINDS",
    "caption",
    "caption_templates",
    "check_question",
    "describe",
    "first_word",
    "make_questions",
    "pointing_query",
]

KIND_COLOR = "color"
KIND_SHAPE = "shape"
KIND_COUNT = "count"
KIND_EXISTS = "exists"
KIND_LEFT_OF = "left_of"
QUESTION_KINDS: tuple[str, ...] = (KIND_COLOR, KIND_SHAPE, KIND_COUNT, KIND_EXISTS, KIND_LEFT_OF)

# Minimum horizontal distance between centres, as a fraction of the image side, for a
# left/right question: closer pairs are too easy to misjudge for a human annotator too.
LEFT_OF_MARGIN = 0.10

PLURALS: dict[str, str] = {
    "circle": "circles",
    "square": "squares",
    "triangle": "triangles",
    "star": "stars",
    "cross": "crosses",
    "diamond": "diamonds",
}

CAPTION_TEMPLATES: tuple[str, ...] = ("{a} {name}", "the {name}", "{name}", "a photo of {a} {name}")

_COLOR_Q = ("What colour is the {shape}?", "What color is the {shape}?", "Which colour is the {shape}?")
_SHAPE_Q = (
    "What shape is the {color} object?",
    "What is the shape of the {color} object?",
    "Which shape is {color}?",
)
_COUNT_SHAPE_Q = ("How many {plural} are there?", "How many {plural} are in the image?")
_COUNT_COLOR_Q = ("How many {color} objects are there?", "How many {color} shapes are in the image?")
# "coloured" because the dull background clutter could otherwise be counted as objects.
_COUNT_ALL_Q = ("How many coloured objects are there?", "How many colored shapes are in the image?")
_EXISTS_Q = ("Is there {a} {name}?", "Is there {a} {name} in the image?")
_LEFT_Q = ("Is the {a} left of the {b}?", "Is the {a} to the left of the {b}?")


@dataclass(frozen=True)
class QA:
    """A question, its single-word lowercase answer, its kind and the object indices it is about.

    >>> QA("Is there a red star?", "no", "exists", ()).answer
    'no'
    """

    question: str
    answer: str
    kind: str
    targets: tuple[int, ...]


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _name(obj_or_color: ShapeObject | str, shape: str | None = None) -> str:
    if isinstance(obj_or_color, ShapeObject):
        return obj_or_color.name
    return f"{obj_or_color} {shape}"


def caption(obj: ShapeObject) -> str:
    """Short caption of one object with the right indefinite article.

    >>> scene = make_scene(0)
    >>> caption(scene.objects[0]).split()[0] in ("a", "an")
    True
    """
    return f"{_article(obj.color)} {obj.name}"


def caption_templates(obj: ShapeObject) -> tuple[str, ...]:
    """Caption variants for one object: "a red star", "the red star", "red star", "a photo of a red star".

    >>> scene = make_scene(0)
    >>> caption_templates(scene.objects[0])[1] == "the " + scene.objects[0].name
    True
    """
    a = _article(obj.color)
    return tuple(t.format(a=a, name=obj.name) for t in CAPTION_TEMPLATES)


def describe(scene: Scene) -> str:
    """One sentence listing every object in drawing order.

    >>> scene = make_scene(0, n_objects=2)
    >>> describe(scene).count(" and ")
    1
    """
    parts = [caption(o) for o in scene.objects]
    if len(parts) == 1:
        body = parts[0]
    else:
        body = ", ".join(parts[:-1]) + " and " + parts[-1]
    return body[0].upper() + body[1:] + "."


def _named(templates: Sequence[str], words: Iterable[str], question: str) -> str | None:
    """The word of ``words`` that fills one of ``templates`` (one ``{}`` field each) to give ``question``."""
    q = " ".join(question.strip().lower().split())
    for t in templates:
        head, _, tail = t.lower().partition("{")
        tail = tail.partition("}")[2]
        if q.startswith(head) and q.endswith(tail):
            word = q[len(head):len(q) - len(tail)]
            if word in words:
                return word
    return None


def check_question(question: str, answer: str) -> str | None:
    """The testbed's own existence question that checks an answer to a colour or shape question: "What colour is
    the star?" answered "red" → "Is there a red star?"; "What shape is the red object?" answered "star" → the
    same. None when the question is of another kind or the answer is not a colour (shape) — the VLM was trained
    on these phrasings only, so a search on it verifies a node with its own words.

    >>> check_question("What colour is the star?", "red"), check_question("Which shape is green?", "circle")
    ('Is there a red star?', 'Is there a green circle?')
    >>> check_question("How many stars are there?", "2"), check_question("What colour is the star?", "star")
    (None, None)
    """
    word = first_word(answer)
    shape = _named(_COLOR_Q, SHAPES, question)
    if shape is not None:
        return f"Is there {_article(word)} {word} {shape}?" if word in COLORS else None
    color = _named(_SHAPE_Q, COLORS, question)
    if color is not None:
        return f"Is there {_article(color)} {color} {word}?" if word in SHAPES else None
    return None


def pointing_query(scene: Scene, index: int) -> str:
    """A phrase naming object ``index`` and no other, e.g. "the red star".

    If two objects share colour and shape (``unique_pairs=False``), a position word
    ("leftmost", "rightmost", "topmost", "bottommost") is added when the object is extreme in
    that direction by a clear margin; otherwise ``ValueError`` is raised.

    >>> scene = make_scene(0)
    >>> pointing_query(scene, 0) == "the " + scene.objects[0].name
    True
    """
    if not 0 <= index < len(scene.objects):
        raise IndexError(f"object index {index} out of range for a scene with {len(scene.objects)} objects")
    obj = scene.objects[index]
    same = [i for i in scene.find_indices(obj.shape, obj.color) if i != index]
    if not same:
        return f"the {obj.name}"
    margin = LEFT_OF_MARGIN * scene.size
    others = [scene.objects[i] for i in same]
    for word, axis, sign in (
        ("leftmost", 0, -1),
        ("rightmost", 0, 1),
        ("topmost", 1, -1),
        ("bottommost", 1, 1),
    ):
        if all(sign * (obj.center[axis] - o.center[axis]) >= margin for o in others):
            return f"the {word} {obj.name}"
    raise ValueError(
        f"object {index} ({obj.name}) cannot be singled out: {len(same)} other {obj.name} nearby"
    )


def _as_rng(rng_or_seed: np.random.Generator | int) -> np.random.Generator:
    if isinstance(rng_or_seed, np.random.Generator):
        return rng_or_seed
    return np.random.Generator(np.random.PCG64(int(rng_or_seed)))


def _pick(rng: np.random.Generator, items: Sequence, k: int) -> list:
    if k <= 0 or not items:
        return []
    idx = rng.permutation(len(items))[: min(k, len(items))]
    return [items[int(i)] for i in idx]


def _tmpl(rng: np.random.Generator, templates: Sequence[str]) -> str:
    return templates[int(rng.integers(len(templates)))]


def _color_questions(scene: Scene, rng: np.random.Generator, k: int) -> list[QA]:
    unique = [s for s in SHAPES if len(scene.find_indices(shape=s)) == 1]
    out = []
    for s in _pick(rng, unique, k):
        (i,) = scene.find_indices(shape=s)
        out.append(QA(_tmpl(rng, _COLOR_Q).format(shape=s), scene.objects[i].color, KIND_COLOR, (i,)))
    return out


def _shape_questions(scene: Scene, rng: np.random.Generator, k: int) -> list[QA]:
    unique = [c for c in COLORS if len(scene.find_indices(color=c)) == 1]
    out = []
    for c in _pick(rng, unique, k):
        (i,) = scene.find_indices(color=c)
        out.append(QA(_tmpl(rng, _SHAPE_Q).format(color=c), scene.objects[i].shape, KIND_SHAPE, (i,)))
    return out


def _count_questions(scene: Scene, rng: np.random.Generator, k: int) -> list[QA]:
    out: list[QA] = []
    asked: set[tuple[str, str]] = set()
    for _ in range(4 * k):
        if len(out) >= k:
            break
        r = int(rng.integers(10))
        if r == 0:
            subject = ("all", "")
        elif r <= 5:
            # Mostly ask about something present, sometimes about an absent attribute so that
            # "0" is a real answer.
            present = sorted({o.shape for o in scene.objects})
            pool = present if rng.integers(4) else list(SHAPES)
            subject = ("shape", pool[int(rng.integers(len(pool)))])
        else:
            present = sorted({o.color for o in scene.objects})
            pool = present if rng.integers(4) else list(COLORS)
            subject = ("color", pool[int(rng.integers(len(pool)))])
        if subject in asked:
            continue
        asked.add(subject)
        what, value = subject
        if what == "all":
            idx = list(range(len(scene.objects)))
            q = _tmpl(rng, _COUNT_ALL_Q)
        elif what == "shape":
            idx = scene.find_indices(shape=value)
            q = _tmpl(rng, _COUNT_SHAPE_Q).format(plural=PLURALS[value])
        else:
            idx = scene.find_indices(color=value)
            q = _tmpl(rng, _COUNT_COLOR_Q).format(color=value)
        out.append(QA(q, str(len(idx)), KIND_COUNT, tuple(idx)))
    return out


def _exists_questions(scene: Scene, rng: np.random.Generator, k: int) -> list[QA]:
    present = sorted({(o.color, o.shape) for o in scene.objects})
    present_set = set(present)
    absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in present_set]
    colors_here = {c for c, _ in present}
    shapes_here = {s for _, s in present}
    # POPE-style "adversarial" negatives share one attribute with something in the scene,
    # so they cannot be rejected from colour or shape alone.
    adversarial = [p for p in absent if p[0] in colors_here or p[1] in shapes_here]
    random_neg = absent

    n = min(k // 2, len(present), len(absent))
    n_yes = n_no = n
    if k % 2 == 1:
        if rng.integers(2) and len(present) > n_yes:
            n_yes += 1
        elif len(absent) > n_no:
            n_no += 1
    yes = _pick(rng, present, n_yes)
    no: list[tuple[str, str]] = []
    for j in range(n_no):
        pool = adversarial if (j % 2 == 0 and adversarial) else random_neg
        pool = [p for p in pool if p not in no]
        if not pool:
            pool = [p for p in absent if p not in no]
        no.append(pool[int(rng.integers(len(pool)))])

    out = []
    for (c, s), answer in [(p, "yes") for p in yes] + [(p, "no") for p in no]:
        q = _tmpl(rng, _EXISTS_Q).format(a=_article(c), name=_name(c, s))
        out.append(QA(q, answer, KIND_EXISTS, tuple(scene.find_indices(shape=s, color=c))))
    return [out[int(i)] for i in rng.permutation(len(out))]


def _left_of_questions(scene: Scene, rng: np.random.Generator, k: int) -> list[QA]:
    unique = [i for i, o in enumerate(scene.objects) if len(scene.find_indices(o.shape, o.color)) == 1]
    margin = LEFT_OF_MARGIN * scene.size
    pairs = [
        (i, j)
        for a, i in enumerate(unique)
        for j in unique[a + 1 :]
        if abs(scene.objects[i].center[0] - scene.objects[j].center[0]) >= margin
    ]
    out = []
    for i, j in _pick(rng, pairs, k):
        if rng.integers(2):
            i, j = j, i
        a, b = scene.objects[i], scene.objects[j]
        answer = "yes" if a.center[0] < b.center[0] else "no"
        out.append(QA(_tmpl(rng, _LEFT_Q).format(a=a.name, b=b.name), answer, KIND_LEFT_OF, (i, j)))
    return out


_MAKERS = {
    KIND_COLOR: _color_questions,
    KIND_SHAPE: _shape_questions,
    KIND_COUNT: _count_questions,
    KIND_EXISTS: _exists_questions,
    KIND_LEFT_OF: _left_of_questions,
}


def make_questions(
    scene: Scene,
    rng_or_seed: np.random.Generator | int,
    kinds: Iterable[str] | None = None,
    *,
    per_kind: int = 2,
) -> list[QA]:
    """Sample up to ``per_kind`` unambiguous questions of each kind (in ``QUESTION_KINDS`` order).

    A kind yields fewer (possibly zero) questions when the scene does not support it, e.g. no
    "color" question unless some shape occurs exactly once.  "exists" questions are balanced:
    as many "no" as "yes" (one extra of either when ``per_kind`` is odd).  Deterministic for a
    given seed; pass a ``numpy.random.Generator`` to continue an existing stream.

    >>> scene = make_scene(0)
    >>> qas = make_questions(scene, 0, kinds=["exists"], per_kind=4)
    >>> sorted(qa.answer for qa in qas)
    ['no', 'no', 'yes', 'yes']
    """
    if kinds is None:
        kinds = QUESTION_KINDS
    elif isinstance(kinds, str):
        kinds = (kinds,)
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in _MAKERS]
    if bad:
        raise ValueError(f"unknown question kind(s) {bad}; expected a subset of {QUESTION_KINDS}")
    if per_kind < 0:
        raise ValueError(f"per_kind must be >= 0, got {per_kind}")
    rng = _as_rng(rng_or_seed)
    out: list[QA] = []
    for kind in QUESTION_KINDS:
        if kind in kinds:
            out.extend(_MAKERS[kind](scene, rng, per_kind))
    return out
