"""The web demo in a real browser: Playwright driving the system's Chromium against the demo started
on 127.0.0.1 — upload a scene, ask, see three images and an answer; change the method and see the
heatmap change; a text file is one error message and the next good image works; two pages at once
are both answered (queued, not lost). Screenshots go to $ATTNPROMPT_SCREENSHOTS (default: the test's
temporary folder)."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
from pathlib import Path

import pytest

gradio = pytest.importorskip("gradio", reason="the demo needs Gradio: pip install 'attnprompt[demo]'")
sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the browser test needs Playwright: pip install playwright")


def chromium() -> str | None:
    for candidate in (os.environ.get("ATTNPROMPT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


BROWSER = chromium()
pytestmark = pytest.mark.skipif(BROWSER is None, reason="no Chromium: apt-get install chromium (or set "
                                "ATTNPROMPT_CHROMIUM to a Chromium executable); .ci/run installs it")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory):
    from attnprompt.demo.app import build_app

    app = build_app("shapes", examples_dir=tmp_path_factory.mktemp("examples"))
    app.queue(default_concurrency_limit=1)
    port = free_port()
    app.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}"
    app.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=BROWSER, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


@pytest.fixture
def shots(tmp_path):
    folder = Path(os.environ.get("ATTNPROMPT_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def scene(tmp_path: Path, seed: int = 7) -> str:
    from attnprompt.shapes import make_scene

    path = tmp_path / f"scene-{seed}.png"
    make_scene(seed, n_objects=5, size=320).image.save(path)
    return str(path)


#: The text of the answer and status boxes (their content, not Gradio's progress overlay).
SHOWN = ("(((document.querySelector('#answer .prose') || {}).innerText || '') + "
         "((document.querySelector('#status .prose') || {}).innerText || ''))")


#: Notes in ``window.__cleared`` the moment the answer and status boxes are both empty.
WATCH_CLEARED = ("() => { const shown = () => " + SHOWN + "; window.__cleared = false;"
                 " if (window.__observer) window.__observer.disconnect();"
                 " window.__observer = new MutationObserver(() => {"
                 " if (shown().trim().length == 0) window.__cleared = true; });"
                 " window.__observer.observe(document.body, {subtree: true, childList: true, characterData: true}); }")


def ask(page, question: str, timeout: float = 120_000) -> str:
    """Click Ask and wait until this request's answer (or error) is on the page. The page clears the
    previous one at the click; a fast reply (an error offline) can replace it before a poll sees the
    empty page, so an observer installed before the click notes the moment it was empty."""
    page.fill("#question textarea", question)
    page.evaluate(WATCH_CLEARED)
    page.click("#ask")
    page.wait_for_function(f"window.__cleared && {SHOWN}.trim().length > 0", timeout=timeout)
    return page.inner_text("#answer .prose")


def image_digest(page, elem_id: str) -> str:
    src = page.get_attribute(f"#{elem_id} img", "src")
    assert src, f"no image in #{elem_id}"
    return hashlib.sha1(page.request.get(src).body()).hexdigest()


def upload(page, path: str) -> None:
    """Put a file in the image box (clearing the one there first, as a user does)."""
    clear = page.locator("#image-file button[aria-label='Clear']")
    if clear.count():
        clear.first.click()
    page.set_input_files("#image-file input[type=file]", path)


def choose(page, elem_id: str, option: str) -> None:
    page.click(f"#{elem_id} input")
    page.get_by_role("option", name=option, exact=True).click()


def test_upload_ask_change_method_and_recover_from_a_bad_file(demo_url, browser, tmp_path, shots):
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.goto(demo_url)
    page.wait_for_selector("#ask")
    upload(page, scene(tmp_path))
    answer = ask(page, "What colour is the circle?")
    assert "api (api-clip):" in answer and "plain:" in answer
    for elem in ("original", "heatmap", "annotated"):
        assert page.locator(f"#{elem} img").count() == 1, elem
    assert page.inner_text("#status .prose").strip() == ""
    page.screenshot(path=str(shots / "demo-api-clip.png"), full_page=True)
    clip_heatmap = image_digest(page, "heatmap")

    choose(page, "method", "api-vlm")
    answer = ask(page, "What colour is the circle?")
    assert "api (api-vlm):" in answer
    assert image_digest(page, "heatmap") != clip_heatmap  # another map
    page.screenshot(path=str(shots / "demo-api-vlm.png"), full_page=True)

    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    upload(page, str(bad))
    page.wait_for_function(f"{SHOWN}.includes('not an image')", timeout=30_000)
    assert "notes.txt: not an image file" in page.inner_text("#status .prose")
    page.screenshot(path=str(shots / "demo-error.png"), full_page=True)

    upload(page, scene(tmp_path, seed=11))
    answer = ask(page, "What shape is the red object?")
    assert "api (api-vlm):" in answer and page.inner_text("#status .prose").strip() == ""
    page.close()


def test_two_pages_at_once_are_both_answered(demo_url, browser, tmp_path):
    pages = [browser.new_page() for _ in range(2)]
    for page in pages:
        page.goto(demo_url)
        page.wait_for_selector("#ask")
        upload(page, scene(tmp_path))
        page.fill("#question textarea", "What colour is the circle?")
    for page in pages:  # the second click lands while the first request runs: it waits in the queue
        page.click("#ask")
    for page in pages:
        page.wait_for_function(f"{SHOWN}.includes('plain:')", timeout=120_000)
        assert "api (api-clip):" in page.inner_text("#answer .prose")
        page.close()


def test_an_empty_question_and_an_unloadable_model_are_messages(demo_url, browser, tmp_path):
    page = browser.new_page()
    page.goto(demo_url)
    page.wait_for_selector("#ask")
    upload(page, scene(tmp_path))
    page.fill("#question textarea", "   ")
    page.click("#ask")
    page.wait_for_function(f"{SHOWN}.includes('question is empty')", timeout=30_000)
    page.fill("#vlm textarea", "no-such-org/no-such-model")
    ask(page, "What colour is the circle?")
    status = page.inner_text("#status .prose")
    assert "Error:" in status and "no-such-org/no-such-model" in status
    page.close()
