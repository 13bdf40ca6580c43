"""The lmms-eval model ``attnprompt`` (registered by our ``lmms_eval.models`` entry point): lmms-eval's
``lmms`` interface over :class:`~attnprompt.integrations.lmms.LmmsAdapter`.

    lmms-eval --model attnprompt --model_args vlm=llava-hf/llava-1.5-7b-hf,strategy=api,method=api-clip \\
        --tasks mme --log_samples --output_path runs/lmms

Each answer goes back as lmms-eval's ``GenerationResult`` whose per-sample record carries, beside the
token counts, ``attnprompt``: the strategy and every step (prompt, answer, what it decided) — in the
samples file written by ``--log_samples`` under ``token_counts[0].attnprompt``, the one per-sample slot
lmms-eval gives a model for its own data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lmms_eval.api.instance import GenerationResult, TokenCounts
from lmms_eval.api.model import lmms

from .lmms import LmmsAdapter


@dataclass
class StepTrace(TokenCounts):
    """Token counts (none known) plus the strategy's steps, logged with the sample."""

    attnprompt: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "attnprompt": self.attnprompt}


class AttnPrompt(lmms):
    """Visual prompting in front of the answering VLM; ``--model_args`` are
    what :meth:`~attnprompt.integrations.lmms.LmmsAdapter.from_model_args` takes (``vlm``, ``strategy``,
    ``method``, ``preset``, ``form``, ``model``, ``vlm_model``, ``api_key_env``, ``batch_size``,
    ``concurrency``, ``max_new_tokens``, ``store``, ``suffix``, map parameters such as ``kernel``); the batch
    size of a local VLM is lmms-eval's ``--batch_size``."""

    is_simple = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()
        # lmms-eval passes its --batch_size (a number, "auto" or "auto:N"), --max_batch_size and --device
        # to every model; a number is our batch size, the rest has no meaning here
        kwargs.pop("max_batch_size", None)
        size = kwargs.pop("batch_size", None)
        if size is not None and str(size).isdigit():
            kwargs["batch_size"] = int(size)
        if kwargs.get("device") is None:
            kwargs.pop("device", None)
        # lmms-eval reads "-2" as the float -2.0 ("-2".isnumeric() is false): give integers back (layers=-2)
        kwargs = {k: int(v) if isinstance(v, float) and v.is_integer() and v < 0 else v for k, v in kwargs.items()}
        self.adapter = LmmsAdapter.from_model_args(kwargs)

    def generate_until(self, requests: list[Any]) -> list[Any]:
        return [GenerationResult(text, StepTrace(attnprompt=trace))
                for text, trace in self.adapter.generate(requests, self.task_dict)]

    def generate_until_multi_round(self, requests: list[Any]) -> list[Any]:
        # a list of strings (one per round) is what multi-round tasks' process_results read
        return [GenerationResult(rounds, StepTrace(attnprompt=trace))
                for rounds, trace in self.adapter.generate_multi_round(requests, self.task_dict)]

    def loglikelihood(self, requests: list[Any]) -> list[tuple[float, bool]]:
        raise NotImplementedError("attnprompt answers by generation: tasks of output_type loglikelihood or "
                                  "multiple_choice are not supported; pick a generate_until task")
