"""A judge model that scores answers (MM-Vet, LLaVA-Bench): any OpenAI-compatible endpoint, with
the original benchmark's prompt, sampling settings and retry rule.

A :class:`JudgeSpec` is the benchmark's side — how the judge is asked and how its reply becomes a
score, as the original scorer does it; a :class:`Judge` is the endpoint. The API key is read from an
environment variable when the judge is built and is never written anywhere. Judgements are stored
in the run store beside the answers, keyed by the judge's configuration, so a rerun or a second
report never asks again, and changing the judge re-judges without re-answering.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..files import config_hash_of
from ..types import Request, Turn


@dataclass(frozen=True)
class JudgeSpec:
    """How a benchmark's original scorer asks its judge.

    - ``prompt(prediction, sample, attempt)``: the user message of attempt 0, 1, … (``sample`` is the
      stored sample description: question, references, categories, meta);
    - ``system``: the system message, if the original sends one;
    - ``parse(reply, sample)``: the scores a reply gives, or None when it gives none (unparseable);
    - ``temperatures``: one attempt per entry, at that temperature (the original's retry rule on a
      reply it cannot read); a failed call is tried again at the same attempt, at most
      ``call_failures`` times in a run;
    - ``max_tokens``; ``model``: the original's judge model, the default;
    - ``on_failure(sample)``: the scores when every attempt gave a reply and none could be read (the
      original's convention: MM-Vet 0.0, LLaVA-Bench −1/−1), recorded with ``judge_failed = 1`` and
      counted in the report as unreadable.

    A judge call that got no reply at all (the endpoint down, every call of a run failed) is not a
    verdict: the originals retry until they get one, so it is stored unscored (``ok`` False), counted
    and listed by the report, and asked again by the next run.

    Two more, for originals that ask a judge only sometimes (VLMEvalKit's multiple choice):

    - ``settle(prediction, sample)``: the scores of an answer that needs no judge (the original read
      it by rule), or None to ask the judge; a settled answer is stored as a verdict with no reply;
    - ``optional``: the task scores its answers without a judge (its ``score``), and a judge, when one
      is given, scores them instead; without it (False) answers await a judge.
    """

    name: str
    model: str
    prompt: Callable[[str, Mapping[str, Any], int], str]
    parse: Callable[[str, Mapping[str, Any]], Mapping[str, float] | None]
    on_failure: Callable[[Mapping[str, Any]], Mapping[str, float]]
    temperatures: tuple[float, ...] = (0.0,)
    max_tokens: int = 1024
    system: str | None = None
    version: str = "1"
    call_failures: int = 3
    settle: Callable[[str, Mapping[str, Any]], Mapping[str, float] | None] | None = None
    optional: bool = False


@dataclass(frozen=True)
class Judgement:
    """The judge's verdict on one answer: the scores (``judge_failed`` 1 when its replies were all
    unreadable and the original's fallback scores it), every reply it gave, and the last error.
    ``ok`` False: the judge gave no reply (no scores; a later run asks again)."""

    scores: Mapping[str, float]
    replies: tuple[str, ...] = ()
    error: str | None = None
    attempts: int = 0
    ok: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)


class Judge:
    """An OpenAI-compatible endpoint used as a judge.

    >>> judge = Judge("http://127.0.0.1:9/v1", "gpt-4-0613", api_key_env="NO_SUCH_KEY_VARIABLE")
    >>> judge.describe()["model"], "key" in str(judge.describe())
    ('gpt-4-0613', False)
    """

    def __init__(self, url: str, model: str | None = None, *, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 4, timeout: float = 120.0, retry_wait: float = 5.0) -> None:
        from ..backends.openai_http import normalise_base_url

        if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
            raise InputError(f"a judge is an OpenAI-compatible URL (http://host:port/v1); got {url!r}")
        self.url = normalise_base_url(url)
        self.model = model
        self.api_key_env = api_key_env
        self._api_key = os.environ.get(api_key_env) or None  # read once; never written anywhere
        self.concurrency, self.timeout, self.retry_wait = int(concurrency), float(timeout), float(retry_wait)
        self._backends: dict[tuple[float, str], Any] = {}

    def describe(self, spec: JudgeSpec | None = None) -> dict[str, Any]:
        """What identifies this judge's verdicts (not its key): endpoint, model, the spec's settings."""
        d: dict[str, Any] = {"url": self.url, "model": self.model or (spec.model if spec else None)}
        if spec is not None:
            d.update(spec=spec.name, version=spec.version, temperatures=list(spec.temperatures),
                     max_tokens=spec.max_tokens)
        return d

    def config_hash_of(self, spec: JudgeSpec) -> str:
        return config_hash_of(self.describe(spec))

    def _backend(self, temperature: float, model: str) -> Any:
        from ..backends.openai_http import OpenAIBackend

        key = (temperature, model)
        if key not in self._backends:
            self._backends[key] = OpenAIBackend(
                self.url, model, api_key=self._api_key, timeout=self.timeout, retry_wait=self.retry_wait,
                concurrency=self.concurrency, temperature=temperature)
        return self._backends[key]

    def judge(self, spec: JudgeSpec, items: Sequence[tuple[str, Mapping[str, Any]]]) -> list[Judgement]:
        """One :class:`Judgement` per ``(prediction, sample)``; each round sends every item still open
        at once. A reply that gives no score moves the item to its next attempt (the next
        temperature); a failed call retries the same attempt. When every attempt's reply was
        unreadable, ``spec.on_failure`` scores it (as the original); when the allowed call failures run
        out first, it has no verdict (``ok`` False, no scores). An item ``spec.settle`` scores is not
        sent (no reply, no attempt)."""
        model = self.model or spec.model
        attempt = [0] * len(items)
        call_failures = [0] * len(items)
        replies: list[list[str]] = [[] for _ in items]
        errors: list[str | None] = [None] * len(items)
        done: dict[int, Mapping[str, float]] = {}
        if spec.settle is not None:
            settled = ((i, spec.settle(*item)) for i, item in enumerate(items))
            done.update((i, scores) for i, scores in settled if scores is not None)
        failed: set[int] = set()  # every attempt unreadable: the original's fallback scores it
        no_reply: set[int] = set()  # the calls kept failing: no verdict
        while True:
            open_items = [i for i in range(len(items)) if i not in done and i not in failed and i not in no_reply]
            if not open_items:
                break
            for temperature in sorted({spec.temperatures[attempt[i]] for i in open_items}):
                todo = [i for i in open_items if spec.temperatures[attempt[i]] == temperature]
                requests = [self._request(spec, items[i][0], items[i][1], attempt[i]) for i in todo]
                for i, answer in zip(todo, self._backend(temperature, model).answer(requests)):
                    if not answer.ok:
                        errors[i] = answer.error
                        call_failures[i] += 1
                        if call_failures[i] >= spec.call_failures:
                            no_reply.add(i)
                        continue
                    replies[i].append(answer.text)
                    try:
                        scores = spec.parse(answer.text, items[i][1])
                    except Exception as e:  # noqa: BLE001  # a reply the parser chokes on is unreadable
                        scores, errors[i] = None, f"{type(e).__name__}: {e}"
                    if scores is not None:
                        done[i] = scores
                        continue
                    errors[i] = f"unreadable reply {answer.text[:80]!r}"
                    attempt[i] += 1
                    if attempt[i] >= len(spec.temperatures):
                        failed.add(i)
        out = []
        for i, (_, sample) in enumerate(items):
            calls = len(replies[i]) + call_failures[i]
            if i in done:
                out.append(Judgement({**done[i], "judge_failed": 0.0}, tuple(replies[i]), None, calls))
            elif i in no_reply:
                out.append(Judgement({}, tuple(replies[i]), f"no reply from the judge: {errors[i]}", calls, ok=False))
            else:
                out.append(Judgement({**spec.on_failure(sample), "judge_failed": 1.0}, tuple(replies[i]),
                                     errors[i] or "unreadable reply", calls))
        return out

    @staticmethod
    def _request(spec: JudgeSpec, prediction: str, sample: Mapping[str, Any], attempt: int) -> Request:
        return Request((Turn("user", spec.prompt(prediction, sample, attempt)),), max_new_tokens=spec.max_tokens,
                       system=spec.system)

    def close(self) -> None:
        for backend in self._backends.values():
            backend.close()
