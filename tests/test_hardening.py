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


# -- 3. a batch rerun with other settings never mixes results --------------------------------------


def write_items(tmp_path, n: int = 3, extra: bytes = b""):
    lines = []
    for i in range(n):
        SCENE.resize((60 + 10 * i, 50)).save(tmp_path / f"s{i}.png")
        lines.append(json.dumps({"image": f"s{i}.png", "query": "the circle", "id": f"item{i}"}).encode())
    path = tmp_path / "items.jsonl"
    path.write_bytes(b"\n".join(lines[:1] + ([extra] if extra else []) + lines[1:]) + b"\n")
    return path


def outputs(out) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.suffix in (".png", ".npy", ".json", ".jsonl")}


def test_a_rerun_with_other_settings_refuses_or_recomputes_as_asked(tmp_path, tiny_clip_dir, capsys):
    items, out = write_items(tmp_path), tmp_path / "out"
    base = ["annotate", "--batch", str(items), "--out-dir", str(out), "--model", str(tiny_clip_dir)]
    assert main(base) == 0
    first = outputs(out)
    capsys.readouterr()
    assert main(base + ["--kernel", "1", "--gray", "128"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: 3 finished item(s) in {out} were made with other settings (gray: 0.0 → 128.0; "
                   "kernel: 3 → 1); rerun with --overwrite to recompute them with these settings, or pick another "
                   "--out-dir")
    assert outputs(out) == first  # nothing touched, config.json included
    assert main(base + ["--kernel", "1", "--gray", "128", "--overwrite"]) == 0
    assert "3 items: 3 annotated, 0 already done (skipped), 0 failed" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["kernel"] == 1 and config["gray"] == 128.0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == ["item0", "item1", "item2"] and len({r["settings"] for r in records}) == 1
    assert outputs(out)["item0.npy"] != first["item0.npy"]
    assert main(base + ["--kernel", "1", "--gray", "128"]) == 0  # same settings: everything reused
    assert "0 annotated, 3 already done" in capsys.readouterr().out
    assert main(base) == 2  # and back to the first settings is a change again
    assert "gray: 128.0 → 0.0; kernel: 1 → 3" in capsys.readouterr().err


# -- 4. a line that is not UTF-8 is one bad item -----------------------------------------------------


def test_a_line_that_is_not_utf8_is_a_bad_item_and_the_others_run(tmp_path, tiny_clip_dir, capsys):
    items = write_items(tmp_path, extra=b'{"image": "s0.png", "query": "caf\xe9", "id": "latin1"}')
    out = tmp_path / "out"
    assert main(["annotate", "--batch", str(items), "--out-dir", str(out), "--model", str(tiny_clip_dir)]) == 1
    printed = capsys.readouterr().out
    assert "4 items: 3 annotated, 0 already done (skipped), 1 failed" in printed
    assert "failed line2 (line 2): not UTF-8 text (byte 0xe9 at column 34)" in printed


# -- 5. outputs that cannot be written: checked first, all or none, the answer still printed ---------


UNWRITABLE = "/proc/attnprompt-test"  # cannot hold a new file, even for root


def refuse_to_load(monkeypatch):
    import attnprompt.models as models

    def no(*a, **k):
        raise AssertionError("a model was loaded although the command was bound to fail")

    monkeypatch.setattr(models, "load_clip", no)
    monkeypatch.setattr(models, "load_vlm", no)


@pytest.mark.parametrize("flag", ["-o", "--heatmap", "--visual"])
def test_an_unwritable_output_fails_before_any_work(tmp_path, capsys, monkeypatch, flag):
    SCENE.save(tmp_path / "in.png")
    refuse_to_load(monkeypatch)
    target = f"{UNWRITABLE}/x.npy" if flag == "--heatmap" else f"{UNWRITABLE}/x.png"
    args = ["annotate", str(tmp_path / "in.png"), "the circle", "-o", str(tmp_path / "o.png"), "--model", "shapes"]
    args = args[:5] + [flag, target] + args[5:] if flag != "-o" else args[:4] + [target] + args[5:]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot write {flag} {target}: /proc") and "\n" not in err
    assert not (tmp_path / "o.png").exists()
    assert main(["annotate", str(tmp_path / "in.png"), "q", "-o", str(tmp_path), "--model", "shapes"]) == 2
    assert f"error: -o {tmp_path} is a directory; give a file name" in capsys.readouterr().err


def test_an_annotation_writes_all_its_files_or_none(tmp_path):
    from attnprompt.api import annotate
    from attnprompt.errors import OutputError

    ann = annotate(SCENE, "the circle", model="shapes")
    with pytest.raises(OutputError, match=f"cannot write {UNWRITABLE}/h.npy"):
        ann.save(tmp_path / "a.png", heatmap=f"{UNWRITABLE}/h.npy")
    assert list(tmp_path.iterdir()) == []  # the PNG that could be written was not left alone


def test_ask_checks_save_annotated_first_and_prints_its_answer_if_saving_fails(tmp_path, capsys, monkeypatch):
    SCENE.save(tmp_path / "in.png")
    args = ["ask", str(tmp_path / "in.png"), "What colour is the circle?", "--vlm", "shapes"]
    with monkeypatch.context() as m:
        refuse_to_load(m)
        assert main(args + ["--save-annotated", f"{UNWRITABLE}/a.png"]) == 2
    assert capsys.readouterr().err.startswith(f"error: cannot write --save-annotated {UNWRITABLE}/a.png")
    import attnprompt.files as files
    from attnprompt.errors import OutputError

    def disk_full(image, path):
        raise OutputError(f"cannot write {path}: No space left on device")

    monkeypatch.setattr(files, "save_image", disk_full)
    assert main(args + ["--save-annotated", str(tmp_path / "a.png")]) == 2
    out, err = capsys.readouterr()
    assert out.strip() == "green" and "No space left on device" in err and not (tmp_path / "a.png").exists()


def test_an_out_dir_that_is_a_file_or_unwritable_is_refused_first(tmp_path, capsys, monkeypatch):
    items = write_items(tmp_path)
    refuse_to_load(monkeypatch)
    (tmp_path / "afile").write_text("x")
    for out, message in ((tmp_path / "afile", "is a file; give a directory"),
                         (f"{UNWRITABLE}/out", f"cannot create --out-dir {UNWRITABLE}/out")):
        assert main(["annotate", "--batch", str(items), "--out-dir", str(out), "--model", "shapes"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err


# -- 7. tracebacks that are now one line -----------------------------------------------------------------


def test_a_device_this_machine_lacks_is_one_line(tmp_path, capsys, monkeypatch):
    import torch

    SCENE.save(tmp_path / "in.png")
    base = ["annotate", str(tmp_path / "in.png"), "q", "-o", str(tmp_path / "o.png"), "--model", "shapes"]
    assert main(base + ["--device", "tpu:9"]) == 2
    assert capsys.readouterr().err.strip() == "error: unknown device 'tpu:9'; give cpu, cuda, cuda:N or mps"
    if not torch.cuda.is_available():
        assert main(base + ["--device", "cuda:1"]) == 2
        assert "this machine has no CUDA GPU that torch can use; give cpu" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_serve_on_a_busy_or_impossible_port_is_one_line_before_loading(capsys, monkeypatch):
    import socket

    refuse_to_load(monkeypatch)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--vlm", "shapes", "--port", str(port)]) == 2
        assert capsys.readouterr().err.strip() == (
            f"error: cannot listen on 127.0.0.1:{port}: the port is in use (by another server?); "
            "pick another --port (0: any free one) or --host")
    assert main(["serve", "--vlm", "shapes", "--port", "70000"]) == 2
    assert "port 70000 is not a TCP port; give 1–65535, or 0 for any free port" in capsys.readouterr().err


def test_ask_takes_method_and_its_parameters_by_name(tiny_clip_dir):
    from attnprompt.api import ask

    r = ask(SCENE, "the circle", vlm="shapes", method="api-clip", model=str(tiny_clip_dir), kernel=1,
            max_new_tokens=3)
    assert r.config["map"]["method"] == "api-clip" and r.config["map"]["kernel"] == 1
    r = ask(SCENE, "the circle", vlm="shapes", method="api-vlm", map_max_new_tokens=2, max_new_tokens=3)
    assert r.config["map"]["max_new_tokens"] == 2 and r.steps[0].request.max_new_tokens == 3


# -- 8. settings that were accepted without a word ---------------------------------------------------------


def test_a_kernel_wider_than_the_grid_and_a_slice_past_the_model_are_refused(tmp_path, capsys):
    SCENE.save(tmp_path / "in.png")
    base = ["annotate", str(tmp_path / "in.png"), "q", "-o", str(tmp_path / "o.png"), "--model", "shapes"]
    assert main(base + ["--kernel", "1001"]) == 2
    assert ("error: kernel 1001 is wider than the 24×24 grid it filters; give an odd kernel up to 23"
            == capsys.readouterr().err.strip())
    assert main(base + ["--layers", "-100:"]) == 2
    assert "the slice bound -100 reaches past the model's 6 blocks" in capsys.readouterr().err
    assert not (tmp_path / "o.png").exists()


def test_a_kernel_wider_than_an_images_own_grid_is_narrowed_and_said(recwarn):
    from attnprompt.attribution.vlm_attention import KernelNarrowedWarning, VlmAttributor

    attributor = VlmAttributor.from_pretrained("shapes", kernel=31)  # the shapes VLM's grid is 16×16
    with pytest.warns(KernelNarrowedWarning, match="kernel 31 is wider than this image's 16×16 grid; filtered "
                                                   "with kernel 15"):
        attributor.attribute([SCENE], ["the circle"])


def test_a_control_character_in_a_query_is_refused(tmp_path, tiny_clip_dir, capsys):
    from attnprompt.api import annotate
    from attnprompt.errors import InputError

    with pytest.raises(InputError, match=r"query holds the control character U\+0000 at position 3"):
        annotate(SCENE, "the\x00circle", model="shapes")
    SCENE.save(tmp_path / "s.png")
    (tmp_path / "b.jsonl").write_text(json.dumps({"image": "s.png", "query": "a\x00b", "id": "nul"}) + "\n"
                                      + json.dumps({"image": "s.png", "query": "the circle", "id": "ok"}) + "\n")
    assert main(["annotate", "--batch", str(tmp_path / "b.jsonl"), "--out-dir", str(tmp_path / "out"),
                 "--model", str(tiny_clip_dir)]) == 1
    printed = capsys.readouterr().out
    assert "2 items: 1 annotated" in printed and "failed nul (line 1): query holds the control character" in printed


# -- 9. failures that were slow --------------------------------------------------------------------------


def test_a_bad_image_fails_before_any_model_loads(tmp_path, capsys, monkeypatch):
    refuse_to_load(monkeypatch)
    missing = str(tmp_path / "missing.png")
    assert main(["annotate", missing, "q", "-o", str(tmp_path / "o.png"), "--model", "shapes"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {missing}: no such file; give the path of an existing image file"
    assert main(["ask", missing, "q", "--vlm", "shapes"]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "b.jsonl").write_text(json.dumps({"image": "missing.png", "query": "q", "id": "gone"}) + "\n")
    assert main(["annotate", "--batch", str(tmp_path / "b.jsonl"), "--out-dir", str(tmp_path / "out"),
                 "--model", "shapes"]) == 1
    assert "1 items: 0 annotated, 0 already done (skipped), 1 failed" in capsys.readouterr().out


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_env(tmp_path) -> dict[str, str]:
    """No HF_HUB_OFFLINE, an endpoint that refuses connections, an empty cache: a machine whose
    network is down, wherever the test runs."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{closed_port()}", HF_HOME=str(tmp_path / "hf"))
    return env


def test_an_uncached_hub_model_offline_fails_fast_with_one_line(tmp_path):
    SCENE.save(tmp_path / "in.png")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "attnprompt", "annotate", str(tmp_path / "in.png"), "q", "-o",
                        str(tmp_path / "o.png"), "--model", "openai/clip-vit-base-patch32"],
                       env=offline_env(tmp_path), capture_output=True, text=True, timeout=120)
    elapsed = time.monotonic() - t0
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert re.fullmatch(r"error: cannot load model 'openai/clip-vit-base-patch32' \(hub id\): it is not in the local "
                        r"Hugging Face cache and 127\.0\.0\.1:\d+ cannot be reached \(Connection refused\); pass a "
                        r"local checkpoint directory with --model PATH .*", lines[0]), lines[0]
    assert elapsed < 30, elapsed  # was 27 s of retries before the line; now the probe fails at once


def test_a_cached_hub_model_loads_offline_without_retrying(tmp_path, tiny_clip_dir):
    """The Hugging Face cache layout (models--org--name/snapshots/REV + refs/main): with the hub out of
    reach the model loads from the cache at once."""
    import shutil

    repo = tmp_path / "hf" / "hub" / "models--test--tiny-clip"
    shutil.copytree(tiny_clip_dir, repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    script = ("from attnprompt.models import load_clip\n"
              "print(load_clip('test/tiny-clip').model.config.vision_config.image_size)")
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-c", script], env=offline_env(tmp_path), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "32" and "Retry" not in r.stderr and time.monotonic() - t0 < 30
