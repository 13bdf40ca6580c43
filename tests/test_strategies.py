"""The strategy contract: what each strategy sends, in how many calls, and what its Result records."""

from __future__ import annotations

import builders as vb
import numpy as np
import pytest
from PIL import Image

from attnprompt.api import get_attributor
from attnprompt.backends import Backend, get_backend
from attnprompt.errors import InputError
from attnprompt.strategies.api import Api
from attnprompt.strategies.base import Strategy
from attnprompt.strategies.plain import Plain
from attnprompt.strategies.registry import STRATEGIES
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


ALL = ("plain", "step-by-step", "api", "api-reemphasize", "api-evaluate", "self-reflect", "ensemble", "carve")


def test_registry_names_the_valid_strategies():
    assert set(ALL) <= set(STRATEGIES.names()) and STRATEGIES.names()[:3] == ALL[:3]
    assert STRATEGIES.get("plain") is Plain and STRATEGIES.get("api") is Api
    with pytest.raises(InputError, match=r"unknown strategy 'api-clip'; valid strategies: plain, step-by-step, api, "):
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
    monkeypatch.setattr(attributor, "attribute",
                        lambda images, queries, **kw: forwards.append(len(images)) or real(images, queries, **kw))
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


@pytest.mark.parametrize("name", ALL)
def test_every_strategy_answers_on_the_shapes_testbed(name):
    """End to end, offline, on the shipped shapes VLM (the shapes CLIP and the VLM's own attention
    for the maps): an answer for each of a few fixed scenes, every step recorded."""
    from attnprompt.api import build_strategy
    from attnprompt.shapes import make_scene

    strategy = build_strategy(name, get_backend("shapes"), max_new_tokens=12)
    batch = [Sample(make_scene(seed, n_objects=4, size=224).image, "Describe the image.") for seed in SCENES]
    results = strategy.run(batch)
    assert all(r.answer.ok and r.text for r in results), [r.answer for r in results]
    assert all(isinstance(i, Image.Image) for r in results for s in r.steps for i in s.images)
    assert all(r.config["strategy"] == name for r in results)


class Scripted(Backend):
    """Answers the evaluation prompt with ``verdict`` and anything else with what it was shown."""

    name = "scripted"

    def __init__(self, verdict: str = "T", max_images: int | None = None):
        self.verdict, self.max_images, self.calls = verdict, max_images, []

    def answer(self, requests):
        self.calls.append(list(requests))
        out = []
        for r in requests:
            if r.prompt.startswith("For this image, the question is"):
                out.append(Answer(self.verdict) if self.verdict else Answer("", ok=False, error="nothing",
                                                                            failure="empty"))
            else:
                out.append(Answer(f"{len(r.images)} image(s), turn {len(r.turns)}: {r.prompt}"))
        return out


def test_step_by_step_and_reemphasize_send_the_papers_prompts(tiny_clip_dir):
    suffix = "Answer the question using a single word or phrase."
    sample = Sample(vb.random_image(50, 40), "What is it?", suffix=suffix)
    rec = Scripted()
    [r] = STRATEGIES.get("step-by-step")(rec).run([sample])
    [sent] = rec.calls[0]
    assert sent.prompt == f"What is it? {suffix} Let's think step by step." and sent.images == sample.images
    rec = Scripted()
    [r] = STRATEGIES.get("api-reemphasize")(rec, get_attributor(model=str(tiny_clip_dir))).run([sample])
    [sent] = rec.calls[0]
    assert sent.prompt == f"What is it? {suffix} (Hint: The answer is related to the unmasked visible regions)."
    assert sent.images == (r.annotation.image,) and r.annotation.original is sample.images[0]


@pytest.mark.parametrize("verdict, label, image", [
    ("T", "T", "annotated"), ('"F".', "F", "original"), ("maybe", "unparseable", "original"),
    ("", "unparseable", "original"),
])
def test_api_evaluate_takes_the_branch_its_verdict_chooses(tiny_clip_dir, verdict, label, image):
    rec = Scripted(verdict)
    samples = [Sample(vb.random_image(50 + i, 40, i), f"What is {i}?", suffix="One word.") for i in range(2)]
    results = STRATEGIES.get("api-evaluate")(rec, get_attributor(model=str(tiny_clip_dir))).run(samples)
    assert len(rec.calls) == 2 and [len(c) for c in rec.calls] == [2, 2]  # two batched calls
    for i, (s, r) in enumerate(zip(samples, results)):
        evaluate, answer = r.steps
        assert evaluate.prompt == (
            f'For this image, the question is "What is {i}?". Evaluate whether the unmasked visible regions of the '
            'image alone can provide an answer to the question. If they suffice to answer the question, respond '
            'with letter "T". If they do not support an answer to the question, reply with the letter "F".')
        assert evaluate.images == (evaluate.annotations[0].image,) and evaluate.detail == {"verdict": label}
        assert answer.prompt == f"What is {i}? One word." and answer.detail == {"image": image}
        shown = evaluate.annotations[0].image if image == "annotated" else s.images[0]
        assert answer.images == (shown,) and r.answer is answer.answer and r.answer.ok


def test_api_evaluate_fails_when_the_evaluation_call_fails(tiny_clip_dir):
    class Down(Backend):
        name = "down"

        def answer(self, requests):
            return [Answer("", ok=False, error="connection refused") for _ in requests]

    [r] = STRATEGIES.get("api-evaluate")(Down(), get_attributor(model=str(tiny_clip_dir))).run(
        [Sample(vb.random_image(30, 30), "q?")])
    assert [s.name for s in r.steps] == ["evaluate"] and not r.answer.ok and r.answer.error == "connection refused"


def test_self_reflect_is_one_conversation_of_three_turns():
    rec = Scripted()
    sample = Sample(vb.random_image(40, 40), "What is it?", suffix="One word.")
    [r] = STRATEGIES.get("self-reflect")(rec).run([sample])
    assert [s.name for s in r.steps] == ["answer", "reflect", "final"] and len(rec.calls) == 3
    first, second, third = (s.request for s in r.steps)
    assert first.prompt == "What is it? One word." and first.images == sample.images
    a1 = "1 image(s), turn 1: What is it? One word."
    assert second.roles() == ("user", "assistant", "user") and second.turns[1].text == a1
    assert second.prompt == (f'For the Question "What is it?", Your previous answer is "{a1}". Evaluate the quality '
                             "of the answer and provide a new answer.")
    assert third.turns[:3] == second.turns and third.turns[3].text == r.steps[1].answer.text
    assert third.prompt == 'Reply with your new answer to the question "What is it?" alone. One word.'
    assert second.images == third.images == sample.images  # the image stays in the first turn
    assert r.text == r.steps[2].answer.text


def test_self_reflect_stops_at_a_failed_round():
    class FailSecond(Scripted):
        def answer(self, requests):
            if len(self.calls) == 1:
                self.calls.append(list(requests))
                return [Answer("", ok=False, error="timed out") for _ in requests]
            return super().answer(requests)

    [r] = STRATEGIES.get("self-reflect")(FailSecond()).run([Sample(vb.random_image(30, 30), "q?")])
    assert [s.name for s in r.steps] == ["answer", "reflect"] and r.answer.error == "timed out"


def test_ensemble_shows_every_sources_annotation_together(tiny_clip_dirs, llava_dir):
    from attnprompt.api import build_strategy

    rec = Scripted()
    sources = [f"api-clip:{tiny_clip_dirs['b']}", f"api-clip:{tiny_clip_dirs['l']}", f"api-vlm:{llava_dir}"]
    strategy = build_strategy("ensemble", rec, sources=sources, kernel=1, variant="paper", map_max_new_tokens=2)
    samples = [Sample(vb.random_image(60, 40, i), f"What is {i}?") for i in range(2)]
    results = strategy.run(samples)
    assert len(rec.calls) == 1 and [len(r.images) for r in rec.calls[0]] == [3, 3]
    for s, r in zip(samples, results):
        [step] = r.steps
        assert [a.config["model"] for a in step.annotations] == [str(tiny_clip_dirs["b"]), str(tiny_clip_dirs["l"]),
                                                                   str(llava_dir)]
        assert step.images == tuple(a.image for a in step.annotations) and step.prompt == s.question
        assert all(a.original is s.images[0] for a in step.annotations)
    maps = results[0].config["maps"]
    assert [m["kernel"] for m in maps] == [1, 1, 1] and maps[2]["variant"] == "paper" and maps[2]["max_new_tokens"] == 2


def test_ensemble_refuses_what_cannot_work(tiny_clip_dir):
    from attnprompt.api import build_strategy
    from attnprompt.backends.openai_http import OpenAIBackend

    one_image = Scripted(max_images=1)
    strategy = build_strategy("ensemble", one_image, sources=[f"api-clip:{tiny_clip_dir}"] * 2)
    with pytest.raises(InputError, match="strategy 'ensemble' shows 2 images at once and scripted takes at most 1"):
        strategy.run([Sample(vb.random_image(30, 30), "q?")])
    assert one_image.calls == []
    with pytest.raises(InputError, match="ensemble's default sources read api-vlm from the answering VLM, which is a "
                                         "server; give the sources"):
        build_strategy("ensemble", OpenAIBackend("http://127.0.0.1:9/v1", "m"))
    with pytest.raises(InputError, match="unknown method 'gradcam'"):
        build_strategy("ensemble", Scripted(), sources=["gradcam:x"])
    with pytest.raises(InputError, match="sources are the ensemble strategy's attribution maps"):
        build_strategy("api", Scripted(), sources=["api-clip"])


def test_multi_turn_and_multi_image_strategies_speak_openai_chat(tiny_clip_dir):
    """self-reflect and ensemble through the HTTP client to a local OpenAI-compatible server: the
    JSON is a chat, one message per turn, the images as parts of the user message that shows them."""
    import json
    import threading

    from attnprompt.api import build_strategy
    from attnprompt.backends.openai_http import OpenAIBackend
    from attnprompt.serve import ChatCompletionsHandler, make_server

    posts = []

    class Recording(ChatCompletionsHandler):
        def do_POST(self):
            body = self.read_body()
            posts.append(json.loads(body))
            from attnprompt.serve import parse_chat_request

            self.send_json(*self.complete(parse_chat_request(body)))

    server = make_server(Scripted(), handler=Recording)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        client = OpenAIBackend(f"http://127.0.0.1:{server.server_address[1]}/v1", "scripted", retry_wait=0)
        sample = Sample(vb.random_image(40, 30), "What is it?")
        [r] = build_strategy("self-reflect", client).run([sample])
        assert r.answer.ok and [len(p["messages"]) for p in posts] == [1, 3, 5]
        assert [m["role"] for m in posts[2]["messages"]] == ["user", "assistant", "user", "assistant", "user"]
        assert [p["type"] for p in posts[2]["messages"][0]["content"]] == ["image_url", "text"]
        assert posts[2]["messages"][1]["content"] == r.steps[0].answer.text
        posts.clear()
        [r] = build_strategy("ensemble", client, sources=[f"api-clip:{tiny_clip_dir}"] * 2).run([sample])
        assert r.answer.ok and r.text == "2 image(s), turn 1: What is it?"
        [post] = posts
        assert [p["type"] for p in post["messages"][0]["content"]] == ["image_url", "image_url", "text"]
    finally:
        server.shutdown()
        server.server_close()


def test_the_prompts_are_the_papers():
    """Pinned against the text of §9.3 (ASCII quotes for the paper's typographic ones)."""
    from attnprompt.strategies import api_prompts as prompts

    assert prompts.STEP_BY_STEP.format(question="[Question]") == "[Question] Let's think step by step."
    assert prompts.REEMPHASIZE.format(question="[Question]") == (
        "[Question] (Hint: The answer is related to the unmasked visible regions).")
    assert prompts.EVALUATE.format(question="[Question]") == (
        'For this image, the question is "[Question]". Evaluate whether the unmasked visible regions of the image '
        'alone can provide an answer to the question. If they suffice to answer the question, respond with letter '
        '"T". If they do not support an answer to the question, reply with the letter "F".')
    assert prompts.SELF_REFLECT.format(question="[Question]", answer="[Answer in the Round 1]") == (
        'For the Question "[Question]", Your previous answer is "[Answer in the Round 1]". Evaluate the quality of '
        "the answer and provide a new answer.")


def test_a_new_strategy_file_and_registry_line_is_offered_by_eval_cli_and_demo(tmp_path, monkeypatch, capsys):
    """One file (a strategy that shows a map) and one registry line: the harness crosses it with the methods,
    the CLI answers with it, the demo lists it — none of them names it."""
    (tmp_path / "squint_strategy.py").write_text(
        "from attnprompt.strategies.api import Api\n\n\n"
        "class Squint(Api):\n"
        "    name = 'squint'\n"
        "    template = 'Look closely. {question}'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(STRATEGIES._targets, "squint", "squint_strategy:Squint")  # the registry line
    from attnprompt.cli import main
    from attnprompt.evaluation.conditions import conditions_for

    assert [c.label for c in conditions_for(["plain", "squint"], methods=["api-clip", "api-vlm"])] == [
        "plain", "squint (api-clip)", "squint (api-vlm)"]
    image = tmp_path / "scene.png"
    from attnprompt.shapes import make_scene

    make_scene(7, n_objects=5, size=320).image.save(image)
    assert main(["ask", str(image), "What colour is the circle?", "--vlm", "shapes", "--strategy", "squint"]) == 0
    assert capsys.readouterr().out.strip() == "green"
    gradio = pytest.importorskip("gradio")
    from attnprompt.demo.app import build_app

    app = build_app("shapes", examples_dir=tmp_path / "examples")
    choices = [c[0] if isinstance(c, (tuple, list)) else c for b in app.blocks.values()
               if isinstance(b, gradio.Dropdown) and b.label == "Strategy" for c in b.choices]
    assert "squint" in choices and "plain" in choices
