"""mmmu — MMMU (Yue et al., CVPR 2024: "MMMU: A Massive Multi-discipline Multimodal Understanding and
Reasoning Benchmark for Expert AGI"), validation: 900 college-level questions in 30 subjects of 6
disciplines, multiple choice or open, up to 7 images each.

Data: Hugging Face ``lmms-lab/MMMU``, split ``validation`` (columns id — e.g.
``validation_Art_Theory_12`` —, question with ``<image N>`` placeholders, options — the string of a
Python list —, image_1 … image_7, answer, question_type multiple-choice / open, subfield …).
Licence: Apache-2.0 (questions; images under their sources' terms). ``--data mmmu=PATH``: a
``save_to_disk`` folder or parquet files of that layout.

Prompt as MMMU's own evaluation (``construct_prompt``): multiple choice "{question}\\n(A) opt\\n(B)
opt\\n\\nAnswer with the option's letter from the given choices directly."; open "{question}\\nAnswer
the question using a single word or phrase." The ``<image N>`` placeholders stay in the text; the
images it names (question and options) are shown, in number order, as lmms-eval does (MMMU's LLaVA
baseline showed image_1 alone).

Scoring as MMMU's ``eval_utils.py``: multiple choice — strip ``,.!?;:'`` from the ends, pad with
spaces; a "(X)" wins, else " X ", else (a reply of more than 5 words) an option's text inside the
reply; several candidates → the one appearing last; none → a random letter. MMMU draws it from
one generator seeded 42 at import, so a sample's draw depends on the samples before it; here it is
seeded by the sample's id, so a resumed run scores alike. Open — the reply's key parts (after "could
be", "so", "is", "thus", "therefore", "final", "answer", "result", and "=" in the last line), the
numbers in them, normalised (numbers rounded to 2 decimals, text lower-cased); right when a
normalised reference is inside one of them or equals one of the numbers. Accuracy per subject, per
discipline and overall (over all questions, as ``calculate_ins_level_acc``). A reference stored as
the string of a list ("['24/7', '3.429']", three validation questions in the hub copy) is read as
the list, as MMMU's answer file has it (:func:`references_of`); version 2 of the task.

Where we differ from the original: the random letter for an unreadable multiple-choice reply is
seeded per sample (above), so it can differ from MMMU's draw for the same reply.
"""

from __future__ import annotations

import ast
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..metrics import mean_of
from .base import EvalSample, Task
from .sources import benchmark_task

HUB_ID = "lmms-lab/MMMU"
SPLIT = "validation"
MULTIPLE_CHOICE = "\n\nAnswer with the option's letter from the given choices directly."
OPEN = "\nAnswer the question using a single word or phrase."
DISCIPLINES = {
    "Art and Design": ("Art", "Art_Theory", "Design", "Music"),
    "Business": ("Accounting", "Economics", "Finance", "Manage", "Marketing"),
    "Science": ("Biology", "Chemistry", "Geography", "Math", "Physics"),
    "Health and Medicine": ("Basic_Medical_Science", "Clinical_Medicine", "Diagnostics_and_Laboratory_Medicine",
                            "Pharmacy", "Public_Health"),
    "Humanities and Social Science": ("History", "Literature", "Sociology", "Psychology"),
    "Tech and Engineering": ("Agriculture", "Architecture_and_Engineering", "Computer_Science", "Electronics",
                             "Energy_and_Power", "Materials", "Mechanical_Engineering"),
}
_IMAGE_TOKEN = re.compile(r"<image (\d+)>")


def parse_choice(reply: str, letters: Sequence[str], options: Mapping[str, str], rng: random.Random) -> str:
    """The letter a multiple-choice reply gives, by MMMU's rules.

    >>> opts = {"A": "red car", "B": "blue car"}
    >>> rng = random.Random(0)
    >>> [parse_choice(r, "AB", opts, rng) for r in ("(B)", "B.", "The answer is A", "I think it is the blue car here.")]
    ['B', 'B', 'A', 'B']
    """
    for char in (",", ".", "!", "?", ";", ":", "'"):
        reply = reply.strip(char)
    text = f" {reply} "
    candidates = [x for x in letters if f"({x})" in text]
    how = "bracket" if candidates else "letter"
    if not candidates:
        candidates = [x for x in letters if f" {x} " in text]
    if not candidates and len(text.split()) > 5:
        candidates = [x for x in letters if options[x].lower() in text.lower()]
        how = "content"
    if not candidates:
        return rng.choice(list(letters))
    if len(candidates) == 1:
        return candidates[0]

    def position(x: str) -> int:
        if how == "bracket":
            return text.rfind(f"({x})")
        if how == "letter":
            return text.rfind(f" {x} ")
        return text.lower().rfind(options[x].lower())

    return candidates[int(np.argmax([position(x) for x in candidates]))]  # the one that appears last


def _is_number(text: str) -> bool:
    try:
        float(text.replace(",", ""))
    except ValueError:
        return False
    return True


def normalize(text: str) -> list[Any]:
    """MMMU's ``normalize_str``: a number → [it rounded to 2 decimals]; text → [it lower-cased], a
    single character padded both ways so it does not match inside words.

    >>> normalize(" 1,234.567 "), normalize("Paris"), normalize("A")
    ([1234.57], ['paris'], [' a', 'a '])
    """
    text = text.strip()
    if _is_number(text):
        return [round(float(text.replace(",", "")), 2)]
    text = text.lower()
    return [" " + text, text + " "] if len(text) == 1 else [text]


_NUMBERS = (re.compile(r"-?\b\d{1,3}(?:,\d{3})+\b"), re.compile(r"-?\d+(?:\.\d+)?[eE][+-]?\d+"),
            re.compile(r"-?(?:\d+\.\d+|\.\d+|\d+\b)(?![eE][+-]?\d+)(?![,\d])"))


def numbers(text: str) -> list[str]:
    """Numbers written with thousands commas, in scientific notation, and plain — in that order, and
    as MMMU's patterns find them (the plain one also finds parts of the others).

    >>> numbers("it costs 1,200 or 3e5 or 4.5")
    ['1,200', '3e5', '200', '5', '4.5']
    """
    return [n for pattern in _NUMBERS for n in pattern.findall(text)]


_INDICATORS = ("could be ", "so ", "is ", "thus ", "therefore ", "final ", "answer ", "result ")


def parse_open(reply: str) -> list[Any]:
    """The normalised candidates of an open reply (MMMU's ``parse_open_response``).

    >>> sorted(map(str, parse_open("The area is 12.50 square meters.")))
    ['12.5', '12.50 square meters']
    """
    text = reply.strip().strip(".").lower()
    parts = re.split(r"\.\s(?=[A-Z])|\n", text)  # lower-cased first, as MMMU: in effect, lines
    keys = []
    for index, part in enumerate(parts):
        indicators = _INDICATORS + (("=",) if index == len(parts) - 1 else ())
        shortest = None
        for indicator in indicators:
            if indicator in part:
                tail = part.split(indicator)[-1].strip()
                if not shortest or len(tail) < len(shortest):
                    shortest = tail
        if shortest and shortest.strip() not in (":", ",", ".", "!", "?", ";", "'"):
            keys.append(shortest)
    keys = keys or [text]
    found = list(keys) + [n for k in keys for n in numbers(k)]
    return list({x for item in found for x in normalize(item)})


def open_correct(reference: str | Sequence[str], candidates: Sequence[Any]) -> bool:
    """MMMU's ``eval_open``: a text reference inside a text candidate, or a number equal to one.

    >>> open_correct("12.5", parse_open("The area is 12.50 square meters.")), open_correct("Paris", ["lyon"])
    (True, False)
    """
    refs = [x for r in ([reference] if isinstance(reference, str) else reference) for x in normalize(r)]
    for candidate in candidates:
        if isinstance(candidate, str):
            if any(isinstance(r, str) and r in candidate for r in refs):
                return True
        elif candidate in refs:
            return True
    return False


def _options(row: Mapping[str, Any]) -> list[str]:
    raw = row.get("options") or "[]"
    return list(ast.literal_eval(raw)) if isinstance(raw, str) else list(raw)


def subject(sample_id: str) -> str:
    """``validation_Art_Theory_12`` → ``Art_Theory``."""
    return "_".join(sample_id.split("_")[1:-1])


def discipline(name: str) -> str:
    return next((d for d, subjects in DISCIPLINES.items() if name in subjects), "other")


def references_of(answer: Any) -> tuple[str, ...]:
    """The reference answers of a row: a list as such, and so is a string that spells a Python list
    of strings — the hub copy stores a few open answers so (Math_15 "['24/7', '3.429']", Geography_4,
    Chemistry_30), where MMMU's own answer file has the list and ``eval_open`` accepts any of them.

    >>> references_of("['24/7', '3.429']"), references_of("12.5"), references_of(["Tampa", "Florida"])
    (('24/7', '3.429'), ('12.5',), ('Tampa', 'Florida'))
    >>> references_of("[1, 2] is an interval")
    ('[1, 2] is an interval',)
    """
    if isinstance(answer, (list, tuple)):
        return tuple(str(a) for a in answer)
    text = str(answer)
    if text.strip().startswith("[") and text.strip().endswith("]"):
        try:
            value = ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):  # brackets that are not a list literal: the answer's own text
            value = None
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return tuple(value)
    return (text,)


def to_sample(row: Mapping[str, Any]) -> EvalSample:
    options = _options(row)
    multiple = row.get("question_type") == "multiple-choice"
    question = str(row["question"])
    text = question + ("\n" + "\n".join(f"({chr(65 + i)}) {o}" for i, o in enumerate(options)) if multiple else "")
    numbers_named = sorted({int(n) for n in _IMAGE_TOKEN.findall(question + " " + " ".join(options))})
    named = [row.get(f"image_{n}") for n in numbers_named] or [row.get("image_1")]
    images = [i.convert("RGB") for i in named if i is not None]
    references = references_of(row["answer"])
    name = subject(str(row["id"]))
    return EvalSample(str(row["id"]), tuple(images), text, references, suffix=MULTIPLE_CHOICE if multiple else OPEN,
                      category=(name, discipline(name)),
                      meta={"question_type": str(row.get("question_type")), "options": options})


def score(prediction: str, sample: EvalSample) -> dict[str, float]:
    if sample.meta["question_type"] == "multiple-choice":
        options = sample.meta["options"]
        letters = [chr(65 + i) for i in range(len(options))]
        picked = parse_choice(prediction, letters, dict(zip(letters, options)), random.Random(f"mmmu:{sample.id}"))
        return {"correct": float(picked in sample.references)}
    return {"correct": float(open_correct(list(sample.references), parse_open(prediction)))}


def aggregate(columns: Mapping[str, np.ndarray]) -> dict[str, float]:
    return {"accuracy": mean_of("correct")(columns)}


def make(data: str | None = None) -> Task:
    return benchmark_task(
        "mmmu", "MMMU", data, hub_id=HUB_ID, split=SPLIT, to_sample=to_sample, score=score, aggregate=aggregate,
        headline="accuracy", max_new_tokens=128, version="2",  # 2: list answers read as lists
        notes="Categories: the 30 subjects and the 6 disciplines; overall accuracy is over all questions.")
