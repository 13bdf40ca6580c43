"""Reading a model's reply: the few text rules the testbed's questions and the metrics share."""

from __future__ import annotations

import re


def first_word(text: str) -> str:
    """A reply's first word, lower-cased, without punctuation around it.

    >>> first_word(" Red. It is red."), first_word("")
    ('red', '')
    """
    words = re.sub(r"[.,!?;:\"'()]", " ", text.strip().lower()).split()
    return words[0] if words else ""
