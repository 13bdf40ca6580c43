"""What a newcomer hits in the first minutes (issue 41's rough edges), each shown old → new: a bad row is that
sample's recorded failure and the run completes (``--strict`` stops at it); a missing local data file is one
line at once; every flag is checked before a model loads; ``eval --help`` names every task; a finished run
answers from its records without loading a model; the exit code says whether the run can be trusted."""

from __future__ import annotations

import json
import sqlite3

import pytest

import bench_data
from attnprompt.backends.base import Backend
from attnprompt.cli import build_parser, main
from attnprompt.evaluation.tasks import TASKS
from attnprompt.shapes import make_scene
from attnprompt.types import Answer


@pytest.fixture
def data_file(tmp_path):
    """A JSONL task file: two good rows, a line that is not UTF-8, a row whose image is not an image, a row
    with no question column."""
    make_scene(7, n_objects=5, size=160).image.save(tmp_path / "scene.png")
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    good = [{"id": f"g{i}", "image": "scene.png", "question": "What colour is the circle?", "answer": "green"}
            for i in range(2)]
    lines = [json.dumps(good[0]).encode(), b'{"id": "latin", "question": "caf\xe9?"}',
             json.dumps({"id": "img", "image": "broken.png", "question": "q?", "answer": "x"}).encode(),
             json.dumps({"id": "noq", "image": "scene.png", "answer": "x"}).encode(), json.dumps(good[1]).encode()]
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _eval(data_file, out, *extra):
    return main(["eval", "--task", "vqa", "--data", str(data_file), "--vlm", "shapes", "--strategy", "plain",
                 "--out", str(out), "--quiet", *extra])


def test_bad_rows_fail_alone_recorded_and_counted_and_the_run_completes(data_file, tmp_path, capsys):
    # before: a 23-line UnicodeDecodeError traceback, or 0 records for one unreadable image
    assert _eval(data_file, tmp_path / "run") == 0
    out = capsys.readouterr().out
    assert "2 answered, 0 already recorded, 3 failed (3 rows could not be read)" in out
    assert "3 samples failed, recorded as failures" in out
    with sqlite3.connect(tmp_path / "run" / "records.sqlite") as db:
        rows = dict(db.execute("select sample_id, failure || ': ' || error from records where not ok"))
    # a row that cannot even be decoded is named as the task names rows without an id: by its number
    assert set(rows) == {"1", "img", "noq"}
    assert "line 2: not UTF-8 text (byte 0xe9" in rows["1"]
    assert "broken.png" in rows["img"] and "no 'question' column" in rows["noq"]
    assert all(v.startswith("input: ") for v in rows.values())
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["tasks"][0]["conditions"][0]["n"] == 2  # the failures are left out of the score


def test_strict_stops_at_the_first_bad_row_with_one_line(data_file, tmp_path, capsys):
    assert _eval(data_file, tmp_path / "run", "--strict") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "row 1" in err and "not UTF-8 text" in err and "without --strict" in err


def test_strict_makes_recorded_failures_exit_1(tmp_path, capsys):
    make_scene(7, n_objects=5, size=160).image.save(tmp_path / "scene.png")
    rows = [{"id": "a", "image": "scene.png", "question": "What colour is the circle?", "answer": "green"},
            {"id": "b", "image": "missing.png", "question": "q?", "answer": "x"}]
    path = tmp_path / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _eval(path, tmp_path / "run") == 0
    assert _eval(path, tmp_path / "run2", "--strict") == 2  # --strict: the missing image stops the run
    capsys.readouterr()


def test_a_missing_local_data_file_is_one_line_at_once(tmp_path, capsys, monkeypatch):
    datasets = pytest.importorskip("datasets")

    def hub(*args, **kwargs):
        raise AssertionError("the hub was asked for a local path")

    monkeypatch.setattr(datasets, "load_dataset", hub)
    # before: Hugging Face datasets looked it up and failed after 27 s
    assert main(["eval", "--task", "vqa", "--data", str(tmp_path / "no" / "such.jsonl"), "--vlm", "shapes",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no such file or folder here" in err


@pytest.mark.parametrize("flags, says", [(["--kernel", "-1"], "kernel must be an odd integer"),
                                         (["--layers", "abc"], "invalid layers 'abc'"),
                                         (["--method", "api-vlm", "--variant", "both"], "variant must be one of")])
def test_every_flag_is_checked_before_any_model_loads(flags, says, tmp_path, capsys, monkeypatch):
    import attnprompt.backends as backends

    def load(*args, **kwargs):
        raise AssertionError("a model was loaded before the flags were checked")

    monkeypatch.setattr(backends, "get_backend", load)
    image = tmp_path / "scene.png"
    make_scene(7, n_objects=5, size=160).image.save(image)
    # before: these failed only after the models had loaded (56–122 s)
    assert main(["ask", str(image), "What colour?", "--vlm", "shapes", *flags]) == 2
    assert says in capsys.readouterr().err
    import attnprompt.evaluation.options as options

    monkeypatch.setattr(options.BackendOptions, "build", load)
    assert main(["eval", "--task", "shapes-vqa", "--vlm", "shapes", "--strategy", "api", "--limit", "2", "--out",
                 str(tmp_path / "run"), "--quiet", *flags]) == 2
    assert says in capsys.readouterr().err


def test_an_empty_question_is_called_what_the_command_calls_it(tmp_path, capsys):
    image = tmp_path / "scene.png"
    make_scene(7, n_objects=5, size=160).image.save(image)
    assert main(["ask", str(image), " ", "--vlm", "shapes"]) == 2
    assert capsys.readouterr().err.startswith("error: QUESTION is empty")  # before: "query is empty"


def test_eval_help_names_every_task(capsys):
    eval_parser = build_parser()._subparsers._group_actions[0].choices["eval"]
    task_help = next(a.help for a in eval_parser._actions if a.dest == "task")
    # before: five tasks, without shapes-detail (used by the README's own main command), mme, pope …
    assert all(name in task_help for name in TASKS.names())


def test_a_finished_run_answers_from_its_records_without_loading_a_model(tmp_path, capsys, monkeypatch):
    args = ["eval", "--task", "shapes-vqa,shapes-pointing", "--vlm", "shapes", "--strategy", "plain,api",
            "--limit", "3", "--out", str(tmp_path / "run"), "--quiet"]
    assert main(args) == 0
    first = (tmp_path / "run" / "report.md").read_text()
    capsys.readouterr()
    import attnprompt.evaluation.options as options

    def load(*a, **k):
        raise AssertionError("a model was loaded for a run that was done")

    monkeypatch.setattr(options.EvalOptions, "executor", load)  # before: both models loaded (117 s)
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "shapes-vqa · plain: 0 answered, 3 already recorded, 0 failed" in out
    assert (tmp_path / "run" / "report.md").read_text() == first
    # a larger limit has work: then the models load as usual
    with pytest.raises(AssertionError, match="a model was loaded"):
        main([*args[:-3], "--limit", "4", *args[-3:]])


class Answers(Backend):
    """Answers every question "a cat"."""

    name = "answers"

    def answer(self, requests):
        return [Answer("a cat", model=self.name) for _ in requests]


def test_a_judge_that_never_replies_makes_the_run_exit_1_and_the_summary_says_so(tmp_path):
    pytest.importorskip("datasets")
    from attnprompt.evaluation.evaluate import evaluate
    from attnprompt.evaluation.judge import Judge

    mmvet = bench_data.mmvet_original(tmp_path / "mmvet")
    run = evaluate("mmvet", data={"mmvet": str(mmvet)}, vlm=Answers(), strategies="plain", out=tmp_path / "run",
                   judge=Judge("http://127.0.0.1:9/v1", retry_wait=0), progress=False)
    # before: "2 judged (2 without a reply …)" and exit 0 when no verdict came back
    assert "the judge gave 0 verdicts for 3 answers (3 without a reply" in run.summary()
    assert run.exit_code() == 1


def test_batch_ids_in_any_script_name_their_files(tmp_path, capsys):
    make_scene(7, n_objects=5, size=160).image.save(tmp_path / "scene.png")
    items = [{"id": "图像 1", "image": "scene.png", "query": "the circle"},
             {"id": "café_été", "image": "scene.png", "query": "the star"},
             {"id": "../up", "image": "scene.png", "query": "the star"}]
    (tmp_path / "items.jsonl").write_text("".join(json.dumps(i, ensure_ascii=False) + "\n" for i in items),
                                          encoding="utf-8")
    # before: every non-ASCII id was refused
    assert main(["annotate", "--batch", str(tmp_path / "items.jsonl"), "--out-dir", str(tmp_path / "out"),
                 "--model", "shapes"]) == 1  # the "../up" item failed, the others are done
    assert (tmp_path / "out" / "图像 1.png").is_file() and (tmp_path / "out" / "café_été.npy").is_file()
    assert "'/' separates folders" in (tmp_path / "out" / "failures.jsonl").read_text(encoding="utf-8")
    assert not (tmp_path / "up.png").exists()


def test_top_level_help_imports_no_numerics_and_each_command_only_its_own(tmp_path):
    import subprocess
    import sys

    def imported(*args):
        done = subprocess.run([sys.executable, "-X", "importtime", "-m", "attnprompt", *args], capture_output=True,
                              text=True, check=True)
        return {line.split("|")[-1].strip() for line in done.stderr.splitlines() if "|" in line}

    top = imported("--help")
    # before: 0.57 s of imports, the server among them, to print the list of commands
    assert not {"numpy", "torch", "PIL", "attnprompt.serve", "attnprompt.types"} & top
    ask = imported("ask", "--help")
    assert "attnprompt.strategies.spec" in ask and not {"torch", "attnprompt.serve", "transformers"} & ask


def test_threads_are_checked_and_set_before_a_model_runs(tmp_path, capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["ask", "no-such.png", "q", "--vlm", "shapes", "--threads", "0"]) == 2
        assert "--threads must be an integer ≥ 1" in capsys.readouterr().err
        main(["ask", "no-such.png", "q", "--vlm", "shapes", "--threads", "1"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_transformers_bars_and_warnings_we_handle_stay_out_of_the_terminal(tmp_path, capfd):
    image = tmp_path / "scene.png"
    make_scene(7, n_objects=5, size=160).image.save(image)
    long_question = "Is there " + "a very small red circle next to " * 20 + "the star?"
    # before: two "Loading weights" bars on every command, and transformers' "… will result in indexing errors"
    # beside our own truncation warning
    assert main(["ask", str(image), long_question, "--vlm", "shapes", "--max-new-tokens", "3"]) == 0
    err = capfd.readouterr().err
    assert "Loading weights" not in err and "indexing errors" not in err
    assert "query truncated to CLIP's" in err  # ours, once


def _png_header_claiming(width: int, height: int) -> bytes:
    """A valid 1×1 PNG whose header claims ``width``×``height`` (a decompression bomb PIL refuses from the
    header alone)."""
    import io
    import struct
    import zlib

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


def test_serve_refuses_a_400_mpx_image_with_its_own_413_and_counts_tokens():
    import base64

    from attnprompt.backends import get_backend
    from attnprompt.serve import Limits, decode_data_url, make_server

    bomb = "data:image/png;base64," + base64.b64encode(_png_header_claiming(20000, 20000)).decode()
    with pytest.raises(Exception) as info:  # before: PIL's "decompression bomb DOS attack" text as a 400
        decode_data_url(bomb, "image 1", 50_000_000)
    assert info.value.status == 413 and "too large to decode; at most 50 Mpx" in str(info.value)
    server = make_server(get_backend("shapes"), limits=Limits())
    threading = __import__("threading")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        import urllib.request

        url = f"http://127.0.0.1:{server.server_address[1]}/v1/chat/completions"
        scene = make_scene(7, n_objects=5, size=160).image
        from test_hardening import png_url

        body = {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": png_url(scene)}},
                                                          {"type": "text", "text": "What colour is the circle?"}]}],
                "max_tokens": 4}
        req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as resp:
            usage = json.loads(resp.read())["usage"]
        # before: always 0; now the prompt's tokens (image tokens included) and the answer's
        assert usage["prompt_tokens"] > 64 and 1 <= usage["completion_tokens"] <= 4
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    finally:
        server.shutdown()
        server.server_close()


def test_the_report_explains_only_the_rows_it_has(tmp_path):
    from attnprompt.evaluation.evaluate import evaluate

    evaluate("shapes-detail", vlm="shapes", strategies="plain", limit=2, out=tmp_path / "a", progress=False)
    evaluate("shapes-detail", vlm="shapes", strategies="plain,zoom-oracle", limit=2, out=tmp_path / "b",
             progress=False)
    without, with_oracle = ((tmp_path / d / "report.md").read_text() for d in ("a", "b"))
    # before: both explained zoom-oracle and zoom-centre, rows the first run does not have
    assert "zoom-oracle:" not in without and "zoom-centre:" not in without
    assert "zoom-oracle: the scene's own region alone" in with_oracle and "zoom-centre:" not in with_oracle
