"""The detail benchmarks scored as they are published (issue 43): replies read as VLMEvalKit's
``can_infer`` and lmms-eval's V* reader read them (and where we differ, on purpose), V*'s two text
layouts, HR-Bench's prompts, aggregate, dataset config and judge, A-OKVQA's two protocols, DocVQA's
budget, and every reply stripped by the harness — the HTTP backend included."""

from __future__ import annotations

import base64
import io
import json
import threading

import pytest

from attnprompt.backends.base import Backend
from attnprompt.errors import InputError
from attnprompt.evaluation.evaluate import evaluate
from attnprompt.evaluation.judge import Judge
from attnprompt.evaluation.metrics import can_infer, parse_letter
from attnprompt.evaluation.tasks import get_task
from attnprompt.serve import make_server
from attnprompt.strategies.base import Strategy
from attnprompt.types import Answer
from bench_data import image, save

datasets = pytest.importorskip("datasets", reason="the benchmark tasks read data with the datasets package")

CARS = ["a red car", "a blue car", "a green bus", "a white truck"]


# -- the readers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reply, vlmevalkit, lmms", [
    # the issue's replies (gold B = "a blue car"): right in VLMEvalKit, wrong with the V* parser before
    ("It is B.", "B", "B"),
    ("B, A blue car", "B", "B"),  # two capital letters: no letter; the option's text decides
    ("a blue car.", "B", "B"),
    ("I choose B", "B", "B"),
    ("The answer is B because the car is blue.", "B", "B"),  # B not among the last 4 words: "answer is B"
    ("B", "B", "B"),
    ("B is the one, since the car on the left is blue", None, "B"),  # the letter too early for VLMEvalKit now
    ("The answer is a blue car", "A", "B"),  # VLMEvalKit's "answer is X" takes the article "a"
    ("Z", "Z", "Z"),
    ("Cannot determine the answer from this picture.", "Z", "Z"),
    ("a red car or a blue car", None, None),
    ("I do not know", None, None),
])
def test_can_infer_as_vlmevalkit_and_lmms_evals_copy(reply, vlmevalkit, lmms):
    assert can_infer(reply, CARS) == vlmevalkit
    assert can_infer(reply, CARS, legacy=True) == lmms


@pytest.mark.parametrize("reply, ours, lmms_eval", [
    # the issue's replies lmms-eval and VLMEvalKit read as D, the old strict parser refused
    ("I think it is D", "D", "D"), ("It's D", "D", "D"), ("D - leather", "D", "D"),
    ("The correct option is (D) leather.", "D", "D"),
    ("D", "D", "D"), ("(d)", "D", "D"), ("The answer is d", "D", "D"), ("A or B", "A", "A"),
    # where we differ, each documented in parse_letter
    ("Answer: D", "D", "A"), ("leather", "D", "A"), ("Cotton", "B", "C"), ("It is red.", None, "D"),
    ("There is a cat", None, "A"),
])
def test_vstar_reader_against_lmms_evals(reply, ours, lmms_eval):
    # lmms_eval: what its extract_answer_letter returns, worked out by hand from its patterns
    assert parse_letter(reply, ["rubber", "cotton", "wool", "leather"]) == ours
    if ours != lmms_eval:  # every difference is documented, with this reply as its example
        assert f'"{reply}"' in parse_letter.__doc__


# -- V*: both text layouts --------------------------------------------------------------------------------


def vstar(path, layout):
    options = ["rubber", "cotton", "wool", "leather"]
    if layout == "inline":
        texts = ["What is the bag made of? " + " ".join(f"({'ABCD'[i]}) {o}" for i, o in enumerate(options)),
                 "Is the dog on the left or right of the car? (A) left (B) right"]
    else:  # the original release: one option a line, then the instruction
        tail = "\nAnswer with the option's letter from the given choices directly."
        texts = ["What is the bag made of?\n" + "\n".join(f"({'ABCD'[i]}) {o}" for i, o in enumerate(options)) + tail,
                 "Is the dog on the left or right of the car?\n(A) left\n(B) right" + tail]
    return save({"question_id": ["v0", "v1"], "text": texts, "label": ["D", "B"],
                 "category": ["direct_attributes", "relative_position"], "image": [image(1), image(2)]},
                {"image": datasets.Image()}, path)


def test_vstar_reads_both_layouts_alike_and_asks_once(tmp_path):
    tasks = {layout: get_task("vstar", data=str(vstar(tmp_path / layout, layout))) for layout in ("inline", "lines")}
    samples = {layout: t.samples() for layout, t in tasks.items()}
    for a, b in zip(samples["inline"], samples["lines"]):
        assert (a.question, a.suffix, dict(a.meta)) == (b.question, b.suffix, dict(b.meta))
    prompt = Strategy.prompt(samples["lines"][0].sample())
    assert prompt == ("What is the bag made of?\nA. rubber\nB. cotton\nC. wool\nD. leather\n"
                      "Answer with the option's letter from the given choices directly.")
    assert prompt.count("Answer with") == 1
    for t in tasks.values():  # "leather" and "D leather" are D on either layout; "right" is B
        assert t.evaluate_predictions({"v0": "leather", "v1": "right"}) == {"accuracy": 100.0}
        assert t.evaluate_predictions({"v0": "D leather", "v1": "Answer: A"}) == {"accuracy": 50.0}
    assert tasks["inline"].version == "2"


# -- HR-Bench ---------------------------------------------------------------------------------------------


def b64(seed):
    buffer = io.BytesIO()
    image(seed, 48, 32).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


#: (cycle, category, gold) per row: cycle_0 has 2 single + 1 cross, cycle_1 1 single + 2 cross,
#: cycle_2 one single (its cross row is the 8th: cut off by --limit 7)
ROWS = [("cycle_0", "single", "B"), ("cycle_0", "single", "B"), ("cycle_0", "cross", "B"),
        ("cycle_1", "single", "B"), ("cycle_1", "cross", "B"), ("cycle_1", "cross", "B"),
        ("cycle_2", "single", "B"), ("cycle_2", "cross", "B")]


def hr_bench(path, rows=ROWS):
    n = len(rows)
    return save({"index": [str(i) for i in range(n)], "question": [f"What is parked at spot {i}?" for i in range(n)],
                 "answer": [g for _, _, g in rows], "category": [c for _, c, _ in rows],
                 "A": [CARS[0]] * n, "B": [CARS[1]] * n, "C": [CARS[2]] * n, "D": [CARS[3]] * n,
                 "cycle_category": [c for c, _, _ in rows], "image": [b64(i) for i in range(n)]}, {}, path)


def test_hr_bench_prompts_per_reference(tmp_path):
    data = str(hr_bench(tmp_path / "hr"))
    release = get_task("hr-bench-4k", data=data).samples(1)[0]
    assert Strategy.prompt(release.sample()) == (
        "Question: What is parked at spot 0?\nOptions:\nA. a red car\nB. a blue car\nC. a green bus\n"
        "D. a white truck\nPlease select the correct answer from the options above.")  # trailing " \n" dropped
    lmms = get_task("hr-bench-4k-lmms", data=data).samples(1)[0]
    assert Strategy.prompt(lmms.sample()) == (
        "What is parked at spot 0?\nA. a red car\nB. a blue car\nC. a green bus\nD. a white truck\n"
        "Answer the option letter directly.")


def test_hr_bench_scores_the_issues_replies_as_vlmevalkit(tmp_path):
    task = get_task("hr-bench-4k", data=str(hr_bench(tmp_path / "hr")))
    replies = ["It is B.", "B, A blue car", "a blue car.", "I choose B", "The answer is B because the car is blue.",
               "B", "B", "B"]
    assert task.evaluate_predictions(dict(zip(map(str, range(8)), replies)))["accuracy"] == 100.0


def test_hr_bench_aggregates_over_all_cycles_under_a_limit(tmp_path):
    data = str(hr_bench(tmp_path / "hr"))
    right = {"0": "B", "1": "A", "2": "B", "3": "B", "4": "A", "5": "A", "6": "A", "7": "B"}
    # report_acc_hrbench on the first 7 rows, by hand — per cycle (all, single, cross):
    # cycle_0 (2/3, 1/2, 1), cycle_1 (1/3, 1, 0), cycle_2 (0, 0, —); each summed ÷ 3 cycles
    got = get_task("hr-bench-4k", data=data).evaluate_predictions(right, limit=7)
    assert got == pytest.approx({"accuracy": 100 / 3, "single_instance": 50.0, "cross_instance": 100 / 3})
    # lmms-eval's hrbench_aggregate_results: cross over the 2 cycles that have it
    got = get_task("hr-bench-4k-lmms", data=data).evaluate_predictions(right, limit=7)
    assert got == pytest.approx({"accuracy": 100 / 3, "single_instance": 50.0, "cross_instance": 50.0})


def test_hr_bench_reads_lmms_evals_config_from_the_hub(monkeypatch, tmp_path):
    calls = []
    table = datasets.load_from_disk(str(hr_bench(tmp_path / "hr")))

    def load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        if args[1:] != ("hrbench_version_split",):
            raise ValueError(f"BuilderConfig {args[1:]} not found. Available: ['hrbench_version_split']")
        return table

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    assert get_task("hr-bench-8k").samples(2)[1].id == "1"
    assert calls == [(("DreamMr/HR-Bench", "hrbench_version_split"), {"split": "hrbench_8k"})]

    def wrong(*args, **kwargs):
        raise ValueError("BuilderConfig 'hrbench_version_split' not found. Available: ['default']")

    monkeypatch.setattr(datasets, "load_dataset", wrong)
    with pytest.raises(InputError, match="config 'hrbench_version_split', split 'hrbench_4k' "
                                         r"\(its splits: hrbench_4k, hrbench_8k\)"):
        get_task("hr-bench-4k").samples(1)


def test_hr_bench_from_a_snapshot_of_the_hub_repository(tmp_path):
    snapshot = tmp_path / "HR-Bench"
    snapshot.mkdir()
    for name, rows in (("hr_bench_4k", ROWS[:3]), ("hr_bench_8k", ROWS)):
        datasets.load_from_disk(str(hr_bench(tmp_path / name, rows))).to_parquet(str(snapshot / f"{name}.parquet"))
    assert len(get_task("hr-bench-4k", data=str(snapshot)).samples()) == 3
    assert len(get_task("hr-bench-8k-lmms", data=str(snapshot)).samples()) == 8


# -- judges -----------------------------------------------------------------------------------------------


class Judges(Backend):
    """A judge server's model: the release's yes/no judge says yes when the reply holds GOOD; the
    option-matching judges answer the letter of the colour or season the reply names (else Z); "DOWN"
    fails, "JUNK" gets an unreadable reply."""

    name = "judge"

    def __init__(self):
        self.calls, self._lock = [], threading.Lock()

    def answer(self, requests):
        out = []
        for r in requests:
            with self._lock:
                self.calls.append(r.prompt)
            reply = r.prompt.rsplit("answer:", 1)[-1] if "Does the following" in r.prompt else \
                r.prompt.rsplit("Answer: ", 1)[-1]
            if "DOWN" in reply:
                out.append(Answer("", ok=False, error="judge overloaded"))
            elif "JUNK" in reply:
                out.append(Answer("I am not sure."))
            elif "Does the following" in r.prompt:
                out.append(Answer("Yes, it does." if "GOOD" in reply else "No."))
            else:
                named = [letter for word, letter in (("red", "A"), ("blue", "B"), ("autumn", "D")) if word in reply]
                out.append(Answer(named[0] if named else "Z"))
        return out


class Replies(Backend):
    """The answering VLM: the reply for the first key found in the prompt."""

    name = "replies"

    def __init__(self, replies):
        self.replies = replies

    def answer(self, requests):
        return [Answer(next(v for k, v in self.replies.items() if k in r.prompt)) for r in requests]


@pytest.fixture
def judge_url():
    backend = Judges()
    server = make_server(backend, "127.0.0.1", 0, max_parallel=None)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", backend
    server.shutdown()
    server.server_close()


def conditions(out):
    return json.loads((out / "report.json").read_text())["tasks"][0]["conditions"]


def test_hr_bench_judge_is_the_releases_and_only_with_judge(judge_url, tmp_path):
    url, judges = judge_url
    rows = ROWS[:4]
    data = {"hr-bench-4k": str(hr_bench(tmp_path / "hr", rows))}
    replies = {"spot 0": "B", "spot 1": "GOOD, I would say the blue one", "spot 2": "DOWN B", "spot 3": "JUNK B"}
    # without a judge: VLMEvalKit's reading (spot 1 unread → wrong), nothing awaits a judge
    evaluate("hr-bench-4k", data=data, vlm=Replies(replies), strategies="plain", out=tmp_path / "plain",
             progress=False)
    [c] = conditions(tmp_path / "plain")
    assert (c["n"], c["unjudged"], c["metrics"]["accuracy"]) == (4, 0, pytest.approx((2 / 3 + 1) / 2 * 100))
    # with one: the release's yes/no verdict on every reply; no reply from the judge is no score
    evaluate("hr-bench-4k", data=data, vlm=Replies(replies), strategies="plain", out=tmp_path / "plain",
             judge=Judge(url, retry_wait=0), progress=False)
    [c] = conditions(tmp_path / "plain")
    assert (c["n"], c["judge_errors"], c["judge_failures"]) == (3, 1, 1)
    # spot 0 "B": no (not GOOD); spot 1: yes; spot 3: unreadable → 0 as the release: cycle_0 1/2, cycle_1 0/1
    assert c["metrics"]["accuracy"] == pytest.approx(25.0)
    first = next(p for p in judges.calls if "spot 1?" in p)
    assert first == (
        "You are a helpful and precise assistant for checking the quality of the answer. Please answer in only yes "
        "or no. Given the following question: What is parked at spot 1?\nOptions:\nA. a red car\nB. a blue car\n"
        "C. a green bus\nD. a white truck\nPlease select the correct answer from the options above. \n, the correct "
        "answer is: B. a blue car. Does the following answer correctly answers the question, answer:GOOD, I would "
        "say the blue one?")
    assert sum("spot 0?" in p for p in judges.calls) == 1  # read by can_infer, judged all the same


def test_hr_bench_lmms_judge_only_for_what_can_infer_cannot_read(judge_url, tmp_path):
    url, judges = judge_url
    data = {"hr-bench-4k-lmms": str(hr_bench(tmp_path / "hr", ROWS[:3]))}
    replies = {"spot 0": "B", "spot 1": "I choose B", "spot 2": "the red one"}
    evaluate("hr-bench-4k-lmms", data=data, vlm=Replies(replies), strategies="plain", out=tmp_path / "run",
             judge=Judge(url, retry_wait=0), progress=False)
    [c] = conditions(tmp_path / "run")
    # spot 0 and 1 read by can_infer (B, B: right), not sent; spot 2 unread → the judge matches A: wrong
    assert c["metrics"]["accuracy"] == pytest.approx(200 / 3) and c["n"] == 3
    assert len(judges.calls) == 1 and "spot 2" in judges.calls[0]
    assert judges.calls[0].endswith("Example 3: \nQuestion: What is parked at spot 2?\nOptions: A. a red car\n"
                                    "B. a blue car\nC. a green bus\nD. a white truck\n\nAnswer: the red one\n"
                                    "Your output: ")


# -- A-OKVQA ----------------------------------------------------------------------------------------------


def aokvqa(path):
    return save({"question_id": ["a1", "a2", "a3"],
                 "question": ["What is the man holding?", "What season is it?", "Why is the road wet?"],
                 "choices": [["umbrella", "bat", "phone", "cup"], ["winter", "summer", "spring", "fall"],
                             ["rain", "snow", "a flood", "a hose"]],
                 "correct_choice_idx": [0, 3, 0],
                 "direct_answers": [["umbrella"] * 10, ["fall"] * 7 + ["autumn"] * 3, ["rain"] * 2 + ["rained"] * 8],
                 "difficult_direct_answer": [False, True, False], "rationales": [["r"], ["r"], ["r"]],
                 "image": [image(80 + i) for i in range(3)]},
                {"image": datasets.Image(), "choices": datasets.Sequence(datasets.Value("string")),
                 "direct_answers": datasets.Sequence(datasets.Value("string")),
                 "rationales": datasets.Sequence(datasets.Value("string")),
                 "correct_choice_idx": datasets.Value("int64"), "difficult_direct_answer": datasets.Value("bool")},
                path)


def test_aokvqa_direct_answers_as_vicrop(tmp_path):
    task = get_task("aokvqa-da", data=str(aokvqa(tmp_path / "a")))
    s = task.samples()[1]
    assert Strategy.prompt(s.sample()) == "What season is it? Answer the question using a single word or phrase."
    assert task.max_new_tokens == 20
    # 10 umbrella → 100; "Autumn." 3 of 10 → 90 (VQA accuracy would give 100); "rain" 2 of 10 → 60
    got = task.evaluate_predictions({"a1": "An umbrella", "a2": "Autumn.", "a3": "rain"})
    assert got == pytest.approx({"accuracy": (100 + 90 + 60) / 3})


def test_aokvqa_vlmevalkit_judge_and_its_seeded_random_fallback(judge_url, tmp_path):
    url, judges = judge_url
    data = {"aokvqa": str(aokvqa(tmp_path / "a"))}
    replies = {"holding": "He holds an umbrella.", "season": "leaves are turning, so autumn", "road": "JUNK"}
    evaluate("aokvqa", data=data, vlm=Replies(replies), strategies="plain", out=tmp_path / "run",
             judge=Judge(url, retry_wait=0), progress=False)
    [c] = conditions(tmp_path / "run")
    # umbrella read by its text (not sent); the judge reads D for the season (right); JUNK three times, then
    # a letter drawn among A–D and Z, seeded by the sample's id
    import random

    drawn = random.Random("aokvqa:a3").choice("ABCDZ")
    assert c["metrics"]["accuracy"] == pytest.approx((2 + (drawn == "A")) / 3 * 100)
    assert c["judge_failures"] == 1 and sum("JUNK" in p for p in judges.calls) == 3
    season = next(p for p in judges.calls if "season" in p)
    assert season.endswith("Question: What season is it??\nOptions: There are several options: \nA. winter\n"
                           "B. summer\nC. spring\nD. fall\n\nAnswer: leaves are turning, so autumn\nYour output: ")


# -- DocVQA and the harness's strip --------------------------------------------------------------------------


def docvqa(path):
    return save({"questionId": ["d1", "d2"], "question": ["What year?", "Who signed?"],
                 "question_types": [["others"], ["handwritten"]], "image": [image(90), image(91)],
                 "docId": [1, 2], "answers": [["1999"], ["Dr. J. Smith"]]},
                {"image": datasets.Image(), "question_types": datasets.Sequence(datasets.Value("string")),
                 "docId": datasets.Value("int64"), "answers": datasets.Sequence(datasets.Value("string"))}, path)


def test_docvqa_budget_and_stripped_replies(tmp_path):
    from attnprompt.evaluation.tasks.docvqa import anls

    task = get_task("docvqa", data=str(docvqa(tmp_path / "d")))
    assert (task.max_new_tokens, task.version) == (32, "2")
    assert anls("1998\n", ["1999"]) == pytest.approx(0.8)  # unstripped: the newline lengthens the denominator
    assert task.evaluate_predictions({"d1": "1998\n"}) == pytest.approx({"anls": 0.75})


def test_the_http_backend_reply_is_stripped_once_before_scoring_and_storing(tmp_path):
    server = make_server(Replies({"year": "1998\n", "signed": "  Dr. J. Smith \n"}), "127.0.0.1", 0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        evaluate("docvqa", data={"docvqa": str(docvqa(tmp_path / "d"))}, vlm=url, strategies="plain",
                 out=tmp_path / "run", progress=False)
    finally:
        server.shutdown()
        server.server_close()
    [c] = conditions(tmp_path / "run")
    assert c["metrics"]["anls"] == pytest.approx((0.75 + 1.0) / 2)
    lines = [json.loads(x) for x in (tmp_path / "run" / "samples.jsonl").read_text().splitlines()]
    assert [x["prediction"] for x in lines] == ["1998", "Dr. J. Smith"]
    assert [x["scores"]["anls"] for x in lines] == [pytest.approx(0.75), 1.0]
