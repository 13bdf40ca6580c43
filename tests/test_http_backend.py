"""OpenAIBackend against real OpenAI-compatible servers (attnprompt's own) on 127.0.0.1.

The servers front a deterministic fake backend, so answers are checked word for word; handler
subclasses simulate the failures the retry protocol must survive (500, 429, dropped
connections, hanging servers, 4xx, malformed replies).
"""

from __future__ import annotations

import importlib.util
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

from attnprompt.backends.base import Backend
from attnprompt.backends.openai_http import OpenAIBackend, normalise_base_url
from attnprompt.errors import InputError
from attnprompt.serve import ChatCompletionsHandler, make_server
from attnprompt.types import Answer, Request

COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "white": (255, 255, 255), "black": (0, 0, 0)}


def colour_name(image: Image.Image) -> str:
    mean = np.asarray(image.convert("RGB"), dtype=float).reshape(-1, 3).mean(0)
    return min(COLOURS, key=lambda c: float(np.sum((mean - np.array(COLOURS[c])) ** 2)))


def noise(w: int, h: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


class FakeBackend(Backend):
    """Says how many images it got, the first one's colour, and echoes the prompt."""

    name = "fake"

    def __init__(self, delay=None, fail: str | None = None):
        self.seen: list[Request] = []
        self.delay = delay  # prompt -> seconds, so completion order can differ from request order
        self.fail = fail
        self._lock = threading.Lock()

    def answer(self, requests):
        out = []
        for r in requests:
            with self._lock:
                self.seen.append(r)
            if self.delay:
                time.sleep(self.delay(r.prompt))
            if self.fail:
                out.append(Answer("", ok=False, error=self.fail))
                continue
            first = colour_name(r.images[0]) if r.images else "none"
            out.append(Answer(f"{len(r.images)} images; first is {first}; you asked: {r.prompt}", model=self.name))
        return out


@pytest.fixture
def start_server():
    """start_server(backend, handler=..., **kw) -> (base URL, server); all are shut down afterwards."""
    running = []

    def start(backend=None, handler=ChatCompletionsHandler, **kwargs):
        server = make_server(backend or FakeBackend(), "127.0.0.1", 0, handler=handler, **kwargs)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        running.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}", server

    yield start
    for server, thread in running:
        release = getattr(server.RequestHandlerClass, "release", None)
        if release is not None:
            release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture(autouse=True)
def _no_env_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def recording_handler(mode: str = "ok", failures: int = 1):
    """A handler class that logs each POST (time, headers, body) and misbehaves ``failures`` times."""

    class Handler(ChatCompletionsHandler):
        posts: ClassVar[list[dict]] = []
        release: ClassVar[threading.Event] = threading.Event()

        def do_POST(self):
            body = self.read_body()
            n = len(self.posts)
            self.posts.append({"t": time.monotonic(), "auth": self.headers.get("Authorization"),
                               "json": json.loads(body)})
            if n < failures:
                if mode == "500":
                    return self.send_error_json(500, "temporarily overloaded")
                if mode == "429":
                    return self.send_error_json(429, "slow down")
                if mode == "drop":
                    self.close_connection = True
                    return None
                if mode == "hang":
                    self.release.wait(10)
                    self.close_connection = True
                    return None
                if mode == "400":
                    return self.send_error_json(400, "image too large for this model (code 7)")
            if mode.startswith("reply:"):
                raw = mode[len("reply:"):].encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
                return None
            # Already read: hand the body to the normal path without reading it twice.
            from attnprompt.serve import BadRequest, parse_chat_request

            try:
                request = parse_chat_request(body)
            except BadRequest as e:
                return self.send_error_json(e.status, str(e))
            return self.send_json(*self.complete(request))

    return Handler


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- content --------------------------------------------------------------------------------------


def test_images_arrive_in_order_and_losslessly(start_server):
    fake = FakeBackend()
    url, _ = start_server(fake)
    images = [Image.new("RGB", (40, 30), "red"), noise(64, 64, 1), noise(33, 17, 2), Image.new("RGB", (9, 80), "blue")]
    with_system = Request.single(tuple(images), "what is in the image ?", max_new_tokens=7, system="be brief")
    backend = OpenAIBackend(url, "fake", retry_wait=0.1)
    try:
        [answer] = backend.answer([with_system])
    finally:
        backend.close()
    assert answer.ok, answer.error
    assert answer.text == "4 images; first is red; you asked: what is in the image ?"
    assert answer.attempts == 1 and answer.model == "fake" and answer.seconds > 0 and answer.error is None
    [got] = fake.seen
    assert len(got.images) == 4
    for sent, received in zip(images, got.images):
        assert received.size == sent.size
        assert np.array_equal(np.asarray(received), np.asarray(sent))
    assert got.system == "be brief" and got.max_new_tokens == 7 and got.prompt == "what is in the image ?"


def test_downscaled_only_over_max_side(start_server):
    fake = FakeBackend()
    url, _ = start_server(fake)
    big, small = noise(300, 100, 3), noise(50, 40, 4)
    for max_side, expected in ((64, (64, 21)), (300, (300, 100)), (None, (300, 100))):
        backend = OpenAIBackend(url, "fake", max_side=max_side)
        assert backend.ask([big, small], "sizes?").ok
        backend.close()
        received_big, received_small = fake.seen[-1].images
        assert received_big.size == expected
        # The image that fits is untouched even when its neighbour is shrunk.
        assert np.array_equal(np.asarray(received_small), np.asarray(small))
    assert np.array_equal(np.asarray(fake.seen[-1].images[0]), np.asarray(big))


def test_text_only_and_several_requests_round_trip(start_server):
    url, _ = start_server()
    backend = OpenAIBackend(url, "fake", concurrency=2)
    reqs = [Request.single((Image.new("RGB", (16, 16), c),) * k, f"question {i}") for i, (c, k) in
            enumerate([("green", 1), ("white", 2), ("black", 3)])] + [Request.single((), "no image")]
    answers = backend.answer(reqs)
    backend.close()
    assert [a.text for a in answers] == [
        "1 images; first is green; you asked: question 0",
        "2 images; first is white; you asked: question 1",
        "3 images; first is black; you asked: question 2",
        "0 images; first is none; you asked: no image",
    ]
    assert backend.answer([]) == []


def test_a_two_image_two_turn_request_is_sent_as_openai_chat_messages(start_server):
    """Each turn is one message, a user turn's images before its text, the earlier answer as an
    assistant message; the server rebuilds exactly that conversation."""
    handler = recording_handler("ok", failures=0)
    fake = FakeBackend()
    url, _ = start_server(fake, handler=handler)
    first = Request.single((Image.new("RGB", (20, 10), "red"), noise(8, 16, 1)), "what differs ?", max_new_tokens=9,
                           system="be brief")
    request = first.then("the colour", "and the size ?", images=Image.new("RGB", (12, 12), "blue"))
    backend = OpenAIBackend(url, "fake", retry_wait=0.1)
    [answer] = backend.answer([request])
    backend.close()
    assert answer.ok, answer.error
    messages = handler.posts[0]["json"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"] == "be brief" and messages[2]["content"] == "the colour"
    assert [p["type"] for p in messages[1]["content"]] == ["image_url", "image_url", "text"]
    assert [p["type"] for p in messages[3]["content"]] == ["image_url", "text"]
    assert messages[3]["content"][1]["text"] == "and the size ?" and handler.posts[0]["json"]["max_tokens"] == 9
    [got] = fake.seen
    assert got.roles() == ("user", "assistant", "user") and got.system == "be brief" and got.max_new_tokens == 9
    assert [[i.size for i in t.images] for t in got.turns] == [[(20, 10), (8, 16)], [], [(12, 12)]]
    assert [t.text for t in got.turns] == ["what differs ?", "the colour", "and the size ?"]
    assert np.array_equal(np.asarray(got.turns[0].images[1]), np.asarray(first.images[1]))
    assert answer.text == "3 images; first is red; you asked: and the size ?"


def test_the_server_refuses_a_conversation_that_does_not_end_with_the_user(start_server):
    url, _ = start_server()
    turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    status, reply = _post(f"{url}/v1/chat/completions", json.dumps({"messages": turns}).encode())
    assert status == 400 and "must end with a user message" in reply["error"]["message"]
    turns = [{"role": "tool", "content": "x"}, {"role": "user", "content": "hi"}]
    status, reply = _post(f"{url}/v1/chat/completions", json.dumps({"messages": turns}).encode())
    assert status == 400 and "has role 'tool'; give system, user or assistant messages" in reply["error"]["message"]


# --- retries and failures -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["500", "429", "drop"])
def test_transient_failure_is_retried_once_after_the_wait(start_server, mode):
    handler = recording_handler(mode)
    url, _ = start_server(handler=handler)
    backend = OpenAIBackend(url, "fake", retry_wait=0.2, timeout=5)
    answer = backend.ask(Image.new("RGB", (16, 16), "red"), "again?")
    backend.close()
    assert answer.ok, answer.error
    assert answer.attempts == 2 and answer.error is None
    assert answer.text == "1 images; first is red; you asked: again?"
    first, second = handler.posts
    assert second["t"] - first["t"] >= 0.2
    assert first["json"] == second["json"]
    assert answer.seconds >= 0.2


def test_hanging_server_times_out_twice(start_server):
    handler = recording_handler("hang", failures=99)
    url, _ = start_server(handler=handler)
    backend = OpenAIBackend(url, "fake", timeout=0.5, retry_wait=0.2)
    t0 = time.monotonic()
    answer = backend.ask(Image.new("RGB", (16, 16)), "hello?")
    elapsed = time.monotonic() - t0
    backend.close()
    assert not answer.ok and answer.text == ""
    assert answer.attempts == 2 and len(handler.posts) == 2
    assert "timed out" in answer.error and "0.5 s" in answer.error
    assert 1.15 <= elapsed < 2.5, elapsed
    assert answer.seconds == pytest.approx(elapsed, abs=0.1)


def test_backend_failure_is_a_500_and_a_failed_answer(start_server):
    url, _ = start_server(FakeBackend(fail="GPU on fire"))
    backend = OpenAIBackend(url, "fake", retry_wait=0.05)
    answer = backend.ask(Image.new("RGB", (16, 16)), "hello?")
    assert not answer.ok and answer.text == "" and answer.attempts == 2
    assert "HTTP 500" in answer.error and "GPU on fire" in answer.error


def test_client_error_is_not_retried(start_server):
    handler = recording_handler("400", failures=99)
    url, _ = start_server(handler=handler)
    backend = OpenAIBackend(url, "fake", retry_wait=2.0)
    t0 = time.monotonic()
    answer = backend.ask(Image.new("RGB", (16, 16)), "hello?")
    assert time.monotonic() - t0 < 1.5
    assert not answer.ok and answer.text == "" and answer.attempts == 1 and len(handler.posts) == 1
    assert "400" in answer.error and "image too large for this model (code 7)" in answer.error


@pytest.mark.parametrize("reply", [
    '{"id": "x", "choices": []}',
    '{"choices": [{"message": {"role": "assistant", "content": null}}]}',
    '{"choices": [{"message": {"role": "assistant", "content": 42}}]}',
    '{"choices": [{"message": {"content": [{"type": "image_url", "image_url": {}}]}}]}',
    '{"object": "error"}',
    'this is not json',
])
def test_malformed_200_is_a_failed_answer(start_server, reply):
    handler = recording_handler("reply:" + reply)
    url, _ = start_server(handler=handler)
    answer = OpenAIBackend(url, "fake", retry_wait=2.0).ask(Image.new("RGB", (16, 16)), "hello?")
    assert not answer.ok and answer.text == ""
    assert answer.error.startswith("malformed response")
    assert answer.attempts == 1 and len(handler.posts) == 1


def test_content_as_text_parts_is_accepted(start_server):
    reply = '{"choices": [{"message": {"content": [{"type": "text", "text": "a "}, {"type": "text", "text": "cat"}]}}]}'
    url, _ = start_server(handler=recording_handler("reply:" + reply))
    answer = OpenAIBackend(url, "fake").ask(Image.new("RGB", (16, 16)), "hello?")
    assert answer.ok and answer.text == "a cat"


def test_connection_refused_fails_after_one_retry():
    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}", "fake", retry_wait=0.1, timeout=2)
    t0 = time.monotonic()
    answer = backend.ask(Image.new("RGB", (16, 16)), "anyone?")
    assert time.monotonic() - t0 >= 0.1
    assert not answer.ok and answer.text == "" and answer.attempts == 2
    assert "refused" in answer.error


# --- model discovery, headers, concurrency --------------------------------------------------------


def test_model_is_discovered_from_the_server(start_server):
    handler = recording_handler("ok")
    url, _ = start_server(handler=handler, model_name="tiny-served")
    backend = OpenAIBackend(url + "/v1/")
    assert backend.model is None and backend.name.endswith("#?")
    answer = backend.ask(Image.new("RGB", (16, 16), "green"), "which?")
    assert answer.ok and answer.model == "tiny-served"
    assert backend.name == f"{url}/v1#tiny-served"
    assert handler.posts[0]["json"]["model"] == "tiny-served"


def test_failed_discovery_fails_the_answers_without_raising(start_server):
    class NoModels(ChatCompletionsHandler):
        def do_GET(self):
            self.send_error_json(404, "there is no model list here")

    url, _ = start_server(handler=NoModels)
    answers = OpenAIBackend(url, retry_wait=0.05).answer([Request.single((), "a"), Request.single((), "b")])
    assert [a.ok for a in answers] == [False, False]
    assert all(a.text == "" and "model" in a.error and "no model list here" in a.error for a in answers)

    dead = OpenAIBackend(f"http://127.0.0.1:{free_port()}", retry_wait=0.05).answer([Request.single((), "a")])
    assert not dead[0].ok and "refused" in dead[0].error


def test_authorization_header(start_server, monkeypatch):
    handler = recording_handler("ok")
    url, _ = start_server(handler=handler)
    assert OpenAIBackend(url, "fake", api_key="sk-test").ask([], "hi").ok
    assert OpenAIBackend(url, "fake").ask([], "hi").ok
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert OpenAIBackend(url, "fake").ask([], "hi").ok
    assert [p["auth"] for p in handler.posts] == ["Bearer sk-test", None, "Bearer sk-env"]


def test_bounded_concurrency_keeps_request_order(start_server):
    lock = threading.Lock()
    state = {"active": 0, "peak": 0}

    class Counting(FakeBackend):
        # Counted while the server computes an answer: the client is then certainly waiting for
        # it. (Counting the whole handler call over-counts on a loaded machine: a handler thread
        # that has sent its response but not yet returned overlaps the client's next request.)
        def answer(self, requests):
            with lock:
                state["active"] += 1
                state["peak"] = max(state["peak"], state["active"])
            try:
                return super().answer(requests)
            finally:
                with lock:
                    state["active"] -= 1

    # Later prompts answer faster, so completion order differs from request order. The delays are
    # long enough (0.15–0.9 s) that two requests overlap even on a loaded CI machine (with 0.04 s
    # steps this once saw no overlap while a training job held both cores).
    fake = Counting(delay=lambda prompt: 0.15 * (6 - int(prompt[1:])))
    url, _ = start_server(fake, max_parallel=None)
    backend = OpenAIBackend(url, "fake", concurrency=2)
    reqs = [Request.single((Image.new("RGB", (16, 16), "blue"),), f"q{i}") for i in range(6)]
    answers = backend.answer(reqs)
    assert [a.text for a in answers] == [f"1 images; first is blue; you asked: q{i}" for i in range(6)]
    assert state["peak"] == 2

    # Shared between threads: every caller gets its own answers, still at most 2 in flight.
    state["peak"] = 0
    results: dict[int, list[Answer]] = {}

    def ask(k):
        results[k] = backend.answer([Request.single((), f"q{k}"), Request.single((), f"q{k + 3}")])

    threads = [threading.Thread(target=ask, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert {k: [a.text[-2:] for a in v] for k, v in results.items()} == {0: ["q0", "q3"], 1: ["q1", "q4"],
                                                                         2: ["q2", "q5"]}
    assert state["peak"] <= 2
    backend.close()
    assert backend.ask([], "q1").ok  # a closed backend starts new workers


# --- URLs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("given, expected", [
    ("http://localhost:8000", "http://localhost:8000/v1"),
    ("http://localhost:8000/", "http://localhost:8000/v1"),
    ("http://localhost:8000/v1", "http://localhost:8000/v1"),
    ("http://localhost:8000/v1/", "http://localhost:8000/v1"),
    ("http://localhost:8000/v1/chat/completions", "http://localhost:8000/v1"),
    ("http://localhost:8000/v1/chat/completions/", "http://localhost:8000/v1"),
    ("  HTTPS://api.openai.com/v1 ", "https://api.openai.com/v1"),
    ("https://generativelanguage.googleapis.com/v1beta/openai/",
     "https://generativelanguage.googleapis.com/v1beta/openai"),
])
def test_base_url_normalisation(given, expected):
    assert normalise_base_url(given) == expected
    assert OpenAIBackend(given, "m").name == f"{expected}#m"


@pytest.mark.parametrize("bad", ["ftp://example.com/v1", "localhost:8000", "file:///tmp/x", "", "http://", "/v1"])
def test_non_http_url_is_an_input_error(bad):
    with pytest.raises(InputError, match="http"):
        OpenAIBackend(bad, "m")


# --- the server on its own ------------------------------------------------------------------------


def _post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_server_rejects_bad_requests_openai_style(start_server):
    url, _ = start_server()
    remote = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}]}
    cases = [
        b"{not json",
        json.dumps({"model": "fake"}).encode(),
        json.dumps({"messages": [remote]}).encode(),
        json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}).encode(),
    ]
    for body in cases:
        status, reply = _post(f"{url}/v1/chat/completions", body)
        assert status == 400, body
        assert reply["error"]["type"] == "invalid_request_error" and reply["error"]["message"]
    status, reply = _post(f"{url}/v1/chat/completions",
                          json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode())
    assert status == 200 and reply["object"] == "chat.completion"
    assert reply["choices"][0]["message"] == {"role": "assistant", "content": "0 images; first is none; you asked: hi"}
    with urllib.request.urlopen(f"{url}/v1/models", timeout=5) as resp:
        assert json.loads(resp.read())["data"][0] == {"id": "fake", "object": "model", "owned_by": "attnprompt"}


# --- a real (tiny) model behind the server --------------------------------------------------------


@pytest.mark.skipif(not importlib.util.find_spec("attnprompt.backends.local"), reason="LocalVLM not available")
def test_tiny_llava_served_over_http(start_server):
    import builders as vb

    from attnprompt.backends.local import LocalVLM
    from attnprompt.models import LoadedVlm

    model, processor = vb.build("llava")
    local = LocalVLM(LoadedVlm(model, processor, "llava", "tiny", ""))
    url, _ = start_server(local, model_name="tiny-llava")
    image = vb.random_image(70, 50, seed=5)
    request = Request.single((image,), "what is in the image ?", max_new_tokens=4)
    remote = OpenAIBackend(url, retry_wait=0.1, timeout=30)
    [answer] = remote.answer([request])
    remote.close()
    assert answer.ok, answer.error
    assert answer.model == "tiny-llava" and answer.attempts == 1
    assert answer.text == local.answer([request])[0].text
