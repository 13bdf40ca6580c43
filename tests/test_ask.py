"""Answering: the local transformers backend, `attnprompt.ask` and `attnprompt ask`."""

from __future__ import annotations

import json

import builders as vb
import numpy as np
import pytest
from PIL import Image

from attnprompt.api import ask
from attnprompt.backends import Backend, get_backend
from attnprompt.backends.local import LocalVLM
from attnprompt.cli import main
from attnprompt.errors import InputError
from attnprompt.models import chat_prompt, load_vlm
from attnprompt.types import Answer, Request


@pytest.fixture(scope="module")
def qwen_dir(vlm_dirs):
    return vlm_dirs["qwen2_vl"]


class Recorder(Backend):
    """A backend that remembers what it was asked and answers with the first image's size."""

    name = "recorder"

    def __init__(self, fail: bool = False):
        self.requests: list[Request] = []
        self.calls = 0
        self.fail = fail

    def answer(self, requests):
        self.calls += 1
        self.requests += list(requests)
        if self.fail:
            return [Answer("", ok=False, error="server exploded", attempts=2) for _ in requests]
        return [Answer(f"{r.images[0].size[0]}x{r.images[0].size[1]} {r.prompt}" if r.images else r.prompt)
                for r in requests]


@pytest.mark.parametrize("family_dir", ["llava_dir", "qwen_dir"])
def test_local_backend_batched_equals_one_by_one(family_dir, request):
    backend = LocalVLM.from_pretrained(str(request.getfixturevalue(family_dir)), device="cpu", batch_size=3)
    reqs = [Request.single((vb.random_image(60 + 10 * i, 40, i),), q, max_new_tokens=4 + i)
            for i, q in enumerate(["what is in the image ?", "describe a cat", "is there a dog ?", "what color ?"])]
    batched = backend.answer(reqs)
    single = [backend.answer([r])[0] for r in reqs]
    assert [a.text for a in batched] == [a.text for a in single]
    assert all(a.ok for a in batched)
    assert [a.meta["tokens"] for a in batched] == [a.meta["tokens"] for a in single]
    assert all(a.meta["tokens"] <= 4 + i for i, a in enumerate(batched))  # each row stops at its own limit
    assert batched[3].meta["tokens"] > batched[0].meta["tokens"] or batched[0].meta["tokens"] < 4


def test_local_backend_several_images_and_text_only(llava_dir):
    backend = LocalVLM.from_pretrained(str(llava_dir), device="cpu")
    two = Request.single((vb.random_image(50, 50, 1), vb.random_image(70, 40, 2)), "describe a cat", max_new_tokens=3)
    none = Request.single((), "what is in the image ?", max_new_tokens=3)
    one = Request.single((vb.random_image(50, 50, 1),), "describe a cat", max_new_tokens=3)
    answers = backend.answer([two, none, one])
    assert all(a.ok for a in answers)
    assert answers[0].text != answers[2].text  # the second image changed what the model saw
    assert chat_prompt(backend.vlm.processor, two).count("<image>") == 2


def test_local_backend_multi_turn_sees_the_earlier_turns(llava_dir):
    """A second round is one conversation: the earlier question and answer are in the prompt (in
    order, each turn's images before its text), and batched with others it answers as alone."""
    backend = LocalVLM.from_pretrained(str(llava_dir), device="cpu", batch_size=4)
    first = Request.single(vb.random_image(50, 40, 1), "what is in the image ?", max_new_tokens=3)
    second = first.then("a red star", "is there a dog ?", images=vb.random_image(40, 40, 2))
    prompt = chat_prompt(backend.vlm.processor, second)
    assert prompt.index("what is in the image ?") < prompt.index("a red star") < prompt.index("is there a dog ?")
    assert prompt.count("<image>") == 2 and prompt.index("<image>", prompt.index("a red star")) < prompt.index("dog")
    other = Request.single(vb.random_image(60, 40, 3), "describe a cat", max_new_tokens=5)
    batched = backend.answer([second, other, first])
    assert [a.text for a in batched] == [backend.answer([r])[0].text for r in (second, other, first)]
    assert all(a.ok for a in batched)


def test_a_failing_request_fails_alone(llava_dir, monkeypatch):
    backend = LocalVLM.from_pretrained(str(llava_dir), device="cpu")
    real = backend._generate

    def flaky(chunk):
        if any(r.prompt == "boom" for r in chunk):
            raise ValueError("cannot process boom")
        return real(chunk)

    monkeypatch.setattr(backend, "_generate", flaky)
    img = vb.random_image(50, 50)
    answers = backend.answer([Request.single(img, "describe a cat", max_new_tokens=3),
                              Request.single(img, "boom", max_new_tokens=3),
                              Request.single(img, "what ?", max_new_tokens=3)])
    assert [a.ok for a in answers] == [True, False, True]
    assert answers[1].text == "" and "cannot process boom" in answers[1].error


def test_ask_sends_the_annotated_image_and_compares_with_the_original(tiny_clip_dir):
    rec = Recorder()
    img = vb.random_image(90, 60)
    r = ask(img, "  what is in the image ?  ", vlm=rec, model=str(tiny_clip_dir), compare=True, max_new_tokens=7)
    assert r.question == "what is in the image ?"
    assert len(rec.requests) == 2 and all(q.max_new_tokens == 7 for q in rec.requests)
    [step] = r.steps
    assert step.name == "answer" and step.prompt == "what is in the image ?"
    sent_annotated, sent_original = rec.requests[0].images[0], rec.requests[1].images[0]
    assert sent_annotated is step.images[0] is r.annotation.image is step.annotations[0].image
    assert np.array_equal(np.asarray(sent_original), np.asarray(img))
    assert not np.array_equal(np.asarray(sent_annotated), np.asarray(img))
    assert r.text == "90x60 what is in the image ?" and r.baseline.answer.ok
    assert r.baseline.config["strategy"] == "plain" and r.baseline.annotation is None
    assert r.config["strategy"] == "api" and r.config["vlm"] == "recorder"
    assert r.config["map"]["method"] == "api-clip" and r.config["map"]["model"] == str(tiny_clip_dir)


def test_plain_sends_the_original_and_refuses_map_settings():
    rec = Recorder()
    img = vb.random_image(40, 30)
    r = ask(img, "what ?", vlm=rec, strategy="plain", compare=True, suffix="Answer in one word.")
    assert r.annotation is None and r.baseline is None and len(rec.requests) == 1
    assert np.array_equal(np.asarray(rec.requests[0].images[0]), np.asarray(img))
    assert rec.requests[0].prompt == "what ? Answer in one word." and r.config["suffix"] == "Answer in one word."
    with pytest.raises(InputError, match=r"strategy 'plain' uses no attribution map, but map settings were given "
                                         r"\(kernel, model\)"):
        ask(img, "what ?", vlm=rec, strategy="plain", model="shapes", kernel=1)


def test_api_vlm_reads_the_answering_vlms_own_attention(llava_dir):
    r = ask(
        vb.random_image(80, 50), "what is in the image ?", vlm=str(llava_dir), method="api-vlm", max_new_tokens=3,
        map_max_new_tokens=2, device="cpu",
    )
    assert r.answer.ok and r.annotation is not None and r.steps[0].request.max_new_tokens == 3
    assert r.config["map"]["method"] == "api-vlm" and r.config["map"]["model"] == str(llava_dir)
    assert r.config["map"]["max_new_tokens"] == 2
    # one model object serves both roles
    assert get_backend(str(llava_dir), device="cpu").local_model.model is load_vlm(str(llava_dir), device="cpu").model


def test_ask_rejects_what_cannot_work():
    with pytest.raises(InputError, match="api-vlm reads a VLM's attention, and the answering VLM is a server"):
        ask(vb.random_image(40, 40), "q", vlm="http://127.0.0.1:1/v1", method="api-vlm")
    with pytest.raises(InputError, match="unknown strategy 'sam'; valid strategies: plain, step-by-step, api, "):
        ask(vb.random_image(40, 40), "q", vlm=Recorder(), strategy="sam")
    with pytest.raises(InputError, match="unknown method 'sam'; valid methods: api-clip, api-vlm"):
        ask(vb.random_image(40, 40), "q", vlm=Recorder(), method="sam")
    with pytest.raises(InputError, match="query is empty"):
        ask(vb.random_image(40, 40), " ", vlm=Recorder())


def test_cli_ask_prints_answers_and_fails_loudly(tmp_path, llava_dir, tiny_clip_dir, capsys, monkeypatch):
    path = tmp_path / "img.png"
    vb.random_image(70, 50).save(path)
    out = tmp_path / "annotated.png"
    code = main(["ask", str(path), "what is in the image ?", "--vlm", str(llava_dir), "--model", str(tiny_clip_dir),
                 "--compare", "--max-new-tokens", "3", "--save-annotated", str(out), "--kernel", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].startswith("api (api-clip):") and lines[1].startswith("plain:")
    assert Image.open(out).size == (70, 50)

    code = main(["ask", str(path), "what is in the image ?", "--vlm", str(llava_dir), "--strategy", "plain",
                 "--max-new-tokens", "3", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0 and printed["config"]["strategy"] == "plain"
    assert printed["steps"][0]["turns"][0]["images"] == [[70, 50]]

    import attnprompt.backends as backends

    monkeypatch.setattr(backends, "get_backend", lambda *a, **k: Recorder(fail=True))
    code = main(["ask", str(path), "what ?", "--strategy", "plain", "--vlm", "x"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out.strip() == "<no answer>"
    assert "error: the VLM did not answer: server exploded" in captured.err
    code = main(["ask", str(path), "what ?", "--strategy", "plain", "--save-annotated", str(out)])
    assert (
        code == 2
        and "--save-annotated needs a strategy that annotates the image, not 'plain'" in capsys.readouterr().err
    )


def test_cli_serve_answers_over_http(llava_dir):
    """`attnprompt serve` in a real subprocess, asked through the HTTP client: a one-image request,
    and a two-image, two-turn one, each answered as the local model answers it."""
    import re
    import subprocess
    import sys

    from attnprompt.backends.openai_http import OpenAIBackend

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "attnprompt",
            "serve",
            "--vlm",
            str(llava_dir),
            "--port",
            "0",
            "--name",
            "tiny",
            "--device",
            "cpu",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        for line in proc.stderr:
            m = re.search(r"at (http://\S+/v1)", line)
            if m:
                url = m.group(1)
                break
        assert url, "the server must announce its address"
        client = OpenAIBackend(url, timeout=30)
        local = LocalVLM.from_pretrained(str(llava_dir), device="cpu")
        img = vb.random_image(60, 40)
        answer = client.ask(img, "what is in the image ?", max_new_tokens=4)
        assert answer.ok and client.model == "tiny"
        assert answer.text == local.ask(img, "what is in the image ?", max_new_tokens=4).text
        two_turns = Request.single((img, vb.random_image(40, 60, 1)), "describe a cat", max_new_tokens=4).then(
            "a red star", "is there a dog ?"
        )
        [remote] = client.answer([two_turns])
        assert remote.ok, remote.error
        assert remote.text == local.answer([two_turns])[0].text
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
