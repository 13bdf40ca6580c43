"""The API paper's segmentation baselines as strategies (issue 31): fgvp-mask, fgvp-rbm and som, beside
plain and api in ask, eval, the lmms-eval adapter and the demo, on the testbed's ground-truth masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from attnprompt import ask, evaluate
from attnprompt.backends import get_backend
from attnprompt.cli import main
from attnprompt.errors import InputError
from attnprompt.segmenters import get_segmenter
from attnprompt.shapes import make_scene
from attnprompt.strategies.build import build_strategy
from attnprompt.strategies.registry import STRATEGIES


@pytest.fixture(scope="module")
def scene():
    return make_scene(7, n_objects=5, size=320)


def test_fgvp_mask_greens_every_object_and_nothing_else(scene):
    r = ask(scene.image, "What colour is the circle?", vlm="shapes", strategy="fgvp-mask")
    shown = np.asarray(r.steps[0].images[0]).astype(int)
    base = np.asarray(scene.image).astype(int)
    union = np.any([o.mask for o in scene.objects], axis=0)
    want = np.floor(base * 0.5 + np.array([0, 255, 0]) * 0.5 + 0.5)
    assert (shown[union] == want[union]).all() and (shown[~union] == base[~union]).all()
    assert r.steps[0].detail["masks"] == [5] and r.steps[0].prompt == "What colour is the circle?"
    assert r.config["segmenter"] == {"segmenter": "shapes", "model": "shapes", "points_per_side": 16,
                                     "pred_iou_thresh": 0.86, "stability_score_thresh": 0.92,
                                     "stability_score_offset": 0.7, "box_nms_thresh": 0.7,
                                     "min_mask_region_area": 400}


def test_fgvp_rbm_blurs_only_outside_the_objects(scene):
    r = ask(scene.image, "What colour is the circle?", vlm="shapes", strategy="fgvp-rbm")
    shown = np.asarray(r.steps[0].images[0]).astype(int)
    base = np.asarray(scene.image).astype(int)
    union = np.any([o.mask for o in scene.objects], axis=0)
    assert (shown[union] == base[union]).all()
    # outside: a blur of σ 100 at 336 px leaves almost no texture (the background's pixel noise is gone)
    outside = ~union[:, :-1] & ~union[:, 1:]

    def texture(a):  # mean difference between horizontal neighbours, both outside every object
        return np.abs(a[:, 1:] - a[:, :-1])[outside].mean()

    assert texture(shown) < 0.2 * texture(base)


def test_som_marks_every_object_at_640(scene):
    r = ask(scene.image, "What colour is the circle?", vlm="shapes", strategy="som", compare=True)
    shown = r.steps[0].images[0]
    assert shown.size == (640, 640) and r.steps[0].detail["masks"] == [5]
    assert r.config["segmenter"]["points_per_side"] == 32 and r.baseline is not None
    # the same image and question give the same picture (seeded colours)
    again = ask(scene.image, "What colour is the circle?", vlm="shapes", strategy="som")
    assert np.array_equal(np.asarray(shown), np.asarray(again.steps[0].images[0]))


def test_the_baselines_take_a_segmenter_and_nothing_of_a_map():
    backend = get_backend("shapes")
    assert [n for n in STRATEGIES.names() if STRATEGIES.get(n).needs.segmenter] == ["fgvp-mask", "fgvp-rbm", "som"]
    assert build_strategy("som", backend).segmenter.name == "shapes"  # ground truth beside the shapes VLM
    with pytest.raises(InputError, match="takes no segmenter; the strategies that do: fgvp-mask, fgvp-rbm, som"):
        build_strategy("api", backend, segmenter="shapes")
    with pytest.raises(InputError, match="uses no attribution map"):
        build_strategy("fgvp-mask", backend, kernel=1)
    shared = get_segmenter("shapes")
    assert build_strategy("fgvp-rbm", backend, segmenter=shared).segmenter is shared


def test_eval_runs_the_table_1_rows_offline_and_resumes(tmp_path, capsys):
    args = ["eval", "--task", "shapes-vqa", "--vlm", "shapes", "--strategy", "plain,api,fgvp-mask,fgvp-rbm,som",
            "--segmenter", "shapes", "--limit", "6", "--out", str(tmp_path), "--quiet"]
    assert main(args) == 0
    report = json.loads((tmp_path / "report.json").read_text())
    rows = {c["label"] for t in report["tasks"] for c in t["conditions"]} if "tasks" in report else None
    md = (tmp_path / "report.md").read_text()
    for row in ("| fgvp-mask |", "| fgvp-rbm |", "| som |", "| api (api-clip) |"):
        assert row in md
    assert rows is None or {"fgvp-mask", "fgvp-rbm", "som"} <= rows
    html = (tmp_path / "report.html").read_text()
    assert html.count("fgvp-rbm") >= 2  # a table row and gallery pictures
    capsys.readouterr()
    assert main(args) == 0
    assert "som: 0 answered, 6 already recorded, 0 failed" in capsys.readouterr().out


def test_a_segmenter_without_a_baseline_or_for_api_is_one_clear_error(tmp_path, capsys):
    with pytest.raises(InputError, match="no chosen strategy draws from masks; add one of fgvp-mask"):
        evaluate("shapes-vqa", vlm="shapes", strategies="plain,api", segmenter="shapes", limit=2, out=tmp_path,
                 progress=False)
    image = tmp_path / "s.png"
    Image.new("RGB", (64, 64)).save(image)
    assert main(["ask", str(image), "What colour?", "--vlm", "shapes", "--strategy", "api", "--segmenter", "sam"]) == 2
    assert "strategy 'api' draws nothing from masks, so it takes no segmenter" in capsys.readouterr().err
    assert main(["ask", str(image), "What colour?", "--vlm", "shapes", "--strategy", "som"]) == 2
    assert "this image is not one; for other images use --segmenter sam" in capsys.readouterr().err


def test_lmms_adapter_and_demo_offer_the_baselines():
    from attnprompt.demo.app import answer, example_files
    from attnprompt.integrations.lmms import LmmsAdapter

    def lmms_adapter(**model_args):
        return LmmsAdapter.from_model_args(model_args)

    adapter = lmms_adapter(vlm="shapes", strategy="fgvp-rbm", segmenter="shapes", progress=False)
    assert adapter.describe()["segmenter"]["segmenter"] == "shapes"
    with pytest.raises(InputError, match="takes no segmenter"):
        lmms_adapter(vlm="shapes", strategy="plain", segmenter="shapes")
    import tempfile
    from pathlib import Path

    path, question = example_files(Path(tempfile.mkdtemp()))[0]
    widgets = dict(method="api-clip", preset="reference", layers="", kernel="", enhance="", gray=0, form="overlay",
                   strategy="som", vlm="shapes", model="", max_new_tokens=8)
    out = answer(path, question, widgets)
    status, annotated, answers = out[0], out[3], out[5]
    assert status == "" and annotated.size == (640, 640) and "**som:**" in answers
