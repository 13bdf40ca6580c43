"""Tests for the synthetic shapes testbed (scene generator and question templates)."""

from __future__ import annotations

import hashlib
import itertools
import random
import re
from collections import Counter

import numpy as np
import pytest

from attnprompt.shapes import (
    BACKGROUND_KINDS,
    COLORS,
    PLURALS,
    QA,
    QUESTION_KINDS,
    SHAPES,
    Scene,
    caption,
    caption_templates,
    describe,
    make_questions,
    make_scene,
    pointing_query,
    render_shape_mask,
)

PALETTE = np.array(list(COLORS.values()), dtype=np.float64)
COLOR_NAMES = list(COLORS)


def _pixels(scene: Scene) -> np.ndarray:
    return np.asarray(scene.image, dtype=np.float64)


def _nearest_color(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index of nearest palette colour, distance to it) for an (N, 3) array of pixels."""
    d = np.linalg.norm(pixels[:, None, :] - PALETTE[None, :, :], axis=2)
    return d.argmin(axis=1), d.min(axis=1)


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    padded = np.pad(mask, r)
    out = np.zeros_like(mask)
    h, w = mask.shape
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= padded[dy : dy + h, dx : dx + w]
    return out


# Scenes shared by several tests: a mix of sizes, object counts and duplicate policies.
SCENE_ARGS = [(s, 1 + s % 8, (112, 224, 64)[s % 3], s % 5 != 0) for s in range(60)]


@pytest.fixture(scope="module")
def scenes() -> list[tuple[Scene, float]]:
    out = []
    for seed, n, size, unique in SCENE_ARGS:
        min_visible = 0.9 if seed % 7 == 0 else 0.6
        out.append((make_scene(seed, n, size, min_visible=min_visible, unique_pairs=unique), min_visible))
    return out


@pytest.fixture(scope="module")
def qa_scenes() -> list[Scene]:
    return [make_scene(s, n_objects=2 + s % 7, size=112, unique_pairs=s % 4 != 0) for s in range(300)]


# ----------------------------------------------------------------------------- determinism
def test_same_arguments_give_identical_scene_regardless_of_global_rng():
    a = make_scene(123, n_objects=6, size=112)
    random.seed(999)
    np.random.seed(999)
    np.random.random(1000)
    b = make_scene(123, n_objects=6, size=112)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.objects == b.objects
    assert all(np.array_equal(x.mask, y.mask) for x, y in zip(a.objects, b.objects))
    assert a.background == b.background and a.seed == b.seed == 123


def test_different_seeds_give_different_scenes():
    digests = {hashlib.sha256(make_scene(s, size=112).image.tobytes()).hexdigest() for s in range(20)}
    assert len(digests) == 20
    layouts = {tuple((o.name, o.box) for o in make_scene(s, size=112).objects) for s in range(20)}
    assert len(layouts) == 20


def test_golden_digests_pin_cross_machine_output():
    # If these change, every cached dataset and trained checkpoint silently changes meaning:
    # update them only on purpose (and say so in the changelog).
    s0 = make_scene(0)
    assert hashlib.sha256(s0.image.tobytes()).hexdigest() == (
        "1bbe0313fc9fa42c7cecb15e421017fece08f85f0aad5d583868c8b1811dc077"
    )
    assert s0.background == "mottled"
    assert [(o.name, o.size, o.center, o.box, o.angle) for o in s0.objects] == [
        ("green cross", 45, (190.0, 136.0), (169, 115, 212, 158), 5),
        ("orange cross", 18, (61.0, 36.0), (53, 28, 70, 45), 5),
        ("orange star", 67, (149.0, 174.0), (117, 161, 180, 203), -5),
        ("green circle", 38, (146.0, 146.0), (127, 127, 165, 165), 0),
    ]
    s1 = make_scene(1, n_objects=6, size=112)
    assert hashlib.sha256(s1.image.tobytes()).hexdigest() == (
        "2e0f5484b855b44632636c8c21a81fd54a803742aaac7ce667c7f220a8a132aa"
    )


# ----------------------------------------------------------------------------- geometry
def test_image_and_object_basics(scenes):
    for scene, _ in scenes:
        assert scene.image.mode == "RGB" and scene.image.size == (scene.size, scene.size)
        assert scene.background in BACKGROUND_KINDS
        for o in scene.objects:
            assert o.shape in SHAPES and o.color in COLORS
            assert o.mask.shape == (scene.size, scene.size) and o.mask.dtype == bool
            assert o.area == int(o.mask.sum()) > 0
            assert o.name == f"{o.color} {o.shape}"


def test_boxes_are_tight_exclusive_bboxes_of_masks(scenes):
    for scene, _ in scenes:
        for o in scene.objects:
            x0, y0, x1, y1 = o.box
            assert 0 <= x0 < x1 <= scene.size and 0 <= y0 < y1 <= scene.size
            assert o.mask[y0:y1, x0:x1].sum() == o.area  # box contains the whole mask
            # ...and is tight: every border row/column of the box touches the mask.
            assert o.mask[y0, x0:x1].any() and o.mask[y1 - 1, x0:x1].any()
            assert o.mask[y0:y1, x0].any() and o.mask[y0:y1, x1 - 1].any()


def test_visible_masks_are_disjoint_and_respect_occlusion_order(scenes):
    for scene, _ in scenes:
        seen = np.zeros((scene.size, scene.size), dtype=bool)
        for i, o in enumerate(scene.objects):
            assert not (seen & o.mask).any()
            seen |= o.mask
            full = render_shape_mask(o.shape, o.center, o.size, scene.size, angle=o.angle)
            assert full.sum() == o.full_area
            assert not (o.mask & ~full).any(), "visible pixels must lie inside the full shape"
            # Pixels of the full shape that are not visible are covered by later objects.
            later = np.zeros_like(seen)
            for p in scene.objects[i + 1 :]:
                later |= p.mask
            assert not (full & ~o.mask & ~later).any()


def test_objects_fully_inside_image(scenes):
    for scene, _ in scenes:
        for o in scene.objects:
            # The full, unclipped shape fits: rendering in a larger canvas adds no pixels.
            pad = o.size
            big = render_shape_mask(
                o.shape, (o.center[0] + pad, o.center[1] + pad), o.size, scene.size + 2 * pad, angle=o.angle
            )
            assert big.sum() == o.full_area
            assert not big[:pad].any() and not big[-pad:].any()
            assert not big[:, :pad].any() and not big[:, -pad:].any()


def test_visible_fraction_at_least_min_visible(scenes):
    for scene, min_visible in scenes:
        for o in scene.objects:
            assert o.area / o.full_area >= min_visible - 1e-9
            assert o.visible_fraction == pytest.approx(o.area / o.full_area)


def test_unique_pairs_and_duplicates_when_allowed():
    for s in range(100):
        scene = make_scene(s, n_objects=12, size=112)
        assert len({(o.color, o.shape) for o in scene.objects}) == 12
    dup_scenes = 0
    for s in range(100):
        scene = make_scene(s, n_objects=12, size=112, unique_pairs=False)
        dup_scenes += len({(o.color, o.shape) for o in scene.objects}) < 12
    assert dup_scenes > 10  # 12 draws from 48 pairs collide most of the time


def test_same_colour_objects_never_touch():
    checked = 0
    for s in range(80):
        scene = make_scene(s, n_objects=10, size=112, unique_pairs=False)
        for a, b in itertools.combinations(scene.objects, 2):
            if a.color == b.color:
                checked += 1
                # Touching same-coloured objects would merge into one blob on screen.
                assert not (_dilate(a.mask, 2) & b.mask).any(), (s, a.name, b.name)
    assert checked > 50


def test_object_sizes_cover_small_to_large():
    size = 112
    sizes = [o.size for s in range(200) for o in make_scene(s, n_objects=6, size=size).objects]
    frac = np.array(sizes) / size
    assert frac.min() >= 0.07 and frac.max() <= 0.31
    assert np.mean(frac <= 0.09) >= 0.15, "small objects (<= 9% of the side) must be common"
    assert np.mean(frac >= 0.25) >= 0.05, "large objects must occur too"
    assert frac.max() >= 0.29


def test_all_shapes_colours_and_backgrounds_occur():
    seen_shapes, seen_colors, seen_bgs = set(), set(), set()
    for s in range(40):
        scene = make_scene(s, n_objects=6, size=64)
        seen_bgs.add(scene.background)
        seen_shapes.update(o.shape for o in scene.objects)
        seen_colors.update(o.color for o in scene.objects)
    assert seen_shapes == set(SHAPES)
    assert seen_colors == set(COLORS)
    assert seen_bgs == set(BACKGROUND_KINDS)


def test_render_shape_mask_sizes_and_errors():
    for shape in SHAPES:
        m = render_shape_mask(shape, (30, 30), 21, 60)
        ys, xs = np.nonzero(m)
        # The shape fits its nominal 21 px bounding circle (+1 px of rasterisation slack).
        assert xs.max() - xs.min() + 1 <= 22 and ys.max() - ys.min() + 1 <= 22
        assert m.sum() > 0.25 * 21 * 21
    circle = render_shape_mask("circle", (30, 30), 21, 60)
    assert abs(circle.sum() - np.pi * 10.5**2) < 0.08 * np.pi * 10.5**2
    assert render_shape_mask("square", (-100, -100), 10, 32).sum() == 0  # clipped away
    with pytest.raises(ValueError, match="unknown shape"):
        render_shape_mask("hexagon", (10, 10), 8, 32)
    with pytest.raises(ValueError, match="angle"):
        render_shape_mask("star", (10, 10), 8, 32, angle=7)


# ----------------------------------------------------------------------------- colours
def test_palette_is_saturated_and_well_separated():
    assert len(COLORS) >= 8
    chroma = PALETTE.max(axis=1) - PALETTE.min(axis=1)
    assert chroma.min() >= 140
    dists = [np.linalg.norm(a - b) for a, b in itertools.combinations(PALETTE, 2)]
    assert min(dists) >= 90


def test_object_pixels_have_their_colour_and_background_pixels_do_not(scenes):
    for scene, _ in scenes:
        pix = _pixels(scene)
        fg = np.zeros((scene.size, scene.size), dtype=bool)
        for o in scene.objects:
            fg |= o.mask
            px = pix[o.mask]
            assert np.abs(px.mean(axis=0) - COLORS[o.color]).max() <= 15, (scene.seed, o.name)
            nearest, _ = _nearest_color(px)
            assert (nearest == COLOR_NAMES.index(o.color)).all(), (scene.seed, o.name)
            # Not perfectly flat: mild noise on top of the object.
            assert px.std(axis=0).max() > 1.0
        bg = pix[~fg]
        _, dist = _nearest_color(bg)
        assert dist.min() > 60, scene.seed  # no background pixel looks like an object colour
        assert (bg.max(axis=1) - bg.min(axis=1)).max() <= 80  # low saturation
        assert bg.std(axis=0).mean() > 3.0, "background must not be plain"


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"n_objects": 0}, r"n_objects.*1\.\.12.*0"),
        ({"n_objects": 13}, r"n_objects.*1\.\.12.*13"),
        ({"size": 31}, r"size.*>= 32.*31"),
        ({"min_visible": 0.0}, r"min_visible"),
        ({"min_visible": 1.5}, r"min_visible"),
    ],
)
def test_argument_validation(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_scene(0, **kwargs)


def test_impossible_layout_raises_clear_error():
    with pytest.raises(ValueError, match="could not place 12 objects"):
        make_scene(0, n_objects=12, size=32, min_visible=1.0)


# ----------------------------------------------------------------------------- questions
_RE = {
    "color": re.compile(r"^(?:What colou?r is|Which colour is) the (\w+)\?$"),
    "shape": re.compile(
        r"^(?:What shape is the (\w+) object|What is the shape of the (\w+) object|Which shape is (\w+))\?$"
    ),
    "count_shape": re.compile(r"^How many (\w+) (?:are there|are in the image)\?$"),
    "count_color": re.compile(r"^How many (\w+) (?:objects are there|shapes are in the image)\?$"),
    "count_all": re.compile(r"^How many colou?red (?:objects are there|shapes are in the image)\?$"),
    "exists": re.compile(r"^Is there (an?) (\w+) (\w+)(?: in the image)?\?$"),
    "left_of": re.compile(r"^Is the (\w+) (\w+) (?:to the )?left of the (\w+) (\w+)\?$"),
}
_SINGULAR = {v: k for k, v in PLURALS.items()}


def _check_qa(scene: Scene, qa: QA) -> None:
    """Re-derive the answer from the question text and the scene's objects alone."""
    objs = scene.objects
    assert re.fullmatch(r"[a-z0-9]+", qa.answer), qa
    assert all(0 <= t < len(objs) for t in qa.targets)
    if qa.kind == "color":
        (shape,) = _RE["color"].match(qa.question).groups()
        idx = [i for i, o in enumerate(objs) if o.shape == shape]
        assert len(idx) == 1, f"ambiguous: {qa}"
        assert qa.answer == objs[idx[0]].color and qa.targets == tuple(idx)
    elif qa.kind == "shape":
        (color,) = [g for g in _RE["shape"].match(qa.question).groups() if g]
        idx = [i for i, o in enumerate(objs) if o.color == color]
        assert len(idx) == 1, f"ambiguous: {qa}"
        assert qa.answer == objs[idx[0]].shape and qa.targets == tuple(idx)
    elif qa.kind == "count":
        if _RE["count_all"].match(qa.question):
            idx = list(range(len(objs)))
        elif (m := _RE["count_color"].match(qa.question)) and m.group(1) in COLORS:
            idx = [i for i, o in enumerate(objs) if o.color == m.group(1)]
        else:
            (plural,) = _RE["count_shape"].match(qa.question).groups()
            idx = [i for i, o in enumerate(objs) if o.shape == _SINGULAR[plural]]
        assert qa.answer == str(len(idx)) and sorted(qa.targets) == idx, qa
    elif qa.kind == "exists":
        article, color, shape = _RE["exists"].match(qa.question).groups()
        assert color in COLORS and shape in SHAPES
        assert article == ("an" if color[0] in "aeiou" else "a")
        idx = [i for i, o in enumerate(objs) if o.color == color and o.shape == shape]
        assert qa.answer == ("yes" if idx else "no") and sorted(qa.targets) == idx, qa
    elif qa.kind == "left_of":
        c1, s1, c2, s2 = _RE["left_of"].match(qa.question).groups()
        ia = [i for i, o in enumerate(objs) if (o.color, o.shape) == (c1, s1)]
        ib = [i for i, o in enumerate(objs) if (o.color, o.shape) == (c2, s2)]
        assert len(ia) == 1 and len(ib) == 1, f"ambiguous: {qa}"
        a, b = objs[ia[0]], objs[ib[0]]
        assert abs(a.center[0] - b.center[0]) >= 0.10 * scene.size, f"too close to call: {qa}"
        assert qa.answer == ("yes" if a.center[0] < b.center[0] else "no")
        assert qa.targets == (ia[0], ib[0])
    else:
        raise AssertionError(f"unknown kind {qa.kind!r}")


def test_every_question_is_unambiguous_and_correct(qa_scenes):
    kinds = Counter()
    for scene in qa_scenes:
        qas = make_questions(scene, scene.seed, per_kind=3)
        assert len({qa.question for qa in qas}) == len(qas), "no duplicate questions"
        for qa in qas:
            _check_qa(scene, qa)
            kinds[qa.kind] += 1
    assert set(kinds) == set(QUESTION_KINDS)
    assert min(kinds.values()) >= 200


def test_exists_questions_are_balanced_and_include_adversarial_negatives(qa_scenes):
    answers = Counter()
    adversarial = plain = 0
    for scene in qa_scenes:
        colors = {o.color for o in scene.objects}
        shapes = {o.shape for o in scene.objects}
        for qa in make_questions(scene, scene.seed + 1, kinds=["exists"], per_kind=4):
            answers[qa.answer] += 1
            if qa.answer == "no":
                _, color, shape = _RE["exists"].match(qa.question).groups()
                if color in colors or shape in shapes:
                    adversarial += 1
                else:
                    plain += 1
    total = answers["yes"] + answers["no"]
    assert total >= 900
    assert 0.45 <= answers["yes"] / total <= 0.55
    assert adversarial >= 0.4 * answers["no"] and plain >= 0.05 * answers["no"]


def test_count_answers_include_zero_and_left_of_both_answers(qa_scenes):
    counts, left = Counter(), Counter()
    for scene in qa_scenes:
        for qa in make_questions(scene, scene.seed, kinds=["count", "left_of"], per_kind=3):
            (counts if qa.kind == "count" else left)[qa.answer] += 1
    assert counts["0"] >= 20 and counts["1"] > 0 and counts["2"] > 0
    assert left["yes"] >= 0.35 * sum(left.values()) and left["no"] >= 0.35 * sum(left.values())


def test_make_questions_determinism_kinds_and_errors():
    scene = make_scene(5, n_objects=6, size=112)
    assert make_questions(scene, 7) == make_questions(scene, 7)
    assert make_questions(scene, np.random.default_rng(7)) == make_questions(scene, 7)
    only = make_questions(scene, 7, kinds=["left_of"])
    assert only and {qa.kind for qa in only} == {"left_of"}
    assert make_questions(scene, 7, per_kind=0) == []
    with pytest.raises(ValueError, match="unknown question kind"):
        make_questions(scene, 0, kinds=["colour"])


def test_no_singling_out_questions_when_description_is_ambiguous():
    # Two squares and two red objects: "the square" and "the red object" are ambiguous.
    for s in range(400):
        scene = make_scene(s, n_objects=6, size=112, unique_pairs=False)
        shape_counts = Counter(o.shape for o in scene.objects)
        color_counts = Counter(o.color for o in scene.objects)
        for qa in make_questions(scene, s, kinds=["color", "shape"], per_kind=6):
            if qa.kind == "color":
                assert shape_counts[scene.objects[qa.targets[0]].shape] == 1
            else:
                assert color_counts[scene.objects[qa.targets[0]].color] == 1


# ----------------------------------------------------------------------------- captions
def test_captions_and_description():
    scene = make_scene(1, n_objects=6, size=112)
    orange = scene.find(color="orange")[0]
    assert caption(orange) == f"an orange {orange.shape}"
    assert caption_templates(orange) == (
        f"an orange {orange.shape}",
        f"the orange {orange.shape}",
        f"orange {orange.shape}",
        f"a photo of an orange {orange.shape}",
    )
    text = describe(scene)
    assert text.startswith("A ") and text.endswith(".")
    assert all(caption(o) in text.lower() for o in scene.objects)
    assert (
        describe(make_scene(0, n_objects=1))
        == caption(make_scene(0, n_objects=1).objects[0]).capitalize() + "."
    )


def test_find_helpers():
    scene = make_scene(3, n_objects=8, size=112)
    for o in scene.objects:
        assert o in scene.find(shape=o.shape) and o in scene.find(color=o.color)
        assert scene.find(shape=o.shape, color=o.color) == [o]
    assert scene.find() == list(scene.objects)
    assert scene.find(shape="hexagon") == []


def test_pointing_query_names_exactly_one_object():
    raised = qualified = 0
    for s in range(150):
        scene = make_scene(s, n_objects=8, size=112, unique_pairs=s % 2 == 0)
        for i, o in enumerate(scene.objects):
            try:
                q = pointing_query(scene, i)
            except ValueError:
                raised += 1
                assert len(scene.find(o.shape, o.color)) > 1
                continue
            m = re.fullmatch(r"the (?:(leftmost|rightmost|topmost|bottommost) )?(\w+) (\w+)", q)
            assert m and (m.group(2), m.group(3)) == (o.color, o.shape)
            same = [p for p in scene.find(o.shape, o.color) if p is not o]
            if m.group(1) is None:
                assert not same
            else:
                qualified += 1
                axis, sign = {
                    "leftmost": (0, 1),
                    "rightmost": (0, -1),
                    "topmost": (1, 1),
                    "bottommost": (1, -1),
                }[m.group(1)]
                assert all(sign * (p.center[axis] - o.center[axis]) > 0 for p in same)
    assert qualified > 0
    with pytest.raises(IndexError):
        pointing_query(make_scene(0, n_objects=2), 2)
