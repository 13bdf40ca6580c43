"""Reading Zoom-Refine's and ZoomEye's replies: boxes, answers and targets from real-looking replies,
unparseable ones included (a reason, never a made-up box); and the quoted prompts pinned."""

from __future__ import annotations

import pytest

from attnprompt.strategies.zoom_prompts import (
    ZOOM_REFINE_FIRST,
    ZOOM_REFINE_FOLLOW_UP,
    ZOOMEYE_ANSWERING,
    parse_refine_answer,
    parse_refine_box,
    parse_targets,
    refine_crop_box,
)

INTERNVL_STYLE = """**Answer: C**

To determine the correct option I looked at the sign on the left of the shop.

**Bounding box: [0.05, 0.32, 0.41, 0.77]**"""

GPT_STYLE = """1. **Provide Your Answer:** Answer: B

2. **Identify Critical Area:** The relevant area is the small label on the bottle in the lower right.
**Bounding box:** [0.62, 0.58, 0.91, 0.97]"""

TWO_BOXES = """Answer: A
At first I thought of bbox: [0.1, 0.1, 0.2, 0.2], but the clock is higher up.
Bounding box: [0.40, 0.02, 0.58, 0.21]"""


@pytest.mark.parametrize("reply, box", [
    (INTERNVL_STYLE, (0.05, 0.32, 0.41, 0.77)),
    (GPT_STYLE, (0.62, 0.58, 0.91, 0.97)),
    (TWO_BOXES, (0.40, 0.02, 0.58, 0.21)),  # the last one counts
    ("Answer: D\nbounding box：[ .2 , .25 , .5 , .9 ]", (0.2, 0.25, 0.5, 0.9)),  # full-width colon, bare decimals
    ("Answer: D\nBBOX [0.3, 0.3, 0.6, 0.6]", (0.3, 0.3, 0.6, 0.6)),  # no colon
    ("Answer: B\nBounding box: [0.1, 0.2, 1.3, 0.9]", (0.1, 0.2, 1.0, 0.9)),  # clamped to the image
    ("Answer: B\nBounding box: [0.95, 0.2, 1.4, 0.9]", (0.95, 0.2, 1.0, 0.9)),
])
def test_boxes_are_read_as_zoom_refine_reads_them(reply, box):
    got, why = parse_refine_box(reply)
    assert why is None and got == pytest.approx(box)


@pytest.mark.parametrize("reply, reason", [
    ("The answer is B because the sign is red.", 'no "Bounding box: [x1, y1, x2, y2]" in the reply'),
    ("Answer: B\nBounding box: [x1, y1, x2, y2]", "no \"Bounding box"),  # the template echoed
    ("Answer: B\nBounding box: (0.1, 0.2, 0.3, 0.4)", "no \"Bounding box"),  # not in square brackets
    ("Answer: B\nBounding box: [-0.1, 0.2, 0.3, 0.4]", "no \"Bounding box"),  # a sign is not read
    ("Answer: B\nBounding box: [0.6, 0.2, 0.3, 0.4]", "is not x1 < x2, y1 < y2"),
    ("Answer: B\nBounding box: [0.1, 0.5, 0.3, 0.5]", "is not x1 < x2, y1 < y2"),
    ("Answer: B\nBounding box: [120, 40, 300, 200]", "lies outside the image once clamped"),  # pixels
    ("Answer: B\nBounding box: [0.1.2, 0.2, 0.3, 0.4]", "not a number"),
    ("", 'no "Bounding box'),
])
def test_unparseable_boxes_say_why(reply, reason):
    box, why = parse_refine_box(reply)
    assert box is None and reason in why and "\n" not in why


def test_the_crop_grows_by_a_tenth_and_stays_in_the_image():
    assert refine_crop_box((0.05, 0.32, 0.41, 0.77), (2000, 1000)) == (0, 220, 1020, 870)
    assert refine_crop_box((0.95, 0.9, 1.0, 1.0), (100, 100)) == (85, 80, 100, 100)
    assert refine_crop_box((0.5, 0.5, 0.5 + 1e-6, 0.5 + 1e-6), (10, 10), padding=0.0) == (5, 5, 6, 6)  # ≥ 1 px


@pytest.mark.parametrize("reply, label, answer", [
    (INTERNVL_STYLE, "Answer", "C"),
    (GPT_STYLE, "Answer", "B"),
    ("**Rechecked Answer:** (A)\nBecause …", "Rechecked Answer", "(A)"),
    ("Rechecked Answer: red", "Answer", None),  # "Answer" is not read inside "Rechecked Answer"
    ('Answer： "a red star"', "Answer", "a red star"),
    ("I cannot tell.", "Answer", None),
])
def test_answers_are_read_after_their_label(reply, label, answer):
    assert parse_refine_answer(reply, label) == answer


def test_targets_are_read_from_zoomeyes_sentence():
    reply = ("To answer the question, I need know the location of the girl with pink hair and the man with backpack "
             "so that I can determine the positional relationship between the two of them. So I need the information "
             "about the following objects: girl with pink hair and man with backpack.")
    assert parse_targets(reply) == ["girl with pink hair", "man with backpack"]
    assert parse_targets("So I need the information about the following objects: sign, car, and tree") == [
        "sign", "car", "tree"]
    assert parse_targets("The red sign.") == []


def test_the_quoted_prompts_are_pinned():
    assert ZOOMEYE_ANSWERING.format("What colour is the star?") == (
        "Question: What colour is the star?\nCould you answer the question based on the the available visual "
        "information? Answer Yes or No.")
    assert ZOOM_REFINE_FIRST.startswith(" Question: {question}\nYour task:\n1.**Provide Your Answer:**")
    assert "Then output in the format**Bounding box: [x1, y1, x2, y2]**\n\n\n\n" in ZOOM_REFINE_FIRST
    assert "cropped image.    \nIdentify potential omission" in ZOOM_REFINE_FOLLOW_UP
    assert ZOOM_REFINE_FOLLOW_UP.count('**"Rechecked Answer: [Letter]"**') == 2
