"""The prompts of the searched and refined zooms, quoted from their public code (facts, quoted; the code
around them is ours), and reading their replies.

- ZoomEye (``om-ai-lab/ZoomEye``, ``ZoomEye/zoom_model.py``, ``zoom_model_qwenvl.py``,
  ``zoom_model_internvl.py``; ``ZoomEye/eval/perform_zoom_eye.py``; ``ZoomEye/ic_examples/vstar.json``):
  the existence, latent and answering questions a node is scored with (one image; and with two images, the
  whole image with the focus region boxed and the zoomed-in view), and the few-shot prompt that names the
  question's targets. ``{}`` is the target or the question, as in the original (its "the the" kept).
- Zoom-Refine (``xavier-yu114/Zoom-Refine``, ``zoomrefine/ZoomRefine_API.py``, the OpenAI-compatible
  version): the system prompt, the first turn (an answer and the box of the region that matters, normalised
  ``[x1, y1, x2, y2]``) and the follow-up turn that shows the crop. The first turn's leading space and the
  missing spaces after some periods are the original's.

The readers (:func:`parse_refine_box`, :func:`refine_crop_box`, :func:`parse_refine_answer`,
:func:`parse_targets`) are written here from the originals' documented behaviour;
``docs/research/zoom-methods.md`` says what each does and where ours differs.

>>> ZOOMEYE_EXISTENCE.format("red star")
'Is there a red star in the image? Answer Yes or No.'
"""

from __future__ import annotations

import math
import re

__all__ = ["ZOOMEYE_ANSWERING", "ZOOMEYE_DECOMPOSED", "ZOOMEYE_EXISTENCE", "ZOOMEYE_LATENT", "ZOOMEYE_TARGETS",
           "ZOOMEYE_TARGET_EXAMPLES", "ZOOMEYE_ZOOM_EXISTENCE", "ZOOMEYE_ZOOM_LATENT", "ZOOMEYE_ZOOM_PREAMBLE",
           "ZOOM_REFINE_FIRST", "ZOOM_REFINE_FOLLOW_UP", "ZOOM_REFINE_PADDING", "ZOOM_REFINE_SYSTEM",
           "parse_refine_answer", "parse_refine_box", "parse_targets", "refine_crop_box", "refine_first",
           "refine_follow_up"]

# ruff: noqa: E501  (the originals' lines)

# -- ZoomEye ----------------------------------------------------------------------------------------------

#: One image (the node's window, or the whole image): is the target there?
ZOOMEYE_EXISTENCE = "Is there a {} in the image? Answer Yes or No."
#: One image: could zooming in find the target? (the any-res and InternVL/Qwen wrappers' "global" wording)
ZOOMEYE_LATENT = "According to your common sense knowledge and the content of image, is it possible to find a {} by further zooming in the image? Answer Yes or No and tell the reason."
#: Could the question be answered from what is shown? (``{}``: the question, or :data:`ZOOMEYE_DECOMPOSED`)
ZOOMEYE_ANSWERING = "Question: {}\nCould you answer the question based on the the available visual information? Answer Yes or No."
#: Two images: the whole image with the focus region boxed in red, then the zoomed-in view; this text
#: (the images' places marked ``<image>`` in the original) comes before the question.
ZOOMEYE_ZOOM_PREAMBLE = ("This is the main image, and the section enclosed by the red rectangle is the focus region.\n",
                         "This is the zoomed-in view of the focus region.\n")
#: Two images: is the target in the zoomed-in view?
ZOOMEYE_ZOOM_EXISTENCE = "Is there a {} in the zoomed-in view? Answer Yes or No."
#: Two images: could zooming further into the view find the target?
ZOOMEYE_ZOOM_LATENT = "According to your common sense knowledge and the content of the zoomed-in view, along with its location in the image, is it possible to find a {} by further zooming in the current view? Answer Yes or No and tell the reason."
#: With several targets, each target's answering question is this (``{}``: the target).
ZOOMEYE_DECOMPOSED = "What is the appearance of the {}?"
#: The target-naming turn (text only, few-shot: :data:`ZOOMEYE_TARGET_EXAMPLES` as earlier turns).
ZOOMEYE_TARGETS = "Question: {}\nIf you want to answer the question, which objects' information do you need?"
#: ZoomEye's V* few-shot examples: (question, the assistant's reply).
ZOOMEYE_TARGET_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("What is the color of the boy's bag?",
     "To answer the question, I need know the location of the boy with a bag so that I can determine the color of the bag. So I need the information about the following objects: boy with a bag."),
    ("Is the yellow car on the left or right side of the white car?",
     "To answer the question, I need know the location of the yellow car and the white car so that I can determine the positional relationship between the two of them. So I need the information about the following objects: white car and yellow car."),
    ("Tell me the number on the black board.",
     "To answer the question, I need know the location of the black board so that I can determine the number on it. So I need the information about the following objects: black board"),
    ("Is the girl with pink hair on the left or right side of the man with backpack?",
     "To answer the question, I need know the location of the girl with pink hair and the man with backpack so that I can determine the positional relationship between the two of them. So I need the information about the following objects: girl with pink hair and man with backpack."),
    ("What kind of animal is on the red sign?",
     "To answer the question, I need know the location of the red sign so that I can determine the kind of animal on it. So I need the information about the following objects: red sign."),
    ("From the information on that advertising board, what is the type of this shop?",
     "To answer the question, I need know the location of the advertising board so that I can determine the type of the shop. So I need the information about the following objects: advertising board."),
)
_TARGETS_SAID = re.compile(r"So I need the information about the following objects: (.+)")


def parse_targets(reply: str) -> list[str]:
    """The targets a reply to :data:`ZOOMEYE_TARGETS` names: after "So I need the information about the
    following objects: ", its final period dropped, split on " and " and ", " (ZoomEye's reading; ours also
    drops the "and " of a serial comma); none when the sentence is missing. (ZoomEye also drops targets
    holding a pronoun, with spaCy; we do not.)

    >>> parse_targets("… So I need the information about the following objects: white car and yellow car.")
    ['white car', 'yellow car']
    >>> parse_targets("I need the car.")
    []
    """
    found = _TARGETS_SAID.search(reply)
    if not found:
        return []
    said = found.group(1).strip()
    said = said[:-1] if said.endswith(".") else said
    parts = (t.strip() for t in re.split(r" and |, ", said))
    return [t[4:].strip() if t.lower().startswith("and ") else t for t in parts if t]


# -- Zoom-Refine ------------------------------------------------------------------------------------------

#: Zoom-Refine's system prompt.
ZOOM_REFINE_SYSTEM = "You are an advanced image understanding assistant.You will be given an image and a question about it.\n"
#: The first turn, after the image: the answer, then the box of the region that matters.
ZOOM_REFINE_FIRST = """ Question: {question}
Your task:
1.**Provide Your Answer:** Examining the image and the question thoroughly, answer the question in the format **"Answer: [Letter]"**, where [Letter] is only the letter (A, B, C, D) of the correct option.
2.**Identify Critical Area:**After output the answer,please determine which area most relevant to the question.Then,please determine a bounding box (normalized coordinates, 0 <= x1, y1, x2, y2 <= 1, x1 < x2, y1 < y2) of the area. Ensure the bounding box is large enough to include all the surrounding context that might be relevant to answering the question (such as information about the table row or column, nearby text, interacting objects, relevant background).Then output in the format**Bounding box: [x1, y1, x2, y2]**



"""
#: The follow-up turn of the same conversation, after the crop.
ZOOM_REFINE_FOLLOW_UP = (
    'I will provide you an extra image which is cropped from the original image.Just treat the newly input cropped image as an additional information to the local detail information.(The cropped image is clearer)\n'
    'Please examine the cropped image.(The cropped image may not contain the information needed to answer the question,then ignore this cropped image)\n'
    'Review the original image and combine with the information from the cropped image.    \n'
    'Identify potential omission of information in visual perception or calculation based on the image and question.\n'
    'If you think your previous answer is correct,please reasoning to explain why and conclude your response with the format **"Rechecked Answer: [Letter]"**, where [Letter] is only the letter (A, B, C, D) of the correct option.\n'
    'If you think your previous answer is wrong, please reasoning to explain why and correct the answer. Conclude your response with the format **"Rechecked Answer: [Letter]"**, where [Letter] is only the letter (A, B, C, D) of the correct option.\n'
)
# the multiple-choice sentences of the two turns, and ours for any question (the task's suffix says the format)
_LETTER_ANSWER = ('answer the question in the format **"Answer: [Letter]"**, where [Letter] is only the letter '
                  '(A, B, C, D) of the correct option.')
_LETTER_RECHECK = ('with the format **"Rechecked Answer: [Letter]"**, where [Letter] is only the letter (A, B, C, D) '
                   'of the correct option.')


def refine_first(question: str, suffix: str = "") -> str:
    """Zoom-Refine's first turn for any question (ours): its multiple-choice sentence ("answer … in the format
    **"Answer: [Letter]"**, where [Letter] is only the letter …") becomes "answer the question in the format
    **"Answer: [answer]"**." followed by the task's answer-format ``suffix``.

    >>> text = refine_first("What colour is the star?", "Answer in one word.")
    >>> text.splitlines()[0], '**"Answer: [answer]"**. Answer in one word.' in text, "[Letter]" in text
    (' Question: What colour is the star?', True, False)
    """
    free = 'answer the question in the format **"Answer: [answer]"**.' + (f" {suffix}" if suffix else "")
    head, tail = ZOOM_REFINE_FIRST.split(_LETTER_ANSWER)  # the suffix is text, never a format string
    return head.format(question=question) + free + tail


def refine_follow_up() -> str:
    """Zoom-Refine's follow-up turn for any question (ours): "Rechecked Answer: [answer]" without the letter.

    >>> "[Letter]" in refine_follow_up(), refine_follow_up().count('**"Rechecked Answer: [answer]"**.')
    (False, 2)
    """
    return ZOOM_REFINE_FOLLOW_UP.replace(_LETTER_RECHECK, 'with the format **"Rechecked Answer: [answer]"**.')


#: How much the predicted box grows on each side before the crop, in fractions of the image's sides.
ZOOM_REFINE_PADDING = 0.1

# "Bounding box" or "bbox", any case, optional ** around the label, an optional colon (ASCII or full-width),
# then four unsigned decimals in square brackets
_BOX = re.compile(r"(?:\*\*)?(?:bounding box|bbox)(?:\*\*)?\s*[:：]?\s*(?:\*\*)?\s*"
                  r"\[\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*\]", re.IGNORECASE)


def parse_refine_box(reply: str) -> tuple[tuple[float, float, float, float] | None, str | None]:
    """The box a Zoom-Refine reply gives, normalised ``(x1, y1, x2, y2)`` in [0, 1], and ``None``; or ``None``
    and why there is none. As Zoom-Refine reads it: the **last** "Bounding box: [x1, y1, x2, y2]" (or "bbox"),
    its numbers in order as written (``x1 < x2``, ``y1 < y2``), then clamped to [0, 1] (a side emptied by the
    clamp is widened by 1e-6; still empty: no box).

    >>> parse_refine_box("Answer: B\\n**Bounding box: [0.12, 0.3, 0.45, 0.62]**")
    ((0.12, 0.3, 0.45, 0.62), None)
    >>> parse_refine_box("The answer is B.")
    (None, 'no "Bounding box: [x1, y1, x2, y2]" in the reply')
    """
    found = _BOX.findall(reply or "")
    if not found:
        return None, 'no "Bounding box: [x1, y1, x2, y2]" in the reply'
    text = found[-1]
    try:
        x1, y1, x2, y2 = (float(v) for v in text)
    except ValueError:
        return None, f"the box [{', '.join(text)}] holds something that is not a number"
    if not (x1 < x2 and y1 < y2):
        return None, f"the box [{', '.join(text)}] is not x1 < x2, y1 < y2"
    box = [min(1.0, max(0.0, v)) for v in (x1, y1, x2, y2)]
    for lo, hi in ((0, 2), (1, 3)):
        if box[lo] >= box[hi]:
            box[hi] = min(1.0, box[lo] + 1e-6)
    if not (box[0] < box[2] and box[1] < box[3]):
        return None, (f"the box [{', '.join(text)}] lies outside the image once clamped to [0, 1] (normalised "
                      "coordinates are asked for, not pixels)")
    return (box[0], box[1], box[2], box[3]), None


def refine_crop_box(box: tuple[float, float, float, float], size: tuple[int, int],
                    padding: float = ZOOM_REFINE_PADDING) -> tuple[int, int, int, int]:
    """The crop in pixels ``(x0, y0, x1, y1)`` (ends exclusive) of a normalised box on an image of ``size``
    (W, H): grown by ``padding`` of the image's width and height on each side, clamped to the image, outer
    pixels rounded outwards, at least one pixel (Zoom-Refine's crop).

    >>> refine_crop_box((0.25, 0.25, 0.5, 0.5), (1000, 800))
    (150, 120, 600, 480)
    """
    W, H = size
    x1, y1, x2, y2 = (max(0.0, box[0] - padding), max(0.0, box[1] - padding),
                      min(1.0, box[2] + padding), min(1.0, box[3] + padding))
    left = min(W - 1, max(0, math.floor(round(x1 * W, 9))))
    top = min(H - 1, max(0, math.floor(round(y1 * H, 9))))
    right = max(left + 1, min(W, math.ceil(round(x2 * W, 9))))
    bottom = max(top + 1, min(H, math.ceil(round(y2 * H, 9))))
    return (left, top, right, bottom)


def parse_refine_answer(reply: str, label: str = "Answer") -> str | None:
    """The answer a reply states after ``label`` ("Answer" or "Rechecked Answer"; optional ``**``, an ASCII or
    full-width colon), its last occurrence: the rest of that line without the markdown and quotes around it;
    None when absent.
    (Zoom-Refine reads a letter A–E there; free-form answers are ours.) "Answer" never matches inside
    "Rechecked Answer".

    >>> parse_refine_answer('**Answer: (B)**\\n**Bounding box: [0.1, 0.1, 0.2, 0.2]**')
    '(B)'
    >>> parse_refine_answer("Rechecked Answer: red", "Rechecked Answer"), parse_refine_answer("Rechecked Answer: red")
    ('red', None)
    """
    pattern = rf"(?<!rechecked )(?<![A-Za-z])(?:\*\*)?{re.escape(label)}(?:\*\*)?\s*[:：]"
    found = list(re.finditer(pattern, reply or "", re.IGNORECASE))
    if not found:
        return None
    # the last label: a heading that names it ("**Provide Your Answer:** Answer: B") comes before the answer
    text = (reply[found[-1].end():].split("\n", 1)[0]).strip().strip("*").strip().strip("\"'").strip()
    return text or None
