"""V*Bench (issue 32): a fixture in lmms-lab/vstar-bench's layout, saved with save_to_disk; the
letter parser on every form it accepts and refuses; the eval CLI end to end offline."""

from __future__ import annotations

import json

import pytest

from attnprompt.cli import main
from attnprompt.evaluation.tasks import get_task
from attnprompt.evaluation.tasks.vstar import parse_letter
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
    ("A or B", None), ("A cat", None), ("A. blue", None), ("purple", None), ("", None), ("E", None)])
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
    assert samples[1].question == "Colour of the cup?\nA. blue\nB. green\nC. white\nD. red"
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
