"""The crowded detail canvases and their tasks: the named object is unique in the canvas, everything else is
distractors, the target scene is pasted whole, boxes point at the named object; today's detail tasks are
unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from attnprompt.evaluation.tasks import get_task
from attnprompt.images import image_digest
from attnprompt.shapes import SHAPES
from attnprompt.shapes.crowded import crowded_masks, make_crowded
from attnprompt.shapes.splits import CROWDED, CROWDED_DISTRACTORS
from attnprompt.shapes.truth import masks_of


@pytest.mark.parametrize("seed, avoid", [(10_000, {"avoid_shape": "star"}), (10_003, {"avoid_color": "red"}),
                                         (10_007, {"avoid_shape": "circle"}), (10_011, {"avoid_color": "blue"})])
def test_no_distractor_carries_the_named_attribute(seed, avoid):
    c = make_crowded(seed, ratio=4, scene_size=64, **avoid)
    names = [n for n, _ in crowded_masks(seed, 4, 64, **avoid)]
    own = len(c.scene.objects)
    assert names[:own] == [o.name for o in c.scene.objects]
    others = names[own:]
    assert len(c.distractors) >= 3 and len(c.loose) >= 12 and len(others) >= len(c.loose)
    value = avoid.get("avoid_shape") or avoid.get("avoid_color")
    assert all(value not in name.split() for name in others)
    assert all(CROWDED_DISTRACTORS.start <= s < CROWDED_DISTRACTORS.stop for s, _, _ in c.distractors)


def test_the_target_scene_is_pasted_whole_and_nothing_overlaps_it():
    c = make_crowded(10_002, ratio=4, scene_size=64, avoid_shape="square")
    x0, y0, x1, y1 = c.scene_box
    assert np.array_equal(np.asarray(c.image)[y0:y1, x0:x1], np.asarray(c.scene.image))
    boxes = [b for _, _, b in c.distractors] + [o.box for o in c.loose]
    assert all(b[2] <= x0 or x1 <= b[0] or b[3] <= y0 or y1 <= b[1] for b in boxes)
    # the shapes segmenter knows the canvas: the target scene's objects first, exactly
    known = masks_of(c.image)
    assert known is not None and [n for n, _ in known][:2] == [o.name for o in c.scene.objects]
    assert known[0][1][y0:y1, x0:x1].sum() == c.scene.objects[0].mask.sum()


def test_canvases_are_deterministic_and_differ_with_what_is_avoided():
    a = make_crowded(10_004, ratio=3, scene_size=64, avoid_shape="star")
    assert image_digest(a.image) == image_digest(make_crowded(10_004, ratio=3, scene_size=64, avoid_shape="star").image)
    assert image_digest(a.image) != image_digest(make_crowded(10_004, ratio=3, scene_size=64, avoid_color="red").image)
    with pytest.raises(ValueError, match="ratio must be an integer ≥ 2"):
        make_crowded(10_004, ratio=1)
    with pytest.raises(ValueError, match="avoid_shape must be one of"):
        make_crowded(10_004, ratio=3, avoid_shape="hexagon")


def test_the_crowded_tasks_ask_about_a_unique_object_whose_box_is_in_meta():
    task = get_task("shapes-detail-crowded-4x")
    samples = task.samples(6)
    assert [s.id.split("/")[1] for s in samples[:2]] == ["color", "shape"]
    for s in samples:
        seed = s.meta["seed"]
        assert CROWDED.start <= seed < CROWDED.stop and s.images[0].size == (896, 896)
        named = s.meta["named"]
        masks = masks_of(s.images[0])
        value = named.get("shape") or named.get("color")
        holders = [m for n, m in masks if value in n.split()]
        assert len(holders) == 1  # unique in the canvas
        ys, xs = np.nonzero(holders[0])
        assert [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1] == s.meta["box"]
        if "shape" in named:
            assert named["shape"] in SHAPES and named["shape"] in s.question
        else:
            assert named["color"] in s.question
        x0, y0, x1, y1 = s.meta["scene_box"]
        assert x1 - x0 == 224 and s.region == (x0, y0, x1, y1) and s.meta["distractor_scenes"] >= 4
    assert get_task("shapes-detail-crowded-8x").samples(1)[0].images[0].size == (1792, 1792)


def test_todays_detail_tasks_are_unchanged():
    s = get_task("shapes-detail").samples(2)
    assert [x.id for x in s] == ["800000/shape", "800001/color"]
    assert image_digest(s[0].images[0]) == "b1eb794992edc2efda5a878d73b90260fe49b4c8"
    assert s[0].meta == {"seed": 800000, "ratio": 2, "box": s[0].meta["box"], "scene_box": [66, 205, 290, 429]}
    [s4] = [x for x in get_task("shapes-detail-4x").samples(4) if x.meta["seed"] == 800001][:1]
    assert image_digest(s4.images[0]) == "76f54b27e1b5d4a25780f1308a23e18ce68becac"
