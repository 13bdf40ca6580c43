"""The strategy contract: what each strategy sends, in how many calls, and what its Result records."""

from __future__ import annotations

import builders as vb
import numpy as np
import pytest
from PIL import Image

from attnprompt.api import get_attributor
from attnprompt.backends import Backend, get_backend
from attnprompt.config import STRATEGIES
from attnprompt.errors import InputError
from attnprompt.strategies.api import Api
from attnprompt.strategies.base import Strategy
from attnprompt.strategies.plain import Plain
from attnprompt.types import Answer, Sample


class Recorder(Backend):
    """Remembers every call and answers with the prompt and the number of images."""

    name = "recorder"

    def __init__(self, fail_on: str | None = None):
        self.calls: list[list] = []
        self.fail_on = fail_on

    def answer(self, requests):
        self.calls.append(list(requests))
        return [Answer("", ok=False, error="boom") if r.prompt == self.fail_on else
                Answer(f"{len(r.images)} image(s): {r.prompt}") for r in requests]


def samples(n: int, suffix: str = "") -> list[Sample]:
    return [Sample(vb.random_image(40 + 10 * i, 30, i), f"question {i} ?", suffix=suffix) for i in range(n)]


def test_registry_names_the_valid_strategies():
    assert STRATEGIES.names() == ("plain", "api")
    assert STRATEGIES.get("plain") is Plain and STRATEGIES.get("api") is Api
    with pytest.raises(InputError, match=r"unknown strategy 'api-clip'; valid strategies: plain, api"):
        STRATEGIES.get("api-clip")


def test_plain_asks_every_question_in_one_call_with_the_suffix(tiny_clip_dir):
    rec = Recorder()
    batch = samples(3, suffix="Answer with one word.")
    results = Plain(rec, max_new_tokens=9).run(batch)
    assert len(rec.calls) == 1 and len(rec.calls[0]) == 3
    for s, r, sent in zip(batch, results, rec.calls[0]):
        assert sent.roles() == ("user",) and sent.max_new_tokens == 9
        assert sent.prompt == f"{s.question} Answer with one word."
        assert sent.images[0] is s.images[0]  # the original, untouched
        [step] = r.steps
        assert step.request is sent and step.annotations == () and r.answer is step.answer
        assert r.text == f"1 image(s): {s.question} Answer with one word."
        assert r.config == {"strategy": "plain", "vlm": "recorder", "max_new_tokens": 9,
                            "suffix": "Answer with one word."}


def test_api_annotates_in_one_forward_and_asks_in_one_call(tiny_clip_dir, monkeypatch):
    rec = Recorder()
    attributor = get_attributor("api-clip", model=str(tiny_clip_dir), kernel=1)
    forwards = []
    real = attributor.attribute
    monkeypatch.setattr(
        attributor, "attribute", lambda images, queries: forwards.append(len(images)) or real(images, queries)
    )
    batch = samples(3)
    results = Api(rec, attributor, gray=100).run(batch)
    assert forwards == [3] and len(rec.calls) == 1
    for s, r, sent in zip(batch, results, rec.calls[0]):
        [step] = r.steps
        [ann] = step.annotations
        assert sent.images == (ann.image,) and ann.original is s.images[0] and ann.query == s.question
        assert ann.image.size == s.images[0].size and ann.config["gray"] == 100.0
        assert not np.array_equal(np.asarray(ann.image), np.asarray(s.images[0]))
        assert sent.prompt == s.question and r.annotation is ann
        assert r.config["map"]["method"] == "api-clip" and r.config["map"]["kernel"] == 1
        assert r.config["map"]["gray"] == 100.0 and r.config["strategy"] == "api"


def test_api_annotates_every_image_of_a_multi_image_sample(tiny_clip_dir):
    rec = Recorder()
    images = (vb.random_image(50, 40, 1), vb.random_image(30, 60, 2))
    [r] = Api(rec, get_attributor(model=str(tiny_clip_dir))).run([Sample(images, "compare them ?")])
    [sent] = rec.calls[0]
    assert [a.original for a in r.steps[0].annotations] == list(images)
    assert [i.size for i in sent.images] == [(50, 40), (30, 60)] and r.text == "2 image(s): compare them ?"


def test_a_failed_answer_is_a_failed_result_not_an_exception():
    rec = Recorder(fail_on="question 1 ?")
    results = Plain(rec).run(samples(3))
    assert [r.answer.ok for r in results] == [True, False, True]
    assert results[1].text == "" and results[1].answer.error == "boom"


def test_strategies_refuse_the_wrong_parts(tiny_clip_dir):
    rec = Recorder()
    with pytest.raises(InputError, match="strategy 'api' shows an annotated image; give it an attribution method"):
        Api(rec)
    with pytest.raises(InputError, match="strategy 'plain' shows no annotated image"):
        Plain(rec, get_attributor(model=str(tiny_clip_dir)))
    with pytest.raises(InputError, match="max_new_tokens must be an integer ≥ 1"):
        Plain(rec, max_new_tokens=0)
    with pytest.raises(InputError, match=r"gray must be a level in \[0, 255\]"):
        Api(rec, get_attributor(model=str(tiny_clip_dir)), gray=300)
    with pytest.raises(InputError, match="query is empty"):
        Plain(rec).run([Sample(vb.random_image(20, 20), "  ")])


def test_a_new_strategy_is_one_small_class_over_the_base():
    """The contract is enough to write a strategy: here, ask twice and keep the second answer."""

    class Twice(Strategy):
        name = "twice"

        def run(self, samples):
            first = [self.request(s.images, self.prompt(s)) for s in samples]
            answers = self.answer(first)
            again = [r.then(a.text, "Are you sure?") for r, a in zip(first, answers)]
            final = self.answer(again)
            from attnprompt.types import Step

            return [
                self.result(s, [Step("first", r1, a1), Step("again", r2, a2)])
                for s, r1, a1, r2, a2 in zip(samples, first, answers, again, final)
            ]

    rec = Recorder()
    r = Twice(rec)(vb.random_image(30, 30), "what ?")
    assert [s.name for s in r.steps] == ["first", "again"] and len(rec.calls) == 2
    assert r.steps[1].request.roles() == ("user", "assistant", "user")
    assert r.steps[1].request.turns[1].text == "1 image(s): what ?" and r.text == "1 image(s): Are you sure?"


SCENES = [7, 11, 23]


@pytest.mark.parametrize("name", ["plain", "api"])
def test_every_strategy_answers_on_the_shapes_testbed(name):
    """End to end, offline, on the shipped shapes VLM (and CLIP for the map): an answer for each
    of a few fixed scenes, made in one batched call."""
    from attnprompt.shapes import make_scene

    backend = get_backend("shapes")
    cls = STRATEGIES.get(name)
    attributor = get_attributor("api-clip", model="shapes") if cls.needs_map else None
    batch = [Sample(make_scene(seed, n_objects=4, size=224).image, "Describe the image.") for seed in SCENES]
    results = cls(backend, attributor, max_new_tokens=12).run(batch)
    assert all(r.answer.ok and r.text for r in results), [r.answer for r in results]
    assert all(isinstance(s.images[0], Image.Image) for r in results for s in r.steps)
