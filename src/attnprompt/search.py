"""Searching an image for the region that answers a question: ZoomEye's tree search (Shen et al., EMNLP
2025; ``om-ai-lab/ZoomEye``), with a budget of VLM calls and an attribution map as the prior.

Pure: the search asks for confidences through a callable and never sees a model, so a stub with known
confidences drives it in tests, and a strategy batches the probes of many questions into one backend call
(:func:`run_searches`). What is ZoomEye's and what is ours: ``docs/research/zoom-methods.md``.

- The tree (:class:`ImageTree`): the whole image, split 2×2 (1×4 / 4×1 when a side is twice the other)
  until a node's longer side is under the answering model's native side, at most ``depth_limit`` deep.
- A **probe** (:class:`Probe`) asks the VLM one thing about one node's window (:func:`view_box`): its
  *existence* confidence for the target, its *latent* one ("could zooming in find it?"), or its
  *answering* one ("could you answer from this?"). Confidences are on ZoomEye's scale ``2p − 1`` in
  [−1, 1] (:func:`attnprompt.confidence.yes_probability`); a failed probe is ``None`` (kept as such in the
  record, ranked as −1).
- Priority of a queued node: ``w · existence + (1 − w) · latent``, ``w = b + (1 − b)(depth / max_depth)²``
  (ZoomEye), or the one kind asked for. The best queued node is visited: its answering confidence is the
  stopping criterion (≥ τ: answer from it); after ``3 · max_depth`` visits τ is lowered step by step
  (ZoomEye's rule, :class:`SearchSettings`).
- Ours: ``budget`` VLM calls per question, never exceeded; ``order="map"``: a node's children are probed
  and queued in the order of the map's mass in them, children under ``skip`` of their parent's mass never
  probed, ties in priority to the larger mass; out of calls or of nodes, the best visited node that reaches
  the floor is the answer.

>>> tree = ImageTree((512, 512), native_side=128)
>>> [tree.node(i).box for i in tree.children(0)]
[(0, 0, 256, 256), (256, 0, 512, 256), (0, 256, 256, 512), (256, 256, 512, 512)]
>>> def stub(probes):  # the top-right quadrant holds the answer
...     return [0.9 if p.box[0] >= 256 and p.box[3] <= 256 else -0.5 for p in probes]
>>> r = search((512, 512), stub, SearchSettings(budget=20, native_side=128, priority=("existence",)))
>>> r.box, r.stop, r.calls
((256, 0, 512, 256), 'confident', 6)
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["KINDS", "ORDERS", "ZOOMEYE_FAMILIES", "ImageTree", "Node", "Probe", "Search", "SearchResult",
           "SearchSettings", "box_mass", "check_budget", "check_confidence", "check_native_side", "check_order",
           "check_skip", "run_searches", "search", "split_box", "view_box", "zoomeye_settings"]

#: What a probe asks (ZoomEye's three confidences).
KINDS = ("existence", "latent", "answering")
#: The order in which a node's children are probed and queued: ZoomEye's (raster), or the map's mass.
ORDERS = ("zoomeye", "map")
#: The smallest native side a search accepts (a window smaller than this shows a model nothing useful).
MIN_NATIVE_SIDE = 32

Box = tuple[int, int, int, int]


def check_budget(budget: Any) -> int:
    """A search budget: a whole number of VLM calls per question, at least 1.

    >>> check_budget(0)
    Traceback (most recent call last):
    attnprompt.errors.InputError: the search budget must be a whole number of VLM calls per question, at least 1; got 0
    """
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise InputError(f"the search budget must be a whole number of VLM calls per question, at least 1; "
                         f"got {budget!r}")
    return int(budget)


def check_native_side(side: Any) -> int:
    """The answering model's native side in pixels (the smallest window a search shows it), at least 32.

    >>> check_native_side(16)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    attnprompt.errors.InputError: the native side must be a whole number of pixels, at least 32 (...); got 16
    """
    if isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side < MIN_NATIVE_SIDE:
        raise InputError(f"the native side must be a whole number of pixels, at least {MIN_NATIVE_SIDE} (the "
                         f"model's input side, e.g. 336 for LLaVA-1.5); got {side!r}")
    return int(side)


def check_order(order: Any) -> str:
    """A search order: one of :data:`ORDERS`.

    >>> check_order("raster")
    Traceback (most recent call last):
    attnprompt.errors.InputError: the search order must be one of zoomeye, map; got 'raster'
    """
    if order not in ORDERS:
        raise InputError(f"the search order must be one of {', '.join(ORDERS)}; got {order!r}")
    return str(order)


def check_confidence(value: Any, name: str = "the search threshold") -> float:
    """A confidence threshold on ZoomEye's scale, a number in [−1, 1] (``2p − 1``).

    >>> check_confidence(1.5)
    Traceback (most recent call last):
    attnprompt.errors.InputError: the search threshold is a confidence in [-1, 1] (2p - 1 of a probability p); got 1.5
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not -1.0 <= value <= 1.0:
        raise InputError(f"{name} is a confidence in [-1, 1] (2p - 1 of a probability p); got {value!r}")
    return float(value)


def check_skip(value: Any) -> float:
    """The map order's skip: a share of a parent's map mass in [0, 1).

    >>> check_skip(0.2)
    0.2
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0.0 <= value < 1.0:
        raise InputError(f"the search skip is a share of a parent's map mass, in [0, 1); got {value!r}")
    return float(value)


# -- the tree -------------------------------------------------------------------------------------------


def split_box(box: Box) -> list[Box]:
    """ZoomEye's split of a box ``(x0, y0, x1, y1)``: 2×2, or 1 column × 4 rows when it is at least twice as
    tall as wide (4 × 1 when twice as wide); strides rounded down, the last row and column take the rest;
    children in raster order.

    >>> split_box((0, 0, 10, 10))
    [(0, 0, 5, 5), (5, 0, 10, 5), (0, 5, 5, 10), (5, 5, 10, 10)]
    >>> split_box((0, 0, 100, 40))
    [(0, 0, 25, 40), (25, 0, 50, 40), (50, 0, 75, 40), (75, 0, 100, 40)]
    """
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    ratio = h / w
    cols, rows = (1, 4) if ratio >= 2 else (4, 1) if ratio <= 0.5 else (2, 2)
    sx, sy = w // cols, h // rows
    out = []
    for j in range(rows):
        for i in range(cols):
            left, top = x0 + i * sx, y0 + j * sy
            right = x1 if i == cols - 1 else left + sx
            bottom = y1 if j == rows - 1 else top + sy
            out.append((left, top, right, bottom))
    return out


def view_box(box: Box, image_size: tuple[int, int], native_side: int, patch_scale: float | None = None) -> Box:
    """The window a VLM is shown for a node: the node's box grown to at least ``native_side`` per side, times
    ``patch_scale`` (ZoomEye's 1.2 for any-res models), centred on the node, inside the image (shifted, not
    shrunk, at a border — ZoomEye clips it instead); the whole image for the whole image.

    >>> view_box((100, 100, 150, 150), (400, 300), 128)
    (61, 61, 189, 189)
    >>> view_box((0, 0, 50, 50), (400, 300), 128, 1.2)
    (0, 0, 153, 153)
    """
    W, H = image_size
    x0, y0, x1, y1 = box
    scale = 1.0 if patch_scale is None else float(patch_scale)
    w = min(W, int(max(x1 - x0, native_side) * scale))
    h = min(H, int(max(y1 - y0, native_side) * scale))
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    left = min(max(0, cx - w // 2), W - w)
    top = min(max(0, cy - h // 2), H - h)
    return (left, top, left + w, top + h)


@dataclass(frozen=True)
class Node:
    """One node of the tree: its id (root 0; child ``j`` of node ``i`` is ``4i + 1 + j``, whatever order the
    tree is explored in), box, depth and parent."""

    id: int
    box: Box
    depth: int
    parent: int | None


class ImageTree:
    """ZoomEye's image tree over an image of ``size`` (W, H), built as it is explored: a node is a leaf when
    its longer side is under ``native_side``, or at ``depth_limit``.

    >>> t = ImageTree((896, 896), native_side=128)
    >>> t.max_depth, [t.node(c).box for c in t.children(0)][3]
    (3, (448, 448, 896, 896))
    """

    def __init__(self, size: tuple[int, int], native_side: int, depth_limit: int = 5) -> None:
        W, H = (int(v) for v in size)
        if W < 1 or H < 1:
            raise InputError(f"the image to search must have a positive size; got {W}×{H}")
        self.size = (W, H)
        self.native_side = check_native_side(native_side)
        self._nodes = {0: Node(0, (0, 0, W, H), 0, None)}
        self._children: dict[int, tuple[int, ...]] = {}
        # ZoomEye: a node whose longer side is under the native side is a leaf; the deepest path is the one
        # through the largest child (the last row and column take the rest)
        depth, box = 0, (0, 0, W, H)
        while depth < depth_limit and self._splits(box):
            box = max(split_box(box), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
            depth += 1
        self.max_depth = depth

    def _splits(self, box: Box) -> bool:
        w, h = box[2] - box[0], box[3] - box[1]
        return max(w, h) >= self.native_side and min(w, h) >= 4

    def node(self, i: int) -> Node:
        """Node ``i``."""
        return self._nodes[i]

    def is_leaf(self, i: int) -> bool:
        """Whether node ``i`` is not split (its longer side is under the native side, or it is at the depth limit).

        >>> ImageTree((100, 100), native_side=128).is_leaf(0)
        True
        """
        n = self._nodes[i]
        return n.depth >= self.max_depth or not self._splits(n.box)

    def children(self, i: int) -> tuple[int, ...]:
        """The ids of node ``i``'s children in raster order (none for a leaf)."""
        if i not in self._children:
            kids: list[int] = []
            if not self.is_leaf(i):
                parent = self._nodes[i]
                for j, box in enumerate(split_box(parent.box)):  # always 4 children
                    self._nodes[4 * i + 1 + j] = Node(4 * i + 1 + j, box, parent.depth + 1, i)
                    kids.append(4 * i + 1 + j)
            self._children[i] = tuple(kids)
        return self._children[i]


def box_mass(prior: np.ndarray, box: Box, image_size: tuple[int, int]) -> float:
    """The mass of a map (any grid covering the whole image) inside a box of image pixels: each cell counts
    in proportion to the part of it the box covers.

    >>> box_mass(np.array([[1.0, 0.0], [0.0, 3.0]]), (0, 0, 50, 100), (100, 100))
    1.0
    >>> box_mass(np.array([[1.0, 0.0], [0.0, 3.0]]), (25, 25, 75, 75), (100, 100))
    1.0
    """
    rows, cols = prior.shape
    W, H = image_size
    x0, y0, x1, y1 = box

    def weights(a: float, b: float, n: int, side: int) -> np.ndarray:
        edges = np.arange(n + 1) * (side / n)
        return np.clip(np.minimum(edges[1:], b) - np.maximum(edges[:-1], a), 0, None) / (side / n)

    return float(weights(y0, y1, rows, H) @ prior @ weights(x0, x1, cols, W))


# -- settings -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchSettings:
    """How a search runs. ZoomEye's rule (defaults: its LLaVA-OneVision values, ``zoomeye_settings`` per family):

    - ``threshold`` τ: a visited node whose answering confidence reaches it is the answer (on [−1, 1]);
    - ``floor``: τ is never lowered below it (the search gives up: the whole image);
    - ``steps``: how τ is lowered after ``pops_per_depth · max_depth`` visits, then every ``pops_more``
      visits (the first value each time; the last one repeats);
    - ``bias`` b: the weight of existence against latent at the root (1 at the deepest level);
    - ``priority``: the probe kinds that rank a queued node (``("existence", "latent")``, one kind, or none:
      then the map's mass share ranks it, or raster order without a map); ours: ``("answering",)``, the
      answering confidence ranks the queue too (one probe a node: a node scored when queued is not asked again
      when visited);
    - ``depth_limit``, ``patch_scale`` (the window's growth, :func:`view_box`), ``native_side``;
    - ``root``: the whole image's answering confidence is asked first, and the whole image may be the answer
      (ZoomEye's default); False (ZoomEye's ``force_no_root``): the search starts at the root's children, and
      the whole image is the answer only when no window reaches the floor.

    Ours: ``budget`` (VLM calls per question), ``costs`` (VLM calls per probe of each kind: a probe that asks
    several prompts costs that many), ``order`` (``zoomeye`` or ``map``), ``skip`` (``map`` order: a child
    whose share of its parent's mass is under it is never probed; the largest child is always kept).

    >>> SearchSettings(budget=0)
    Traceback (most recent call last):
    attnprompt.errors.InputError: the search budget must be a whole number of VLM calls per question, at least 1; got 0
    """

    budget: int
    native_side: int = 336
    order: str = "zoomeye"
    priority: tuple[str, ...] = ("existence", "latent")
    costs: Mapping[str, int] = field(default_factory=lambda: {k: 1 for k in KINDS})
    threshold: float = 0.6
    floor: float = 0.0
    steps: tuple[float, ...] = (0.1, 0.1, 0.2)
    pops_per_depth: int = 3
    pops_more: int = 2
    bias: float = 0.6
    depth_limit: int = 5
    patch_scale: float | None = None
    skip: float = 0.0
    root: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "budget", check_budget(self.budget))
        object.__setattr__(self, "native_side", check_native_side(self.native_side))
        if self.order not in ORDERS:
            raise InputError(f"the search order must be one of {', '.join(ORDERS)}; got {self.order!r}")
        priority = tuple(self.priority)
        if priority != ("answering",) and (any(k not in ("existence", "latent") for k in priority)
                                           or len(set(priority)) != len(priority)):
            raise InputError(f"priority lists distinct probe kinds among existence, latent (or answering alone); "
                             f"got {self.priority!r}")
        object.__setattr__(self, "priority", priority)
        costs = {k: 1 for k in KINDS} | dict(self.costs)
        if set(costs) != set(KINDS) or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                                           for v in costs.values()):
            raise InputError(f"costs give each probe kind ({', '.join(KINDS)}) a whole number of calls ≥ 1; "
                             f"got {dict(self.costs)!r}")
        object.__setattr__(self, "costs", costs)
        if not self.steps or any(s <= 0 for s in self.steps):
            raise InputError(f"steps lower the threshold: give one or more positive numbers; got {self.steps!r}")
        object.__setattr__(self, "steps", tuple(float(s) for s in self.steps))
        if not 0.0 <= self.bias <= 1.0:
            raise InputError(f"bias is the existence weight at the root, in [0, 1]; got {self.bias!r}")
        if not 0.0 <= self.skip < 1.0:
            raise InputError(f"skip is a share of the parent's map mass, in [0, 1); got {self.skip!r}")
        for name in ("pops_per_depth", "pops_more", "depth_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InputError(f"{name} must be a whole number ≥ 1; got {value!r}")
        if self.patch_scale is not None and not self.patch_scale >= 1.0:
            raise InputError(f"patch_scale grows a window: None or a number ≥ 1; got {self.patch_scale!r}")


#: ZoomEye's settings per model family (``ZoomEye/eval/perform_zoom_eye.py`` and the model classes): the
#: model's input side, ``patch_scale``, bias, τ, floor and steps.
ZOOMEYE_FAMILIES: dict[str, dict[str, Any]] = {
    "llava-1.5": {"native_side": 336, "patch_scale": None, "bias": 0.2, "threshold": 0.6, "floor": 0.0,
                  "steps": (0.1, 0.1, 0.2)},
    "llava-onevision": {"native_side": 384, "patch_scale": 1.2, "bias": 0.6, "threshold": 0.6, "floor": 0.0,
                        "steps": (0.1, 0.1, 0.2)},
    "internvl2.5": {"native_side": 448, "patch_scale": 1.2, "bias": 0.6, "threshold": 0.2, "floor": -0.2,
                    "steps": (0.1, 0.1, 0.2)},
    "qwen2.5-vl": {"native_side": 448, "patch_scale": 1.2, "bias": 0.6, "threshold": 0.95, "floor": 0.0,
                   "steps": (0.05, 0.1, 0.2)},
}


def zoomeye_settings(family: str, budget: int, **overrides: Any) -> SearchSettings:
    """ZoomEye's settings for one of :data:`ZOOMEYE_FAMILIES`, with a budget (and any overrides).

    >>> s = zoomeye_settings("qwen2.5-vl", 40)
    >>> s.threshold, s.steps, s.native_side
    (0.95, (0.05, 0.1, 0.2), 448)
    """
    if family not in ZOOMEYE_FAMILIES:
        raise InputError(f"ZoomEye has settings for {', '.join(ZOOMEYE_FAMILIES)}; got {family!r}")
    return SearchSettings(budget=budget, **{**ZOOMEYE_FAMILIES[family], **overrides})


# -- the search -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """One thing to ask the VLM: ``kind`` (:data:`KINDS`) about node ``node`` (its ``box``; show it ``view``)
    of the search ``key`` (whatever the caller gave the search: its question's index …)."""

    key: Any
    node: int
    kind: str
    box: Box
    view: Box
    depth: int


@dataclass(frozen=True)
class SearchResult:
    """Where a search ended: the chosen node (None: answer from the whole image) and its box and window, the
    calls it made, why it stopped (``confident``: a node reached τ; ``lowered``: one reached a lowered τ;
    ``floor``: τ fell under the floor; ``exhausted``: nothing left to visit; ``budget``: the next probe did not
    fit — in these two, ours, the visited node with the best answering confidence is chosen if it reaches the
    floor), every node probed, the probes in order, and the path from the root to the chosen node.
    :meth:`to_detail` is the step detail format (``docs/research/zoom-methods.md``)."""

    image: tuple[int, int]
    chosen: int | None
    box: Box
    view: Box
    calls: int
    budget: int
    order: str
    stop: str
    nodes: tuple[dict[str, Any], ...]
    probes: tuple[tuple[int, str, float | None], ...]
    path: tuple[int, ...]

    @property
    def visits(self) -> list[int]:
        """The visited nodes' ids in visit order.

        >>> r = search((256, 256), lambda ps: [1.0] * len(ps), SearchSettings(budget=5, native_side=128))
        >>> r.visits, r.stop
        ([0], 'confident')
        """
        return [n["id"] for n in sorted((n for n in self.nodes if n["visit"] is not None), key=lambda n: n["visit"])]

    def to_detail(self) -> dict[str, Any]:
        """The search as a step's ``detail["search"]`` (JSON-able; version 1 of the format).

        >>> r = search((256, 256), lambda ps: [1.0] * len(ps), SearchSettings(budget=5, native_side=128))
        >>> d = r.to_detail(); d["chosen"], d["box"], d["calls"], d["path"]
        (0, [0, 0, 256, 256], 1, [0])
        """
        return {"version": 1, "image": list(self.image), "order": self.order, "budget": self.budget,
                "calls": self.calls, "stop": self.stop, "chosen": self.chosen, "box": list(self.box),
                "view": list(self.view), "path": list(self.path), "nodes": [dict(n) for n in self.nodes],
                "probes": [list(p) for p in self.probes]}


def _rank(c: float | None) -> float:
    return -1.0 if c is None else float(c)


class Search:
    """One question's search over an image of ``size`` (W, H), as a sequence of probe rounds: drive it with
    :func:`run_searches` (many at once) or :func:`search` (one). ``prior``: an attribution map covering the
    whole image (any grid), used in ``map`` order; ``key`` travels with every probe."""

    def __init__(self, size: tuple[int, int], settings: SearchSettings, *, prior: np.ndarray | None = None,
                 key: Any = None) -> None:
        if settings.order == "map" and prior is None:
            raise InputError("the map order needs a map: give prior= (an attribution map over the image), or "
                             "order='zoomeye'")
        self.settings = settings
        self.tree = ImageTree(size, settings.native_side, settings.depth_limit)
        self.prior = None if prior is None else np.clip(np.asarray(prior, dtype=np.float64), 0, None)
        if self.prior is not None and (self.prior.ndim != 2 or 0 in self.prior.shape):
            raise InputError(f"the prior must be a 2-D map over the image; got shape {self.prior.shape}")
        self.key = key

    def _probe(self, node: int, kind: str) -> Probe:
        n = self.tree.node(node)
        view = view_box(n.box, self.tree.size, self.settings.native_side, self.settings.patch_scale)
        return Probe(self.key, node, kind, n.box, view if n.depth else n.box, n.depth)

    def _shares(self, parent: int, kids: Sequence[int]) -> list[float | None]:
        if self.prior is None:
            return [None] * len(kids)
        masses = [box_mass(self.prior, self.tree.node(k).box, self.tree.size) for k in kids]
        total = sum(masses)
        return [m / total if total > 0 else 1.0 / len(kids) for m in masses]

    def rounds(self) -> Generator[list[Probe], Sequence[Any], SearchResult]:
        """The search as a generator: it yields the probes it needs next and is sent their confidences, until
        it returns its :class:`SearchResult`."""
        run = _Run(self)
        s = self.settings
        while run.queue:
            node = run.best()
            # scored when queued (priority "answering"), or the root that is never the answer (not asked)
            known = "answering" in run.info[node]["scores"] or (node == 0 and not s.root)
            if not known and run.calls + s.costs["answering"] > s.budget:
                run.stop = "budget"
                break
            run.visit(node)
            if not known:
                yield from run.ask([(node, "answering")])
            if _rank(run.info[node]["scores"].get("answering")) >= run.tau:
                run.chosen, run.stop = node, "confident"
                break
            if len(run.trace) >= run.pop_limit and run.lower():
                break
            if (yield from run.expand(node)):
                break
        return run.result()

    def _priority(self, d: Mapping[str, Any], max_depth: int) -> float | None:
        scores = d["scores"]
        kinds = self.settings.priority
        if kinds == ("existence", "latent") or kinds == ("latent", "existence"):
            b = self.settings.bias
            w = b + (1.0 - b) * (d["depth"] / max_depth) ** 2 if max_depth else 1.0
            return round(w * _rank(scores["existence"]) + (1.0 - w) * _rank(scores["latent"]), 9)
        return _rank(scores[kinds[0]])


class _Run:
    """One search's state while it runs: what is known of each node, the queue, the visits, the calls."""

    def __init__(self, search: Search) -> None:
        self.search, self.s, self.tree = search, search.settings, search.tree
        root = self.tree.node(0)
        self.info: dict[int, dict[str, Any]] = {}
        self._know(0, None, None if search.prior is None else 1.0)
        self.probes: list[tuple[int, str, float | None]] = []
        self.calls = 0
        self.tau, self.steps = self.s.threshold, list(self.s.steps)
        self.pop_limit = self.s.pops_per_depth * max(1, self.tree.max_depth)
        self.queue: list[int] = [root.id]
        self.trace: list[int] = []
        self.chosen: int | None = None
        self.stop = "exhausted"

    def _know(self, node: int, parent: int | None, share: float | None) -> None:
        n = self.tree.node(node)
        self.info.setdefault(node, {"id": node, "parent": parent, "depth": n.depth, "box": list(n.box),
                                    "mass": None if share is None else round(share, 6), "scores": {},
                                    "priority": None, "visit": None})

    def ask(self, batch: list[tuple[int, str]]) -> Generator[list[Probe], Sequence[Any], None]:
        answers = yield [self.search._probe(n, k) for n, k in batch]
        if len(answers) != len(batch):
            raise ValueError(f"the scorer returned {len(answers)} confidences for {len(batch)} probes")
        for (n, k), c in zip(batch, answers):
            # a (confidence, calls) pair: the probe cost other than its kind's cost (a follow-up not asked)
            c, calls = c if isinstance(c, tuple) else (c, self.s.costs[k])
            c = None if c is None else float(c)
            self.info[n]["scores"][k] = c
            self.probes.append((n, k, c))
            self.calls += int(calls)

    def best(self) -> int:
        """The queued node to visit: best priority; ties keep the order of insertion (ZoomEye's stable sort),
        in map order the larger mass first; without priority probes, the mass share (map) or raster order."""
        def rank(n: int) -> tuple[float, float, int]:
            d = self.info[n]
            mapped = self.s.order == "map"
            priority = d["priority"] if d["priority"] is not None else (d["mass"] if mapped else 0.0)
            tie = d["mass"] if mapped and d["mass"] is not None else 0.0
            return (_rank(priority), tie, -self.queue.index(n))

        return max(self.queue, key=rank)

    def visit(self, node: int) -> None:
        self.queue.remove(node)
        self.trace.append(node)
        self.info[node]["visit"] = len(self.trace)

    def _answering(self, n: int) -> float | None:
        return self.info[n]["scores"].get("answering")

    def lower(self) -> bool:
        """ZoomEye's rule at the visit limit: lower τ; a visited node that reaches it is the answer; under the
        floor the search gives up. True when the search stops."""
        self.tau -= self.steps[0]
        if len(self.steps) > 1:
            self.steps.pop(0)
        self.pop_limit += self.s.pops_more
        reached = [n for n in self.trace if self._answering(n) is not None and _rank(self._answering(n)) >= self.tau]
        if reached:
            self.chosen, self.stop = max(reached, key=lambda n: _rank(self._answering(n))), "lowered"
            return True
        if self.tau < self.s.floor:
            self.stop = "floor"
            return True
        return False

    def expand(self, node: int) -> Generator[list[Probe], Sequence[Any], bool]:
        """Queue ``node``'s children (in map order by mass, negligible ones skipped), scoring those the budget
        affords; True when the budget stops the search."""
        kids = list(self.tree.children(node))
        if not kids:
            return False
        shares = self.search._shares(node, kids)
        for k, share in zip(kids, shares):
            self._know(k, node, share)
        if self.s.order == "map":
            mass = [0.0 if m is None else m for m in shares]  # never None: the map order has its map (Search checks)
            order = sorted(range(len(kids)), key=lambda j: -mass[j])  # stable: raster order among equals
            kids = [kids[j] for j in order if j == order[0] or mass[j] >= self.s.skip]
        cost = sum(self.s.costs[k] for k in self.s.priority)
        affordable = kids[:(self.s.budget - self.calls) // cost] if cost else kids
        if self.s.priority and affordable:
            yield from self.ask([(k, kind) for k in affordable for kind in self.s.priority])
            for k in affordable:
                self.info[k]["priority"] = self.search._priority(self.info[k], self.tree.max_depth)
        self.queue.extend(affordable)
        if len(affordable) < len(kids):
            self.stop = "budget"
            return True
        return False

    def result(self) -> SearchResult:
        s, tree = self.s, self.tree
        if self.chosen is None and self.stop in ("budget", "exhausted"):
            # ours: out of calls (or of nodes, which skipping makes common), answer from the best node seen if it
            # reaches the floor, else the whole image
            # (with priority "answering", a node scored in the queue counts: its answer was checked too)
            answered = [n for n in self.info if (c := self._answering(n)) is not None and c >= s.floor]
            if answered:
                self.chosen = max(answered, key=lambda n: _rank(self._answering(n)))
        path: list[int] = []
        walk = self.chosen
        while walk is not None:
            path.append(walk)
            walk = tree.node(walk).parent
        box = tree.node(self.chosen if self.chosen is not None else 0).box
        view = box if self.chosen in (None, 0) else view_box(box, tree.size, s.native_side, s.patch_scale)
        return SearchResult(tree.size, self.chosen, box, view, self.calls, s.budget, s.order, self.stop,
                            tuple(self.info[k] for k in sorted(self.info)), tuple(self.probes), tuple(reversed(path)))


def run_searches(searches: Sequence[Search], score: Callable[[list[Probe]], Sequence[Any]]) -> list[SearchResult]:
    """Run many searches together: every round, the probes all unfinished searches need go to ``score`` in one
    call (one backend batch), which returns one confidence (or None: the call failed) per probe, in order — or
    a ``(confidence, calls)`` pair where a probe cost fewer (or more) VLM calls than its kind's ``costs``
    (the budget is checked against ``costs``: give there the most a probe may cost).

    >>> a = Search((256, 256), SearchSettings(budget=9, native_side=128, priority=("existence",)), key="a")
    >>> b = Search((256, 256), SearchSettings(budget=9, native_side=128, priority=("existence",)), key="b")
    >>> rounds = []
    >>> def score(probes):
    ...     rounds.append(len(probes))
    ...     return [0.9 if p.key == "a" or p.node == 4 else -0.9 for p in probes]
    >>> [r.chosen for r in run_searches([a, b], score)], rounds
    ([0, 4], [2, 4, 1])
    """
    runs = [s.rounds() for s in searches]
    results: list[SearchResult | None] = [None] * len(runs)
    pending: dict[int, list[Probe]] = {}
    for i, run in enumerate(runs):
        try:
            pending[i] = next(run)
        except StopIteration as done:
            results[i] = done.value
    while pending:
        order = sorted(pending)
        batch = [p for i in order for p in pending[i]]
        answers = list(score(batch))
        if len(answers) != len(batch):
            raise ValueError(f"the scorer returned {len(answers)} confidences for {len(batch)} probes")
        start = 0
        for i in order:
            mine = answers[start:start + len(pending[i])]
            start += len(pending[i])
            try:
                pending[i] = runs[i].send(mine)
            except StopIteration as done:
                results[i] = done.value
                del pending[i]
    return results  # type: ignore[return-value]


def search(size: tuple[int, int], score: Callable[[list[Probe]], Sequence[Any]],
           settings: SearchSettings, *, prior: np.ndarray | None = None) -> SearchResult:
    """One search over an image of ``size`` (W, H), confidences from ``score`` (see :func:`run_searches`).

    >>> r = search((256, 256), lambda ps: [-1.0] * len(ps), SearchSettings(budget=3, native_side=128,
    ...            priority=("existence",)))
    >>> r.calls, r.stop, r.chosen
    (3, 'budget', None)
    """
    return run_searches([Search(size, settings, prior=prior)], score)[0]
