"""Benchmark datasets built in code in their real layouts (the columns lmms-eval's Hugging Face
copies have, images as ``datasets.Image``), saved to disk — and the original release folders of
MM-Vet and LLaVA-Bench. Small, with answers chosen so that every score can be worked out by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def image(seed: int, w: int = 64, h: int = 48) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def save(columns: dict, types: dict, path: Path) -> Path:
    import datasets

    features = datasets.Features({k: types.get(k, datasets.Value("string")) for k in columns})
    datasets.Dataset.from_dict(columns, features=features).save_to_disk(str(path))
    return path


def mme(path: Path) -> Path:
    """Three images, two questions each: two of ``existence``, one of ``code_reasoning``."""
    import datasets

    qids = ["existence/000.jpg", "existence/000.jpg", "existence/001.jpg", "existence/001.jpg",
            "code_reasoning/0020.png", "code_reasoning/0020.png"]
    questions = ["Is there a dog in this image?", "Is there a cat in this image?", "Is there a car in this image?",
                 "Is there a tree in this image?", "Will this code print 3?", "Will this code print 4?"]
    return save({"question_id": qids, "image": [image(i // 2) for i in range(6)],
                 "question": [q + " Please answer yes or no." for q in questions],
                 "answer": ["Yes", "No", "Yes", "No", "No", "Yes"],
                 "category": ["existence"] * 4 + ["code_reasoning"] * 2},
                {"image": datasets.Image()}, path)


def pope(path: Path) -> Path:
    import datasets

    cats = ["adversarial", "adversarial", "popular", "popular", "random", "random"]
    return save({"id": [str(i) for i in range(6)], "question_id": [str(i % 2 + 1) for i in range(6)],
                 "question": [f"Is there a {o} in the image?" for o in ("dog", "cat", "car", "tree", "cup", "bus")],
                 "answer": ["yes", "no"] * 3, "image_source": [f"COCO_val2014_{i:012d}" for i in range(6)],
                 "image": [image(10 + i) for i in range(6)], "category": cats},
                {"image": datasets.Image()}, path)


def textvqa(path: Path) -> Path:
    import datasets

    return save({"question_id": [34602, 34603], "question": ["what is the brand?", "how many bottles are there?"],
                 "image": [image(20), image(21)], "image_id": ["a", "b"],
                 "answers": [["nokia"] * 7 + ["Nokia."] * 2 + ["toshiba"], ["two"] * 2 + ["3"] * 8],
                 "ocr_tokens": [["NOKIA"], []]},
                {"image": datasets.Image(), "question_id": datasets.Value("int32"),
                 "answers": datasets.Sequence(datasets.Value("string")),
                 "ocr_tokens": datasets.Sequence(datasets.Value("string"))}, path)


def vizwiz(path: Path) -> Path:
    import datasets

    return save({"question_id": ["VizWiz_val_00000000.jpg", "VizWiz_val_00000001.jpg"],
                 "image": [image(30), image(31)], "question": ["What is this?", "What colour is this shirt?"],
                 "answers": [["unanswerable"] * 6 + ["nothing"] * 4, ["blue"] * 10],
                 "category": ["unanswerable", "other"]},
                {"image": datasets.Image(), "answers": datasets.Sequence(datasets.Value("string"))}, path)


def mmmu(path: Path) -> Path:
    """A two-image multiple-choice question, a one-image one, and an open numeric one."""
    import datasets

    return save({
        "id": ["validation_Art_Theory_1", "validation_Math_2", "validation_Physics_3"],
        "question": ["Which painting is older? <image 1> <image 2>", "<image 1> What is the slope?",
                     "<image 1> What is the speed in m/s?"],
        "options": ["['The left one', 'The right one']", "['1', '2', '3', '4']", "[]"],
        "image_1": [image(40), image(41), image(42)], "image_2": [image(43), None, None],
        "image_3": [None, None, None], "image_4": [None] * 3, "image_5": [None] * 3, "image_6": [None] * 3,
        "image_7": [None] * 3, "answer": ["A", "C", "12.5"],
        "question_type": ["multiple-choice", "multiple-choice", "open"], "subfield": ["x", "y", "z"]},
        {f"image_{i}": datasets.Image() for i in range(1, 8)}, path)


def mmvet_original(path: Path) -> Path:
    """The original release: mm-vet.json and images/."""
    (path / "images").mkdir(parents=True)
    items = {"v1_0": {"imagename": "v1_0.png", "question": "What is x in the equation?", "answer": "-1<AND>-5",
                      "capability": ["ocr", "math"]},
             "v1_1": {"imagename": "v1_1.png", "question": "What is the brand?", "answer": "Nokia",
                      "capability": ["ocr", "rec"]},
             "v1_2": {"imagename": "v1_2.png", "question": "Describe the image.", "answer": "A cat<OR>a kitten",
                      "capability": ["rec", "gen"]}}
    for k in items:
        image(50 + len(k)).save(path / "images" / items[k]["imagename"])
    (path / "mm-vet.json").write_text(json.dumps(items))
    return path


def llava_bench_original(path: Path) -> Path:
    """The original release: questions, contexts, GPT-4 answers, images/."""
    (path / "images").mkdir(parents=True)
    image(60).save(path / "images" / "001.jpg")
    image(61).save(path / "images" / "002.jpg")
    questions = [{"question_id": 0, "image": "001.jpg", "text": "What is in the image?", "category": "conv"},
                 {"question_id": 1, "image": "001.jpg", "text": "Describe it in detail.", "category": "detail"},
                 {"question_id": 2, "image": "002.jpg", "text": "Why is it funny?", "category": "complex"}]
    contexts = [{"image": "001.jpg", "caption": ["A dog on a couch.", "The couch is red."]},
                {"image": "002.jpg", "caption": ["A cat in a box."]}]
    answers = [{"question_id": i, "text": f"Reference answer {i}."} for i in range(3)]
    for name, rows in (("questions", questions), ("context", contexts), ("answers_gpt4", answers)):
        (path / f"{name}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path
