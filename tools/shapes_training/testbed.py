"""What only the training of the shipped shapes models needs from the testbed: where each model's
training scenes lie (above every held-out range), an object's footprint on a patch grid, and the
per-kind accuracy printed while the VLM trains. Kept here, not in the package: nothing a user runs
calls them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from attnprompt.shapes.questions import QUESTION_KINDS
from attnprompt.shapes.splits import TRAINING_START
from attnprompt.text import first_word

#: Where each shipped model's training scenes start, above :data:`~attnprompt.shapes.splits.TRAINING_START`;
#: a training run with seed ``s`` takes ``n`` consecutive scenes from ``start + s · RUN_STRIDE``.
TRAINING_OFFSETS = {"clip": 0, "vlm": 50_000_000}
RUN_STRIDE = 10_000_000


def training_seeds(model: str, run_seed: int, n: int) -> list[int]:
    """The ``n`` training scenes of the shipped ``model`` ("clip" or "vlm") for a run with ``run_seed``.

    >>> training_seeds("clip", run_seed=1, n=2), training_seeds("vlm", run_seed=0, n=2)
    ([11000000, 11000001], [51000000, 51000001])
    """
    if model not in TRAINING_OFFSETS:
        raise ValueError(f"model must be one of {', '.join(TRAINING_OFFSETS)}; got {model!r}")
    if not 0 <= n <= RUN_STRIDE:
        raise ValueError(f"a training run takes 0 to {RUN_STRIDE} scenes; got {n}")
    start = TRAINING_START + TRAINING_OFFSETS[model] + int(run_seed) * RUN_STRIDE
    return list(range(start, start + n))


def cell_coverage(mask: np.ndarray, grid: int) -> np.ndarray:
    """Fraction of each cell of a ``grid``×``grid`` partition of a square ``mask`` that is True —
    the object's footprint on a model's patch grid (cell edges rounded as a resize would).

    >>> cell_coverage(np.array([[True, True, False, False]] * 4), 2).tolist()
    [[1.0, 0.0], [1.0, 0.0]]
    """
    m = np.asarray(mask, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"cell_coverage needs a square 2-D mask, got shape {m.shape}")
    edges = np.linspace(0, m.shape[0], grid + 1).round().astype(int)
    if np.any(np.diff(edges) == 0):
        raise ValueError(f"a {m.shape[0]}-pixel mask cannot be split into {grid} cells; use grid <= {m.shape[0]}")
    sums = np.add.reduceat(np.add.reduceat(m, edges[:-1], 0), edges[:-1], 1)
    return sums / np.outer(np.diff(edges), np.diff(edges))


def accuracy_by_kind(kinds: Sequence[str], replies: Sequence[str], answers: Sequence[str]) -> dict[str, float]:
    """Accuracy per question kind and overall (``"all"``): a reply is right when its first word is the
    answer. A kind with no question is NaN.

    >>> accuracy_by_kind(["color", "color", "count"], ["Red.", "blue", "2"], ["red", "red", "2"])["color"]
    0.5
    """
    hits = [first_word(t) == a for t, a in zip(replies, answers)]
    out: dict[str, float] = {}
    for kind in QUESTION_KINDS:
        idx = [i for i, k in enumerate(kinds) if k == kind]
        out[kind] = float(np.mean([hits[i] for i in idx])) if idx else float("nan")
    out["all"] = float(np.mean(hits)) if hits else float("nan")
    return out
