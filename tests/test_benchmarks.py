"""The paper's benchmarks on fixtures in their exact layouts (built in code, saved to disk): rows →
samples, the original scorers' rules on hand-computed cases, the GPT judge against a local server
that answers well, answers junk, fails once and always fails, and eval end to end, offline."""

from __future__ import annotations

import json
import threading

import pytest

import bench_data
from attnprompt.backends.base import Backend
from attnprompt.cli import main
from attnprompt.errors import InputError
from attnprompt.evaluation import metrics
from attnprompt.evaluation.evaluate import evaluate
from attnprompt.evaluation.judge import Judge
from attnprompt.evaluation.judge_prompts import MMVET_RETRY
from attnprompt.evaluation.tasks import get_task
from attnprompt.evaluation.tasks.mme import parse as mme_parse
from attnprompt.evaluation.tasks.mmmu import open_correct, parse_open
from attnprompt.serve import make_server
from attnprompt.types import Answer

datasets = pytest.importorskip("datasets", reason="the benchmark tasks read data with the datasets package")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("benchmarks")
    return {"mme": bench_data.mme(root / "mme"), "pope": bench_data.pope(root / "pope"),
            "textvqa": bench_data.textvqa(root / "textvqa"), "vizwiz": bench_data.vizwiz(root / "vizwiz"),
            "mmmu": bench_data.mmmu(root / "mmmu"), "mmvet": bench_data.mmvet_original(root / "mmvet"),
            "llava-bench": bench_data.llava_bench_original(root / "llava-bench")}


def task(name, data):
    return get_task(name, data=str(data[name]))


# -- MME ----------------------------------------------------------------------------------------------------


def test_mme_rows_to_samples_split_off_the_papers_suffix(data):
    samples = task("mme", data).samples()
    assert len(samples) == 6 and len({s.id for s in samples}) == 6
    s = samples[0]
    assert (s.question, s.suffix, s.references, s.category) == (
        "Is there a dog in this image?", "Please answer yes or no.", ("Yes",), "existence")
    assert s.sample().question == "Is there a dog in this image?" and s.images[0].size == (64, 48)


def test_mme_parsing_and_scores_by_hand(data):
    assert [mme_parse(r) for r in ("Yes.", "NO", "y", "n", "Yes, it is", "Nope", "The answer is yes", "none")] == \
        ["yes", "no", "yes", "no", "yes", "no", "other", "no"]
    t = task("mme", data)
    ids = [s.id for s in t.samples()]
    replies = ["Yes.", "No", "yes", "Yes, a tree", "The answer is no", "yes"]
    m = t.evaluate_predictions(dict(zip(ids, replies)))
    # existence: image 000 both right (100 + 100), image 001 one of two (50 + 0): (200 + 50) / 2 = 125;
    # code_reasoning: one of two ("the answer is no" is "other", wrong): 50 + 0 = 50
    assert m["existence"] == 125.0 and m["code_reasoning"] == 50.0
    assert (m["perception"], m["cognition"], m["total"]) == (125.0, 50.0, 175.0)
    assert m["accuracy"] == pytest.approx(400 / 6)


# -- POPE ---------------------------------------------------------------------------------------------------


def test_pope_samples_and_llavas_scoring(data):
    t = task("pope", data)
    samples = t.samples()
    assert [s.category for s in samples] == ["adversarial"] * 2 + ["popular"] * 2 + ["random"] * 2
    assert samples[0].sample().question == "Is there a dog in the image?"
    assert (samples[0].suffix, samples[0].id) == ("\nAnswer the question using a single word or phrase.",
                                                  "adversarial/1")
    replies = ["Yes.", "No, there is not.", "NO", "Not really.", "I think so", "There is no bus."]
    m = t.evaluate_predictions({s.id: r for s, r in zip(samples, replies)})
    # read as yes, no, yes ("NO" is not LLaVA's "No"), yes ("Not"), yes, no against yes/no alternating:
    # tp 3, fp 1, tn 2, fn 0
    assert m["accuracy"] == pytest.approx(5 / 6) and m["precision"] == 0.75 and m["recall"] == 1.0
    assert m["f1"] == pytest.approx(1.5 / 1.75) and m["yes_ratio"] == pytest.approx(4 / 6)


# -- TextVQA, VizWiz ------------------------------------------------------------------------------------------


def test_textvqa_vqa_accuracy_on_the_fixture(data):
    t = task("textvqa", data)
    a, b = t.samples()
    assert (a.id, a.question, a.suffix) == ("34602", "what is the brand?",
                                            "\nAnswer the question using a single word or phrase.")
    # "Nokia." normalises to "nokia": 9 of 10 annotators agree → 1.0; "toshiba" (1 of 10) → 0.3;
    # "Two" → "2", given by 2 of 10 → (2·1/3 + 8·2/3)/10 = 0.6; "Two bottles" matches none
    assert metrics.vqa_accuracy("Nokia", a.references) == 1.0
    assert metrics.vqa_accuracy("toshiba", a.references) == pytest.approx(0.3)
    assert metrics.vqa_accuracy("Two", b.references) == pytest.approx(0.6)
    assert t.evaluate_predictions({"34602": "The Nokia", "34603": "Two bottles"}) == {"accuracy": 0.5}


def test_vizwiz_unanswerable_is_an_ordinary_answer(data):
    t = task("vizwiz", data)
    s = t.samples()
    assert s[0].category == "unanswerable" and s[0].suffix.startswith("\nWhen the provided information")
    assert t.evaluate_predictions({s[0].id: "Unanswerable.", s[1].id: "Blue"}) == {"accuracy": 1.0}


# -- MMMU ---------------------------------------------------------------------------------------------------


def test_mmmu_prompts_images_and_parsing(data):
    t = task("mmmu", data)
    art, math, physics = t.samples()
    assert len(art.images) == 2 and len(math.images) == 1  # the images the text names
    assert art.sample().suffix == "\n\nAnswer with the option's letter from the given choices directly."
    from attnprompt.strategies.base import Strategy

    assert Strategy.prompt(art.sample()) == ("Which painting is older? <image 1> <image 2>\n(A) The left one\n"
                                             "(B) The right one\n\nAnswer with the option's letter from the given "
                                             "choices directly.")
    assert Strategy.prompt(physics.sample()) == ("<image 1> What is the speed in m/s?\nAnswer the question using a "
                                                 "single word or phrase.")
    assert art.categories == ("Art_Theory", "Art and Design") and physics.categories == ("Physics", "Science")
    # "(A)" wins; a bare " C " counts; an open number matches after rounding to 2 decimals
    assert t.score("(A) The left one", art) == {"correct": 1.0}
    assert t.score("The slope is 3, so the answer is C.", math) == {"correct": 1.0}
    assert t.score("The speed is 12.50 m/s.", physics) == {"correct": 1.0}
    assert t.score("About 13 m/s", physics) == {"correct": 0.0}
    # unparseable: a random letter, the same one every time for this sample (seeded by its id)
    first = [t.score("I cannot tell from the picture", math) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    assert open_correct("Paris", parse_open("I think the answer is paris.")) is True


# -- data locations ---------------------------------------------------------------------------------------


def test_offline_without_data_is_one_line_saying_what_to_pass():
    with pytest.raises(InputError) as e:
        get_task("mme").samples(2)
    message = str(e.value)
    assert "\n" not in message and message.startswith("mme: cannot load 'lmms-lab/MME' split 'test' from the hub")
    assert message.endswith("give --data mme=PATH: a save_to_disk folder, parquet files")
    with pytest.raises(InputError, match="generated in code; it reads no data"):
        get_task("shapes-vqa", data="x")


def test_parquet_files_load_like_the_saved_dataset(data, tmp_path):
    ds = datasets.load_from_disk(str(data["pope"]))
    (tmp_path / "data").mkdir()
    ds.to_parquet(str(tmp_path / "data" / "test-00000-of-00001.parquet"))
    from_parquet = get_task("pope", data=str(tmp_path)).samples()
    assert [s.id for s in from_parquet] == [s.id for s in task("pope", data).samples()]


# -- the judge ------------------------------------------------------------------------------------------------


class JudgeServerBackend(Backend):
    """A judge: reads the prediction out of the grading prompt and answers by what it says."""

    name = "judge"

    def __init__(self):
        self.calls: list[str] = []
        self.failed_once: set[str] = set()
        self._lock = threading.Lock()

    def answer(self, requests):
        out = []
        for r in requests:
            prompt = r.prompt
            with self._lock:
                self.calls.append(prompt)
            row = prompt.rstrip().split("\n")[-2 if MMVET_RETRY.strip() in prompt else -1]
            if "[System]" in prompt:  # LLaVA-Bench
                out.append(Answer("8 9\nAssistant 2 is better.") if "GOOD" in prompt else Answer("eight, nine"))
            elif "DOWN" in row:
                out.append(Answer("", ok=False, error="judge overloaded"))
            elif "FLAKY" in row and row not in self.failed_once:
                self.failed_once.add(row)
                out.append(Answer("", ok=False, error="once"))
            elif "JUNK" in row:
                out.append(Answer("Great answer!"))
            elif "LATE" in row:
                out.append(Answer("0.5" if MMVET_RETRY.strip() in prompt else "Hmm"))
            else:
                out.append(Answer("1.0" if "GOOD" in row else "0.0"))
        return out


class Answers(Backend):
    """The answering VLM: a fixed reply per question."""

    name = "answers"

    def __init__(self, replies):
        self.replies = replies

    def answer(self, requests):
        return [Answer(next(v for k, v in self.replies.items() if k in r.prompt)) for r in requests]


@pytest.fixture
def judge_server():
    backend = JudgeServerBackend()
    server = make_server(backend, "127.0.0.1", 0, max_parallel=None)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", backend
    server.shutdown()
    server.server_close()


def test_mmvet_judge_prompt_is_the_originals(data):
    from attnprompt.evaluation.judge_prompts import MMVET_PROMPT
    from attnprompt.evaluation.tasks.mmvet import judge_prompt

    sample = task("mmvet", data).samples()[0].describe()
    assert sample["categories"] == ["ocr", "math"]
    query = judge_prompt("x = 3", sample, 0)
    assert query == MMVET_PROMPT + "\nWhat is x in the equation? | -1 <AND> -5 | x = 3 | "
    assert judge_prompt("x = 3", sample, 1) == query + "\nPredict the correctness of the answer (digit): "
    assert MMVET_PROMPT.endswith("| 1.0\n") and MMVET_PROMPT.count("\n") == 11


def test_the_judge_scores_retries_and_fails_as_the_original(judge_server, data, tmp_path):
    url, server = judge_server
    replies = {"equation": "GOOD x = -1 or x = -5", "brand": "JUNK", "Describe": "LATE a cat"}
    judge = Judge(url, retry_wait=0)
    run = evaluate("mmvet", data={"mmvet": str(data["mmvet"])}, vlm=Answers(replies), strategies="plain",
                   out=tmp_path / "run", judge=judge, progress=False)
    stat = run.stats["mmvet"]["plain"]
    assert (stat.judged, stat.judge_failed, stat.judge_unreadable) == (3, 0, 1)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    [c] = report["tasks"][0]["conditions"]
    # 1.0 (good), 0.0 (junk five times: the original's fallback), 0.5 (read on the first retry)
    assert c["metrics"]["score"] == pytest.approx(50.0) and c["judge_failures"] == 1 and c["n"] == 3
    assert c["categories"]["ocr"]["value"] == pytest.approx(50.0)  # the equation (1.0) and the brand (0.0)
    assert report["tasks"][0]["judge"]["model"] == "gpt-4-0613"
    junk = [p for p in server.calls if "JUNK" in p]
    assert len(junk) == 5 and sum(MMVET_RETRY in p for p in junk) == 4
    assert "1 unreadable verdicts (scored as the original does)" in (tmp_path / "run" / "report.md").read_text()
    calls = len(server.calls)
    # answers and verdicts are stored: a rerun and a second report ask nobody
    evaluate("mmvet", data={"mmvet": str(data["mmvet"])}, vlm=Answers(replies), strategies="plain",
             out=tmp_path / "run", judge=judge, progress=False)
    assert main(["report", str(tmp_path / "run")]) == 0 and len(server.calls) == calls
    # another judge model: judged again, the answers reused
    again = evaluate("mmvet", data={"mmvet": str(data["mmvet"])}, vlm=Answers(replies), strategies="plain",
                     out=tmp_path / "run", judge=Judge(url, "gpt-4o", retry_wait=0), progress=False)
    assert again.stats["mmvet"]["plain"].reused == 3 and again.stats["mmvet"]["plain"].judged == 3


def test_a_judge_that_fails_once_or_always(judge_server, data, tmp_path):
    url, _ = judge_server
    replies = {"equation": "FLAKY GOOD x = -1, -5", "brand": "DOWN", "Describe": "GOOD a cat"}
    run = evaluate("mmvet", data={"mmvet": str(data["mmvet"])}, vlm=Answers(replies), strategies="plain",
                   out=tmp_path / "run", judge=Judge(url, retry_wait=0), progress=False)
    [c] = json.loads((tmp_path / "run" / "report.json").read_text())["tasks"][0]["conditions"]
    # the flaky call succeeded on its retry (1.0); the judge that answered 500 three times gave no verdict:
    # that answer is unscored (not the original's 0.0 for an unreadable reply), counted and listed
    assert c["metrics"]["score"] == pytest.approx(100.0) and c["n"] == 2
    assert (c["judge_errors"], c["judge_failures"], c["unjudged"]) == (1, 0, 0)
    assert run.stats["mmvet"]["plain"].judge_failed == 1
    text = (tmp_path / "run" / "report.md").read_text()
    assert "1 judge failures (no reply; unscored, the next run asks again)" in text
    assert "- plain judge failed (unscored): no reply from the judge:" in text
    assert "judge failed (unscored): no reply from the judge" in (tmp_path / "run" / "report.html").read_text()
    # a rerun, without --retry-failed, asks the judge again for the answer it has no verdict on, only
    rerun = evaluate("mmvet", data={"mmvet": str(data["mmvet"])}, vlm=Answers(replies), strategies="plain",
                     out=tmp_path / "run", judge=Judge(url, retry_wait=0), progress=False)
    assert (rerun.stats["mmvet"]["plain"].judged, rerun.stats["mmvet"]["plain"].judge_failed) == (1, 1)


def test_without_a_judge_answers_are_kept_and_await_one(data, tmp_path):
    replies = {"equation": "x = -1", "brand": "Nokia", "Describe": "a cat"}
    evaluate("mmvet", data={"mmvet": str(data["mmvet"])}, vlm=Answers(replies), strategies="plain",
             out=tmp_path / "run", progress=False)
    [c] = json.loads((tmp_path / "run" / "report.json").read_text())["tasks"][0]["conditions"]
    assert (c["n"], c["unjudged"], c["failures"]) == (0, 3, 0)
    assert "3 await a judge" in (tmp_path / "run" / "report.md").read_text()


def test_llava_bench_relative_score_and_its_unreadable_verdicts(judge_server, data, tmp_path):
    url, server = judge_server
    replies = {"What is in": "GOOD a dog", "Describe": "GOOD a dog on a red couch", "funny": "no idea"}
    evaluate("llava-bench", data={"llava-bench": str(data["llava-bench"])}, vlm=Answers(replies),
             strategies="plain", out=tmp_path / "run", judge=Judge(url, retry_wait=0), progress=False)
    [c] = json.loads((tmp_path / "run" / "report.json").read_text())["tasks"][0]["conditions"]
    # scores (8, 9), (8, 9) and the unreadable "eight, nine" → (−1, −1), kept in the means as the original:
    # reference mean 5.0, answer mean 5.667 → 113.3…
    assert c["metrics"]["relative"] == pytest.approx(5.667 / 5.0 * 100)
    assert c["judge_failures"] == 1 and c["categories"]["conv"]["value"] == pytest.approx(112.5)
    prompt = next(p for p in server.calls if "What is in the image?" in p)
    assert prompt.startswith("[Context]\nA dog on a couch.\nThe couch is red.\n\n[Question]\nWhat is in the image?"
                             "\n\n[Assistant 1]\nReference answer 0.\n\n[End of Assistant 1]\n\n[Assistant 2]\n"
                             "GOOD a dog\n\n[End of Assistant 2]\n\n[System]\nWe would like to request")
    assert prompt.endswith("does not affect your judgment.\n\n")


# -- end to end -----------------------------------------------------------------------------------------------


def test_eval_mme_and_pope_offline_end_to_end(data, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["eval", "--task", "mme,pope", "--data", f"mme={data['mme']},pope={data['pope']}", "--vlm", "shapes",
                 "--strategy", "plain,api", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert [t["name"] for t in report["tasks"]] == ["mme", "pope"]
    for t in report["tasks"]:
        assert [c["label"] for c in t["conditions"]] == ["plain", "api (api-clip)"]
        assert all(c["n"] == 6 and c["failures"] == 0 for c in t["conditions"])
    mme = report["tasks"][0]
    assert set(mme["conditions"][0]["categories"]) == {"existence", "code_reasoning"}
    assert "mme perception" in (out / "report.md").read_text()
    lines = [json.loads(x) for x in (out / "samples.jsonl").read_text().splitlines()]
    assert lines[0]["prompts"] == ["Is there a dog in this image? Please answer yes or no."]
