"""Text rules every part shares: where a task's answer-format suffix goes, and reading a model's reply."""

from __future__ import annotations

import re


def first_word(text: str) -> str:
    """A reply's first word, lower-cased, without punctuation around it.

    >>> first_word(" Red. It is red."), first_word("")
    ('red', '')
    """
    words = re.sub(r"[.,!?;:\"'()]", " ", text.strip().lower()).split()
    return words[0] if words else ""


def with_suffix(text: str, suffix: str | None) -> str:
    """``text`` followed by the task's answer-format suffix (if any): after a space, or as it is when
    the suffix starts with a line break (MMMU's "\\n\\nAnswer with the option's letter …").

    >>> with_suffix("Is there a dog?", "Please answer yes or no."), with_suffix("Is there a dog?", "")
    ('Is there a dog? Please answer yes or no.', 'Is there a dog?')
    >>> with_suffix("A or B?", "\\n\\nAnswer with the letter.")
    'A or B?\\n\\nAnswer with the letter.'
    """
    if not suffix:
        return text
    return f"{text}{suffix}" if suffix.startswith("\n") else f"{text} {suffix}"
