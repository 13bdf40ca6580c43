"""The detail benchmarks (issue 32): V*Bench, HR-Bench, GQA, A-OKVQA and DocVQA fixtures in their hub
layouts, saved with save_to_disk; the letter parser on every form it accepts and refuses, GQA's normalisation,
ANLS on known values; the eval CLI end to end offline."""

from __future__ import annotations

import json

import pytest

from attnprompt.cli import main
from attnprompt.evaluation.metrics import parse_letter
from attnprompt.evaluation.tasks import get_task
from bench_data import image, save


def vstar(path):
    import datasets

    texts = ["What is the colour of the cup? (A) red (B) blue (C) green (D) white",
             "What is the colour of the bag? (A) black (B) yellow (C) pink (D) grey",
             "Is the dog on the left or right of the car? (A) left (B) right",
             "Is the man on the left or right of the bus? (A) left (B) right"]
    return save({"question_id": [f"q{i}" for i in range(4)], "text": texts, "label": ["A", "C", "B", "A"],
                 "category": ["direct_attributes"] * 2 + ["relative_position"] * 2,
                 "image": [image(40 + i, 96, 64) for i in range(4)]},
                {"image": datasets.Image()}, path)


@pytest.mark.parametrize("reply, letter", [
    ("A", "A"), ("(A)", "A"), ("A.", "A"), ("A)", "A"), ("a", "A"), ("Answer: B", "B"), ("The answer is (B)", "B"),
    ("B. blue", "B"), ("blue", "B"), ("Blue.", "B"), ("**C**", "C"),
    # a letter first wins, as in lmms-eval's extract_answer_letter
    ("A or B", "A"), ("A cat", "A"), ("A. blue", "A"),
    ("purple", None), ("", None), ("E", None), ("a cat", None)])
def test_vstar_parser(reply, letter):
    assert parse_letter(reply, ["red", "blue", "green", "white"]) == letter


def test_vstar_samples_and_scores(tmp_path):
    task = get_task("vstar", data=str(vstar(tmp_path / "vstar")))
    samples = task.samples()
    assert samples[0].question == "What is the colour of the cup?\nA. red\nB. blue\nC. green\nD. white"
    assert samples[0].suffix == "\nAnswer with the option's letter from the given choices directly."
    # the option text counts: "pink" is C (right), "right" is B (wrong): 3 of 4
    assert task.evaluate_predictions({"q0": "(A)", "q1": "pink", "q2": "B", "q3": "right"}) == {"accuracy": 75.0}
    # over questions (2 of 3), not the mean of the categories (100 and 0 → 50)
    assert task.evaluate_predictions({"q0": "A", "q1": "C", "q2": "A"}) == pytest.approx({"accuracy": 200 / 3})


def test_eval_vstar_offline_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["eval", "--task", "vstar", "--data", f"vstar={vstar(tmp_path / 'vstar')}", "--vlm", "shapes",
                 "--strategy", "plain,carve", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert [t["name"] for t in report["tasks"]] == ["vstar"]
    assert all(c["n"] == 4 and c["failures"] == 0 for c in report["tasks"][0]["conditions"])
    assert (out / "report.html").exists()


def hr_bench(path):
    import base64
    import io

    def b64(i):
        buf = io.BytesIO()
        image(60 + i, 128, 72).save(buf, format="PNG")
        return base64.b64encode(buf.getvalue()).decode()

    # one single-instance question in 2 cycles (options rotated), one cross-instance question in 2 cycles
    return save({"index": [str(i) for i in range(4)], "question": ["Colour of the cup?"] * 2 + ["Which is left?"] * 2,
                 "answer": ["A", "D", "B", "A"], "category": ["single_instance"] * 2 + ["cross_instance"] * 2,
                 "A": ["red", "blue", "dog", "car"], "B": ["blue", "green", "car", "tree"],
                 "C": ["green", "white", "tree", "man"], "D": ["white", "red", "man", "dog"],
                 "cycle_category": ["cycle_0", "cycle_1", "cycle_0", "cycle_1"], "image": [b64(i) for i in range(4)]},
                {}, path)


def test_hr_bench_cycles_averaged(tmp_path):
    task = get_task("hr-bench-4k", data=str(hr_bench(tmp_path / "hr")))
    samples = task.samples()
    assert samples[1].question == "Question: Colour of the cup?\nOptions:\nA. blue\nB. green\nC. white\nD. red"
    # cycle_0: both right (1.0); cycle_1: single right ("red" is D), cross wrong → 0.5; mean over cycles 75
    got = task.evaluate_predictions({"0": "A", "1": "red", "2": "(B)", "3": "B"})
    assert got == {"accuracy": 75.0, "single_instance": 100.0, "cross_instance": 50.0}


def test_eval_vstar_and_hr_bench_offline(tmp_path, capsys):
    out = tmp_path / "run"
    data = f"vstar={vstar(tmp_path / 'vstar')},hr-bench-4k={hr_bench(tmp_path / 'hr')}"
    code = main(["eval", "--task", "vstar,hr-bench-4k", "--data", data, "--vlm", "shapes",
                 "--strategy", "plain,carve", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert [t["name"] for t in report["tasks"]] == ["vstar", "hr-bench-4k"]
    assert all(c["failures"] == 0 for t in report["tasks"] for c in t["conditions"])


# -- GQA, A-OKVQA, DocVQA (issue 32) --------------------------------------------------------------------------


def gqa(path):
    """lmms-lab/GQA's two configs as sub-folders: 4 questions on 2 images (image n2 asked about twice)."""
    import datasets

    kinds = datasets.Features({"structural": datasets.Value("string"), "semantic": datasets.Value("string"),
                               "detailed": datasets.Value("string")})
    save({"id": ["201", "202", "203", "204"], "imageId": ["n1", "n2", "n2", "n1"],
          "question": ["What colour is the cup?", "Is the dog on the left?", "What is on the table?",
                       "Which is taller?"],
          "answer": ["red", "yes", "t-shirt", "man"], "fullAnswer": ["The cup is red."] * 4,
          "types": [{"structural": s, "semantic": "attr", "detailed": "x"}
                    for s in ("query", "verify", "query", "compare")]},
         {"types": kinds}, path / "testdev_balanced_instructions")
    save({"id": ["n1", "n2"], "image": [image(70), image(71)]}, {"image": datasets.Image()},
         path / "testdev_balanced_images")
    return path


@pytest.mark.parametrize("reply, right", [
    ("red", 1.0), ("Red.", 1.0), (" RED ", 1.0), ("red!", 1.0), ("It is red.", 0.0), ("the red", 0.0), ("", 0.0)])
def test_gqa_exact_match(reply, right):
    from attnprompt.evaluation.tasks.base import EvalSample
    from attnprompt.evaluation.tasks.gqa import score

    assert score(reply, EvalSample("q", (), "Colour?", ("red",))) == {"correct": right}


def test_gqa_joins_questions_to_images(tmp_path):
    task = get_task("gqa", data=str(gqa(tmp_path / "gqa")))
    samples = task.samples()
    assert [s.id for s in samples] == ["201", "202", "203", "204"]
    assert samples[0].images[0].tobytes() == image(70).tobytes()
    assert samples[2].images[0].tobytes() == image(71).tobytes()
    assert samples[0].suffix == "\nAnswer the question using a single word or phrase."
    assert samples[3].categories == ("compare",)
    # "tshirt" is t-shirt without its hyphen (punctuation removed); "Yes." is yes; "a man" is not man
    got = task.evaluate_predictions({"201": "Red", "202": "Yes.", "203": "tshirt", "204": "a man"})
    assert got == {"accuracy": 0.75}


def test_gqa_folder_without_its_parts(tmp_path):
    from attnprompt.errors import InputError

    (tmp_path / "gqa").mkdir()
    with pytest.raises(InputError, match="testdev_balanced_instructions/ and testdev_balanced_images/"):
        get_task("gqa", data=str(tmp_path / "gqa")).samples()


def aokvqa(path):
    import datasets

    return save({"question_id": ["a1", "a2", "a3"],
                 "question": ["What is the man holding?", "What season is it?", "Why is the road wet?"],
                 "choices": [["umbrella", "bat", "phone", "cup"], ["winter", "summer", "spring", "fall"],
                             ["rain", "snow", "a flood", "a hose"]],
                 "correct_choice_idx": [0, 3, 0], "direct_answers": [["umbrella"] * 10, ["fall"] * 10, ["rain"] * 10],
                 "difficult_direct_answer": [False, True, False], "rationales": [["r"], ["r"], ["r"]],
                 "image": [image(80 + i) for i in range(3)]},
                {"image": datasets.Image(), "choices": datasets.Sequence(datasets.Value("string")),
                 "direct_answers": datasets.Sequence(datasets.Value("string")),
                 "rationales": datasets.Sequence(datasets.Value("string")),
                 "correct_choice_idx": datasets.Value("int64"), "difficult_direct_answer": datasets.Value("bool")},
                path)


def test_aokvqa_multiple_choice(tmp_path):
    task = get_task("aokvqa", data=str(aokvqa(tmp_path / "aokvqa")))
    samples = task.samples()
    assert samples[1].question == "Question: What season is it?\nOptions:\nA. winter\nB. summer\nC. spring\nD. fall"
    assert samples[1].references == ("D",) and samples[1].categories == ("difficult",)
    assert samples[1].suffix == "\nPlease select the correct answer from the options above. \n"
    # "(A)" right, "fall" is D (right), "A or B" refused (wrong): 2 of 3
    got = task.evaluate_predictions({"a1": "(A)", "a2": "fall", "a3": "A or B"})
    assert got == pytest.approx({"accuracy": 200 / 3})


def docvqa(path):
    import datasets

    return save({"questionId": ["d1", "d2", "d3"], "question": ["What is the date?", "Who signed?", "Total?"],
                 "question_types": [["others"], ["handwritten", "form"], ["table/list"]],
                 "image": [image(90 + i, 80, 100) for i in range(3)], "docId": [1, 2, 3],
                 "answers": [["12/10/98", "12 October 1998"], ["Dr. J. Smith"], ["$2,000"]]},
                {"image": datasets.Image(), "question_types": datasets.Sequence(datasets.Value("string")),
                 "docId": datasets.Value("int64"), "answers": datasets.Sequence(datasets.Value("string"))}, path)


@pytest.mark.parametrize("reply, references, value", [
    ("12/10/98", ["12/10/98"], 1.0),
    ("12 OCTOBER  1998", ["12/10/98", "12 October 1998"], 1.0),  # case and the double space normalised
    ("12 October  1997", ["12 October 1998"], 1.0 - 1 / 16),  # one edit over the reply's raw length, 16
    ("dr j smith", ["Dr. J. Smith"], 1.0 - 2 / 12),
    ("$2000", ["$2,000"], 1.0 - 1 / 6),
    ("2,000 dollars", ["$2,000"], 0.0),  # distance 8 / 13: similarity below 0.5
    ("abc", ["abcdef"], 0.5),  # exactly the threshold: kept
    ("", ["x"], 0.0)])
def test_anls_known_values(reply, references, value):
    from attnprompt.evaluation.tasks.docvqa import anls

    assert anls(reply, references) == pytest.approx(value)


def test_docvqa_samples_and_anls(tmp_path):
    task = get_task("docvqa", data=str(docvqa(tmp_path / "docvqa")))
    samples = task.samples()
    assert samples[1].categories == ("handwritten", "form") and samples[1].references == ("Dr. J. Smith",)
    got = task.evaluate_predictions({"d1": "12/10/98", "d2": "dr j smith", "d3": "nothing"})
    assert got == pytest.approx({"anls": (1.0 + (1.0 - 2 / 12) + 0.0) / 3})


@pytest.mark.slow
def test_eval_five_detail_benchmarks_offline(tmp_path, capsys):
    out = tmp_path / "run"
    data = ",".join([f"vstar={vstar(tmp_path / 'vstar')}", f"hr-bench-4k={hr_bench(tmp_path / 'hr')}",
                     f"gqa={gqa(tmp_path / 'gqa')}", f"aokvqa={aokvqa(tmp_path / 'aokvqa')}",
                     f"docvqa={docvqa(tmp_path / 'docvqa')}"])
    code = main(["eval", "--task", "vstar,hr-bench-4k,gqa,aokvqa,docvqa", "--data", data, "--vlm", "shapes",
                 "--strategy", "plain,carve", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert [t["name"] for t in report["tasks"]] == ["vstar", "hr-bench-4k", "gqa", "aokvqa", "docvqa"]
    counts = {t["name"]: [c["n"] for c in t["conditions"]] for t in report["tasks"]}
    assert counts == {"vstar": [4, 4], "hr-bench-4k": [4, 4], "gqa": [4, 4], "aokvqa": [3, 3], "docvqa": [3, 3]}
    assert all(c["failures"] == 0 for t in report["tasks"] for c in t["conditions"])
    html = (out / "report.html").read_text()
    assert "GQA test-dev balanced" in html and "DocVQA val" in html
    import sqlite3

    with sqlite3.connect(out / "records.sqlite") as db:  # the gallery's thumbnails: originals and what was shown
        kept = dict(db.execute("select task, count(*) from images group by task").fetchall())
    # per sample: its original, plain's image, carve's original and crop
    assert kept == {"vstar": 16, "hr-bench-4k": 16, "gqa": 16, "aokvqa": 12, "docvqa": 12}
