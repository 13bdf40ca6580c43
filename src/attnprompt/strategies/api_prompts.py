"""Every prompt a strategy sends, quoted from the API paper (Yu et al., ECCV 2024, §9.3), and where
the task's answer-format suffix goes.

The paper's typography shows curly quotes and apostrophes; the prompts use the plain ASCII ones a
user would type. ``{question}`` is the dataset's question; ``{answer}`` an earlier answer.

Where the suffix goes. The paper adds each dataset's answer-format instruction ("Answer the question
using a single word or phrase.") to the original question (§9.3, "Implementation on each dataset"),
so wherever a template asks the model to answer, its ``[Question]`` is the question followed by the
suffix (:func:`with_suffix`). Where a template quotes the question inside an instruction about
something else — the T/F evaluation, the textual self-reflection's second round — the bare question
is quoted; the suffix would ask for an answer format that instruction does not want.

>>> STEP_BY_STEP.format(question=with_suffix("What is on the table?", "Please answer yes or no."))
"What is on the table? Please answer yes or no. Let's think step by step."
"""

from __future__ import annotations

from ..text import with_suffix

__all__ = ["EVALUATE", "FINAL_ANSWER", "REEMPHASIZE", "SELF_REFLECT", "STEP_BY_STEP", "parse_verdict", "with_suffix"]

#: The "Step-by-Step" baseline (§9.3, after Kojima et al.): "[Question] Let's think step by step."
STEP_BY_STEP = "{question} Let's think step by step."

#: "API + reflection via re-emphasize" (§9.3), with the annotated image.
REEMPHASIZE = "{question} (Hint: The answer is related to the unmasked visible regions)."

#: "API + reflection via evaluation" (§9.3), with the annotated image: "T" → answer with the
#: annotated image, "F" → with the original.
EVALUATE = (
    'For this image, the question is "{question}". Evaluate whether the unmasked visible regions of the image '
    'alone can provide an answer to the question. If they suffice to answer the question, respond with letter '
    '"T". If they do not support an answer to the question, reply with the letter "F".'
)

#: Textual self-reflection, second round of the same conversation (§9.3).
SELF_REFLECT = (
    'For the Question "{question}", Your previous answer is "{answer}". Evaluate the quality of the answer and '
    "provide a new answer."
)

#: Ours, not the paper's: the paper deleted the evaluation sentences of the second round by hand; a
#: third turn of the same conversation asks for the new answer alone, in the task's format (the
#: suffix follows it), and its reply is the final answer.
FINAL_ANSWER = 'Reply with your new answer to the question "{question}" alone.'


def parse_verdict(reply: str) -> str | None:
    """The evaluation's verdict: ``"T"``, ``"F"``, or None when the reply does not say one clearly.

    The letter standing alone as a word, in either case (``T``, ``"f".``, ``I would say F.``),
    decides when only one of the two letters occurs; with neither, a reply that starts with the
    word true or false does; anything else (both letters, neither, an empty reply) is unparseable.

    >>> [parse_verdict(r) for r in ("T", ' "f". ', "True, they do.", "I would say F.", "T or F?", "Yes", "")]
    ['T', 'F', 'T', 'F', None, None, None]
    """
    words = [w.strip("\"'.,:;!?()[]*").upper() for w in reply.split()]
    words = [w for w in words if w]
    letters = {w for w in words if w in ("T", "F")}
    if len(letters) == 1:
        return letters.pop()
    if not letters and words and words[0] in ("TRUE", "FALSE"):
        return words[0][0]
    return None
