"""shapes-pope — POPE's construction (Li et al., EMNLP 2023: "Evaluating Object Hallucination in
Large Vision-Language Models") on held-out shapes scenes.

Source: the offline testbed, seeds :data:`attnprompt.shapes.splits.SHAPES_POPE`, 4–6 objects at
224 px (every colour–shape pair at most once per scene). Per scene, as POPE: three objects present
("yes") and three absent ("no"), asked "Is there a {colour} {shape} in the image?", in three
subsets that differ in how the absent objects are drawn:

- ``random``: any absent pair, at random;
- ``popular``: the absent pairs most frequent across the task's reference scenes (its first
  :data:`REFERENCE_SCENES`, fixed whatever the limit);
- ``adversarial``: the absent pairs that co-occur most with the scene's objects. In this world
  objects are placed independently, so co-occurrence counts are flat; what co-occurs here is an
  attribute — so absent pairs are ranked first by how many present objects share their colour or
  shape (a "red square" beside a red circle and a blue square), then by co-occurrence counts.

The yes questions are the same in all three subsets, as in POPE. Replies are read as LLaVA's
``eval_pope`` does (:func:`~attnprompt.evaluation.metrics.parse_yes_no`); accuracy, precision, recall,
F1 and the yes-ratio (predicted yes / N) per subset (the report's categories) and overall; F1 is
the headline.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from functools import lru_cache
from itertools import combinations
from typing import Any

import numpy as np

from ...shapes import Scene, make_scene
from ...shapes.splits import SHAPES_POPE
from ..metrics import pope_metrics, yes_no_scores
from .base import EvalSample, Task, rows_from

SCENES = 100
SIZE = 224
PER_SIDE = 3
SUBSETS = ("random", "popular", "adversarial")
REFERENCE_SCENES = 500


def _scene(seed: int) -> tuple[Scene, np.random.Generator]:
    rng = np.random.default_rng(seed)
    return make_scene(seed, n_objects=int(rng.integers(4, 7)), size=SIZE), rng


@lru_cache(maxsize=1)
def statistics() -> tuple[Counter, Counter]:
    """How often each (colour, shape) pair occurs, and each two pairs occur together, over the
    reference scenes — the counts POPE takes from its dataset's annotations."""
    frequency: Counter = Counter()
    together: Counter = Counter()
    for seed in SHAPES_POPE.seeds(REFERENCE_SCENES):
        pairs = sorted({(o.color, o.shape) for o in _scene(seed)[0].objects})
        frequency.update(pairs)
        together.update(combinations(pairs, 2))
    return frequency, together


def negatives(present: list[tuple[str, str]], subset: str, rng: np.random.Generator, k: int) -> list[tuple[str, str]]:
    """``k`` absent (colour, shape) pairs for one scene, drawn as ``subset`` says."""
    from ...shapes import COLORS, SHAPES

    absent = [(c, s) for c in COLORS for s in SHAPES if (c, s) not in set(present)]
    if subset == "random":
        return [absent[i] for i in rng.choice(len(absent), k, replace=False)]
    frequency, together = statistics()
    if subset == "popular":
        return sorted(absent, key=lambda p: (-frequency[p], p))[:k]

    def with_present(p: tuple[str, str]) -> int:
        return sum(together[tuple(sorted((p, q)))] for q in present)

    shared = {p: sum(p[0] == q[0] or p[1] == q[1] for q in present) for p in absent}
    return sorted(absent, key=lambda p: (-shared[p], -with_present(p), p))[:k]


def questions(seed: int) -> Iterator[dict[str, Any]]:
    """One scene's 18 questions: per subset, its three yes and three no in a shuffled order."""
    scene, rng = _scene(seed)
    present = sorted({(o.color, o.shape) for o in scene.objects})
    yes = [present[i] for i in sorted(rng.choice(len(present), min(PER_SIDE, len(present)), replace=False))]
    for subset in SUBSETS:
        asked = [(p, "yes") for p in yes] + [(p, "no") for p in negatives(present, subset, rng, PER_SIDE)]
        for k in rng.permutation(len(asked)):
            (color, shape), answer = asked[int(k)]
            yield {"seed": seed, "scene": scene, "subset": subset, "color": color, "shape": shape, "answer": answer}


def rows(limit: int | None) -> list[dict[str, Any]]:
    """The first ``limit`` questions, scene after scene (the default scenes' without a limit)."""
    return rows_from(SHAPES_POPE.seeds(SHAPES_POPE.size if limit is not None else SCENES), questions, limit)


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    article = "an" if row["color"][0] in "aeiou" else "a"
    name = f"{row['color']} {row['shape']}"
    return EvalSample(f"{row['seed']}/{row['subset']}/{row['color']}-{row['shape']}", row["scene"].image,
                      f"Is there {article} {name} in the image?", (row["answer"],), category=row["subset"],
                      meta={"seed": row["seed"], "object": name})


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    return yes_no_scores(prediction, sample.references[0])


TASK = Task("shapes-pope", f"attnprompt.shapes, seeds {SHAPES_POPE.start}… ({SCENES} scenes × 3 subsets × 6 "
            "questions by default); POPE's construction", rows, to_sample, score, pope_metrics, headline="f1",
            max_new_tokens=3)
