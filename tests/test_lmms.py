"""The lmms-eval plugin: lmms-eval's own CLI runs a local task YAML over a save_to_disk fixture with
``--model attnprompt`` (found through our entry point), offline, and its logged scores and answers equal
what ``attnprompt eval`` reports for the same samples and strategy; failed requests are never handed
back as answers; a store resumes; multi-round tasks get every round.

lmms-eval is installed without its dependencies (its requirements pull torchvision): `install.sh` does
it; elsewhere these tests skip with the command to run."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from attnprompt.integrations.lmms import LmmsAdapter, LmmsRequestsFailed

try:
    import lmms_eval  # noqa: F401

    HAVE_LMMS = True
except Exception:  # noqa: BLE001  # a half-installed lmms-eval is as good as none here
    HAVE_LMMS = False

needs_lmms = pytest.mark.skipif(not HAVE_LMMS, reason="lmms-eval is not installed; run `pip install --no-deps "
                                "lmms-eval==0.7.3 && pip install -e '.[lmms]'` (./install.sh does)")

TASK_YAML = """\
task: shapes_lmms
dataset_path: {data}
dataset_kwargs:
  load_from_disk: true
test_split: test
output_type: generate_until
doc_to_visual: !function shapes_utils.doc_to_visual
doc_to_text: !function shapes_utils.doc_to_text
doc_to_target: answer
generation_kwargs:
  max_new_tokens: 16
  until: ["\\n\\n"]
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
    ignore_case: true
    ignore_punctuation: true
"""

TASK_UTILS = """\
def doc_to_visual(doc):
    return [doc["image"].convert("RGB")]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]
"""


def shapes_samples(n: int):
    from attnprompt.evaluation.tasks import get_task

    task = get_task("shapes-vqa")
    return [task.to_sample(r) for r in itertools.islice(task.rows(n), n)]


@pytest.fixture(scope="module")
def shapes_dataset(tmp_path_factory) -> Path:
    """The first 15 shapes-vqa samples as a Hugging Face DatasetDict saved to disk (split ``test``; no id
    column, so our sample ids are the row numbers, as lmms-eval's doc ids are)."""
    import datasets

    samples = shapes_samples(15)
    features = datasets.Features({"image": datasets.Image(),
                                  "question": datasets.Value("string"), "answer": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({"image": [s.images[0] for s in samples],
                                     "question": [s.question for s in samples],
                                     "answer": [s.references[0] for s in samples]}, features=features)
    path = tmp_path_factory.mktemp("lmms") / "shapes"
    datasets.DatasetDict({"test": ds}).save_to_disk(str(path))
    return path


@needs_lmms
def test_lmms_eval_scores_equal_attnprompt_eval(shapes_dataset, tmp_path):
    from attnprompt import evaluate
    from attnprompt.evaluation.tasks.generic import generic_task

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "shapes_lmms.yaml").write_text(TASK_YAML.format(data=shapes_dataset))
    (tasks / "shapes_utils.py").write_text(TASK_UTILS)
    out = tmp_path / "lmms-out"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "lmms_eval", "--model", "attnprompt",
         "--model_args", "vlm=shapes,strategy=api,method=api-clip", "--batch_size", "4",
         "--tasks", "shapes_lmms", "--include_path", str(tasks), "--log_samples", "--output_path", str(out)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(next(out.rglob("*_results.json")).read_text())
    lmms_score = results["results"]["shapes_lmms"]["exact_match,none"]
    logged = [json.loads(line) for line in next(out.rglob("*_samples_shapes_lmms.jsonl")).read_text().splitlines()]
    logged.sort(key=lambda s: s["doc_id"])
    assert len(logged) == 15

    task = generic_task(str(shapes_dataset), split="test", metric="exact", max_new_tokens=16)
    run = evaluate(task, vlm="shapes", strategies="api", methods="api-clip", out=tmp_path / "ours", progress=False,
                   batch_size=4)
    samples = [json.loads(line) for line in (tmp_path / "ours" / "samples.jsonl").read_text().splitlines()]
    ours = {s["sample_id"]: s for s in samples}
    # the same answer, sample by sample (our sample ids are the row numbers, lmms-eval's doc ids)
    assert [s["filtered_resps"] for s in logged] == [ours[str(s["doc_id"])]["prediction"] for s in logged]
    headline = run.stats[task.name]["api (api-clip)"]
    ours_score = sum(s["correct"] for s in headline.scores) / len(headline.scores)
    assert lmms_score == pytest.approx(ours_score, abs=1e-12)
    assert 0.3 < lmms_score < 1.0  # the shapes VLM answers most of these: not an empty comparison
    # the strategy's steps are in lmms-eval's logged sample
    trace = logged[0]["token_counts"][0]["attnprompt"]
    assert trace["strategy"] == "api" and trace["steps"][0]["prompt"] == "What colour is the star?"
    assert trace["steps"][0]["detail"] == {"form": "overlay"}


def lmms_adapter(**model_args):
    """The adapter lmms-eval builds from --model_args."""
    return LmmsAdapter.from_model_args(model_args)


def requests_for(samples, contexts=None, gen=None):
    """lmms-eval-shaped requests (``args``) and the task_dict they index, built in code."""
    docs = [{"image": s.images[0], "question": s.question} for s in samples]
    task_dict = {"t": {"test": docs}}
    contexts = contexts or [s.question for s in samples]
    reqs = [SimpleNamespace(args=(c, dict(gen or {"max_new_tokens": 8}), lambda d: [d["image"]], i, "t", "test"))
            for i, c in enumerate(contexts)]
    return reqs, task_dict


def test_a_failed_request_is_raised_not_answered_and_a_store_resumes(tmp_path):
    samples = shapes_samples(3)
    reqs, task_dict = requests_for(samples, contexts=[samples[0].question, "   ", samples[2].question])
    adapter = lmms_adapter(vlm="shapes", strategy="plain", store=str(tmp_path / "store"), progress=False)
    with pytest.raises(LmmsRequestsFailed) as info:
        adapter.generate(reqs, task_dict)
    message = str(info.value)
    assert "1 of 3 requests got no answer" in message and "t/test/1" in message and "query is empty" in message
    assert "run the same command again" in message

    # the rerun with the bad request fixed: the two good answers come from the store, the new one is asked
    reqs, task_dict = requests_for(samples)
    answers = adapter.generate(reqs, task_dict)
    assert [t.get("reused", False) for _, t in answers] == [True, False, True]
    fresh = lmms_adapter(vlm="shapes", strategy="plain", progress=False).generate(reqs, task_dict)
    assert [a for a, _ in answers] == [a for a, _ in fresh]
    assert all(a for a, _ in answers)


def test_the_context_suffix_is_split_off_and_stop_strings_cut(tmp_path):
    samples = shapes_samples(1)
    suffix = "Reply in one word."
    reqs, task_dict = requests_for(samples, contexts=[f"<image>\n{samples[0].question}\n{suffix}"],
                                   gen={"max_new_tokens": 8, "until": ["e"]})
    answer, trace = lmms_adapter(vlm="shapes", strategy="api", suffix=suffix, progress=False).generate(reqs,
                                                                                                     task_dict)[0]
    # the VLM is asked the question and the suffix on its own line; the map was made for the question
    assert trace["steps"][0]["prompt"] == f"{samples[0].question}\n{suffix}"
    assert "e" not in answer  # cut at the first stop string


def test_multi_round_asks_each_round_until_the_task_stops():
    samples = shapes_samples(2)
    docs = [{"image": s.images[0], "question": s.question} for s in samples]
    seen = []

    def doc_to_text(doc, previous_output=None, round_idx=None, previous_round_info=None):
        seen.append((round_idx, list(previous_output)))
        if round_idx == 2:
            return None, None, True, previous_output, None
        return [doc["image"]], "How many coloured objects are there?", False, previous_output, {"r": round_idx}

    reqs = [SimpleNamespace(args=(d["question"], {"max_new_tokens": 8}, lambda d: [d["image"]], doc_to_text, i, "t",
                                  "test")) for i, d in enumerate(docs)]
    out = lmms_adapter(vlm="shapes", strategy="plain", progress=False).generate_multi_round(reqs, {"t": {"test": docs}})
    assert [len(rounds) for rounds, _ in out] == [2, 2]
    assert [len(trace["rounds"]) for _, trace in out] == [2, 2]
    assert out[0][1]["rounds"][1]["steps"][0]["prompt"] == "How many coloured objects are there?"
    assert seen[0] == (1, [out[0][0][0]])  # round 1 saw round 0's answer


def test_bad_model_arguments_fail_before_any_request():
    with pytest.raises(Exception, match="unknown strategy|valid"):
        lmms_adapter(vlm="shapes", strategy="no-such-strategy")
    with pytest.raises(Exception, match="uses no attribution map"):
        lmms_adapter(vlm="shapes", strategy="plain", kernel=1)


def test_a_server_that_cannot_be_reached_is_a_failure_not_an_answer_and_stops_after_the_first_batch():
    samples = shapes_samples(8)
    reqs, task_dict = requests_for(samples)
    adapter = lmms_adapter(vlm="http://127.0.0.1:9/v1", vlm_model="m", strategy="plain", timeout=2, concurrency=1,
                           progress=False)
    assert adapter.options.chunk == 4
    with pytest.raises(LmmsRequestsFailed, match=r"every request of the first batch \(4\) failed") as info:
        adapter.generate(reqs, task_dict)
    assert len(info.value.failures) == 4  # the other four were never sent
    assert "connection refused" in str(info.value) and "add store=DIR" in str(info.value)


def test_the_answering_vlm_must_be_named():
    with pytest.raises(Exception, match=r"give the answering VLM: vlm=… in --model_args"):
        lmms_adapter(strategy="plain")


@needs_lmms
def test_model_args_parsed_by_lmms_eval_keep_negative_layer_indices():
    from attnprompt.integrations.lmms_model import AttnPrompt

    # lmms-eval's parser reads "-1" as the float -1.0; layer -1 must stay an index
    model = AttnPrompt.create_from_arg_string("vlm=shapes,strategy=api,method=api-vlm,layers=-1",
                                              {"batch_size": 2, "device": None})
    described = model.adapter.describe()
    assert described["map"]["method"] == "api-vlm" and model.adapter.backend.batch_size == 2


def test_answering_through_an_openai_compatible_server_equals_the_local_model():
    """vlm=URL: the map is made in this process (API-CLIP on the shapes CLIP), the answer comes from the
    server (here `attnprompt serve`'s handler over the shapes VLM); the answers equal the local ones."""
    import threading

    from attnprompt.backends.local import LocalVLM
    from attnprompt.serve import make_server

    server = make_server(LocalVLM.from_pretrained("shapes"), "127.0.0.1", 0, max_parallel=None)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        samples = shapes_samples(4)
        reqs, task_dict = requests_for(samples)
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        remote = lmms_adapter(vlm=url, vlm_model="shapes", strategy="api", method="api-clip", model="shapes",
                             concurrency=2, progress=False).generate(reqs, task_dict)
        local = lmms_adapter(vlm="shapes", strategy="api", method="api-clip", model="shapes",
                            progress=False).generate(reqs, task_dict)
    finally:
        server.shutdown()
        server.server_close()
    assert [a for a, _ in remote] == [a for a, _ in local] and all(a for a, _ in remote)
    assert remote[0][1]["map"]["method"] == "api-clip"
