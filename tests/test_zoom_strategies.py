"""The searched, refined and gated zooms (issue 38) on hand-made cases: a stub VLM whose confidences are known
(it reads the pixels: sure of "red" where a window shows the red target, yes to "Is there a red star?" there),
a stub map. ``zoom-search`` reaches the window that holds the target, never exceeds its budget and counts every
call it made; the map prior changes the order of the visits and nothing else; ``zoom-refine`` reads real-looking
replies (and records the ones without a box); ``auto``'s gate goes both ways; bad input is one clear line."""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from attnprompt.attribution.base import Attributor
from attnprompt.backends.base import Backend
from attnprompt.cli import main
from attnprompt.confidence import LogprobsUnavailableError
from attnprompt.errors import InputError
from attnprompt.presets import MethodConfig
from attnprompt.strategies.auto import Auto
from attnprompt.strategies.build import build_strategy
from attnprompt.strategies.spec import AskSpec
from attnprompt.strategies.zoom_refine import ZoomRefine
from attnprompt.strategies.zoom_search import ZoomSearch
from attnprompt.types import Answer, AttributionMap, Sample, TokenLogprob

SIDE, NATIVE = 512, 160  # the tree: 512 → 256 → 128 (leaves: under 160)
TARGET = (300, 60, 340, 100)  # inside leaf 9 = (256, 0, 384, 128), below quadrant 2 = (256, 0, 512, 256)
QUESTION = "What colour is the star?"


def canvas(target=TARGET) -> Image.Image:
    pixels = np.zeros((SIDE, SIDE, 3), dtype=np.uint8)
    pixels[target[1]:target[3], target[0]:target[2]] = (220, 30, 30)
    return Image.fromarray(pixels)


def red_share(image: Image.Image) -> float:
    a = np.asarray(image.convert("RGB"), dtype=int)
    return float(((a[..., 0] > 150) & (a[..., 1] < 80)).mean())


def said(word: str, p: float, other: str) -> Answer:
    top = ((word, math.log(p)), (other, math.log(max(1e-6, 1 - p))))
    return Answer(word, model="stub", logprobs=[TokenLogprob(word, math.log(p), top)])


class PixelVLM(Backend):
    """Answers from the red pixels of the last image: "red" the surer the more of the window is red (blue and
    unsure where none is); yes to a yes/no question where red shows. Every request kept."""

    name = "stub"

    def __init__(self, native: int | None = NATIVE, logprobs: bool = True, plain: float | None = None,
                 replies: tuple[str, ...] = ()):
        self.native, self.logprobs, self.plain, self.replies = native, logprobs, plain, list(replies)
        self.seen: list = []

    def native_side(self):
        return self.native

    def answer(self, requests):
        out = []
        for r in requests:
            self.seen.append(r)
            out.append(self._one(r) if self.logprobs else Answer(self._one(r).text, model="stub"))
        return out

    def _one(self, r) -> Answer:
        if self.replies:
            return Answer(self.replies.pop(0), model="stub")
        share = red_share(r.images[-1]) if r.images else 0.0
        if "objects' information" in r.prompt:
            return Answer("So I need the information about the following objects: star.", model="stub")
        if r.prompt.startswith(("Is there", "Question:", "According")):
            # could it answer: the surer the more of the window is red; is the target there: wherever red shows
            yes = min(0.99, 0.3 + 12 * share) if r.prompt.startswith("Question:") else 0.95 if share > 0 else 0.1
            return said("Yes", yes, "No") if yes > 0.5 else said("No", 1 - yes, "Yes")
        if self.plain is not None and r.images and r.images[-1].size == (SIDE, SIDE):
            return said("red", self.plain, "blue")
        return said("red", min(0.99, 0.3 + 12 * share), "blue") if share > 0 else said("blue", 0.3, "red")


class FixedConfig(MethodConfig):
    PRESETS: ClassVar[dict] = {"default": {}}
    DEFAULT_PRESET: ClassVar[str] = "default"
    METHOD: ClassVar[str] = "fixed"
    preset: str = "default"


def quadrants(*weights: float, peak: bool = False) -> np.ndarray:
    """An 8 × 8 map of the given weight in each quadrant (top-left, top-right, bottom-left, bottom-right), and
    with ``peak`` the most on the target's own cells (leaf 9)."""
    grid = np.kron(np.array(weights, dtype=float).reshape(2, 2), np.ones((4, 4)))
    if peak:
        grid[0:2, 4:6] += 2.0
    return grid / grid.max()


#: The map on the target (its quadrant, most on its leaf), and on another quadrant.
TOWARD, ELSEWHERE = quadrants(0.01, 1.0, 0.01, 0.01, peak=True), quadrants(0.01, 0.01, 1.0, 0.01)


class FixedMap(Attributor):
    """The same map for every question."""

    method = "fixed"
    config_class = FixedConfig

    def __init__(self, grid: np.ndarray = TOWARD) -> None:
        self.config, self.model_id, self.grid = FixedConfig(), "none", grid

    @classmethod
    def load(cls, model, *, device=None, dtype=None, loading=None):
        return None

    def attribute(self, images, queries, *, suffixes=None):
        return [AttributionMap(self.grid) for _ in images]


def searching(vlm, grid=TOWARD, **settings):
    """zoom-search with the answer confidence (the stub knows the testbed's check question) and a fixed map."""
    return ZoomSearch(vlm, FixedMap(grid), **{"search_confidence": "answer", **settings})


def run(strategy, image=None):
    [result] = strategy.run([Sample(image or canvas(), QUESTION)])
    return result, result.steps[-1].detail


def test_the_search_reaches_the_window_that_holds_the_target_and_answers_from_it():
    vlm = PixelVLM()
    result, d = run(searching(vlm, search_budget=40))
    assert d["search"]["chosen"] == 9 and d["search"]["path"] == [0, 2, 9] and d["search"]["stop"] == "confident"
    view = d["box"]
    assert view[0] <= TARGET[0] and TARGET[2] <= view[2] and view[1] <= TARGET[1] and TARGET[3] <= view[3]
    assert result.text == "red" and result.steps[-1].images[0].size == (NATIVE, NATIVE)  # the window, alone
    # every call counted: an answer and its check per window, the chosen window's answer reused
    assert d["calls"] == len(vlm.seen) == d["search"]["calls"]
    assert {r.prompt for r in vlm.seen} == {QUESTION, "Is there a red star?"}
    assert d["search"]["said"]["9"][0] == "red" and d["search"]["said"]["9"][1] >= 0.6


def test_the_crop_form_shows_the_original_then_the_window():
    vlm = PixelVLM()
    result, d = run(searching(vlm, search_budget=40, form="crop"))
    assert [i.size for i in result.steps[-1].images] == [(SIDE, SIDE), (NATIVE, NATIVE)]
    assert d["calls"] == len(vlm.seen) == d["search"]["calls"] + 1  # one answer more, on the two images


@pytest.mark.parametrize("budget", [2, 3, 4])
def test_the_budget_is_never_exceeded(budget):
    vlm = PixelVLM()
    _, d = run(searching(vlm, search_budget=budget))
    assert len(vlm.seen) == d["calls"] <= budget
    assert d["search"]["stop"] == "budget"


def test_the_prior_changes_the_order_of_visits_and_nothing_else():
    runs = []
    # the map on the target, or most on another quadrant and some on the target's
    for grid in (TOWARD, quadrants(0.01, 0.5, 1.0, 0.01)):
        vlm = PixelVLM()
        _, d = run(searching(vlm, grid, search_budget=60, search_skip=0.0))
        runs.append(d["search"])
    toward, away = runs
    assert toward["visits"] == [0, 2, 9] and away["visits"][:3] == [0, 3, 2]
    assert toward["chosen"] == away["chosen"] == 9
    scores = [{n["id"]: n["scores"] for n in r["nodes"] if n["scores"]} for r in (toward, away)]
    both = set(scores[0]) & set(scores[1])
    assert both == {2, 9} and all(scores[0][i] == scores[1][i] for i in both)  # a window scores alike
    assert toward["calls"] < away["calls"]


def test_skipping_prunes_what_the_map_leaves_out():
    vlm = PixelVLM()
    _, d = run(searching(vlm, ELSEWHERE, search_budget=60, search_skip=0.2))
    asked = {n["id"] for n in d["search"]["nodes"] if n["scores"]}
    assert asked.isdisjoint({1, 2, 4}) and d["search"]["chosen"] in (None, 0)  # the target's quadrant never seen


def test_the_zoomeye_order_needs_no_map_and_scores_every_queued_window():
    vlm = PixelVLM()
    attributor = FixedMap(ELSEWHERE)
    attributor.attribute = None  # never called in ZoomEye's order
    _, d = run(ZoomSearch(vlm, attributor, search_budget=60, search_order="zoomeye", search_confidence="answer"))
    assert d["search"]["chosen"] == 9 and d["search"]["order"] == "zoomeye"
    scored = {n["id"] for n in d["search"]["nodes"] if n["scores"]}
    assert scored >= {1, 2, 3, 4, 9} and 0 not in scored  # the root is plain's; every queued window answered


def test_zoomeyes_confidences_name_the_target_and_answer_once_more():
    vlm = PixelVLM()
    result, d = run(searching(vlm, search_budget=60, search_order="zoomeye",
                               search_confidence="zoomeye"))
    s = d["search"]
    assert s["targets"] == ["star"] and s["chosen"] == 9 and s["confidence"] == "zoomeye"
    assert {k for n in s["nodes"] for k in n["scores"]} == {"existence", "latent", "answering"}
    assert d["calls"] == len(vlm.seen) == s["calls"] + 2  # the targets, the final answer
    assert vlm.seen[-1].prompt == QUESTION and result.text == "red"


def test_a_server_without_logprobs_or_native_side_is_one_clear_error():
    with pytest.raises(LogprobsUnavailableError, match="zoom-search needs the answer's token log-probabilities"):
        run(searching(PixelVLM(logprobs=False)))
    with pytest.raises(InputError, match="needs the answering model's native side"):
        ZoomSearch(PixelVLM(native=None), FixedMap())
    with pytest.raises(InputError, match="native side must be a whole number of pixels, at least 32"):
        ZoomSearch(PixelVLM(native=16), FixedMap())
    with pytest.raises(LogprobsUnavailableError, match="auto needs"):
        Auto(PixelVLM(logprobs=False), FixedMap()).run([Sample(canvas(), QUESTION)])


@pytest.mark.parametrize("settings,match", [
    ({"search_budget": 0}, "search budget must be a whole number of VLM calls per question, at least 1; got 0"),
    ({"search_budget": "-3"}, "at least 1; got -3"),
    ({"search_order": "raster"}, "search order must be one of zoomeye, map"),
    ({"search_threshold": 2.0}, "search threshold is a confidence in"),
    ({"gate_zoom": "som"}, "gate_zoom is the strategy auto answers with"),
])
def test_bad_settings_fail_before_anything_loads(settings, match):
    strategy = "auto" if "gate_zoom" in settings else "zoom-search"
    with pytest.raises(InputError, match=match):
        AskSpec.from_mapping({"strategy": strategy, **settings}).check()


def test_a_strategy_that_does_not_search_refuses_the_search_settings():
    with pytest.raises(InputError, match="'plain' does not take search_budget; the strategies that do: zoom-search"):
        AskSpec.from_mapping({"strategy": "plain", "search_budget": 8}).check()


def test_the_cli_says_a_bad_budget_and_a_bad_native_side_in_one_line(tmp_path, capsys):
    image = tmp_path / "c.png"
    canvas().save(image)
    assert main(["ask", str(image), QUESTION, "--vlm", "shapes", "--strategy", "zoom-search",
                 "--search-budget", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "search budget must be a whole number of VLM calls per question, at least 1; got 0" in err
    assert len(err.splitlines()) == 1
    assert main(["ask", str(image), QUESTION, "--vlm", "http://127.0.0.1:9/v1", "--vlm-model", "m",
                 "--native-side", "16", "--strategy", "zoom-search", "--method", "api-clip", "--model", "shapes"]) == 2
    err = capsys.readouterr().err.strip()
    assert "native side must be a whole number of pixels, at least 32" in err and len(err.splitlines()) == 1


# -- zoom-refine ------------------------------------------------------------------------------------------------


def test_zoom_refine_crops_the_box_it_was_given_and_takes_the_rechecked_answer():
    reply = ("**Provide Your Answer:** Answer: blue\n**Identify Critical Area:** the star.\n"
             "**Bounding box: [0.5, 0.0, 0.75, 0.25]**")
    vlm = PixelVLM(replies=(reply, "The crop shows it clearly.\n**Rechecked Answer: red**"))
    [r] = ZoomRefine(vlm).run([Sample(canvas(), QUESTION, suffix="Answer in one word.")])
    assert [s.name for s in r.steps] == ["answer", "recheck"] and r.text == "red"
    first, again = vlm.seen
    assert first.system.startswith("You are an advanced image understanding assistant")
    assert "Question: What colour is the star?" in first.prompt and "Answer in one word." in first.prompt
    assert again.roles() == ("user", "assistant", "user") and again.turns[1].text == reply
    # the box grown by 0.1 of the image on each side: [0.4, 0, 0.85, 0.35] of 512 px
    assert r.steps[1].detail["box"] == [204, 0, 436, 180] and again.images[-1].size == (232, 180)
    assert r.steps[0].detail["answer"] == "blue"


@pytest.mark.parametrize("reply,why", [
    ("Answer: red. The star is in the top right.", 'no "Bounding box: [x1, y1, x2, y2]" in the reply'),
    ("Answer: red\nBounding box: [300, 60, 340, 100]", "lies outside the image once clamped"),
    ("Answer: red\nBounding box: [0.7, 0.2, 0.3, 0.1]", "is not x1 < x2, y1 < y2"),
])
def test_zoom_refine_without_a_box_keeps_its_first_answer_and_says_why(reply, why):
    vlm = PixelVLM(replies=(reply,))
    [r] = ZoomRefine(vlm).run([Sample(canvas(), QUESTION)])
    assert len(vlm.seen) == 1 and [s.name for s in r.steps] == ["answer"]
    assert why in r.steps[0].detail["box_failure"] and r.text.startswith("red") and r.answer.ok


def test_zoom_refine_takes_the_first_answer_when_the_recheck_states_none():
    vlm = PixelVLM(replies=("Answer: red\nbbox: [0.5, 0.0, 0.75, 0.25]", "I looked again."))
    [r] = ZoomRefine(vlm).run([Sample(canvas(), QUESTION)])
    assert r.text == "red" and r.steps[1].detail["answer"] is None


# -- auto --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sure,zooms", [(0.95, False), (0.3, True)])
def test_the_gate_zooms_only_when_plain_is_unsure(sure, zooms):
    vlm = PixelVLM(plain=sure)
    auto = Auto(vlm, FixedMap(), gate_threshold=0.5, search_budget=40, search_confidence="answer")
    [r] = auto.run([Sample(canvas(), QUESTION)])
    gate = r.steps[0].detail["gate"]
    assert gate["confidence"] == pytest.approx(sure) and gate["zoom"] is zooms
    if zooms:
        assert [s.name for s in r.steps] == ["plain", "answer"] and r.steps[-1].detail["search"]["chosen"] == 9
        # the plain answer is the search's answer on the whole image: never asked twice
        assert sum(1 for q in vlm.seen if q.images[-1].size == (SIDE, SIDE) and q.prompt == QUESTION) == 1
        assert 1 + r.steps[-1].detail["calls"] == len(vlm.seen)
    else:
        assert [s.name for s in r.steps] == ["plain"] and len(vlm.seen) == 1 and r.text == "red"


def test_the_gate_can_zoom_with_another_strategy():
    vlm = PixelVLM(plain=0.2, replies=())
    auto = build_strategy("auto", vlm, make_attributor=lambda *a, **k: FixedMap(), method="api-clip",
                          gate_zoom="zoom-refine")
    assert auto.describe()["gate"]["zoom"]["strategy"] == "zoom-refine"
    [r] = auto.run([Sample(canvas(), QUESTION)])
    assert [s.name for s in r.steps] == ["plain", "answer"] and "box_failure" in r.steps[1].detail


# -- the demo ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_demo_draws_the_search_path_in_its_annotated_pane(tmp_path):
    pytest.importorskip("gradio", reason="the demo needs Gradio: pip install 'attnprompt[demo]'")
    from attnprompt.demo.app import WIDGETS, answer
    from attnprompt.evaluation.tasks import get_task

    sample = get_task("shapes-detail").samples(1)[0]
    path = tmp_path / "detail.png"
    sample.images[0].save(path)
    widgets = dict.fromkeys(WIDGETS, None) | {"strategy": "zoom-search", "form": "overlay", "method": "carve",
                                                "preset": "vicrop", "vlm": "shapes", "max_new_tokens": 3}
    status, original, _, annotated, crop, answers, steps, config, _ = answer(str(path), sample.question, widgets)
    assert status == "" and config["strategy"] == "zoom-search" and config["form"] == "zoom"  # its own form
    assert annotated.size == original.size and annotated.tobytes() != original.convert("RGB").tobytes()
    assert "zoom-search" in answers and '"search"' in steps


# -- lmms-eval ---------------------------------------------------------------------------------------------------


def test_lmms_evals_model_arguments_take_the_search_settings_as_text():
    from attnprompt.integrations.lmms import LmmsAdapter

    adapter = LmmsAdapter.from_model_args({"vlm": "shapes", "strategy": "auto", "search_budget": "12",
                                           "gate_threshold": "0.4", "progress": False})
    d = adapter.describe()
    assert d["gate"]["threshold"] == 0.4 and d["gate"]["zoom"]["search"]["budget"] == 12
    with pytest.raises(InputError, match="at least 1; got 0"):
        LmmsAdapter.from_model_args({"vlm": "shapes", "strategy": "zoom-search", "search_budget": "0"})
