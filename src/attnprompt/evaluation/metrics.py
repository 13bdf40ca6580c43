"""Metrics as pure functions: a prediction and its references → per-sample scores; columns of
per-sample scores → a corpus value; and the paired bootstrap that puts an interval on a difference.

Per-sample functions take the model's reply and the references and return a number. Corpus
aggregates take a mapping of score columns (name → 1-D array, one entry per sample) and return one
number, so that a bootstrap can resample rows by indexing every column at once.

>>> vqa_accuracy("Two", ["2"] * 3 + ["3"] * 7)
0.9
>>> pope_metrics({"pred_yes": np.array([1, 1, 0, 0]), "gold_yes": np.array([1, 0, 0, 1])})["f1"]
0.5
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ..text import first_word

__all__ = [
    "REFUSALS",
    "BootstrapInterval",
    "bootstrap",
    "can_infer",
    "can_infer_option",
    "can_infer_text",
    "exact_match",
    "first_word",
    "first_word_match",
    "mean_of",
    "normalize_answer",
    "normalize_vicrop",
    "normalize_vqa",
    "option_letters",
    "paired_bootstrap",
    "parse_letter",
    "parse_yes_no",
    "pope_metrics",
    "vicrop_accuracy",
    "vqa_accuracy",
    "yes_no_match",
    "yes_no_scores",
]

Columns = Mapping[str, np.ndarray]

# -- answer normalisation ---------------------------------------------------------------------------


def normalize_answer(text: str) -> str:
    """Lower-case, punctuation and the articles a/an/the removed, whitespace collapsed.

    >>> normalize_answer("  The Red  square! ")
    'red square'
    """
    text = re.sub(r"[^\w\s]", " ", text.lower())
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


_NUMBER_WORDS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                 "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
# The VQA evaluation's punctuation: removed where it touches a space (or the text has a digit,digit),
# else replaced by a space.
_VQA_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?",
              "!")
_DIGIT_COMMA_DIGIT = re.compile(r"(?<=\d),+(?=\d)")
_PERIOD = re.compile(r"\.(?!\d)")


# The VQA evaluation's contraction table, key for key (120 entries; the EvalAI answer processor's
# spelling with ASCII apostrophes, which LLaVA's m4c_evaluator and lmms-eval use — GT-Vision-Lab's
# vqaEval.py has the same keys, its expansions mostly written with ’). Kept as the original has it,
# quirks included: the capitalised keys (Im, Ive, Id've, I'dve) never match the lower-cased text, so
# "im" stays "im"; "somebody'd" maps to "somebodyd"; "she's" never matches after "'s" is split off.
_CONTRACTION_TABLE = """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've
couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've hadn'tve=hadn't've
hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's howd=how'd howll=how'll hows=how's
Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd itd've=it'd've it'dve=it'd've itll=it'll
let's=let's maam=ma'am mightnt=mightn't mightnt've=mightn't've mightn'tve=mightn't've mightve=might've
mustnt=mustn't mustve=must've neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at
'ows'at='ow's'at 'ow'sat='ow's'at shant=shan't shed've=she'd've she'dve=she'd've she's=she's shouldve=should've
shouldnt=shouldn't shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd
somebodyd've=somebody'd've somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's
someoned=someone'd someoned've=someone'd've someone'dve=someone'd've someonell=someone'll someones=someone's
somethingd=something'd somethingd've=something'd've something'dve=something'd've somethingll=something'll
thats=that's thered=there'd thered've=there'd've there'dve=there'd've therere=there're theres=there's
theyd=they'd theyd've=they'd've they'dve=they'd've theyll=they'll theyre=they're theyve=they've twas='twas
wasnt=wasn't wed've=we'd've we'dve=we'd've weve=we've werent=weren't whatll=what'll whatre=what're whats=what's
whatve=what've whens=when's whered=where'd wheres=where's whereve=where've whod=who'd whod've=who'd've
who'dve=who'd've wholl=who'll whos=who's whove=who've whyll=why'll whyre=why're whys=why's wont=won't
wouldve=would've wouldnt=wouldn't wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll
y'allll=y'all'll yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've
you'dve=you'd've youll=you'll youre=you're youve=you've
"""


_CONTRACTIONS = dict(pair.split("=", 1) for pair in _CONTRACTION_TABLE.split())


def normalize_vqa(text: str) -> str:
    """An answer normalised as the VQA / TextVQA / VizWiz evaluation does: lower-case; ``,`` ``?``
    dropped and ``'s`` split off; newlines and tabs to spaces; punctuation removed where it touches a
    space (or the text holds digit,digit), else turned into a space; a ``.`` not followed by a digit
    removed; number words zero … ten to digits; articles dropped; common contractions restored.

    >>> normalize_vqa("Two dogs."), normalize_vqa("the cat's toy"), normalize_vqa("dont know"), normalize_vqa("3.5")
    ('2 dogs', "cat 's toy", "don't know", '3.5')
    """
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's")
    text = text.replace("\n", " ").replace("\t", " ").strip()
    out = text
    strip_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    for p in _VQA_PUNCT:
        if strip_all or p + " " in text or " " + p in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD.sub("", out)
    words = [_NUMBER_WORDS.get(w, w) for w in out.split()]
    words = [_CONTRACTIONS.get(w, w) for w in words if w not in ("a", "an", "the")]
    return " ".join(words)


def parse_yes_no(text: str) -> str:
    """POPE's reading of a reply, exactly LLaVA's ``eval_pope``: the text before the first ``.``,
    commas dropped, split on single spaces; the word "No", "not" or "no" among them → ``"no"``, else
    ``"yes"`` — so "NO", "Not" and "nothing" read as yes, as they do there.

    >>> [parse_yes_no(t) for t in ("Yes, there is.", "No.", "There is not a cat", "I see a dog", "NO", "Nothing.")]
    ['yes', 'no', 'no', 'yes', 'yes', 'yes']
    """
    words = text.split(".")[0].replace(",", "").split(" ")
    return "no" if any(w in ("No", "not", "no") for w in words) else "yes"


# -- multiple-choice readers ------------------------------------------------------------------------
#
# Every task that reads an option out of a reply reads it here. Each reader follows one reference,
# named in its docstring with every deliberate difference and an example reply.

#: Replies VLMEvalKit's ``can_infer_option`` takes as a refusal (read as "Z": no option).
REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
            "I'm sorry, but without the image provided", "Cannot determine the answer")
#: What VLMEvalKit's ``can_infer_option`` turns into spaces before it splits a reply into words.
_WORD_BREAKS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})
#: VLMEvalKit's reading of a verbose reply ("The correct answer is **B**."), case-insensitive as there.
_ANSWER_IS = re.compile(r"(?:correct\s+)?answer\s+is\s+\**([ABCD])\**", re.IGNORECASE)


def option_letters(options: Sequence[str]) -> str:
    """The letters of ``options``, in order: A, B, C …

    >>> option_letters(["red", "blue", "green"])
    'ABC'
    """
    if len(options) > 26:
        raise ValueError(f"at most 26 options have a letter; got {len(options)}")
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(options)]


def can_infer_option(reply: str, options: Sequence[str], *, legacy: bool = False) -> str | None:
    """The option letter a reply names, as VLMEvalKit's ``can_infer_option`` (``vlmeval/utils/
    matching_util.py``) reads it: ``"Z"`` for one of its refusal sentences (:data:`REFUSALS`); else the
    reply is cut into words at spaces and at ``.()[],:;!*#{}``, and the options' letters are looked for
    among the words, *upper-case only* (so the article "a" is no letter). One letter found → it, if it is
    among the last four words; no letter but the word "Z" → ``"Z"``; otherwise the pattern "(correct)
    answer is X" (any case, ``**`` allowed around the letter) → X. None when nothing is read.

    ``legacy``: the copy lmms-eval's ``hrbench`` task carries (``hrbench_evals.py``, VLMEvalKit before
    August 2025): one letter found → it wherever it stands, and no "answer is X" pattern.

    >>> options = ["a red car", "a blue car", "a green bus", "a white truck"]
    >>> [can_infer_option(r, options) for r in ("It is B.", "I choose B", "B, A blue car", "a blue car.")]
    ['B', 'B', None, None]
    >>> can_infer_option("The answer is B because the car is blue.", options)  # B is the 4th word of 9
    'B'
    >>> r = "B is the one, since the car on the left is blue"
    >>> can_infer_option(r, options), can_infer_option(r, options, legacy=True)
    (None, 'B')

    As VLMEvalKit, "answer is" takes a lower-case letter too, so this reads A:

    >>> can_infer_option("The answer is a blue car", options)
    'A'
    """
    if any(refusal in reply for refusal in REFUSALS):
        return "Z"
    words = reply.translate(_WORD_BREAKS).split()
    named = [letter for letter in option_letters(options) if letter in words]
    if len(named) == 1 and (legacy or words.index(named[0]) >= len(words) - 4):
        return named[0]
    if not named and "Z" in words:
        return "Z"
    if not legacy:
        said = _ANSWER_IS.search(reply)
        if said and said.group(1).upper() in option_letters(options):
            return said.group(1).upper()
    return None


def can_infer_text(reply: str, options: Sequence[str], *, legacy: bool = False) -> str | None:
    """The option whose text a reply contains, as VLMEvalKit's ``can_infer_text``: lower-cased, the
    reply must contain exactly one option's text (as a substring); a reply longer than twice all the
    options' texts together is not read. ``legacy`` (lmms-eval's ``hrbench`` copy): no length limit.

    >>> options = ["a red car", "a blue car", "a green bus", "a white truck"]
    >>> can_infer_text("A blue car.", options), can_infer_text("a red car or a blue car", options)
    ('B', None)
    """
    said = reply.lower()
    if not legacy and len(said) > 2 * sum(len(str(o)) for o in options):
        return None
    found = [letter for letter, option in zip(option_letters(options), options) if str(option).lower() in said]
    return found[0] if len(found) == 1 else None


def can_infer(reply: str, options: Sequence[str], *, legacy: bool = False) -> str | None:
    """The option a reply picks as VLMEvalKit's ``can_infer`` reads it — its letter
    (:func:`can_infer_option`), else its text (:func:`can_infer_text`); ``"Z"`` when it refuses; None
    when neither reads it (VLMEvalKit then asks its judge, or without one scores the reply wrong).
    ``legacy``: lmms-eval's ``hrbench`` copy (see the two readers).

    >>> options = ["a red car", "a blue car", "a green bus", "a white truck"]
    >>> [can_infer(r, options) for r in ("It is B.", "B, A blue car", "a blue car.", "I choose B", "Maybe")]
    ['B', 'B', 'B', 'B', None]
    """
    return can_infer_option(reply, options, legacy=legacy) or can_infer_text(reply, options, legacy=legacy)


# lmms-eval's vstar_bench reader, in its order, less the forms that misread (see parse_letter)
_LETTER_FORMS = (
    re.compile(r"\(?([A-Da-d])\)?[.):\]]?"),  # the whole reply
    re.compile(r"\(?([A-D])(?![A-Za-z0-9'])|\(([a-d])\)|([a-d])[.):\]]"),  # at the start
    re.compile(r"(?i:\b(?:answer|choice|option)(?:\s+is)?)\s*[:\s]\s*"
               r"(?:\(([A-Da-d])\)|([A-D])(?![A-Za-z])|([a-d])(?=\s*(?:$|[.)\],;:!?])))"),
    re.compile(r"\(([A-Da-d])\)"),
    re.compile(r"(?<![A-Za-z])([A-D])\s*[.)\]]"),
    re.compile(r"(?:^|\s)([A-D])(?=$|\s|[,;:!?])"),
)


def parse_letter(reply: str, options: Sequence[str] = ()) -> str | None:
    """The option letter (A–D) a reply picks, as lmms-eval's ``vstar_bench`` reads it
    (``extract_answer_letter``) less its misreads, or None. Tried in lmms-eval's order, the first that
    matches wins: the whole reply a letter ("B", "(b)", "a."); a letter at the start ("D - leather",
    "A cat", "(c) wool", "b. cotton"); after "answer", "choice" or "option" (with "is", a colon)
    ("Answer: D", "The correct option is (D) leather."); "(X)" anywhere; a capital letter before
    ``.`` ``)`` ``]`` ("It is D."); a capital letter standing alone ("I think it is D", "It's D").
    Then — not in lmms-eval — a reply that is exactly one option's text ("leather").

    Where we differ from lmms-eval (which upper-cases the reply first), each on purpose:

    - "Answer: D" is D (there A: the reply starts with the letter A);
    - a word that starts with A–D is no letter: "Blue", "Cotton" (there B, C);
    - a word holding a single A–D letter is no letter: "leather" (there A; here D, its option's text);
    - a capital letter ending a word is no letter: "It is red." (there D);
    - a lower-case letter is a letter only as the whole reply, in parentheses, at the start before
      ``.`` ``)`` ``:`` ``]``, or right after "answer is"/"option"/…: "There is a cat" is none (there A);
    - ``*`` is dropped first, so "**C**" is C (there too, by its "one letter in the reply" rule).

    >>> [parse_letter(r, ["rubber", "cotton", "wool", "leather"]) for r in (
    ...     "I think it is D", "It's D", "D - leather", "The correct option is (D) leather.", "Answer: D",
    ...     "leather", "Cotton", "It is red.", "There is a cat", "**C**", "A or B", "")]
    ['D', 'D', 'D', 'D', 'D', 'D', 'B', None, None, 'C', 'A', None]
    """
    text = reply.replace("*", "").strip()
    for n, form in enumerate(_LETTER_FORMS):
        found = form.fullmatch(text) if n == 0 else (form.match(text) if n == 1 else form.search(text))
        if found:
            return next(g for g in found.groups() if g).upper()
    said = text.rstrip(".").strip().lower()
    named = [letter for letter, o in zip("ABCD", options) if said and said == str(o).strip().lower()]
    return named[0] if len(named) == 1 else None


# -- per-sample scores ------------------------------------------------------------------------------


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised reference (:func:`normalize_answer`).

    >>> exact_match("The cat.", ["cat", "kitten"]), exact_match("a dog", ["cat"])
    (1.0, 0.0)
    """
    pred = normalize_answer(prediction)
    return float(any(pred == normalize_answer(r) for r in references))


def first_word_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the reply's first word (:func:`first_word`) is a reference: the shapes testbed's
    one-word answers.

    >>> first_word_match("Red. It is red.", ["red"]), first_word_match("It is red", ["red"])
    (1.0, 0.0)
    """
    return float(first_word(prediction) in {r.strip().lower() for r in references})


def vqa_accuracy(prediction: str, references: Sequence[str], *, normalize_references: bool = True) -> float:
    """VQA accuracy: for each reference i, min(1, (number of the other references equal to the
    prediction) / 3), averaged over i — both sides normalised by :func:`normalize_vqa`. With 10
    references, an answer 1 annotator gave scores 0.3, 3 gave 0.9, 4 or more 1.0.

    With fewer than 10 references (your own data; VQA, TextVQA and VizWiz always have 10) the
    leave-one-out is dropped, min(1, matches / 3): it was made for ten annotators, and with one
    reference it would score a correct answer 0 (with three identical ones at most 0.667).

    >>> vqa_accuracy("yes", ["yes"] * 10), vqa_accuracy("no", ["yes"] * 10), vqa_accuracy("cat", ["cat"] + ["dog"] * 9)
    (1.0, 0.0, 0.3)

    ``normalize_references`` False: the references are compared as given, only the prediction
    normalised (VizWiz's own evaluator).

    >>> vqa_accuracy("cat", ["cat"]), vqa_accuracy("cat", ["cat"] * 3), vqa_accuracy("cat", ["dog"])
    (0.3333333333333333, 1.0, 0.0)
    """
    if not references:
        raise ValueError("VQA accuracy needs at least one reference answer")
    pred = normalize_vqa(prediction)
    refs = [normalize_vqa(r) for r in references] if normalize_references else list(references)
    matches = sum(r == pred for r in refs)
    if len(refs) < 10:
        return min(1.0, matches / 3.0)
    # leave reference i out: the others that match are matches minus (whether i matched)
    return float(np.mean([min(1.0, (matches - (r == pred)) / 3.0) for r in refs]))

def normalize_vicrop(text: str) -> str:
    """An answer normalised as ViCrop's ``get_score.py`` (``process_text``) does: punctuation handled
    as the VQA evaluation (:func:`normalize_vqa`) on the text as given, then lower-cased, number words
    to digits, articles dropped, contractions restored. Unlike :func:`normalize_vqa` there is no
    ``'s`` split and no prior removal of ``,`` and ``?`` (both are in the punctuation list anyway).

    >>> normalize_vicrop("Two dogs."), normalize_vicrop("the cat's toy"), normalize_vicrop("1,000")
    ('2 dogs', "cat's toy", '1000')
    """
    strip_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for p in _VQA_PUNCT:
        out = out.replace(p, "" if strip_all or p + " " in text or " " + p in text else " ")
    words = [_NUMBER_WORDS.get(w, w) for w in _PERIOD.sub("", out).lower().split()]
    return " ".join(_CONTRACTIONS.get(w, w) for w in words if w not in ("a", "an", "the"))


def vicrop_accuracy(prediction: str, references: Sequence[str]) -> float:
    """ViCrop's direct-answer accuracy (``get_acc``, its A-OKVQA / TextVQA score ÷ 100):
    min(1, 0.3 · the number of references equal to the reply), both sides :func:`normalize_vicrop`-ed —
    no leave-one-out, so 3 matching annotators give 0.9 (VQA accuracy gives them 1.0).

    >>> vicrop_accuracy("Fall", ["fall"] * 10), vicrop_accuracy("autumn", ["fall"] * 7 + ["autumn"] * 3)
    (1.0, 0.9)
    """
    pred = normalize_vicrop(prediction)
    return min(1.0, 3 * sum(normalize_vicrop(r) == pred for r in references) / 10)



def yes_no_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when POPE's reading of the reply (:func:`parse_yes_no`) is the yes/no reference.

    >>> yes_no_match("No, there is none.", ["no"]), yes_no_match("Yes", ["no"])
    (1.0, 0.0)
    """
    return float(parse_yes_no(prediction) == references[0].strip().lower())


def yes_no_scores(prediction: str, gold: str) -> dict[str, float]:
    """POPE's per-question scores: ``correct``, and ``pred_yes`` / ``gold_yes`` (1/0) for
    :func:`pope_metrics`.

    >>> yes_no_scores("No, there is not.", "yes")
    {'correct': 0.0, 'pred_yes': 0.0, 'gold_yes': 1.0}
    """
    predicted, gold = parse_yes_no(prediction), gold.strip().lower()
    return {"correct": float(predicted == gold), "pred_yes": float(predicted == "yes"),
            "gold_yes": float(gold == "yes")}


# -- corpus aggregates ------------------------------------------------------------------------------


def mean_of(column: str, scale: float = 1.0) -> Callable[[Columns], float]:
    """The aggregate "mean of one score column" (× ``scale``); NaN for no samples.

    >>> mean_of("correct", 100)({"correct": np.array([1.0, 0.0, 1.0, 1.0])})
    75.0
    """

    def aggregate(columns: Columns) -> float:
        values = np.asarray(columns[column], dtype=float)
        return float(values.mean() * scale) if values.size else float("nan")

    aggregate.__name__ = f"mean_of_{column}"
    aggregate.column = column  # type: ignore[attr-defined]  # lets the bootstrap vectorise a plain mean
    aggregate.scale = scale  # type: ignore[attr-defined]
    return aggregate


def pope_metrics(columns: Columns) -> dict[str, float]:
    """POPE's figures from the columns ``pred_yes`` and ``gold_yes`` (1/0 per question), "yes" the
    positive class: accuracy, precision, recall, F1, and yes-ratio = the share of *predicted* yes.
    Precision is NaN with no predicted yes, recall with no gold yes (F1 then too).

    >>> m = pope_metrics({"pred_yes": np.array([1, 1, 1, 0]), "gold_yes": np.array([1, 1, 0, 0])})
    >>> m["accuracy"], m["precision"], m["recall"], m["yes_ratio"], round(m["f1"], 4)
    (0.75, 0.6666666666666666, 1.0, 0.75, 0.8)
    """
    pred = np.asarray(columns["pred_yes"], dtype=bool)
    gold = np.asarray(columns["gold_yes"], dtype=bool)
    n = pred.size
    tp, fp, fn = int((pred & gold).sum()), int((pred & ~gold).sum()), int((~pred & gold).sum())
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = (2 * precision * recall / (precision + recall)) if precision + recall > 0 else (
        0.0 if np.isfinite(precision) and np.isfinite(recall) else float("nan"))
    return {
        "accuracy": float((pred == gold).mean()) if n else float("nan"),
        "precision": float(precision),
        "recall": float(recall),
        "f1": float(f1),
        "yes_ratio": float(pred.mean()) if n else float("nan"),
    }


# -- intervals --------------------------------------------------------------------------------------


class BootstrapInterval(tuple):
    """``(estimate, low, high)`` of a bootstrap, with ``.replicates`` (the resampled values).

    >>> BootstrapInterval(1.0, 0.5, 1.5, np.zeros(0))[1:]
    (0.5, 1.5)
    """

    replicates: np.ndarray

    def __new__(cls, estimate: float, low: float, high: float, replicates: np.ndarray) -> BootstrapInterval:
        self = super().__new__(cls, (float(estimate), float(low), float(high)))
        self.replicates = replicates
        return self


def _statistic(aggregate: Callable[[Columns], float], columns: Columns, index: np.ndarray | None,
               relabel: tuple[str, np.ndarray] | None = None) -> float:
    if index is None:
        return float(aggregate(columns))
    drawn = {k: np.asarray(v)[index] for k, v in columns.items()}
    if relabel is not None:
        # a cluster drawn twice is two clusters: give each draw its own label, or an aggregate that
        # groups by the cluster column (MME's acc+) would merge the copies into one bigger cluster
        drawn[relabel[0]] = relabel[1]
    return float(aggregate(drawn))


def _resample_values(aggregate: Callable[[Columns], float], columns: Columns,
                     indices: np.ndarray | Sequence[np.ndarray], relabels: Sequence[np.ndarray] | None = None,
                     cluster_column: str | None = None) -> np.ndarray:
    column = getattr(aggregate, "column", None)
    if column is not None and isinstance(indices, np.ndarray):  # a plain mean: all resamples in one step
        values = np.asarray(columns[column], dtype=float)
        return values[indices].mean(axis=1) * aggregate.scale  # type: ignore[attr-defined]
    if relabels is None or cluster_column is None:
        return np.array([_statistic(aggregate, columns, idx) for idx in indices])
    return np.array([_statistic(aggregate, columns, idx, (cluster_column, labels))
                     for idx, labels in zip(indices, relabels)])


def _interval(estimate: float, replicates: np.ndarray, level: float) -> BootstrapInterval:
    finite = replicates[np.isfinite(replicates)]
    if not finite.size:
        return BootstrapInterval(estimate, float("nan"), float("nan"), replicates)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(finite, [tail, 1.0 - tail])
    return BootstrapInterval(estimate, low, high, replicates)


def _indices(n: int, resamples: int, seed: int,
             clusters: np.ndarray | None = None) -> tuple[np.ndarray | Sequence[np.ndarray], list[np.ndarray] | None]:
    """Row indices of each resample: rows drawn with replacement, or — with ``clusters`` — whole
    clusters drawn with replacement (the rows of one image stay together). With clusters, also the
    draw number of every drawn row (0 … clusters−1), so that copies of one cluster stay apart."""
    if n < 1:
        raise ValueError("a bootstrap needs at least one sample")
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1; got {resamples}")
    rng = np.random.default_rng(seed)
    if clusters is None:
        return rng.integers(0, n, size=(resamples, n)), None
    labels, inverse = np.unique(np.asarray(clusters), return_inverse=True)
    members = [np.flatnonzero(inverse == k) for k in range(len(labels))]
    picks = rng.integers(0, len(labels), size=(resamples, len(labels)))
    indices = [np.concatenate([members[k] for k in row]) for row in picks]
    draws = [np.concatenate([np.full(len(members[k]), d, dtype=float) for d, k in enumerate(row)]) for row in picks]
    return indices, draws


def _clusters(columns: Columns, clusters: str | np.ndarray | None) -> tuple[np.ndarray | None, str | None]:
    if isinstance(clusters, str):
        if clusters not in columns:
            raise ValueError(f"clusters names the column {clusters!r}, which the scores lack; columns: "
                             f"{sorted(columns)}")
        return np.asarray(columns[clusters]), clusters
    if clusters is not None:
        # labels given as an array that is one of the columns: that column is relabelled too
        labels = np.asarray(clusters)
        same = next((k for k, v in columns.items() if np.shape(v) == labels.shape and np.array_equal(v, labels)), None)
        return labels, same
    return None, None


def bootstrap(columns: Columns, aggregate: Callable[[Columns], float], *, resamples: int = 1000, seed: int = 0,
              level: float = 0.95, clusters: str | np.ndarray | None = None) -> BootstrapInterval:
    """A percentile bootstrap interval for ``aggregate`` over the samples (rows of ``columns``);
    with ``clusters`` (a label per row, or the name of the column holding them), whole clusters are
    resampled. Named by its column, each draw of a cluster gets its own label in that column, so an
    aggregate that groups by it sees a cluster drawn twice as two clusters (MME's acc⁺ per image).

    >>> est, low, high = bootstrap({"x": np.ones(50)}, mean_of("x"))
    >>> est, low, high
    (1.0, 1.0, 1.0)
    """
    n = len(next(iter(columns.values())))
    labels, column = _clusters(columns, clusters)
    indices, draws = _indices(n, resamples, seed, labels)
    return _interval(_statistic(aggregate, columns, None),
                     _resample_values(aggregate, columns, indices, draws, column), level)


def paired_bootstrap(treatment: Columns, baseline: Columns, aggregate: Callable[[Columns], float], *,
                     resamples: int = 1000, seed: int = 0, level: float = 0.95,
                     clusters: str | np.ndarray | None = None) -> BootstrapInterval:
    """The difference ``aggregate(treatment) − aggregate(baseline)`` with a paired percentile
    bootstrap interval: row i of both is the same sample, and each resample draws the same rows for
    both, so what the two share (the sample's difficulty) cancels out. ``clusters``: resample whole
    clusters (MME scores the two questions of an image together), as in :func:`bootstrap`.

    >>> t, b = {"c": np.array([1.0, 1.0, 0.0, 1.0])}, {"c": np.array([0.0, 1.0, 0.0, 1.0])}
    >>> paired_bootstrap(t, b, mean_of("c"))[0]
    0.25
    """
    n = len(next(iter(treatment.values())))
    if len(next(iter(baseline.values()))) != n:
        raise ValueError("a paired bootstrap needs the same samples, in the same order, on both sides")
    labels, column = _clusters(treatment, clusters)
    indices, draws = _indices(n, resamples, seed, labels)
    estimate = _statistic(aggregate, treatment, None) - _statistic(aggregate, baseline, None)
    replicates = (_resample_values(aggregate, treatment, indices, draws, column)
                  - _resample_values(aggregate, baseline, indices, draws, column))
    return _interval(estimate, replicates, level)
