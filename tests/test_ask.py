"""Answering: the local transformers backend, `attnprompt.ask` and `attnprompt ask`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import vlm_builders as vb  # noqa: E402
from attnprompt.api import ask
from attnprompt.backends import Answer, Backend, Request, get_backend
from attnprompt.backends.local import LocalVLM
from attnprompt.cli import main
from attnprompt.errors import InputError
from attnprompt.models import load_vlm


@pytest.fixture(scope="module")
def llava_dir(tmp_path_factory):
    return vb.save("llava", tmp_path_factory.mktemp("vlm") / "llava")


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    return vb.save("qwen2_vl", tmp_path_factory.mktemp("vlm") / "qwen")


class Recorder(Backend):
    """A backend that remembers what it was asked and answers with the first image's size."""

    name = "recorder"

    def __init__(self, fail: bool = False):
        self.requests: list[Request] = []
        self.fail = fail

    def answer(self, requests):
        self.requests += list(requests)
        if self.fail:
            return [Answer("", ok=False, error="server exploded", attempts=2) for _ in requests]
        return [Answer(f"{r.images[0].size[0]}x{r.images[0].size[1]} {r.prompt}") for r in requests]


@pytest.mark.parametrize("family_dir", ["llava_dir", "qwen_dir"])
def test_local_backend_batched_equals_one_by_one(family_dir, request):
    backend = LocalVLM.from_pretrained(str(request.getfixturevalue(family_dir)), device="cpu", batch_size=3)
    reqs = [Request((vb.random_image(60 + 10 * i, 40, i),), q, max_new_tokens=4 + i)
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
    two = Request((vb.random_image(50, 50, 1), vb.random_image(70, 40, 2)), "describe a cat", max_new_tokens=3)
    none = Request((), "what is in the image ?", max_new_tokens=3)
    one = Request((vb.random_image(50, 50, 1),), "describe a cat", max_new_tokens=3)
    answers = backend.answer([two, none, one])
    assert all(a.ok for a in answers)
    assert answers[0].text != answers[2].text  # the second image changed what the model saw
    assert backend.prompt(two).count("<image>") == 2


def test_a_failing_request_fails_alone(llava_dir, monkeypatch):
    backend = LocalVLM.from_pretrained(str(llava_dir), device="cpu")
    real = backend._generate

    def flaky(chunk):
        if any(r.prompt == "boom" for r in chunk):
            raise ValueError("cannot process boom")
        return real(chunk)

    monkeypatch.setattr(backend, "_generate", flaky)
    img = vb.random_image(50, 50)
    answers = backend.answer([Request((img,), "describe a cat", 3), Request((img,), "boom", 3), Request((img,), "what ?", 3)])
    assert [a.ok for a in answers] == [True, False, True]
    assert answers[1].text == "" and "cannot process boom" in answers[1].error


def test_ask_sends_the_annotated_image_and_compares_with_the_original(tiny_clip_dir):
    rec = Recorder()
    img = vb.random_image(90, 60)
    r = ask(img, "  what is in the image ?  ", vlm=rec, attributor_model=str(tiny_clip_dir), compare=True, answer_tokens=7)
    assert r.question == "what is in the image ?"
    assert len(rec.requests) == 2 and all(q.max_new_tokens == 7 for q in rec.requests)
    sent_annotated, sent_original = rec.requests[0].images[0], rec.requests[1].images[0]
    assert np.array_equal(np.asarray(sent_annotated), np.asarray(r.annotation.image))
    assert np.array_equal(np.asarray(sent_original), np.asarray(img))
    assert not np.array_equal(np.asarray(sent_annotated), np.asarray(img))
    assert r.answer.text == "90x60 what is in the image ?" and r.baseline.ok
    assert r.config["attributor"] == "api-clip" and r.config["attribution"]["model"] == str(tiny_clip_dir)


def test_ask_without_attributor_sends_the_plain_image():
    rec = Recorder()
    img = vb.random_image(40, 30)
    r = ask(img, "what ?", vlm=rec, attributor="none", compare=True)
    assert r.annotation is None and r.baseline is None and len(rec.requests) == 1
    assert np.array_equal(np.asarray(rec.requests[0].images[0]), np.asarray(img))


def test_self_reflection_uses_the_answering_vlm_for_attribution(llava_dir):
    r = ask(
        vb.random_image(80, 50), "what is in the image ?", vlm=str(llava_dir), attributor="api-vlm", answer_tokens=3,
        max_new_tokens=2, device="cpu",
    )
    assert r.answer.ok and r.annotation is not None
    assert r.config["attribution"]["method"] == "api-vlm" and r.config["attribution"]["model"] == str(llava_dir)
    assert r.config["attribution"]["max_new_tokens"] == 2
    # one model object serves both roles
    assert get_backend(str(llava_dir), device="cpu").model is load_vlm(str(llava_dir), device="cpu").model


def test_ask_rejects_what_cannot_work():
    with pytest.raises(InputError, match="api-vlm needs local access to a VLM's attention"):
        ask(vb.random_image(40, 40), "q", vlm="http://127.0.0.1:1/v1", attributor="api-vlm")
    with pytest.raises(InputError, match="attributor must be one of api-clip, api-vlm, none"):
        ask(vb.random_image(40, 40), "q", vlm=Recorder(), attributor="sam")
    with pytest.raises(InputError, match="query is empty"):
        ask(vb.random_image(40, 40), " ", vlm=Recorder())


def test_cli_ask_prints_answers_and_fails_loudly(tmp_path, llava_dir, tiny_clip_dir, capsys, monkeypatch):
    path = tmp_path / "img.png"
    vb.random_image(70, 50).save(path)
    out = tmp_path / "annotated.png"
    code = main(["ask", str(path), "what is in the image ?", "--vlm", str(llava_dir), "--attributor-model", str(tiny_clip_dir),
                 "--compare", "--max-new-tokens", "3", "--save-annotated", str(out), "--kernel", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].startswith("with api-clip:") and lines[1].startswith("without prompting:")
    assert Image.open(out).size == (70, 50)

    import attnprompt.backends as backends

    monkeypatch.setattr(backends, "get_backend", lambda *a, **k: Recorder(fail=True))
    code = main(["ask", str(path), "what ?", "--attributor", "none", "--vlm", "x"])
    captured = capsys.readouterr()
    assert code == 2 and captured.out.strip() == "<no answer>"
    assert "error: the VLM did not answer: server exploded" in captured.err


def test_cli_serve_answers_over_http(llava_dir):
    """`attnprompt serve` in a real subprocess, asked through the HTTP client."""
    import re
    import subprocess
    import sys

    from attnprompt.backends.openai_http import OpenAIBackend

    proc = subprocess.Popen(
        [sys.executable, "-m", "attnprompt", "serve", "--vlm", str(llava_dir), "--port", "0", "--name", "tiny", "--device", "cpu"],
        stderr=subprocess.PIPE, text=True,
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
        img = vb.random_image(60, 40)
        answer = client.ask(img, "what is in the image ?", max_new_tokens=4)
        assert answer.ok and client.model == "tiny"
        local = LocalVLM.from_pretrained(str(llava_dir), device="cpu").ask(img, "what is in the image ?", max_new_tokens=4)
        assert answer.text == local.text
        client.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
