"""What a new user broke (issue 16), one section per finding: each asserts the clear outcome and that
nothing partial is left behind."""

from __future__ import annotations

import base64
import io
import json
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image

from attnprompt.backends.local import LocalVLM
from attnprompt.backends.openai_http import OpenAIBackend
from attnprompt.cli import main
from attnprompt.images import load_image
from attnprompt.shapes import make_scene
from attnprompt.types import Request

SCENE = make_scene(7, n_objects=5, size=320).image  # examples/scene.png: "What colour is the circle?" → green


def png_url(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def post(url: str, payload: dict | bytes) -> tuple[int, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    req = urllib.request.Request(f"{url}/chat/completions", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def ask_payload(text: str, *images: Image.Image) -> dict:
    content = [{"type": "image_url", "image_url": {"url": png_url(i)}} for i in images]
    content.append({"type": "text", "text": text})
    return {"messages": [{"role": "user", "content": content}], "max_tokens": 4}


@pytest.fixture(scope="module")
def served():
    """`attnprompt serve` with the shapes VLM and small limits, in a real subprocess on 127.0.0.1."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "attnprompt", "serve", "--vlm", "shapes", "--port", "0", "--max-body-mb", "1",
         "--max-images", "2", "--max-image-mpx", "0.2", "--max-prompt-chars", "20000"],
        stderr=subprocess.PIPE, text=True,
    )
    url = None
    for line in proc.stderr:
        m = re.search(r"at (http://\S+/v1)", line)
        if m:
            url = m.group(1)
            break
    assert url, "the server must announce its address"
    yield url, proc
    proc.terminate()
    proc.wait(timeout=30)


# -- 1. limits on what one request may hold, checked before any model work --------------------------


def test_an_oversize_body_is_a_413_and_the_server_keeps_serving(served):
    url, proc = served
    status, reply = post(url, b'{"messages": [{"role": "user", "content": "' + b"x" * (2 * 2**20) + b'"}]}')
    assert status == 413 and "at most 1048576 are accepted (serve --max-body-mb)" in reply["error"]["message"]
    status, reply = post(url, ask_payload("What colour is the circle?", SCENE))
    assert status == 200 and reply["choices"][0]["message"]["content"] == "green"
    assert proc.poll() is None


def test_too_many_images_too_many_pixels_and_too_much_text_are_refused(served):
    url, _ = served
    small = SCENE.resize((64, 64))
    status, reply = post(url, ask_payload("What colour is the circle?", small, small, small))
    assert status == 413 and "more than 2 images in the conversation (serve --max-images)" in reply["error"]["message"]
    status, reply = post(url, ask_payload("What colour is the circle?", SCENE.resize((600, 600))))
    assert status == 413 and "600×600 = 0.4 Mpx; at most 0.2 Mpx" in reply["error"]["message"]
    status, reply = post(url, ask_payload("circle " * 4000, small))
    assert status == 413 and "28000 characters of text; at most 20000" in reply["error"]["message"]


def test_a_prompt_longer_than_the_context_is_a_400_never_an_empty_200(served):
    url, proc = served
    status, reply = post(url, ask_payload("What colour is the circle? " * 200, SCENE))
    assert status == 400, reply
    assert re.search(r"the prompt is \d+ tokens, its images' tokens included, and 'shapes' reads at most 1024",
                     reply["error"]["message"])
    status, reply = post(url, ask_payload("What colour is the circle?", SCENE))
    assert status == 200 and reply["choices"][0]["message"]["content"] == "green" and proc.poll() is None


def test_the_python_api_refuses_a_prompt_longer_than_the_context_with_the_reason():
    backend = LocalVLM.from_pretrained("shapes")
    long, short = (Request.single(SCENE, "What colour is the circle? " * k, max_new_tokens=3) for k in (400, 1))
    a, b = backend.answer([long, short])  # one batch: the long one fails alone
    assert not a.ok and a.failure == "input" and "reads at most 1024" in a.error
    assert b.ok and b.text == "green"


# -- 2. an empty generation is no answer ----------------------------------------------------------


def gray16(path) -> None:
    """The example scene as a 16-bit grayscale PNG."""
    Image.fromarray(np.asarray(SCENE.convert("L")).astype(np.uint16) * 257).save(path)


def test_sixteen_bit_gray_converts_exactly_and_an_empty_answer_is_reported(tmp_path, capsys):
    path = tmp_path / "g16.png"
    gray16(path)
    assert Image.open(path).mode == "I;16"
    # the conversion is exact: the same pixels as the 8-bit grayscale image
    assert np.array_equal(np.asarray(load_image(path)), np.asarray(SCENE.convert("L").convert("RGB")))
    # the shapes VLM, trained on coloured scenes only, ends a colour question about a gray one at once
    [a] = LocalVLM.from_pretrained("shapes").answer([Request.single(load_image(path), "What colour is the circle?")])
    assert not a.ok and a.failure == "empty" and a.text == ""
    assert a.error == "the model's answer is empty: it generated the end of the sequence as its first token"
    assert main(["ask", str(path), "What colour is the circle?", "--vlm", "shapes", "--compare"]) == 2
    out, err = capsys.readouterr()
    assert [line.split() for line in out.splitlines()] == [["api", "(api-clip):", "<no", "answer>"],
                                                         ["plain:", "<no", "answer>"]]
    assert err.count("error: the VLM did not answer: the model's answer is empty") == 2
    # and it does answer about the same picture in colour
    SCENE.save(tmp_path / "colour.png")
    assert main(["ask", str(tmp_path / "colour.png"), "What colour is the circle?", "--vlm", "shapes",
                 "--strategy", "plain"]) == 0
    assert capsys.readouterr().out.strip() == "green"


def test_an_empty_answer_over_http_is_a_failure_not_an_answer(served):
    url, _ = served
    gray = SCENE.convert("L").convert("RGB")
    status, reply = post(url, ask_payload("What colour is the circle?", gray))
    assert status == 422 and reply["error"]["type"] == "empty_answer"
    [answer] = OpenAIBackend(url, timeout=30, retry_wait=0).answer([Request.single(gray, "What colour is the circle?")])
    assert not answer.ok and answer.failure == "empty" and answer.attempts == 1
    assert "the model's answer is empty" in answer.error


class EmptyContent(BaseHTTPRequestHandler):
    """Any OpenAI-compatible server answering 200 with empty content."""

    def do_POST(self):  # the name http.server dispatches to
        self.rfile.read(int(self.headers["Content-Length"]))
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "  "}, "finish_reason": "length"}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args):
        pass


def run_server(handler):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


def test_a_200_with_empty_content_is_an_empty_failure():
    server, url = run_server(EmptyContent)
    try:
        [a] = OpenAIBackend(url, "m", retry_wait=0).answer([Request.single((), "hi")])
    finally:
        server.shutdown()
        server.server_close()
    assert not a.ok and a.failure == "empty" and a.error == "the server's answer is empty (finish_reason 'length')"


# -- 6. the timeout bounds the whole request -----------------------------------------------------------


class Dripping(BaseHTTPRequestHandler):
    """Sends its headers, then one byte of the body every 0.2 s: each read is quick, the reply endless."""

    protocol_version = "HTTP/1.1"

    def do_POST(self):  # the name http.server dispatches to
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        try:
            for _ in range(200):
                self.wfile.write(b" ")
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass  # the client gave up

    def log_message(self, *args):
        pass


def test_a_server_that_drips_bytes_times_out_on_the_whole_request():
    server, url = run_server(Dripping)
    try:
        t0 = time.monotonic()
        [a] = OpenAIBackend(url, "m", timeout=1.0, retry_wait=0).answer([Request.single((), "hi")])
        elapsed = time.monotonic() - t0
    finally:
        server.shutdown()
        server.server_close()
    assert not a.ok and a.failure == "error" and a.attempts == 2
    assert "timed out: no complete reply within 1 s" in a.error
    assert elapsed < 5, elapsed  # two attempts of 1 s each, not 200 bytes × 0.2 s
