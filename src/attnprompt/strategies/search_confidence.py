"""How ``zoom-search`` scores a node of its search: the probes' prompts, and the confidences read from the
answers' first-token probabilities (:mod:`attnprompt.confidence`). Two ways, chosen by ``search_confidence``:

- ``zoomeye`` (ZoomEye's, for chat VLMs): the question's targets named by the VLM (ZoomEye's few-shot prompt,
  one text-only request a question); a node's *existence* and *latent* confidences for them (the queue's
  priority) and its *answering* confidence ("Could you answer the question …?", the stopping criterion), each
  ``2 P(yes) − 1`` of a one-token answer. With several targets, ours: one search whose existence (latent)
  confidence is the least over the targets (ZoomEye searches once per target and joins the boxes).
- ``answer`` (ours, for a VLM that knows only its own phrasings, the shapes testbed): the node's *answer* to
  the question itself, its first token's probability, times P(yes) to the VLM's own existence question made
  of what the question names and that answer (:func:`attnprompt.shapes.questions.check_question`: "What colour
  is the star?" answered "red" → "Is there a red star?"), as ``2 p − 1``; one prompt a node where no check
  question can be made (its answer's probability alone). The answer is kept: the chosen node's answer is the
  search's answer, no further call.

The issue-38 pilot (``docs/research/zoom-methods.md``) measured the ``answer`` product as the shapes VLM's best
verification signal.

>>> AnswerConfidence.costs("What colour is the star?"), AnswerConfidence.costs("How many stars are there?")
({'answering': 2}, {'answering': 1})
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image

from ..confidence import first_token_probability, yes_probability
from ..errors import InputError
from ..search import Probe
from ..shapes.questions import check_question
from ..types import Answer, Request, Sample, Turn
from .zoom_prompts import (
    ZOOMEYE_ANSWERING,
    ZOOMEYE_EXISTENCE,
    ZOOMEYE_LATENT,
    ZOOMEYE_TARGET_EXAMPLES,
    ZOOMEYE_TARGETS,
    parse_targets,
)

#: Alternatives asked per token: enough for every spelling of yes and no a server lists.
TOP_LOGPROBS = 10
#: The tokens ZoomEye's target-naming reply may take.
TARGET_TOKENS = 64


@dataclass
class Searched:
    """One question under search: its sample, first image (RGB), prompt (the question with its suffix), an
    answer already given on the whole image (``first``, with log-probabilities: not asked again), the targets
    it names (``zoomeye``) and what was said on each node (``answer``: node → request, answer, confidence)."""

    sample: Sample
    image: Image.Image
    prompt: str
    first: Answer | None = None
    targets: tuple[str, ...] = ()
    said: dict[int, tuple[Request, Answer, float | None]] = field(default_factory=dict)

    def view(self, probe: Probe) -> Image.Image:
        """The image shown for a probe: the node's window (the whole image at the root)."""
        return self.image if probe.view == (0, 0, *self.image.size) else self.image.crop(probe.view)


class SearchConfidence:
    """A way to score nodes; subclasses set ``name`` and implement :meth:`settings`, :meth:`score`."""

    name: ClassVar[str] = ""
    #: The prompts it sends, recorded in the strategy's configuration.
    prompts: ClassVar[dict[str, str]] = {}
    #: The VLM calls :meth:`prepare` makes per question.
    setup_calls: ClassVar[int] = 0
    #: Whether scoring a window answers the question on it (that answer can be the search's).
    keeps_answers: ClassVar[bool] = False

    def __init__(self, backend: Any, max_new_tokens: int, needed_by: str) -> None:
        self.backend, self.max_new_tokens, self.needed_by = backend, max_new_tokens, needed_by

    def prepare(self, questions: Sequence[Searched]) -> int:
        """Whatever a search needs before it starts (the targets); the VLM calls it cost each question."""
        return 0

    def settings(self, q: Searched, order: str) -> dict[str, Any]:
        """The question's :class:`~attnprompt.search.SearchSettings` fields: the priority kinds and their costs."""
        raise NotImplementedError

    def score(self, probes: Sequence[Probe], questions: Sequence[Searched]) -> list[tuple[float | None, int]]:
        """Each probe's confidence in [−1, 1] (None: its call failed) and the VLM calls it made."""
        raise NotImplementedError

    def yes(self, answer: Answer) -> float | None:
        """``2 P(yes) − 1`` of a yes/no answer; None for a failed one or where neither word is listed."""
        if not answer.ok:
            return None
        p = yes_probability(answer, needed_by=self.needed_by)
        return None if p is None else 2.0 * p - 1.0


class AnswerConfidence(SearchConfidence):
    """Ours: a node's answer to the question, checked by the VLM's own existence question (module docstring)."""

    name = "answer"
    keeps_answers = True

    @staticmethod
    def costs(question: str) -> dict[str, int]:
        """VLM calls an answering probe may make: the answer, and its check when one can be made."""
        checked = check_question(question, "red") or check_question(question, "circle")
        return {"answering": 2 if checked else 1}

    def settings(self, q: Searched, order: str) -> dict[str, Any]:
        # zoomeye order: every queued node is answered (the answer ranks the queue); map order: the map ranks it
        return {"priority": ("answering",) if order == "zoomeye" else (), "costs": self.costs(q.sample.question)}

    def score(self, probes: Sequence[Probe], questions: Sequence[Searched]) -> list[tuple[float | None, int]]:
        requests = [Request.single(questions[p.key].view(p), questions[p.key].prompt,
                                   max_new_tokens=self.max_new_tokens, top_logprobs=TOP_LOGPROBS) for p in probes]
        # the root's answer may be known already (auto's plain answer): asked again only when it is not
        known = {i: questions[p.key].first for i, p in enumerate(probes) if p.node == 0 and questions[p.key].first}
        fresh = iter(self.backend.answer([r for i, r in enumerate(requests) if i not in known]))
        answers = [known[i] if i in known else next(fresh) for i in range(len(probes))]
        checks = {}
        for i, (p, a) in enumerate(zip(probes, answers)):
            if a.ok:
                text = check_question(questions[p.key].sample.question, a.text)
                if text is not None:
                    checks[i] = Request.single(requests[i].images, text, max_new_tokens=1, top_logprobs=TOP_LOGPROBS)
        verdicts = dict(zip(checks, self.backend.answer(list(checks.values()))))
        out: list[tuple[float | None, int]] = []
        for i, (p, a) in enumerate(zip(probes, answers)):
            q = questions[p.key]
            if not a.ok:
                out.append((None, int(i not in known)))
                continue
            first = first_token_probability(a, needed_by=self.needed_by)
            if i in verdicts:
                yes = self.yes(verdicts[i])
                c = -1.0 if yes is None else 2.0 * first * (yes + 1.0) / 2.0 - 1.0
            else:
                # a check question exists for this question, and the answer was not of its kind: not an answer
                c = -1.0 if self.costs(q.sample.question)["answering"] == 2 else 2.0 * first - 1.0
            q.said[p.node] = (requests[i], a, round(c, 6))
            out.append((c, (i not in known) + (i in verdicts)))
        return out


class ZoomEyeConfidence(SearchConfidence):
    """ZoomEye's probes (module docstring): targets from the VLM, existence and latent for the priority,
    answering for the stop; each a one-token yes/no answer."""

    name = "zoomeye"
    setup_calls = 1
    prompts = {"existence": ZOOMEYE_EXISTENCE, "latent": ZOOMEYE_LATENT, "answering": ZOOMEYE_ANSWERING,
               "targets": ZOOMEYE_TARGETS}

    def prepare(self, questions: Sequence[Searched]) -> int:
        turns: list[Turn] = []
        for question, reply in ZOOMEYE_TARGET_EXAMPLES:
            turns += [Turn("user", ZOOMEYE_TARGETS.format(question)), Turn("assistant", reply)]
        requests = [Request((*turns, Turn("user", ZOOMEYE_TARGETS.format(q.sample.question))),
                            max_new_tokens=TARGET_TOKENS) for q in questions]
        for q, a in zip(questions, self.backend.answer(requests)):
            q.targets = tuple(parse_targets(a.text)) if a.ok else ()
        return self.setup_calls

    def settings(self, q: Searched, order: str) -> dict[str, Any]:
        n = max(1, len(q.targets))
        priority = ("existence", "latent") if order == "zoomeye" and q.targets else ()
        return {"priority": priority, "costs": {"existence": n, "latent": n, "answering": 1}}

    def score(self, probes: Sequence[Probe], questions: Sequence[Searched]) -> list[tuple[float | None, int]]:
        requests, owner = [], []
        for i, p in enumerate(probes):
            q = questions[p.key]
            if p.kind == "answering":
                texts = [ZOOMEYE_ANSWERING.format(q.sample.question)]
            else:
                template = ZOOMEYE_EXISTENCE if p.kind == "existence" else ZOOMEYE_LATENT
                texts = [template.format(t) for t in q.targets]
            if not texts:
                raise InputError(f"{self.needed_by}: a {p.kind} probe without targets")
            image = q.view(p)
            requests += [Request.single(image, t, max_new_tokens=1, top_logprobs=TOP_LOGPROBS) for t in texts]
            owner += [i] * len(texts)
        confidences: list[list[float | None]] = [[] for _ in probes]
        for i, a in zip(owner, self.backend.answer(requests)):
            confidences[i].append(self.yes(a))
        # several targets: the least confident one (all must be there)
        return [(None if any(c is None for c in cs) else min(cs), len(cs)) for cs in confidences]  # type: ignore[type-var]


#: The ways to score a node, by name.
CONFIDENCES: dict[str, type[SearchConfidence]] = {"answer": AnswerConfidence, "zoomeye": ZoomEyeConfidence}
