"""Answer with a local ``transformers`` image-text-to-text model (any model with a chat template)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from itertools import groupby
from typing import Any

from ..checks import check_count
from ..errors import AttnpromptError, InputError
from ..models import LoadedVlm, generate, load_vlm, require_chat_template
from ..types import Answer, Request
from .base import Backend


class LocalVLM(Backend):
    """A local VLM: batched greedy generation, multi-image and multi-turn requests, the model's
    own chat template (:func:`attnprompt.models.generate`).

    Requests with the same number of images are batched together (``batch_size`` at a time,
    left-padded). If a batch raises, its requests are retried one by one, so one bad request
    fails alone; a failure is an ``Answer`` with ``ok=False``, the reason in ``error`` and its kind
    in ``failure``: ``input`` for a prompt that does not fit the model's context, ``empty`` when the
    model generates no text, ``error`` for anything else. A request with ``top_logprobs`` gets its
    answer tokens' log-probabilities (``Answer.logprobs``), read from the generation's own logits.

    >>> from attnprompt.shapes import make_scene
    >>> backend = LocalVLM.from_pretrained("shapes")
    >>> backend.ask(make_scene(7, n_objects=5, size=320).image, "What colour is the circle?").text
    'green'
    """

    def __init__(self, vlm: LoadedVlm, *, batch_size: int = 4) -> None:
        require_chat_template(vlm, "answering")
        self.vlm = vlm
        self.batch_size = check_count("batch_size", batch_size)
        self.name = vlm.model_id

    @classmethod
    def from_pretrained(
        cls, name: str | None = None, *, device: str | None = None, dtype: Any = None, batch_size: int = 4,
        loading: Any = None,
    ) -> LocalVLM:
        """Load (cached) a VLM by hub id, local path, or ``shapes``, as ``loading`` says (a
        :class:`~attnprompt.models.LoadOptions`; ``device`` / ``dtype`` are its fields as keywords).

        >>> LocalVLM.from_pretrained("shapes").name
        'shapes'
        """
        return cls(load_vlm(name, device=device, dtype=dtype, loading=loading), batch_size=batch_size)

    def describe(self) -> dict[str, Any]:
        """The model id and its dtype (half precision can change an answer), and what else of how it was loaded
        and answers is not the default (:meth:`attnprompt.models.LoadedVlm.record`: quantisation, attention kernel,
        pixel bounds, image fit, generation settings).

        >>> LocalVLM.from_pretrained("shapes").describe()
        {'name': 'shapes', 'dtype': 'float32'}
        """
        record = {k: v for k, v in self.vlm.record().items() if k != "dtype"}
        return {"name": self.name, "dtype": str(self.vlm.model.dtype).removeprefix("torch."), **record}

    @property
    def local_model(self) -> LoadedVlm:
        """The loaded model, so api-vlm can read the answering VLM's own attention (g = f).

        >>> LocalVLM.from_pretrained("shapes").local_model.family
        'llava'
        """
        return self.vlm

    def answer(self, requests: Sequence[Request]) -> list[Answer]:
        """Answers in request order.

        >>> request = Request.single((), "Describe the image.", max_new_tokens=2)
        >>> LocalVLM.from_pretrained("shapes").answer([request])[0].ok
        True
        """
        answers: dict[int, Answer] = {}
        indexed = sorted(enumerate(requests), key=lambda p: len(p[1].images))
        for _, same in groupby(indexed, key=lambda p: len(p[1].images)):
            group = list(same)
            for start in range(0, len(group), self.batch_size):
                chunk = group[start : start + self.batch_size]
                for (i, _), a in zip(chunk, self._answer_chunk([r for _, r in chunk])):
                    answers[i] = a
        return [answers[i] for i in range(len(requests))]

    def _answer_chunk(self, chunk: list[Request]) -> list[Answer]:
        try:
            return self._generate(chunk)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as e:
            if len(chunk) > 1:
                return [a for r in chunk for a in self._answer_chunk([r])]
            # a request the model cannot take as it is (too long for its context) is the caller's to fix
            failure = "input" if isinstance(e, InputError) else "error"
            message = str(e) if isinstance(e, AttnpromptError) else f"{type(e).__name__}: {e}"
            return [Answer("", ok=False, error=message, model=self.name, failure=failure)]

    def _generate(self, chunk: list[Request]) -> list[Answer]:
        t0 = time.perf_counter()
        out = generate(self.vlm, chunk)
        seconds = (time.perf_counter() - t0) / len(chunk)
        answers = []
        mask = out.inputs.get("attention_mask") if hasattr(out.inputs, "get") else None
        prompts = [int(row.sum()) for row in mask] if mask is not None else [None] * len(chunk)
        rows = zip(chunk, out.texts, out.tokens, out.logprobs or [None] * len(chunk), prompts)
        for request, text, tokens, logprobs, prompt in rows:
            meta: dict[str, Any] = {"tokens": len(tokens)}
            if prompt is not None:
                meta["prompt_tokens"] = prompt  # the prompt's tokens, image tokens included (a server's usage)
            if out.budget < request.max_new_tokens:
                meta["max_new_tokens"] = out.budget  # shortened: the prompt filled the rest of the context
            if text:
                answers.append(Answer(text, seconds=seconds, model=self.name, meta=meta, logprobs=logprobs))
                continue
            said = "the end of the sequence as its first token" if len(tokens) == 1 else (
                f"{len(tokens)} tokens that decode to no text (special tokens or spaces only)")
            answers.append(Answer("", ok=False, error=f"the model's answer is empty: it generated {said}",
                                  seconds=seconds, model=self.name, meta=meta, failure="empty"))
        return answers
