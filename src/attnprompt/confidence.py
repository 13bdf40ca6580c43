"""How sure the answering VLM is, read from an answer's token log-probabilities (``Answer.logprobs``):
the probability of "yes" against "no" for a yes/no question, and the probability of an answer's first
token.

Ask for them with ``Request(top_logprobs=k)``: a local model gives them from its generation's logits (no
extra forward pass), an OpenAI-compatible server through ``logprobs``/``top_logprobs`` (vLLM and SGLang
return them). An answer without them raises :class:`LogprobsUnavailableError`, naming what needed them.

ZoomEye (``om-ai-lab/ZoomEye``, ``ZoomEye/zoom_model.py``) scores a yes/no prompt by the softmax of two
logits at the last prompt position, those of the single tokens ``"Yes"`` and ``"No"``, and maps it to
``2p − 1``. Here the same ratio sums every listed token that reads yes (or no) in any casing, with or
without a leading space or word-start marker: a server lists decoded text (``" Yes"``), a tokenizer its
vocabulary entries (``"▁Yes"``, ``"ĠYes"``), and chat models start with either spelling.

>>> from attnprompt.types import Answer, TokenLogprob
>>> a = Answer("Yes", logprobs=[TokenLogprob("Yes", -0.2, (("Yes", -0.2), (" yes", -2.0), ("No", -3.0)))])
>>> round(yes_probability(a), 3)
0.95
"""

from __future__ import annotations

import math

from .errors import AttnpromptError, InputError
from .types import Answer, TokenLogprob

__all__ = ["LogprobsUnavailableError", "first_token_probability", "require_logprobs", "yes_no_word",
           "yes_probability"]

#: Word-start markers a tokenizer's vocabulary entries carry (SentencePiece ``▁``, byte-level BPE ``Ġ``).
_MARKERS = "\u2581\u0120"


class LogprobsUnavailableError(AttnpromptError):
    """An answer carries no token log-probabilities, and something needs them."""


def yes_no_word(token: str) -> str | None:
    """``"yes"`` or ``"no"`` when a token reads so (any casing, leading spaces or word-start markers), else None.

    >>> [yes_no_word(t) for t in ("Yes", " yes", "\u2581YES", "\u0120No", "no.", "Yesterday")]
    ['yes', 'yes', 'yes', 'no', None, None]
    """
    word = token.strip().lstrip(_MARKERS).strip().lower()
    return word if word in ("yes", "no") else None


def require_logprobs(answer: Answer, needed_by: str) -> tuple[TokenLogprob, ...]:
    """``answer``'s token log-probabilities; :class:`LogprobsUnavailableError` (naming ``needed_by`` and who
    answered) when it has none, :class:`~attnprompt.errors.InputError` for a failed answer (it has no tokens).

    >>> require_logprobs(Answer("red", model="http://h/v1#m"), "zoom-search")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    attnprompt.confidence.LogprobsUnavailableError: zoom-search needs the answer's token log-probabilities, and ...
    """
    if not answer.ok:
        raise InputError(f"{needed_by} cannot read probabilities from a failed answer ({answer.error}); "
                         "check answer.ok first")
    if not answer.logprobs:
        who = f"{answer.model!r}" if answer.model else "the backend"
        raise LogprobsUnavailableError(
            f"{needed_by} needs the answer's token log-probabilities, and {who} returned none: ask with "
            "Request(top_logprobs=k); a server must return 'logprobs' (vLLM and SGLang do, --max-logprobs ≥ k); "
            "for one that cannot, use a strategy that only reads text (zoom-refine, plain)")
    return answer.logprobs


def yes_probability(answer: Answer, *, needed_by: str = "yes_probability") -> float | None:
    """P(yes) / (P(yes) + P(no)) at the answer's first token, summed over every yes (no) spelling listed
    there (the chosen token and its alternatives); None when neither word is listed (ask for more
    alternatives). ZoomEye's confidence is ``2 · p − 1`` of this.

    >>> from attnprompt.types import TokenLogprob
    >>> no = Answer("no", logprobs=[TokenLogprob("no", math.log(0.6), (("no", math.log(0.6)), ("yes", math.log(0.2))))])
    >>> yes_probability(no)
    0.25
    """
    first = require_logprobs(answer, needed_by)[0]
    mass = {"yes": 0.0, "no": 0.0}
    listed = first.top if any(t == first.token for t, _ in first.top) else ((first.token, first.logprob), *first.top)
    for token, logprob in listed:
        word = yes_no_word(token)
        if word is not None:
            mass[word] += math.exp(logprob)
    total = mass["yes"] + mass["no"]
    return None if total <= 0.0 else mass["yes"] / total


def first_token_probability(answer: Answer, *, needed_by: str = "first_token_probability") -> float:
    """The probability the model gave its answer's first token (how sure it was as it started answering).

    >>> from attnprompt.types import TokenLogprob
    >>> first_token_probability(Answer("red", logprobs=[TokenLogprob("red", math.log(0.8))]))
    0.8
    """
    return math.exp(require_logprobs(answer, needed_by)[0].logprob)
