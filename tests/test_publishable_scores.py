"""Issue 29: scores as the original scorers aggregate them — intervals over the right unit with each
draw its own cluster, groups scored only whole, judge failures unscored, references read as the
originals read them. All on hand-built records and columns."""

from __future__ import annotations

import numpy as np
import pytest

from attnprompt.evaluation import metrics, report
from attnprompt.evaluation.store import Record
from attnprompt.evaluation.tasks import get_task
from attnprompt.evaluation.tasks import mme as mme_task

# -- 1. MME: a bootstrap draw of an image twice is two images ---------------------------------------------


def _mme_columns(n_images: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    correct = (rng.random(2 * n_images) < 0.7).astype(float)
    image = np.repeat(np.arange(n_images, dtype=float), 2)  # sorted: np.unique keeps this order
    return {"correct": correct, "image": image, "category": np.zeros(2 * n_images)}


def _straightforward_mme(correct: np.ndarray, n_images: int, resamples: int, seed: int) -> np.ndarray:
    # the resampler written out: draw images, score each draw as its own image, as calculation.py would
    pairs = correct.reshape(n_images, 2)
    picks = np.random.default_rng(seed).integers(0, n_images, size=(resamples, n_images))
    drawn = pairs[picks]  # resamples × images × 2
    return drawn.mean(axis=2).mean(axis=1) * 100 + (drawn.sum(axis=2) == 2).mean(axis=1) * 100


def test_mme_bootstrap_keeps_copies_of_an_image_apart():
    n = 60
    cols = _mme_columns(n, 3)
    headline = lambda c: mme_task.aggregate(c)["perception"]  # noqa: E731
    b = metrics.bootstrap(cols, headline, resamples=300, seed=5, clusters="image")
    expected = _straightforward_mme(cols["correct"], n, 300, 5)
    np.testing.assert_allclose(b.replicates, expected)
    low, high = np.quantile(expected, [0.025, 0.975])
    assert b[1:] == pytest.approx((low, high))
    # the labels given as the column's array: that column is relabelled alike
    as_array = metrics.bootstrap(cols, headline, resamples=300, seed=5, clusters=cols["image"])
    np.testing.assert_allclose(as_array.replicates, expected)


def test_mme_paired_delta_interval_contains_its_estimate():
    n = 60
    base = _mme_columns(n, 1)
    treated = dict(base, correct=np.maximum(base["correct"], (np.random.default_rng(2).random(2 * n) < 0.6)))
    headline = lambda c: mme_task.aggregate(c)["perception"]  # noqa: E731
    est, low, high = d = metrics.paired_bootstrap(treated, base, headline, resamples=300, seed=0, clusters="image")
    expected = (_straightforward_mme(treated["correct"], n, 300, 0) - _straightforward_mme(base["correct"], n, 300, 0))
    np.testing.assert_allclose(d.replicates, expected)
    assert low <= est <= high


def test_a_cluster_column_the_scores_lack_is_named():
    with pytest.raises(ValueError, match="'image'"):
        metrics.bootstrap({"c": np.ones(3)}, metrics.mean_of("c"), clusters="image")


# -- 2. MME: an image with a failed question leaves every metric --------------------------------------------


def _record(sid: str, ok: bool, scores=None) -> Record:
    return Record("mme", sid, "h", "plain", ok, "Yes" if ok else "", error=None if ok else "boom",
                  failure=None if ok else "error", scores=scores, record={"sample": {"categories": ["count"]}})


def test_mme_image_with_one_failed_question_is_not_scored():
    t = get_task("mme", data="/nonexistent/mme")
    cat = float(mme_task.CATEGORIES.index("count"))

    def scores(qid, right):
        return {"correct": float(right), "image": mme_task.image_key(qid), "category": cat}

    records = {
        "a.png|Q1": _record("a.png|Q1", True, scores("a.png", 1)),
        "a.png|Q2": _record("a.png|Q2", True, scores("a.png", 1)),
        "b.png|Q1": _record("b.png|Q1", True, scores("b.png", 1)),
        "b.png|Q2": _record("b.png|Q2", False),  # b's partner failed: b is not scored at all
    }
    ids = list(records)
    out = report._task_numbers(t, ids, [{"label": "plain", "_records": records}], resamples=20)
    c = out["conditions"][0]
    assert c["metrics"]["count"] == 200.0  # a only; with b's half: acc 75 + acc+ 50 = 125
    assert (c["n"], c["failures"], c["partial"], c["unjudged"]) == (2, 1, 1, 0)
    assert c["metrics"]["accuracy"] == 100.0


# -- 4. MMMU: an answer stored as the string of a list is the list ----------------------------------------


def test_mmmu_list_answer_scores_any_of_its_items():
    from attnprompt.evaluation.tasks import mmmu

    row = {"id": "validation_Math_15", "question": "<image 1> The ratio?", "options": "[]",
           "answer": "['24/7', '3.429']", "question_type": "open", "image_1": None}
    sample = mmmu.to_sample(row)
    assert sample.references == ("24/7", "3.429")
    assert mmmu.score("The answer is 3.429", sample)["correct"] == 1.0
    assert mmmu.score("So it is 24/7", sample)["correct"] == 1.0
    row["answer"] = "['$MgS$', 'MgS']"
    assert mmmu.score("The product is MgS", mmmu.to_sample(row))["correct"] == 1.0
    assert get_task("mmmu", data="/nonexistent/mmmu").describe()["version"] == "2"


# -- 5. the generic vqa metric with fewer than 10 references ----------------------------------------------


def test_vqa_with_fewer_than_ten_references_drops_the_leave_one_out():
    assert metrics.vqa_accuracy("cat", ["cat"]) == pytest.approx(1 / 3)  # was 0.0
    assert metrics.vqa_accuracy("cat", ["cat"] * 3) == 1.0  # was 0.667
    assert metrics.vqa_accuracy("cat", ["cat", "dog"]) == pytest.approx(1 / 3)
    assert metrics.vqa_accuracy("cat", ["cat"] * 3 + ["dog"] * 7) == pytest.approx(0.9)  # 10: as VQA
    from attnprompt.evaluation.tasks.generic import METRICS

    assert "none with fewer" in METRICS["vqa"][3]


# -- 8. normalisation: the VQA contraction table, VizWiz's references ---------------------------------------


def test_vqa_contractions_are_the_originals_table():
    from attnprompt.evaluation.metrics import _CONTRACTIONS

    assert len(_CONTRACTIONS) == 120
    assert [metrics.normalize_vqa(t) for t in ("couldnt've", "wouldn'tve", "dont", "im", "ive")] == \
        ["couldn't've", "wouldn't've", "don't", "im", "ive"]  # Im / Ive are capitalised there: never matched
    assert metrics.normalize_vqa("somebody'd") == "somebodyd"


def test_vizwiz_normalises_the_prediction_not_the_references():
    from PIL import Image

    from attnprompt.evaluation.tasks import textvqa, vizwiz
    from attnprompt.evaluation.tasks.base import EvalSample

    s = EvalSample("q", Image.new("RGB", (2, 2)), "What is this?", ("two dollars",) * 10)
    assert vizwiz.score("Two dollars.", s)["correct"] == 0.0  # "2 dollars" against the raw "two dollars"
    assert textvqa.score("Two dollars.", s)["correct"] == 1.0  # TextVQA's m4c evaluator normalises both
    assert vizwiz.score("2 dollars", EvalSample("q", Image.new("RGB", (2, 2)), "?", ("2 dollars",) * 10))[
        "correct"] == 1.0
    assert get_task("vizwiz", data="/nonexistent/vizwiz").describe()["version"] == "2"


# -- 6, 7. POPE per subset, and intervals over images (POPE, LLaVA-Bench) -----------------------------------


def _pope_records():
    from PIL import Image

    from attnprompt.evaluation.tasks import pope

    records = {}
    rng = np.random.default_rng(0)
    for subset in pope.SUBSETS:
        for img in range(10):
            for q in range(6):
                row = {"category": subset, "question_id": f"{img}-{q}", "question": "Is there a dog?",
                       "answer": "yes" if q % 2 else "no", "image_source": f"COCO_{img}",
                       "image": Image.new("RGB", (2, 2))}
                sample = pope.to_sample(row)
                reply = ("Yes" if rng.random() < 0.6 else "No") if subset != "random" else row["answer"]
                records[sample.id] = Record("pope", sample.id, "h", "plain", True, reply,
                                            scores=pope.score(reply, sample),
                                            record={"sample": {"categories": [subset]}})
    return records


def test_pope_reports_every_metric_per_subset_and_a_pooled_headline():
    t = get_task("pope", data="/nonexistent/pope")
    records = _pope_records()
    out = report._task_numbers(t, list(records), [{"label": "plain", "_records": records}], resamples=50)
    m = out["conditions"][0]["metrics"]
    for subset in ("adversarial", "popular", "random"):
        assert {f"{subset}_{k}" for k in ("accuracy", "precision", "recall", "f1", "yes_ratio")} <= set(m)
    assert m["random_accuracy"] == 1.0 and m["random_f1"] == 1.0
    assert m["f1"] not in (m["random_f1"], m["popular_f1"], m["adversarial_f1"])  # pooled
    assert "pooled over the subsets" in t.notes


def test_pope_interval_resamples_images_across_subsets():
    t = get_task("pope", data="/nonexistent/pope")
    records = _pope_records()
    out = report._task_numbers(t, list(records), [{"label": "plain", "_records": records}], resamples=50)
    columns = report._columns(list(records.values()))
    assert len(np.unique(columns["image"])) == 10  # 180 questions, 10 images
    by_image = metrics.bootstrap(columns, report._headline(t), resamples=50, clusters="image")
    by_row = metrics.bootstrap(columns, report._headline(t), resamples=50)
    assert out["conditions"][0]["interval"] == pytest.approx(list(by_image[1:]))
    assert out["conditions"][0]["interval"] != pytest.approx(list(by_row[1:]))


def test_llava_bench_questions_on_one_image_share_a_cluster():
    from PIL import Image

    from attnprompt.evaluation.tasks import llava_bench

    a, b = Image.new("RGB", (4, 4), (255, 0, 0)), Image.new("RGB", (4, 4), (0, 255, 0))
    rows = [{"question_id": i, "image": img, "question": "?", "gpt_answer": "x", "category": "conv"}
            for i, img in enumerate((a, a, b))]
    keys = [llava_bench.score("", llava_bench.to_sample(r))["image"] for r in rows]
    assert keys[0] == keys[1] != keys[2]
    assert get_task("llava-bench", data="/nonexistent/lb").cluster == "image"


def test_mme_rescoring_given_predictions_skips_an_image_with_one_missing(tmp_path):
    pytest.importorskip("datasets")
    import bench_data

    t = get_task("mme", data=str(bench_data.mme(tmp_path / "mme")))
    ids = [s.id for s in t.samples()]  # existence/000 (Yes, No), existence/001 (Yes, No), code (No, Yes)
    replies = dict(zip(ids, ["Yes", "Yes", "Yes", "No", "No", "Yes"]))
    del replies[ids[0]]  # image 000 keeps only its wrong answer
    m = t.evaluate_predictions(replies)
    # image 000 left out: existence is image 001 alone (acc 100 + acc+ 100); scoring the partner alone gave 100
    assert m["existence"] == 200.0 and m["accuracy"] == 100.0
