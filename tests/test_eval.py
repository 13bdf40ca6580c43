"""The evaluation harness: metrics and the bootstrap on hand-computed values, tasks (built-in, from a
user's file, generic over JSONL and a Hugging Face dataset on disk), the runner's store (resume after
kill -9, settings changes, failures and --retry-failed), the map cache, and the report."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from attnprompt.backends.base import Backend
from attnprompt.cli import main
from attnprompt.errors import InputError
from attnprompt.evaluation import metrics
from attnprompt.evaluation.evaluate import conditions_for, evaluate, map_conditions
from attnprompt.evaluation.tasks import TASKS, generic_task, get_task
from attnprompt.evaluation.tasks.shapes_pope import SUBSETS
from attnprompt.types import Answer

# -- metrics ----------------------------------------------------------------------------------------------


def test_vqa_accuracy_is_the_leave_one_out_mean_of_min_one_matches_over_three():
    # 2 of 10 annotators said "two": leaving out one of them, 1 other matches (1/3); leaving out any of
    # the other 8, 2 match (2/3): (2·1/3 + 8·2/3) / 10 = 0.6
    assert metrics.vqa_accuracy("Two.", ["two", "2"] + ["three"] * 8) == pytest.approx(0.6)
    assert metrics.vqa_accuracy("3", ["three"] * 3 + ["four"] * 7) == pytest.approx(0.9)  # (3·2/3 + 7·1) / 10
    assert metrics.vqa_accuracy("unanswerable", ["unanswerable"] * 4 + ["no"] * 6) == 1.0


@pytest.mark.parametrize("text, expected", [
    ("The Red Car.", "red car"), ("a dog's toy", "dog 's toy"), ("dont know", "don't know"), ("1,000", "1000"),
    ("3.14", "3.14"), ("yes!", "yes"), ("left-hand side", "left hand side"), ("hello - world", "hello world"),
    ("ten\tapples", "10 apples"), ("None", "0"),
])
def test_vqa_normalisation(text, expected):
    assert metrics.normalize_vqa(text) == expected


def test_pope_metrics_on_a_hand_counted_confusion_matrix():
    # tp 3, fp 1, fn 2, tn 4
    pred = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    gold = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0])
    m = metrics.pope_metrics({"pred_yes": pred, "gold_yes": gold})
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["precision"] == pytest.approx(0.75) and m["recall"] == pytest.approx(0.6)
    assert m["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35) and m["yes_ratio"] == pytest.approx(0.4)  # predicted yes
    assert np.isnan(metrics.pope_metrics({"pred_yes": np.zeros(3), "gold_yes": np.zeros(3)})["precision"])


def test_pope_reading_of_replies_and_exact_match():
    assert [metrics.parse_yes_no(t) for t in ("Yes.", "no", "Not at all. Yes", "There is a cat, no doubt", "")] == \
        ["yes", "no", "yes", "no", "yes"]  # LLaVA's rule: "Not" is not one of its words
    assert metrics.exact_match("An apple!", ["apple"]) == 1.0 and metrics.exact_match("apples", ["apple"]) == 0.0
    assert metrics.first_word_match("Yes, it is.", ["yes"]) == 1.0


def test_paired_bootstrap_distribution_of_two_samples_is_binomial():
    # treatment − baseline per sample: (0, 1). A resample of 2 draws each with p = 1/2, so the resampled
    # mean difference is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4; the 95 % interval is [0, 1].
    treated, base = {"c": np.array([1.0, 1.0])}, {"c": np.array([1.0, 0.0])}
    est, low, high = b = metrics.paired_bootstrap(treated, base, metrics.mean_of("c"), resamples=20000, seed=1)
    assert (est, low, high) == (0.5, 0.0, 1.0)
    freq = [np.mean(b.replicates == v) for v in (0.0, 0.5, 1.0)]
    np.testing.assert_allclose(freq, [0.25, 0.5, 0.25], atol=0.015)


def test_paired_bootstrap_cancels_what_both_share():
    # hard and easy samples, and a treatment that fixes exactly 10 of 100: the paired interval is the
    # spread of the fixes alone; unpaired it would also carry the spread of the samples' difficulty
    rng = np.random.default_rng(0)
    base = (rng.random(100) < 0.5).astype(float)
    treated = base.copy()
    treated[np.flatnonzero(base == 0)[:10]] = 1.0
    d = metrics.paired_bootstrap({"c": treated}, {"c": base}, metrics.mean_of("c"))
    assert d[0] == pytest.approx(0.10) and 0.03 <= d[1] < 0.1 < d[2] <= 0.17
    unpaired = (metrics.bootstrap({"c": treated}, metrics.mean_of("c"), seed=1).replicates
                - metrics.bootstrap({"c": base}, metrics.mean_of("c"), seed=2).replicates)
    assert d[2] - d[1] < 0.5 * np.subtract(*np.quantile(unpaired, [0.975, 0.025]))
    constant = metrics.paired_bootstrap({"c": base + 1}, {"c": base}, metrics.mean_of("c"))
    assert constant[:] == pytest.approx((1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="same samples"):
        metrics.paired_bootstrap({"c": base}, {"c": base[:5]}, metrics.mean_of("c"))


def test_bootstrap_of_a_non_mean_aggregate():
    cols = {"pred_yes": np.array([1, 0] * 20), "gold_yes": np.array([1, 0] * 20)}
    est, low, high = metrics.bootstrap(cols, lambda c: metrics.pope_metrics(c)["f1"], resamples=200)
    assert (est, low, high) == (1.0, 1.0, 1.0)


# -- tasks --------------------------------------------------------------------------------------------------


def test_registry_is_lazy_and_loud():
    # membership, not the whole list: a new task is one file and one registry line
    assert {"shapes-vqa", "shapes-pope", "shapes-pointing", "mme", "pope", "textvqa", "vizwiz", "mmmu", "mmvet",
            "llava-bench"} <= set(TASKS.names())
    assert TASKS.names()[0] == "shapes-vqa"
    with pytest.raises(InputError, match="unknown task 'popes'; valid tasks: shapes-vqa"):
        get_task("popes")


def test_shapes_vqa_samples_are_a_stable_prefix_with_every_kind():
    short, long = get_task("shapes-vqa").samples(6), get_task("shapes-vqa").samples(40)
    assert [s.id for s in short] == [s.id for s in long[:6]]
    assert {s.category for s in long} == {"color", "shape", "count", "exists", "left_of"}
    assert all(s.suffix == "" and len(s.references) == 1 for s in long)


def test_shapes_pope_follows_popes_construction():
    from attnprompt.evaluation.tasks.shapes_pope import statistics

    samples = get_task("shapes-pope").samples(3 * 18)  # three scenes
    frequency, _ = statistics()
    for seed in {s.meta["seed"] for s in samples}:
        per = {sub: [s for s in samples if s.meta["seed"] == seed and s.category == sub] for sub in SUBSETS}
        yes = {sub: {s.meta["object"] for s in items if s.references == ("yes",)} for sub, items in per.items()}
        assert all(len(items) == 6 for items in per.values())
        assert yes["random"] == yes["popular"] == yes["adversarial"] and len(yes["random"]) == 3  # shared positives
        scene = samples[[s.meta["seed"] for s in samples].index(seed)].images[0]
        assert scene.size == (224, 224)
        no_adv = [s.meta["object"].split() for s in per["adversarial"] if s.references == ("no",)]
        present = [o.split() for o in yes["random"]]
        # adversarial negatives share a colour or a shape with what is there
        assert all(any(c == pc or sh == ps for pc, ps in present) for c, sh in no_adv)
        no_pop = [tuple(s.meta["object"].split()) for s in per["popular"] if s.references == ("no",)]
        assert min(frequency[p] for p in no_pop) >= np.median(list(frequency.values()))


def test_generic_task_over_jsonl_with_a_column_mapping(tmp_path):
    for i, colour in enumerate(("red", "blue")):
        Image.new("RGB", (20, 10), colour).save(tmp_path / f"{i}.png")
    rows = [{"qid": "a", "img": "0.png", "q": "What colour?", "answers": ["red"] * 10, "type": "colour"},
            {"qid": "b", "img": "1.png", "q": "What colour?", "answers": ["blue"] * 3 + ["navy"] * 7, "type": "colour"}]
    (tmp_path / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    mapping = "image=img,question=q,answer=answers,id=qid,category=type"
    task = generic_task(str(tmp_path / "data.jsonl"), columns=mapping, metric="vqa", suffix="Answer in one word.")
    s = task.samples()
    assert [x.id for x in s] == ["a", "b"] and s[0].images[0].getpixel((0, 0)) == (255, 0, 0)
    assert s[1].suffix == "Answer in one word." and s[1].categories == ("colour",)
    assert task.evaluate_predictions({"a": "Red", "b": "blue"}) == {"accuracy": pytest.approx((1.0 + 0.9) / 2)}
    assert get_task(task.spec).name == "vqa:data"  # the report can build it again
    with pytest.raises(InputError, match="no 'answer' column for the answer; its columns: qid, img, q, answers, type;"):
        generic_task(str(tmp_path / "data.jsonl"), metric="exact").samples()
    with pytest.raises(InputError, match="unknown metric 'bleu'"):
        generic_task(str(tmp_path / "data.jsonl"), metric="bleu")


def test_generic_task_over_a_hugging_face_dataset_saved_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets", reason="the datasets package is not installed")
    features = datasets.Features({"question_id": datasets.Value("string"), "image": datasets.Image(),
                                  "question": datasets.Value("string"), "answer": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({"question_id": ["q0", "q1"], "image": [Image.new("RGB", (8, 8), "white")] * 2,
                                     "question": ["Is it white?", "Is it black?"], "answer": ["Yes", "No"]},
                                    features=features)
    ds.save_to_disk(str(tmp_path / "mme"))
    task = generic_task(str(tmp_path / "mme"), columns={"id": "question_id"}, metric="yesno")
    samples = task.samples()
    assert [s.id for s in samples] == ["q0", "q1"] and samples[0].images[0].size == (8, 8)
    assert task.evaluate_predictions({"q0": "Yes, it is.", "q1": "Yes"})["accuracy"] == 0.5
    with pytest.raises(InputError, match="cannot load the dataset 'no/such-dataset'"):
        generic_task("no/such-dataset", split="test").samples()


USER_TASK = '''
"""A user's task: colour names of flat images."""
from PIL import Image
from attnprompt.evaluation.metrics import exact_match, mean_of
from attnprompt.evaluation.tasks.base import EvalSample, Task

COLOURS = ["red", "green", "blue", "white"]

def rows(limit):
    return [{"n": i, "colour": c} for i, c in enumerate(COLOURS)][:limit]

def to_sample(row):
    return EvalSample(f"c{row['n']}", Image.new("RGB", (16, 16), row["colour"]), "What colour is the image?",
                      (row["colour"],), category="warm" if row["colour"] == "red" else "cool")

MY_TASK = Task("flat-colours", "four flat images", rows, to_sample,
               lambda pred, s: {"correct": exact_match(pred, s.references)},
               lambda cols: {"accuracy": mean_of("correct")(cols)}, headline="accuracy", max_new_tokens=4)
'''


class Oracle(Backend):
    """Answers the colour of a flat image, except for prompts it is told to get wrong or to fail on."""

    name = "oracle"

    def __init__(self, wrong_on: str = "", fail_for: tuple[str, ...] = ()):
        self.wrong_on, self.fail_for, self.calls = wrong_on, set(fail_for), []

    def answer(self, requests):
        self.calls.append(len(requests))
        out = []
        for r in requests:
            rgb = r.images[0].convert("RGB").getpixel((0, 0))
            colour = {(255, 0, 0): "red", (0, 128, 0): "green", (0, 0, 255): "blue", (255, 255, 255): "white"}[rgb]
            if colour in self.fail_for:
                out.append(Answer("", ok=False, error=f"server said no to {colour}"))
            elif self.wrong_on and self.wrong_on in r.prompt and colour in ("green", "blue"):
                out.append(Answer("purple"))
            else:
                out.append(Answer(colour.capitalize() + "."))
        return out


def test_a_task_from_a_users_file_runs_and_reports(tmp_path):
    (tmp_path / "my_task.py").write_text(USER_TASK)
    out = tmp_path / "run"
    run = evaluate(str(tmp_path / "my_task.py"), vlm=Oracle(wrong_on="step by step"),
                   strategies="plain,step-by-step", out=out, progress=False)
    assert run.stats["flat-colours"]["plain"].answered == 4
    report = json.loads((out / "report.json").read_text())
    [task] = report["tasks"]
    by = {c["label"]: c for c in task["conditions"]}
    assert by["plain"]["value"] == 1.0 and by["step-by-step"]["value"] == 0.5
    assert by["step-by-step"]["delta"]["value"] == -0.5 and by["step-by-step"]["delta"]["n"] == 4
    assert by["step-by-step"]["categories"]["cool"]["value"] == pytest.approx(1 / 3)  # green, blue wrong; white right
    lines = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and {x["strategy"] for x in lines} == {"plain", "step-by-step"}
    assert lines[4]["prompts"] == ["What colour is the image? Let's think step by step."]
    html = (out / "report.html").read_text()
    # the gallery shows the two samples where the strategies disagree, with what each was shown
    assert html.count('class="item"') == 2 and "c1</b>" in html and "c2</b>" in html and "purple" in html
    # the report is rebuilt from the store alone (the task found again from its file), identically
    before = {p: (out / p).read_bytes() for p in ("report.md", "report.json", "report.html", "samples.jsonl")}
    assert main(["report", str(out)]) == 0
    assert {p: (out / p).read_bytes() for p in before} == before


def test_failures_are_recorded_not_scored_and_retry_failed_completes_them(tmp_path):
    (tmp_path / "my_task.py").write_text(USER_TASK)
    task, out = str(tmp_path / "my_task.py"), tmp_path / "run"
    run = evaluate(task, vlm=Oracle(fail_for=("blue",)), strategies="plain", out=out, progress=False)
    assert (run.stats["flat-colours"]["plain"].answered, run.failed) == (3, 1)
    c = json.loads((out / "report.json").read_text())["tasks"][0]["conditions"][0]
    assert (c["value"], c["n"], c["failures"]) == (1.0, 3, 1)  # the failure is not a wrong answer
    assert c["errors"] == ["server said no to blue"]
    assert "server said no to blue" in (out / "report.md").read_text()
    again = evaluate(task, vlm=Oracle(), strategies="plain", out=out, progress=False)  # no --retry-failed: kept
    assert (again.stats["flat-colours"]["plain"].reused, again.failed) == (4, 0)
    retried = evaluate(task, vlm=Oracle(), strategies="plain", out=out, progress=False, retry_failed=True)
    assert (retried.stats["flat-colours"]["plain"].answered, retried.stats["flat-colours"]["plain"].reused) == (1, 3)
    c = json.loads((out / "report.json").read_text())["tasks"][0]["conditions"][0]
    assert (c["n"], c["failures"]) == (4, 0)
    with sqlite3.connect(out / "records.sqlite") as db:
        assert db.execute("select count(*) from records").fetchone()[0] == 4  # replaced, not added


def test_a_condition_whose_first_batch_all_raises_stops_the_run(tmp_path):
    class Broken(Backend):
        name = "broken"

        def answer(self, requests):
            raise RuntimeError("CUDA out of memory")

    (tmp_path / "my_task.py").write_text(USER_TASK)
    with pytest.raises(InputError, match="every sample of the first batch failed — RuntimeError: CUDA out of memory"):
        evaluate(str(tmp_path / "my_task.py"), vlm=Broken(), strategies="plain", out=tmp_path / "run", progress=False)


def test_a_setting_change_reruns_only_what_it_affects(tmp_path):
    out = tmp_path / "run"
    first = evaluate("shapes-vqa", vlm="shapes", strategies="plain,api", limit=6, out=out, progress=False)
    assert [s.answered for s in first.stats["shapes-vqa"].values()] == [6, 6]
    changed = evaluate("shapes-vqa", vlm="shapes", strategies="plain,api", limit=6, out=out, progress=False, kernel=1)
    stats = changed.stats["shapes-vqa"]
    assert (stats["plain"].reused, stats["plain"].answered) == (6, 0)
    assert (stats["api (api-clip)"].reused, stats["api (api-clip)"].answered) == (0, 6)
    more = evaluate("shapes-vqa", vlm="shapes", strategies="plain", limit=9, out=out, progress=False)
    assert (more.stats["shapes-vqa"]["plain"].reused, more.stats["shapes-vqa"]["plain"].answered) == (6, 3)
    with sqlite3.connect(out / "records.sqlite") as db:
        assert db.execute("select count(*) from records").fetchone()[0] == 6 + 6 + 6 + 3
        assert db.execute("select count(distinct config_hash) from records").fetchone()[0] == 3


def test_two_strategies_sharing_a_map_compute_it_once(tmp_path):
    run = evaluate("shapes-vqa", vlm="shapes", strategies="api,api-reemphasize", forms="overlay,crop", limit=8,
                   out=tmp_path / "run", progress=False, report=False)
    assert len(run.stats["shapes-vqa"]) == 4
    [cache] = run.cache.values()
    assert cache["misses"] == 8 and cache["hits"] == 3 * 8  # one map per sample, reused by the other three


def test_conditions_cross_strategies_methods_presets_and_forms():
    labels = [c.label for c in conditions_for(["plain", "api", "carve"], presets=["paper"], forms=["crop"])]
    # a preset goes only with the methods that have it (carve has no "paper"; it keeps its default)
    assert labels == ["plain", "api (api-clip, paper, crop)", "carve (crop)"]
    assert [c.label for c in conditions_for(["plain", "api", "carve"], presets=["vicrop"])] == [
        "plain", "api (api-clip)", "carve (vicrop)"]
    with pytest.raises(InputError, match="no chosen method has the preset"):
        conditions_for(["api"], presets=["vicrop"])
    assert [c.label for c in map_conditions(["api-clip", "api-vlm"], ["grounding"])] == ["api-clip (grounding)"]
    with pytest.raises(InputError, match="no chosen method has a preset 'vicrop'"):
        map_conditions(["api-clip"], ["vicrop"])


def test_map_task_scores_maps_per_preset(tmp_path):
    run = evaluate("shapes-pointing", model="shapes", presets="grounding", limit=12, out=tmp_path / "run",
                   progress=False)
    [stat] = run.stats["shapes-pointing"].values()
    assert stat.label == "api-clip (grounding)" and stat.answered == 12
    [c] = json.loads((tmp_path / "run" / "report.json").read_text())["tasks"][0]["conditions"]
    assert set(c["metrics"]) == {"pointing", "two_queries", "mass", "crop_holds", "crop_share", "centre"}
    assert 0.5 <= c["metrics"]["pointing"] <= 1.0 and c["metrics"]["centre"] < 0.3  # it points, unlike the centre


def test_eval_through_an_openai_compatible_server(tmp_path):
    import threading

    from attnprompt.backends.local import LocalVLM
    from attnprompt.serve import make_server

    server = make_server(LocalVLM.from_pretrained("shapes"), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        http = evaluate("shapes-vqa", vlm=url, model="shapes", strategies="plain,api", limit=6, concurrency=3,
                        out=tmp_path / "http", progress=False)
        evaluate("shapes-vqa", vlm="shapes", strategies="plain,api", limit=6, out=tmp_path / "local",
                         progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert http.failed == 0
    answers = [[json.loads(x)["prediction"] for x in (tmp_path / d / "samples.jsonl").read_text().splitlines()]
               for d in ("http", "local")]
    assert answers[0] == answers[1]  # the server answers as the model does locally (PNG images: lossless)


def test_cli_eval_and_its_errors(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["eval", "--task", "shapes-vqa", "--vlm", "shapes", "--strategy", "plain", "--limit", "3", "--out",
                 str(out), "--quiet"]) == 0
    assert "shapes-vqa · plain: 3 answered" in capsys.readouterr().out
    assert (out / "report.html").exists()
    assert main(["eval", "--task", "vqa", "--vlm", "shapes", "--out", str(out)]) == 2
    assert "--task vqa is a generic task over your data; give --data" in capsys.readouterr().err
    assert main(["eval", "--task", "shapes-vqa", "--strategy", "plain,reflect", "--vlm", "shapes", "--out",
                 str(out)]) == 2
    assert "unknown strategy 'reflect'" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "holds no evaluation" in capsys.readouterr().err


# -- kill -9 and resume -------------------------------------------------------------------------------------

KILLABLE = '''
import sys, time
from attnprompt.backends.local import LocalVLM
from attnprompt.evaluation.evaluate import evaluate

class Slow(LocalVLM):
    """The shapes VLM, slowed down so that a kill lands mid-run."""
    def answer(self, requests):
        time.sleep(float(sys.argv[2]))
        return super().answer(requests)

evaluate("shapes-vqa", vlm=Slow.from_pretrained("shapes"), strategies="plain,api", limit=24, chunk_size=4,
         batch_size=4, out=sys.argv[1], progress=False)
'''


def _records(directory: Path) -> list[tuple]:
    with sqlite3.connect(directory / "records.sqlite") as db:
        return db.execute("select task, sample_id, config_hash, condition, ok, prediction, scores from records "
                          "order by task, sample_id, config_hash").fetchall()


def test_kill_9_mid_run_then_rerun_gives_identical_records_and_report(tmp_path):
    script = tmp_path / "killable.py"
    script.write_text(KILLABLE)
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, str(script), str(killed), "0.4"], env=env)
    deadline = time.monotonic() + 120
    count = 0
    while time.monotonic() < deadline and proc.poll() is None:
        if (killed / "records.sqlite").exists():
            try:
                count = len(_records(killed))
            except sqlite3.OperationalError:
                count = 0  # the schema is being created
            if count >= 12:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = _records(killed)
    assert 12 <= len(partial) < 48 and len(partial) % 4 == 0  # whole chunks only
    assert not (killed / "report.md").exists()
    subprocess.run([sys.executable, str(script), str(killed), "0"], env=env, check=True)
    subprocess.run([sys.executable, str(script), str(whole), "0"], env=env, check=True)
    resumed = _records(killed)
    assert len(resumed) == len({r[:3] for r in resumed}) == 48  # every record once: 24 samples × 2 strategies
    assert resumed == _records(whole)
    assert set(partial) <= set(resumed)  # what was done before the kill was kept, not redone differently
    for name in ("report.md", "report.json", "samples.jsonl", "report.html"):
        assert (killed / name).read_bytes() == (whole / name).read_bytes(), name


def test_executor_settings_are_checked_before_any_work(tmp_path):
    from attnprompt.errors import InputError

    with pytest.raises(InputError, match="executor is 'threads'; valid: local, ray"):
        evaluate("shapes-vqa", vlm="shapes", strategies="plain", limit=1, out=tmp_path, executor="threads")
    with pytest.raises(InputError, match="for the Ray executor"):
        evaluate("shapes-vqa", vlm="shapes", strategies="plain", limit=1, out=tmp_path, workers=2)
    assert not (tmp_path / "records.sqlite").exists()


def test_a_ray_address_nothing_answers_on_is_an_error_at_once():
    from attnprompt.errors import InputError
    from attnprompt.evaluation.ray_executor import _check_reachable

    start = time.perf_counter()
    with pytest.raises(InputError, match="nothing answers on 127.0.0.1:1"):
        _check_reachable("127.0.0.1:1")
    with pytest.raises(InputError, match="give auto, HOST:PORT"):
        _check_reachable("nowhere")
    assert time.perf_counter() - start < 30  # ray.init would wait without end
    _check_reachable("auto")  # left to Ray, which says clearly when no cluster runs
