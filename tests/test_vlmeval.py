"""The VLMEvalKit model: VLMEvalKit's own run.py (through ``attnprompt vlmeval``) runs its HRBenchDataset on
a TSV in its layout built here (base64 images, no download) with ``attnprompt-plain`` and ``attnprompt-api``
on the shapes VLM, scores it with its exact matching, and its predictions, hits and accuracy equal what
``attnprompt eval``'s ``hr-bench-4k`` gives for the same rows; a model whose answering fails is never scored;
the adapter's store, first-batch rule, map cache and batcher, without the kit.

VLMEvalKit is installed without its requirements (they pull torchvision): `install.sh` does it; elsewhere the
kit's test skips with the command to run."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import sqlite3
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from attnprompt.integrations.vlmeval import Batcher, VlmevalAdapter, VlmevalRequestFailed, message_sample

# found, not imported: importing VLMEvalKit takes a while and changes the process (its SSL default, logging)
HAVE_KIT = importlib.util.find_spec("vlmeval") is not None
needs_kit = pytest.mark.skipif(not HAVE_KIT, reason="VLMEvalKit is not installed; run `pip install -e "
                               "'.[vlmeval]' && pip install --no-deps ms-vlmeval==0.0.20` (./install.sh does)")


def count_rows(n: int) -> list[dict]:
    """``n`` count questions of shapes-vqa as HR-Bench rows (index, question, answer, category, A–D,
    cycle_category, image as base64 PNG), each in two cycles with its options rotated. The shapes VLM
    answers the kit's long multiple-choice prompt with a number, which VLMEvalKit's exact matching reads as
    the option of that text: some right, most not, and the map changes some (not an empty comparison)."""
    from attnprompt.evaluation.tasks import get_task

    samples = [s for s in get_task("shapes-vqa").samples(10 * n) if "/count/" in s.id][:n]
    rows: list[dict] = []
    for s in samples:
        truth = int(s.references[0])
        options = [str(truth), *[str(v) for v in (truth - 1, truth + 1, truth + 2) if v > 0], "9"][:4]
        buffer = io.BytesIO()
        s.images[0].save(buffer, format="PNG")
        image = base64.b64encode(buffer.getvalue()).decode()
        for cycle in range(2):
            k = (len(rows) // 2 + cycle) % 4
            rotated = options[k:] + options[:k]
            rows.append({"index": len(rows), "question": s.question, "answer": "ABCD"[rotated.index(str(truth))],
                         "category": ("single_instance", "cross_instance")[len(rows) // 2 % 2],
                         **dict(zip("ABCD", rotated)), "cycle_category": f"cycle_{cycle}", "image": image})
    return rows


@needs_kit
def test_vlmevalkit_scores_equal_attnprompt_eval(tmp_path):
    import pandas as pd

    from attnprompt import evaluate

    rows = pd.DataFrame(count_rows(6))
    lmu = tmp_path / "LMUData"
    lmu.mkdir()
    rows.to_csv(lmu / "HRB_local.tsv", sep="\t", index=False)  # the kit's layout, in its data root
    rows.astype(str).to_parquet(tmp_path / "hrb.parquet")  # the same rows for attnprompt eval
    config = {"model": {"attnprompt-plain": {}, "attnprompt-api": {"batch_size": 4},
                        # a class by name, answering through a server that is not there: never scored
                        "broken": {"class": "AttnPromptVLM", "vlm": "http://127.0.0.1:9/v1", "vlm_model": "m",
                                   "strategy": "plain", "timeout": 2}},
              "data": {"HRB_local": {"class": "HRBenchDataset", "dataset": "HRB_local"}}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    work = tmp_path / "kit"
    env = {**os.environ, "LMUData": str(lmu), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "attnprompt", "vlmeval", "--vlm", "shapes", "--config",
                           str(tmp_path / "config.json"), "--work-dir", str(work), "--judge", "exact_matching"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    log = proc.stdout[-3000:] + proc.stderr[-3000:]
    # the broken model's dataset was skipped by the kit, unscored, and the command says so
    assert proc.returncode == 1, log
    assert "VLMEvalKit scored nothing of HRB_local" in proc.stderr and "connection refused" in proc.stderr, log
    assert not list((work / "broken").glob("*_acc.csv"))
    status = json.loads((work / "broken" / "status.json").read_text())
    assert "got no answer" in status["datasets"]["HRB_local"]["error_message"]

    run = evaluate("hr-bench-4k", data={"hr-bench-4k": str(tmp_path / "hrb.parquet")}, vlm="shapes",
                   strategies="plain,api", out=tmp_path / "ours", progress=False)
    assert run.failed == 0
    ours: dict = {}
    for line in (tmp_path / "ours" / "samples.jsonl").read_text().splitlines():
        s = json.loads(line)
        ours.setdefault(s["strategy"].split()[0], {})[s["sample_id"]] = (s["prediction"], s["scores"]["correct"])
    conditions = json.loads((tmp_path / "ours" / "report.json").read_text())["tasks"][0]["conditions"]
    accuracy = {c["label"].split()[0]: c["metrics"]["accuracy"] for c in conditions}

    hits = {}
    for model, strategy in (("attnprompt-plain", "plain"), ("attnprompt-api", "api")):
        # the kit's own files: its predictions with its exact-matching hits, and its report_acc_hrbench
        judged = pd.read_excel(work / model / f"{model}_HRB_local_exact_matching_result.xlsx")
        kit = {str(i): (str(p), float(h)) for i, p, h in zip(judged["index"], judged["prediction"], judged["hit"])}
        assert kit == ours[strategy], model
        acc = pd.read_csv(work / model / f"{model}_HRB_local_acc.csv")
        average = acc[(acc["cycle"] == "Average") & (acc["type"] == "all")]["accuracy"].item()
        assert average * 100 == pytest.approx(accuracy[strategy], abs=1e-12), model
        hits[strategy] = kit
    # not an empty comparison: some right, not all; the map changed some answers
    assert 0 < sum(h for _, h in hits["plain"].values()) < len(rows)
    assert any(hits["plain"][i][0] != hits["api"][i][0] for i in hits["plain"])

    # every step recorded beside the kit's files, keyed like our store; the api model answered in batches
    db = sqlite3.connect(work / "attnprompt" / "records.sqlite")
    kept = db.execute("select condition, ok, record from records where task = 'vlmeval/HRB_local'").fetchall()
    assert sorted((c, ok) for c, ok, _ in kept).count(("plain", 1)) == len(rows)
    api = [json.loads(r) for c, ok, r in kept if c == "api"]
    assert len(api) == len(rows) and max(r["batch"] for r in api) > 1
    assert api[0]["trace"]["steps"][0]["detail"] == {"form": "overlay"}
    assert api[0]["trace"]["steps"][0]["prompt"].startswith("Question: How many coloured objects are there?\n")
    failed = [json.loads(r) for c, ok, r in kept if not ok]
    assert failed and all("connection refused" in json.dumps(r) for r in failed)


# -- the adapter, without the kit ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    """Three shapes-vqa samples' images written as the kit writes them (``INDEX.png``), with their questions."""
    from attnprompt.evaluation.tasks import get_task

    root = tmp_path_factory.mktemp("images")
    out = []
    for i, s in enumerate(get_task("shapes-vqa").samples(3)):
        path = root / f"{i}.png"
        s.images[0].save(path)
        out.append((str(path), s.question))
    return out


def message(path, text):
    return [{"type": "image", "value": path}, {"type": "text", "value": text}]


def test_the_kits_answer_format_line_is_the_suffix_and_video_is_refused(scene_files):
    path, question = scene_files[0]
    sample = message_sample(message(path, f"{question}\nAnswer the question using a single word or phrase."))
    assert (sample.question, sample.suffix) == (question, "\nAnswer the question using a single word or phrase.")
    assert len(sample.images) == 1 and sample.images[0].size == (224, 224)
    with pytest.raises(Exception, match="attnprompt answers images and text; the message holds a 'video'"):
        message_sample([{"type": "video", "value": "clip.mp4"}, {"type": "text", "value": "Q?"}])


def test_a_failed_message_is_an_error_never_a_reply_and_a_store_resumes(scene_files, tmp_path):
    store = str(tmp_path / "store")
    adapter = VlmevalAdapter.from_settings({"vlm": "shapes", "strategy": "plain", "store": store})
    calls = [(message(p, q), "D") for p, q in scene_files]
    out = adapter.answer([calls[0], (message(scene_files[1][0], "   "), "D"), calls[2]])
    assert isinstance(out[1], VlmevalRequestFailed) and "query is empty" in str(out[1])
    assert "D/1.png got no answer" in str(out[1]) and f"kept in {store}" in str(out[1])
    assert all(isinstance(o, str) and o for o in (out[0], out[2]))
    adapter.close()

    # a rerun (a new adapter) with the message fixed: only that one is asked, the others come from the store
    again = VlmevalAdapter.from_settings({"vlm": "shapes", "strategy": "plain", "store": store})
    asked = []
    run = again.strategy.run
    again.strategy.run = lambda samples: asked.extend(s.question for s in samples) or run(samples)
    rerun = again.answer(calls)
    assert asked == [scene_files[1][1]]
    assert rerun[0] == out[0] and rerun[2] == out[2] and isinstance(rerun[1], str) and rerun[1]
    db = sqlite3.connect(tmp_path / "store" / "records.sqlite")
    records = {s.split("/")[0]: (ok, json.loads(r)) for s, ok, r in db.execute(
        "select sample_id, ok, record from records where task = 'vlmeval/D'")}
    assert sorted(records) == ["0.png", "1.png", "2.png"] and all(ok for ok, _ in records.values())
    assert records["0.png"][1]["trace"]["steps"][0]["prompt"] == scene_files[0][1]


def test_when_the_whole_first_batch_fails_the_rest_of_the_dataset_is_not_asked(scene_files, tmp_path):
    adapter = VlmevalAdapter.from_settings({"vlm": "http://127.0.0.1:9/v1", "vlm_model": "m", "strategy": "plain",
                                            "timeout": 2, "store": str(tmp_path)})
    first = adapter.answer([(message(*scene_files[0]), "D")])[0]
    assert isinstance(first, VlmevalRequestFailed) and "connection refused" in str(first)
    second = adapter.answer([(message(*scene_files[1]), "D")])[0]
    assert "not asked: every message of the first batch of D failed" in str(second)
    # the failure is recorded as one (never scored), the message not asked has no record
    rows = sqlite3.connect(tmp_path / "records.sqlite").execute("select ok, error from records").fetchall()
    assert len(rows) == 1 and rows[0][0] == 0 and "connection refused" in rows[0][1]


def test_maps_are_cached_across_messages(scene_files):
    adapter = VlmevalAdapter.from_settings({"vlm": "shapes", "strategy": "api", "store": None})
    call = (message(*scene_files[0]), "D")
    first, second = adapter.answer([call])[0], adapter.answer([call, (message(*scene_files[1]), "D")])[0]
    assert first == second
    [info] = adapter.runner.cache_info().values()
    assert (info["misses"], info["hits"]) == (2, 1)


def test_the_batcher_answers_concurrent_calls_together_and_in_order():
    seen = []
    lock = threading.Lock()

    def answer(items):
        with lock:
            seen.append(len(items))
        return [f"<{x}>" for x in items]

    batcher = Batcher(answer, size=4, linger=0.2)
    with ThreadPoolExecutor(4) as pool:
        out = list(pool.map(batcher.submit, range(12)))
    assert out == [f"<{i}>" for i in range(12)]
    assert sum(seen) == 12 and max(seen) == 4 and seen == batcher.sizes

    def broken(items):
        raise RuntimeError("out of memory")

    with ThreadPoolExecutor(3) as pool:
        outs = list(pool.map(Batcher(broken, size=3).submit, range(3)))
    assert all(isinstance(o, RuntimeError) for o in outs)  # each caller gets the error, none waits forever


def test_the_answering_server_is_verified_even_after_the_kit_turns_tls_checks_off(monkeypatch):
    import ssl

    from attnprompt.backends.openai_http import _opener_for

    # what importing VLMEvalKit does to the process (vlmeval/__init__.py)
    monkeypatch.setattr(ssl, "_create_default_https_context", ssl._create_unverified_context)
    [https] = [h for h in _opener_for("https://vlm.example/v1").handlers if h.__class__.__name__ == "_HTTPSHandler"]
    assert https._context.verify_mode == ssl.CERT_REQUIRED and https._context.check_hostname


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
def test_the_torchvision_stand_in_imports_refuses_use_and_leaves_no_trace():
    from transformers.utils import import_utils

    from attnprompt.integrations.vlmeval import _torchvision_stand_in

    with _torchvision_stand_in():
        import torchvision.transforms as T
        from torchvision.transforms import InterpolationMode

        mode = InterpolationMode.BICUBIC  # naming is fine (the kit's modules do it at import)
        with pytest.raises(ImportError, match="torchvision.transforms.Compose needs torchvision, which is not"):
            T.Compose([mode])
    assert importlib.util.find_spec("torchvision") is None and "torchvision" not in sys.modules
    assert not import_utils.is_torchvision_available()  # transformers never saw it


def test_our_options_are_read_and_the_rest_go_to_the_kit_unchanged(capsys, monkeypatch):
    from attnprompt.cli import main
    from attnprompt.integrations.vlmeval import _parser, _work_dir

    ours, kit = _parser().parse_known_args(["--vlm", "shapes", "--data", "HRBench4K", "VStarBench", "--model",
                                            "attnprompt-api", "--timeout", "30", "--vlm-timeout", "5", "--d", "x"])
    assert (ours.vlm, ours.timeout) == ("shapes", 5.0)
    # run.py's own --timeout, and a prefix of nothing of ours, stay the kit's
    assert kit == ["--data", "HRBench4K", "VStarBench", "--model", "attnprompt-api", "--timeout", "30", "--d", "x"]
    monkeypatch.delenv("MMEVAL_ROOT", raising=False)  # run.py's: it overrides --work-dir
    assert _work_dir(kit) == "./outputs" and _work_dir(["--work-dir", "runs/k"]) == "runs/k"
    assert main(["vlmeval", "-h"]) == 0  # our help, without importing the kit
    assert "--batch-size" in capsys.readouterr().out and "vlmeval" not in sys.modules
