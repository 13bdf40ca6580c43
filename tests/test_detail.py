"""Looking closer (issue 28): the shapes-detail task's ground truth, crop windows fitted to the answering
VLM, the zoom form, the zoom cap on CARVE's boxes, and the reference rows."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from attnprompt.annotation import region_config
from attnprompt.attribution import get_attributor
from attnprompt.backends import Backend, get_backend
from attnprompt.evaluation.tasks import get_task
from attnprompt.forms import FORMS
from attnprompt.regions import FALLBACK_WINDOW, RegionConfig, box_share, components, select_regions
from attnprompt.shapes import COLORS
from attnprompt.shapes.detail import make_detail
from attnprompt.strategies.api import Api
from attnprompt.strategies.build import build_strategy
from attnprompt.strategies.registry import STRATEGIES
from attnprompt.types import Answer, Sample


class Recorder(Backend):
    """Remembers what each request showed; answers with the number of images."""

    name = "recorder"

    def __init__(self, side: int | None = None):
        self.calls: list = []
        self.side = side

    def native_side(self):
        return self.side

    def answer(self, requests):
        self.calls += list(requests)
        return [Answer(f"{len(r.images)}") for r in requests]


# -- the task -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, side", [("shapes-detail", 448), ("shapes-detail-4x", 896)])
def test_the_boxes_hold_the_named_object_and_the_question_is_unambiguous_in_the_canvas(name, side):
    task = get_task(name)
    samples = task.samples(12)
    assert {s.images[0].size for s in samples} == {(side, side)}
    for s in samples:
        seed = s.meta["seed"]
        detail = make_detail(seed, ratio=s.meta["ratio"])
        canvas = np.asarray(s.images[0]).astype(int)
        x0, y0, x1, y1 = s.meta["box"]
        sx, sy = s.meta["scene_box"][:2]
        # the named object: the one whose other attribute the question names
        kind = s.category
        named = [o for o in detail.scene.objects if (o.shape if kind == "color" else o.color) in s.question]
        assert len(named) == 1, s.question  # unique among the canvas's objects (the scene's are all there is)
        obj = named[0]
        answer = obj.color if kind == "color" else obj.shape
        assert s.references == (answer,)
        assert [x0, y0, x1, y1] == [obj.box[0] + sx, obj.box[1] + sy, obj.box[2] + sx, obj.box[3] + sy]
        # pixel check: inside the box, on the object's mask, the canvas shows the object's colour
        pixels = canvas[y0:y1, x0:x1][obj.mask[obj.box[1]:obj.box[3], obj.box[0]:obj.box[2]]]
        assert np.abs(pixels.mean(0) - np.array(COLORS[obj.color])).max() < 20
        # no object colour anywhere outside the scene: the canvas holds no other object
        outside = np.ones(canvas.shape[:2], bool)
        outside[sy:sy + 224, sx:sx + 224] = False
        far = np.min([np.abs(canvas[outside] - np.array(c)).max(1) for c in COLORS.values()], axis=0)
        assert (far < 25).mean() < 0.001


def test_the_task_has_enough_questions_for_a_difference_of_a_tenth():
    task = get_task("shapes-detail")
    rows = task.rows(None)
    assert len(rows) >= 400
    assert len({r["seed"] for r in rows}) >= 200  # two questions per scene at most
    ids = [task.to_sample(r).id for r in rows[:50]]
    assert len(set(ids)) == len(ids)


# -- windows that fit the answering VLM ------------------------------------------------------------


def test_the_window_is_the_answering_vlms_native_side_unless_set():
    attributor = get_attributor("carve", model="shapes", preset="vicrop")
    shapes = build_strategy("carve", get_backend("shapes"), method="carve", preset="vicrop")
    assert shapes.regions.window == 128 and shapes.describe()["regions"]["window"] == 128
    assert Api(Recorder(336), attributor, form="crop").regions.window == 336
    assert Api(Recorder(None), attributor, form="crop").regions.window == FALLBACK_WINDOW  # unknown: ViCrop's 336
    assert Api(Recorder(128), attributor, form="crop",
               regions=RegionConfig.from_preset("vicrop", window=200)).regions.window == 200  # set: kept
    # CARVE's component rule does not use the window: its recorded value stays the old default
    assert region_config("carve", native_side=128).window == FALLBACK_WINDOW


def test_a_servers_input_side_is_a_flag():
    backend = get_backend("http://127.0.0.1:9/v1", vlm_model="m", native_side=224)
    assert backend.native_side() == 224
    assert get_backend("http://127.0.0.1:9/v1", vlm_model="m").native_side() is None
    with pytest.raises(Exception, match="native_side are for a server URL"):
        get_backend("shapes", native_side=224)


# -- the zoom form ---------------------------------------------------------------------------------


def test_zoom_sends_exactly_one_image_the_crop():
    assert "zoom" in FORMS
    backend = Recorder(128)
    strategy = Api(backend, get_attributor("carve", model="shapes", preset="vicrop"), form="zoom")
    image = get_task("shapes-detail").samples(1)[0].images[0]
    result = strategy.run([Sample(image, "What colour is the circle?")])[0]
    [request] = backend.calls
    [shown] = request.images
    annotation = result.steps[0].annotations[0]
    assert shown is annotation.crop
    x0, y0, x1, y1 = annotation.box
    assert shown.size == (x1 - x0, y1 - y0) == (128, 128)  # ViCrop's window at the shapes VLM's side
    assert np.array_equal(np.asarray(shown), np.asarray(image.crop(annotation.box)))


@pytest.mark.parametrize("name", [n for n in STRATEGIES.names() if STRATEGIES.get(n).needs.crossed])
def test_every_strategy_that_shows_a_map_takes_the_zoom_form(name):
    strategy = build_strategy(name, Recorder(128), method="api-clip", model="shapes", form="zoom")
    assert strategy.form == "zoom" and strategy.describe()["form"] == "zoom"


# -- a crop that stays a zoom ------------------------------------------------------------------------


def test_max_share_keeps_the_strongest_region_when_the_box_is_most_of_the_image():
    heat = np.random.default_rng(0).random((100, 100)) * 0.01  # no ties with the regions
    heat[2:8, 2:8] = 0.5  # weak, top left
    heat[90:98, 90:98] = 1.0  # strong, bottom right
    image = Image.new("RGB", (100, 100))
    loose = select_regions(heat, image, RegionConfig.from_preset(top=0.01, min_regions=2))
    assert box_share(loose.box, (100, 100)) > 0.8  # CARVE's box spans both corners
    tight = select_regions(heat, image, RegionConfig.from_preset(top=0.01, min_regions=2, max_share=0.25))
    assert tight.box == (90, 90, 98, 98) and box_share(tight.box, (100, 100)) <= 0.25
    labels, _ = components(heat > 0.1)
    assert labels[tight.mask].min() == labels[95, 95]  # only the strong component is kept


def test_max_share_off_leaves_the_recorded_configuration_as_before():
    assert "max_share" not in RegionConfig.from_preset().to_dict()
    assert RegionConfig.from_preset(max_share=0.3).to_dict()["max_share"] == 0.3
    with pytest.raises(Exception, match=r"max_share must be a number in \(0, 1\]"):
        RegionConfig.from_preset(max_share=0)


# -- the reference rows ----------------------------------------------------------------------------


def test_zoom_oracle_shows_the_scene_and_zoom_centre_the_centre():
    backend = Recorder()
    s = get_task("shapes-detail").samples(1)[0]
    build_strategy("zoom-oracle", backend).run([s])
    build_strategy("zoom-centre", backend).run([s])
    oracle, centre = (r.images[0] for r in backend.calls)
    assert np.array_equal(np.asarray(oracle), np.asarray(s.images[0].crop(tuple(s.meta["scene_box"]))))
    assert np.array_equal(np.asarray(centre), np.asarray(s.images[0].crop((112, 112, 336, 336))))


def test_zoom_oracle_without_ground_truth_is_a_clear_failure_and_not_offered_by_the_demo():
    [r] = build_strategy("zoom-oracle", Recorder()).run([Sample(Image.new("RGB", (8, 8)), "q?")])
    assert not r.answer.ok and "reads where the answer lies" in r.answer.error and r.answer.failure == "input"
    assert STRATEGIES.get("zoom-oracle").needs.truth and not STRATEGIES.get("api").needs.truth
