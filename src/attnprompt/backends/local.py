"""Answer with a local ``transformers`` image-text-to-text model (any model with a chat template)."""

from __future__ import annotations

import time
from itertools import groupby
from typing import Any, Sequence

from ..models import LoadedVlm, load_vlm
from .base import Answer, Backend, Request


class LocalVLM(Backend):
    """A local VLM: batched greedy generation, several images per prompt, the model's own chat template.

    Requests with the same number of images are batched together (``batch_size`` at a time,
    left-padded). If a batch raises, its requests are retried one by one, so one bad request
    fails alone; a failure is an ``Answer`` with ``ok=False`` and the exception in ``error``.

    >>> backend = LocalVLM.from_pretrained("shapes")  # doctest: +SKIP
    >>> backend.ask(image, "What colour is the star?").text  # doctest: +SKIP
    'red'
    """

    def __init__(self, vlm: LoadedVlm, *, batch_size: int = 4) -> None:
        if getattr(vlm.processor, "chat_template", None) is None:
            from ..errors import ModelLoadError

            raise ModelLoadError(f"{vlm.model_id!r} has no chat template; LocalVLM needs one to build prompts")
        self.vlm = vlm
        self.model = vlm.model
        self.processor = vlm.processor
        self.batch_size = int(batch_size)
        self.name = vlm.model_id

    @classmethod
    def from_pretrained(cls, name: str | None = None, *, device: str | None = None, dtype: Any = None, batch_size: int = 4) -> "LocalVLM":
        """Load (cached) a VLM by hub id, local path, or ``shapes``.

        >>> LocalVLM.from_pretrained("shapes").name  # doctest: +SKIP
        'shapes'
        """
        return cls(load_vlm(name, device=device, dtype=dtype), batch_size=batch_size)

    def prompt(self, request: Request) -> str:
        """The chat-template prompt for a request (images first, then the text).

        >>> # backend.prompt(Request((img,), "What colour is the star?"))
        """
        content: list[dict[str, Any]] = [{"type": "image"} for _ in request.images]
        content.append({"type": "text", "text": request.prompt})
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": [{"type": "text", "text": request.system}]})
        messages.append({"role": "user", "content": content})
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def answer(self, requests: Sequence[Request]) -> list[Answer]:
        """Answers in request order.

        >>> # backend.answer([Request((img,), "What colour is the star?")])[0].text
        """
        answers: dict[int, Answer] = {}
        indexed = sorted(enumerate(requests), key=lambda p: len(p[1].images))
        for _, group in groupby(indexed, key=lambda p: len(p[1].images)):
            group = list(group)
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
            return [Answer("", ok=False, error=f"{type(e).__name__}: {e}", model=self.name)]

    def _generate(self, chunk: list[Request]) -> list[Answer]:
        import torch

        t0 = time.perf_counter()
        texts = [self.prompt(r) for r in chunk]
        images = [list(r.images) for r in chunk]
        kwargs: dict[str, Any] = dict(text=texts, padding=True, return_tensors="pt")
        if any(images):
            kwargs["images"] = images
        inputs = self.processor(**kwargs).to(self.model.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        n_new = max(r.max_new_tokens for r in chunk)
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=n_new, do_sample=False, temperature=None, top_p=None, top_k=None)
        new = out[:, inputs["input_ids"].shape[1] :].tolist()
        tok = self.processor.tokenizer
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, (list, tuple)) else [eos])
        seconds = (time.perf_counter() - t0) / len(chunk)
        answers = []
        for row, r in zip(new, chunk):
            row = row[: r.max_new_tokens]
            n = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))  # rows pad after their EOS
            text = tok.decode(row[:n], skip_special_tokens=True).strip()
            answers.append(Answer(text, seconds=seconds, model=self.name, meta={"tokens": n}))
        return answers
