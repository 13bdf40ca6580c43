"""Each extension point is one file (here: code in this test) plus one registry line, and what is registered
works through ``ask`` and ``eval`` (and the CLI's flags) without any other module naming it: a family, a
strategy, a task, a map method and a visual-prompt form."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

from attnprompt import ask
from attnprompt.attribution.base import Attributor
from attnprompt.attribution.configs import METHODS
from attnprompt.cli import main
from attnprompt.evaluation.evaluate import evaluate
from attnprompt.evaluation.tasks import _REGISTERED as REGISTERED_TASKS
from attnprompt.evaluation.tasks import TASKS, generic_task, register_task
from attnprompt.families import FAMILIES
from attnprompt.forms import FORMS, Form
from attnprompt.presets import MethodConfig, param
from attnprompt.shapes import make_scene
from attnprompt.strategies.api import Api
from attnprompt.strategies.registry import STRATEGIES
from attnprompt.types import AttributionMap

QUESTION = "What colour is the circle?"


@pytest.fixture
def scene_file(tmp_path):
    path = tmp_path / "scene.png"
    make_scene(7, n_objects=5, size=320).image.save(path)
    return path


@pytest.fixture
def toy_task(scene_file):
    rows = [{"image": str(scene_file), "question": QUESTION, "answer": "green", "id": f"r{i}"} for i in range(3)]
    task = register_task(generic_task(rows, name="toy-task"))
    yield task
    REGISTERED_TASKS.pop("toy-task", None)


def _private(monkeypatch, registry: Any) -> None:
    """Registrations in a test go into copies of the registry's tables, dropped after it."""
    monkeypatch.setattr(registry, "_targets", dict(registry._targets))
    if hasattr(registry, "_configs"):
        monkeypatch.setattr(registry, "_configs", dict(registry._configs))


def _labels(directory: Path) -> list[str]:
    report = json.loads((directory / "report.json").read_text())
    return [c["label"] for t in report["tasks"] for c in t["conditions"]]


# -- a map method ----------------------------------------------------------------------------------------


from dataclasses import dataclass  # noqa: E402  (the toy method's file starts here)


@dataclass(frozen=True)
class CentreConfig(MethodConfig):
    """A toy method: a Gaussian bump at the image centre, ``sigma`` cells wide."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"default": {}, "wide": {"sigma": 3.0}}
    DEFAULT_PRESET: ClassVar[str] = "default"
    METHOD: ClassVar[str] = "centre"
    preset: str = "default"
    sigma: float = param(1.0, "width of the bump, in grid cells", cli=float)


class CentreAttributor(Attributor):
    method = "centre"
    config_class = CentreConfig
    calls = 0

    def __init__(self, config: CentreConfig) -> None:
        self.config, self.model_id = config, "none"

    @classmethod
    def from_pretrained(cls, model=None, *, device=None, dtype=None, preset=None, **params):
        return cls(CentreConfig.from_preset(preset, **params))

    @classmethod
    def load(cls, model, *, device=None, dtype=None):
        return None

    def attribute(self, images, queries, *, suffixes=None):
        type(self).calls += len(images)
        y, x = np.mgrid[0:8, 0:8] - 3.5
        grid = np.exp(-(x**2 + y**2) / (2 * self.config.sigma**2))
        return [AttributionMap(grid / grid.max()) for _ in images]


def test_a_new_method_is_one_class_and_one_registry_line(monkeypatch, toy_task, scene_file, tmp_path, capsys):
    _private(monkeypatch, METHODS)
    METHODS.register("centre", CentreAttributor)  # the one registry line
    r = ask(scene_file, QUESTION, vlm="shapes", strategy="api", method="centre", sigma=2.0, max_new_tokens=4)
    assert r.config["map"] == {**r.config["map"], "method": "centre", "sigma": 2.0} and r.answer.ok
    # the CLI derives its flags from the registered config: --sigma exists, and a bad value fails before loading
    assert main(["ask", str(scene_file), QUESTION, "--vlm", "shapes", "--method", "centre", "--sigma", "3",
                 "--max-new-tokens", "4"]) == 0
    assert main(["ask", str(scene_file), QUESTION, "--vlm", "shapes", "--method", "centre", "--kernel", "3"]) == 2
    assert "centre has no parameter kernel" in capsys.readouterr().err
    # eval crosses it with the strategies and presets it has, and its maps are cached across conditions
    CentreAttributor.calls = 0
    run = evaluate("toy-task", vlm="shapes", strategies="api,api-reemphasize", methods="centre",
                   presets="default,wide", out=tmp_path / "run", progress=False)
    assert _labels(tmp_path / "run") == ["api (centre, default)", "api (centre, wide)",
                                         "api-reemphasize (centre, default)", "api-reemphasize (centre, wide)"]
    assert CentreAttributor.calls == 2  # one map per preset for the one image: the reemphasize rows reuse them
    assert sum(c["hits"] for c in run.cache.values()) >= 2
    run = evaluate("shapes-pointing", vlm="shapes", methods="centre", limit=2, out=tmp_path / "maps", progress=False)
    assert _labels(tmp_path / "maps") == ["centre (default)", "centre (wide)"]  # a map task too


# -- a visual-prompt form ----------------------------------------------------------------------------------


class Mirror(Form):
    """The annotated image flipped left to right (a toy form)."""

    name = "mirror"
    summary = "the annotated image, mirrored"

    def images(self, annotation):
        return [annotation.image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]


def test_a_new_form_is_one_class_and_one_registry_line(monkeypatch, toy_task, scene_file, tmp_path):
    _private(monkeypatch, FORMS)
    FORMS.register("mirror", Mirror())  # the one registry line
    r = ask(scene_file, QUESTION, vlm="shapes", strategy="api", form="mirror", max_new_tokens=4)
    shown, annotated = r.steps[0].images[0], r.annotation.image
    assert np.array_equal(np.asarray(shown), np.asarray(annotated)[:, ::-1])
    assert r.config["form"] == "mirror" and r.steps[0].detail["form"] == "mirror"
    evaluate("toy-task", vlm="shapes", strategies="api", forms="overlay,mirror", out=tmp_path / "run", progress=False)
    assert _labels(tmp_path / "run") == ["api (api-clip, overlay)", "api (api-clip, mirror)"]
    assert "mirror (the annotated image, mirrored)" in " ".join(
        a.help for a in _subparser("ask")._actions if a.dest == "form")


def _subparser(name: str) -> Any:
    from attnprompt.cli import build_parser

    return build_parser()._subparsers._group_actions[0].choices[name]


# -- a strategy ----------------------------------------------------------------------------------------------


class Squint(Api):
    name = "squint"
    template = "Look closely. {question}"


def test_a_new_strategy_is_one_class_and_one_registry_line(monkeypatch, toy_task, scene_file, tmp_path):
    _private(monkeypatch, STRATEGIES)
    STRATEGIES.register("squint", Squint)  # the one registry line
    r = ask(scene_file, QUESTION, vlm="shapes", strategy="squint", max_new_tokens=4)
    assert r.steps[0].prompt == f"Look closely. {QUESTION}" and r.config["strategy"] == "squint"
    evaluate("toy-task", vlm="shapes", strategies="plain,squint", methods="api-clip,api-vlm", out=tmp_path / "run",
             progress=False)
    assert _labels(tmp_path / "run") == ["plain", "squint (api-clip)", "squint (api-vlm)"]


# -- a task ------------------------------------------------------------------------------------------------------


def test_a_new_task_is_one_object_and_one_registry_call(toy_task, tmp_path, capsys):
    assert "toy-task" not in TASKS  # registered in this process, not built in
    assert main(["eval", "--task", "toy-task", "--vlm", "shapes", "--strategy", "plain", "--out",
                 str(tmp_path / "run"), "--quiet"]) == 0
    assert "toy-task · plain: 3 answered" in capsys.readouterr().out
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["tasks"][0]["name"] == "toy-task"


# -- a VLM family ------------------------------------------------------------------------------------------------


def test_a_new_family_is_one_file_and_one_registry_line(monkeypatch, tmp_path, llava_dir, scene_file, toy_task):
    """LLaVA's family file copied under another name and registered for LLaVA checkpoints: ask and eval run
    through it (a counter in the copy says so), with the same maps as the built-in one."""
    import attnprompt.families as families

    source = (Path(families.__file__).parent / "llava.py").read_text()
    source = source.replace("from ..", "from attnprompt.").replace("from .", "from attnprompt.families.")
    source += ("\nclass Counted(Llava):\n    used = 0\n\n    def layouts(self, *args, **kwargs):\n"
               "        type(self).used += 1\n        return super().layouts(*args, **kwargs)\n\n\n"
               "MINE = Counted('llava', 'LlavaForConditionalGeneration')\n")
    (tmp_path / "my_family.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    _private(monkeypatch, FAMILIES)
    try:
        before = ask(scene_file, QUESTION, vlm=str(llava_dir), strategy="api", method="api-vlm", max_new_tokens=2)
        FAMILIES.register("llava", "my_family:MINE")  # the one registry line
        mine = sys.modules.get("my_family") or __import__("my_family")
        after = ask(scene_file, QUESTION, vlm=str(llava_dir), strategy="api", method="api-vlm", max_new_tokens=2)
        assert mine.Counted.used >= 1
        np.testing.assert_allclose(after.annotation.attribution.grid, before.annotation.attribution.grid, atol=1e-6)
        used = mine.Counted.used
        evaluate("toy-task", vlm=str(llava_dir), strategies="api", methods="api-vlm", max_new_tokens=2,
                 out=tmp_path / "run", progress=False)
        assert mine.Counted.used > used
    finally:
        sys.modules.pop("my_family", None)
