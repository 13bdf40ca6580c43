"""The search core on hand-made cases, driven by stubs whose confidences are known: the tree's layout, that
the search reaches the leaf that holds the target, that the budget is never exceeded, that the map prior
changes the order of visits and nothing else, ZoomEye's weighting and stopping rule, batching across
questions, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnprompt.errors import InputError
from attnprompt.search import (
    ImageTree,
    Search,
    SearchSettings,
    box_mass,
    run_searches,
    search,
    split_box,
    view_box,
    zoomeye_settings,
)


def holds(box, point) -> bool:
    x0, y0, x1, y1 = box
    return x0 <= point[0] < x1 and y0 <= point[1] < y1


class Stub:
    """Confidences from a hidden target point: existence high on nodes holding it; answering confident only on
    the deepest nodes holding it; every probe counted."""

    def __init__(self, target, max_depth, existence=(0.8, -0.6), latent=(0.2, 0.0)):
        self.target, self.max_depth = target, max_depth
        self.existence, self.latent = existence, latent
        self.calls: list = []

    def __call__(self, probes):
        out = []
        for p in probes:
            self.calls.append((p.key, p.node, p.kind))
            inside = holds(p.box, self.target)
            if p.kind == "existence":
                out.append(self.existence[0] if inside else self.existence[1])
            elif p.kind == "latent":
                out.append(self.latent[0] if inside else self.latent[1])
            else:
                out.append(0.9 if inside and p.depth == self.max_depth else -0.2)
        return out


def test_the_tree_tiles_each_node_with_its_children_down_to_the_native_side():
    tree = ImageTree((896, 896), native_side=128)
    assert tree.max_depth == 3
    frontier, leaves = [0], []
    while frontier:
        node = frontier.pop()
        kids = tree.children(node)
        if not kids:
            leaves.append(tree.node(node))
            continue
        parent = tree.node(node).box
        area = sum((b[2] - b[0]) * (b[3] - b[1]) for b in (tree.node(k).box for k in kids))
        assert area == (parent[2] - parent[0]) * (parent[3] - parent[1])
        assert all(parent[0] <= tree.node(k).box[0] and tree.node(k).box[2] <= parent[2] for k in kids)
        frontier.extend(kids)
    assert len(leaves) == 64 and {leaf.box[2] - leaf.box[0] for leaf in leaves} == {112}
    assert all(max(leaf.box[2] - leaf.box[0], leaf.box[3] - leaf.box[1]) < 128 for leaf in leaves)


def test_the_split_follows_zoomeyes_aspect_rule_and_the_window_stays_inside():
    assert [b[3] - b[1] for b in split_box((0, 0, 40, 100))] == [25, 25, 25, 25]  # tall: 1 × 4
    assert split_box((0, 0, 101, 60))[1] == (50, 0, 101, 30)  # the last column takes the rest
    assert view_box((880, 880, 896, 896), (896, 896), 128) == (768, 768, 896, 896)
    assert view_box((0, 0, 896, 896), (896, 896), 128, 1.2) == (0, 0, 896, 896)
    assert ImageTree((1600, 900), native_side=336).max_depth == 3
    assert ImageTree((1600, 400), native_side=336).max_depth == 2  # 4 × 1 into 400², then 200² leaves
    assert ImageTree((5000, 3), native_side=64).max_depth == 0  # too thin to split


@pytest.mark.parametrize("target", [(10, 10), (700, 130), (450, 450), (895, 895), (130, 800)])
def test_it_reaches_the_leaf_that_holds_the_target(target):
    stub = Stub(target, ImageTree((896, 896), native_side=128).max_depth)
    r = search((896, 896), stub, SearchSettings(budget=100, native_side=128))
    assert r.stop == "confident"
    nodes = {n["id"]: n for n in r.nodes}
    leaf = nodes[r.path[-1]]
    assert r.chosen == r.path[-1] and holds(r.box, target) and list(r.box) == leaf["box"]
    assert leaf["box"][2] - leaf["box"][0] == 112 and len(r.path) == 4
    assert [nodes[i]["depth"] for i in r.path] == [0, 1, 2, 3]
    assert all(holds(nodes[i]["box"], target) for i in r.path)
    # the straight descent ZoomEye makes: 4 answering probes, 3 levels × 4 children × (existence + latent)
    assert r.calls == 4 + 3 * 4 * 2 == len(stub.calls)
    assert holds(r.view, target) and r.view[2] - r.view[0] == 128


def test_a_non_square_image_is_searched_too():
    stub = Stub((1500, 100), max_depth=ImageTree((1600, 900), native_side=336).max_depth)
    r = search((1600, 900), stub, SearchSettings(budget=60, native_side=336))
    assert r.stop == "confident" and holds(r.box, (1500, 100))


@pytest.mark.parametrize("costs", [{}, {"existence": 3, "latent": 2}, {"answering": 4}])
def test_the_budget_is_never_exceeded_and_is_spent_exactly(costs):
    stub_costs = {"existence": 1, "latent": 1, "answering": 1} | costs
    full = search((896, 896), Stub((700, 700), 3), SearchSettings(budget=1000, native_side=128, costs=costs))
    for budget in range(1, full.calls + 3):
        stub = Stub((700, 700), 3)
        r = search((896, 896), stub, SearchSettings(budget=budget, native_side=128, costs=costs))
        spent = sum(stub_costs[kind] for _, _, kind in stub.calls)
        assert spent == r.calls <= budget
        if budget >= full.calls:
            assert (r.chosen, r.calls, r.stop) == (full.chosen, full.calls, "confident")
        else:
            assert r.stop == "budget"
            assert budget - r.calls < max(stub_costs.values()) * 2  # stopped only when the next probes did not fit


def test_out_of_budget_it_answers_from_the_best_node_seen_if_it_reaches_the_floor():
    def score(probes):
        return [0.3 if p.kind == "answering" and p.node == 2 else (0.5 if p.node == 2 else -0.5) for p in probes]
    r = search((896, 896), score, SearchSettings(budget=11, native_side=128))
    assert r.stop == "budget" and r.chosen == 2 and r.box == (448, 0, 896, 448)
    r = search((896, 896), lambda ps: [-0.5] * len(ps), SearchSettings(budget=11, native_side=128))
    assert r.stop == "budget" and r.chosen is None and r.box == (0, 0, 896, 896)


def test_when_skipping_leaves_nothing_to_visit_the_best_node_seen_is_the_answer():
    # a map on one corner, every other child skipped: the queue runs dry before ZoomEye lowers τ
    def score(probes):
        return [(0.3 if p.depth == 3 else 0.1) if p.kind == "answering" else 0.5 for p in probes]
    r = search((896, 896), score, SearchSettings(budget=100, native_side=128, order="map", skip=0.9),
               prior=prior_at((50, 50)))
    assert r.stop == "exhausted" and len(r.visits) == 4 and r.chosen == r.visits[-1] and holds(r.box, (50, 50))
    r = search((896, 896), lambda ps: [-0.5] * len(ps),
               SearchSettings(budget=100, native_side=128, order="map", skip=0.9), prior=prior_at((50, 50)))
    assert r.stop == "exhausted" and r.chosen is None  # nothing reached the floor: the whole image


def prior_at(point, shape=(28, 28), side=896):
    """A map whose mass lies around ``point`` (image pixels), on a coarse grid."""
    grid = np.full(shape, 0.001)
    r, c = int(point[1] * shape[0] / side), int(point[0] * shape[1] / side)
    grid[max(0, r - 1):r + 2, max(0, c - 1):c + 2] = 1.0
    return grid


def test_the_prior_changes_the_visit_order_and_nothing_else():
    target = (800, 820)
    settings = SearchSettings(budget=200, native_side=128)
    plain = Stub(target, 3)
    mapped = Stub(target, 3)
    a = search((896, 896), plain, settings)
    b = search((896, 896), mapped, SearchSettings(budget=200, native_side=128, order="map"), prior=prior_at(target))
    # informative confidences: the same nodes visited in the same order, the same probes and scores …
    assert a.chosen == b.chosen and a.visits == b.visits and a.calls == b.calls
    assert sorted(a.probes) == sorted(b.probes)
    assert {n["id"]: (n["box"], n["scores"]) for n in a.nodes} == {n["id"]: (n["box"], n["scores"]) for n in b.nodes}
    # … asked in another order: the map's heaviest child first (the target's corner), ZoomEye's raster order
    first_existence = [node for node, kind, _ in b.probes if kind == "existence"][0]
    assert holds(b.nodes[first_existence]["box"], target)
    assert [node for node, kind, _ in a.probes if kind == "existence"][:4] == [1, 2, 3, 4]


def test_with_ties_the_prior_decides_which_node_is_visited_first():
    target = (800, 820)
    tied = Stub(target, 3, existence=(0.1, 0.1), latent=(0.0, 0.0))  # existence says nothing
    a = search((896, 896), tied, SearchSettings(budget=400, native_side=128))
    tied_map = Stub(target, 3, existence=(0.1, 0.1), latent=(0.0, 0.0))
    b = search((896, 896), tied_map, SearchSettings(budget=400, native_side=128, order="map"),
               prior=prior_at(target))
    # ZoomEye's order among equals is the order of insertion (raster): down the top-left corner first …
    nodes_a = {n["id"]: n for n in a.nodes}
    assert [nodes_a[i]["box"][:2] for i in a.visits[:4]] == [[0, 0]] * 4
    assert not holds(nodes_a[a.visits[1]]["box"], target)
    # … the map's is its mass: straight down to the target's leaf
    assert b.visits == list(b.path) and len(b.path) == 4 and holds(b.box, target) and b.stop == "confident"
    assert b.calls < a.calls
    asked_a = {(node, kind): c for node, kind, c in a.probes}  # the same question, the same confidence
    common = [(node, kind, c) for node, kind, c in b.probes if (node, kind) in asked_a]
    assert len(common) >= 9 and all(asked_a[node, kind] == c for node, kind, c in common)


def test_map_order_skips_children_with_negligible_mass_but_keeps_the_heaviest():
    target = (100, 100)
    stub = Stub(target, 3)
    r = search((896, 896), stub, SearchSettings(budget=200, native_side=128, order="map", skip=0.05),
               prior=prior_at(target))
    nodes = {n["id"]: n for n in r.nodes}
    probed = {node for node, _, _ in r.probes}
    assert r.chosen is not None and holds(r.box, target)
    assert all(nodes[i]["mass"] >= 0.05 for i in probed)
    unprobed = set(nodes) - probed
    assert unprobed and all(nodes[i]["mass"] < 0.05 for i in unprobed)  # known, never asked about
    plain = search((896, 896), Stub(target, 3), SearchSettings(budget=200, native_side=128))
    assert plain.chosen == r.chosen and r.calls < plain.calls
    flat = search((896, 896), Stub(target, 3), SearchSettings(budget=200, native_side=128, order="map", skip=0.3),
                  prior=np.ones((4, 4)))
    assert flat.chosen is not None  # a flat map: every child under 0.3, the first kept, the search goes on
    assert {n["mass"] for n in flat.nodes if n["depth"] == 1} == {0.25}


def test_zoomeyes_priority_weighs_existence_against_latent_by_depth():
    def score(probes):
        return [{"existence": 0.5, "latent": -0.5, "answering": -1.0}[p.kind] if p.node != 1 else
                {"existence": 0.9, "latent": 0.9, "answering": -1.0}[p.kind] for p in probes]
    r = search((896, 896), score, SearchSettings(budget=25, native_side=128, bias=0.6))
    by_id = {n["id"]: n for n in r.nodes}
    w1, w2 = 0.6 + 0.4 / 9, 0.6 + 0.4 * 4 / 9
    assert by_id[2]["priority"] == pytest.approx(w1 * 0.5 - (1 - w1) * 0.5)
    depth2 = [n for n in r.nodes if n["depth"] == 2 and n["id"] != 1]
    assert depth2 and depth2[0]["priority"] == pytest.approx(w2 * 0.5 - (1 - w2) * 0.5)


def test_the_threshold_is_lowered_after_three_visits_per_level_then_every_two():
    # every answering confidence 0.45: τ 0.6 → 0.5 at visit 9 → 0.4 at visit 11, where the best seen passes
    r = search((896, 896), lambda ps: [0.45 if p.kind == "answering" else 0.0 for p in ps],
               SearchSettings(budget=500, native_side=128))
    assert r.stop == "lowered" and len(r.visits) == 11 and r.chosen == r.visits[0]
    # always -0.5: τ falls under the floor (0) at visit 17 → the whole image
    r = search((896, 896), lambda ps: [-0.5] * len(ps), SearchSettings(budget=500, native_side=128))
    assert r.stop == "floor" and len(r.visits) == 17 and r.chosen is None and r.box == (0, 0, 896, 896)
    s = zoomeye_settings("internvl2.5", 50)
    assert (s.threshold, s.floor, s.patch_scale) == (0.2, -0.2, 1.2)


def test_failed_probes_rank_last_and_are_recorded_as_none():
    def score(probes):
        return [None if p.node == 1 else (0.9 if p.node == 2 else 0.0) for p in probes]
    r = search((896, 896), score, SearchSettings(budget=100, native_side=128))
    assert (1, "existence", None) in r.probes
    assert r.path[:2] == (0, 2)


def test_searches_are_batched_across_questions_one_scorer_call_per_round():
    targets = [(10, 10), (880, 880), (450, 100), (100, 700), (600, 600)]
    alone = [search((896, 896), Stub(t, 3), SearchSettings(budget=100, native_side=128)) for t in targets]
    stubs = {i: Stub(t, 3) for i, t in enumerate(targets)}
    rounds = []

    def score(probes):
        rounds.append({p.key for p in probes})
        out = []
        for p in probes:
            out += stubs[p.key]([p])
        return out

    together = run_searches([Search((896, 896), SearchSettings(budget=100, native_side=128), key=i)
                             for i in range(len(targets))], score)
    assert [r.to_detail() for r in together] == [r.to_detail() for r in alone]
    assert len(rounds) == 7 and rounds[0] == set(range(5))  # 4 levels of answering + 3 of children, all at once


def test_the_detail_is_json_and_says_the_path():
    r = search((896, 896), Stub((700, 100), 3), SearchSettings(budget=100, native_side=128))
    d = json.loads(json.dumps(r.to_detail()))
    assert d["version"] == 1 and d["image"] == [896, 896] and d["chosen"] == d["path"][-1]
    nodes = {n["id"]: n for n in d["nodes"]}
    assert all(nodes[c]["parent"] == p for p, c in zip(d["path"], d["path"][1:]))
    assert [nodes[i]["visit"] for i in d["path"]] == [1, 2, 3, 4]
    assert d["calls"] == sum(1 for _ in d["probes"]) and d["stop"] == "confident"


def test_box_mass_integrates_partial_cells():
    grid = np.arange(16, dtype=float).reshape(4, 4)
    assert box_mass(grid, (0, 0, 100, 100), (100, 100)) == pytest.approx(grid.sum())
    assert box_mass(grid, (0, 0, 50, 50), (100, 100)) == pytest.approx(0 + 1 + 4 + 5)
    assert box_mass(grid, (0, 0, 12.5, 25), (100, 100)) == pytest.approx(0.5 * grid[0, 0])


@pytest.mark.parametrize("make, message", [
    (lambda: SearchSettings(budget=0), "the search budget must be a whole number of VLM calls per question, at "
                                       "least 1; got 0"),
    (lambda: SearchSettings(budget=-3), "at least 1; got -3"),
    (lambda: SearchSettings(budget=5, native_side=31), "the native side must be a whole number of pixels, at least "
                                                       "32"),
    (lambda: ImageTree((100, 100), native_side=8), "the native side must be"),
    (lambda: Search((100, 100), SearchSettings(budget=5, native_side=64, order="map")), "the map order needs a map"),
    (lambda: SearchSettings(budget=5, order="random"), "the search order must be one of zoomeye, map"),
    (lambda: SearchSettings(budget=5, costs={"answering": 0}), "costs give each probe kind"),
])
def test_bad_input_is_one_clear_line(make, message):
    with pytest.raises(InputError) as e:
        make()
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_scorer_that_returns_the_wrong_number_of_confidences_is_an_error():
    with pytest.raises(ValueError, match="the scorer returned 0 confidences for 1 probes"):
        search((256, 256), lambda ps: [], SearchSettings(budget=5, native_side=128))


def test_the_answering_confidence_can_rank_the_queue_and_is_asked_once_a_node():
    target, asked = (700, 130), []

    def score(probes):  # surer the deeper a window holding the target is; unsure elsewhere
        asked.extend((p.node, p.kind) for p in probes)
        return [(0.9 if p.depth == 3 else 0.3) if holds(p.box, target) else -0.5 for p in probes]
    r = search((896, 896), score, SearchSettings(budget=100, native_side=128, priority=("answering",)))
    assert len(asked) == len(set(asked)) and {kind for _, kind in asked} == {"answering"}
    assert r.stop == "confident" and holds(r.box, target) and r.calls == len(asked) == 1 + 3 * 4
    assert all(n["priority"] == n["scores"]["answering"] for n in r.nodes if n["depth"])


def test_a_probe_may_say_what_it_cost_and_the_root_may_be_left_out():
    def score(probes):  # an answer and its check: 2 calls, except where no check could be made (node 3)
        return [(0.9 if p.node == 2 else -0.5, 1 if p.node == 3 else 2) for p in probes]
    settings = SearchSettings(budget=20, native_side=128, priority=("answering",), costs={"answering": 2},
                              root=False)
    r = search((896, 896), score, settings)
    assert r.chosen == 2 and r.calls == 2 + 1 + 2 + 2 and 0 not in {node for node, _, _ in r.probes}
    assert r.visits[:2] == [0, 2]  # the root is visited (its children queued), never asked about
    r = search((896, 896), lambda ps: [(-0.5, 2)] * len(ps), settings)
    assert r.chosen is None and r.box == (0, 0, 896, 896)  # nothing reached the floor: the whole image
