"""What the lmms-eval plugin does, apart from lmms-eval: turn its requests into samples, answer them
with an attnprompt strategy, keep every step, and never hand a failed call back as an answer.

lmms-eval (≥ 0.7) calls a model with a list of requests; each request's ``args`` are
``(context, gen_kwargs, doc_to_visual, doc_id, task, split)`` (``generate_until``) or the same with
``doc_to_text`` before ``doc_id`` (``generate_until_multi_round``); the images are
``doc_to_visual(task_dict[task][split][doc_id])``. :class:`LmmsAdapter` answers such lists; the thin
lmms-eval model class is :class:`attnprompt.integrations.lmms_model.AttnPrompt`.

- The context is the question. When it ends with an answer-format instruction we know
  (:data:`KNOWN_SUFFIXES`, or ``suffix=`` in the model arguments), that line is the sample's suffix:
  the map is computed for the question alone and the strategy places the suffix as the paper does.
  ``<image>`` placeholders are removed (images travel beside the text).
- ``max_new_tokens`` comes from the task's generation settings (default 128); answers are greedy, so a
  task's temperature or sampling settings are ignored (said once in the log). ``until`` stop strings
  cut the final answer, as lmms-eval's own models do.
- A request that gets no answer (server error, empty generation, a prompt over the context …) is a
  failure. lmms-eval would score any string we return, so after the whole list has been tried the
  adapter raises :class:`LmmsRequestsFailed`, naming how many failed and why. With ``store=DIR`` every
  answer is kept in a run store (keyed by the request's content and the full configuration), so the
  same command run again answers only what is missing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ..checks import check_count
from ..errors import InputError, ModelLoadError
from ..files import config_hash_of
from ..types import Result, Sample

LOG = logging.getLogger("attnprompt.lmms")

#: Answer-format instructions that lmms-eval's tasks put on the context's last line; one of them
#: ending a context becomes the sample's suffix (the map is computed for the question only).
KNOWN_SUFFIXES = (
    "Answer the question using a single word or phrase.",
    "Answer with the option's letter from the given choices directly.",
    "Please answer the question using a single word or phrase.",
    "Answer the question with Yes or No.",
    "Please answer yes or no.",
)

DEFAULT_MAX_NEW_TOKENS = 128


class LmmsRequestsFailed(RuntimeError):
    """Some of lmms-eval's requests got no answer; nothing was returned for scoring.

    >>> str(LmmsRequestsFailed(["mme/test/3: timed out"], 10, None)).splitlines()[0]
    'attnprompt: 1 of 10 requests got no answer, so none is returned to lmms-eval for scoring'
    """

    def __init__(self, failures: Sequence[str], total: int, store: str | None, first: bool = False) -> None:
        self.failures = list(failures)
        head = (f"attnprompt: every request of the first batch ({total}) failed — a server or setting problem, not "
                "the data's; stopped before the rest" if first else
                f"attnprompt: {len(failures)} of {total} requests got no answer, so none is returned to lmms-eval "
                "for scoring")
        lines = [head, *[f"  {f}" for f in failures[:5]]]
        if len(failures) > 5:
            lines.append(f"  … and {len(failures) - 5} more")
        lines.append(f"the answers that succeeded are kept in {store}; run the same command again to retry only the "
                     "failed requests" if store else
                     "add store=DIR to --model_args to keep the answers that succeeded, so a rerun retries only the "
                     "failed requests")
        super().__init__("\n".join(lines))


def _in_model_args(error: ModelLoadError) -> ModelLoadError:
    """A load error's advice in lmms-eval's terms (its ``--model`` is lmms-eval's own flag)."""
    return type(error)(f"{error} — in lmms-eval, pass vlm=… (answering) and model=… (the map's model) in "
                       "--model_args")


def split_context(context: str, extra: Sequence[str] = ()) -> tuple[str, str]:
    """``(question, suffix)`` of an lmms-eval context: a known answer-format instruction at its end
    becomes the suffix (with the line break before it, which is how the strategy joins it back);
    ``<image>`` placeholders go.

    >>> split_context("<image>\\nIs there a dog?\\nAnswer the question using a single word or phrase.")
    ('Is there a dog?', '\\nAnswer the question using a single word or phrase.')
    >>> split_context("Describe the image.")
    ('Describe the image.', '')
    """
    text = context.replace("<image>", "").strip()
    for suffix in sorted((*extra, *KNOWN_SUFFIXES), key=len, reverse=True):
        suffix = suffix.strip()
        if suffix and text.endswith(suffix) and len(text) > len(suffix):
            question = text[: -len(suffix)]
            joint = "\n" if question.endswith("\n") else ""
            question = question.rstrip()
            if question:
                return question, joint + suffix
    return text, ""


def cut_at_stops(text: str, until: Any) -> str:
    """``text`` up to the first of the stop strings ``until`` (a string or a list), stripped.

    >>> cut_at_stops("red.\\n\\nQuestion: next", ["\\n\\n"])
    'red.'
    """
    stops = [until] if isinstance(until, str) else list(until or [])
    end = len(text)
    for stop in stops:
        if stop and stop in text:
            end = min(end, text.index(stop))
    return text[:end].strip()


def images_of(visuals: Any, where: str) -> tuple[Image.Image, ...]:
    """The PIL images in what a task's ``doc_to_visual`` returned (nested lists flattened, None
    dropped); anything else (a video path, audio) is an error naming it.

    >>> len(images_of([[Image.new("RGB", (4, 4))], None], "doc 0"))
    1
    """
    out: list[Image.Image] = []

    def walk(v: Any) -> None:
        if v is None:
            return
        if isinstance(v, Image.Image):
            out.append(v)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)
        else:
            raise InputError(f"{where}: attnprompt takes images; the task gave a {type(v).__name__} "
                             f"({str(v)[:60]!r}) — pick an image task")

    walk(visuals)
    return tuple(out)


def request_key(split: str, doc_id: Any, context: str, until: Any, images: Sequence[Image.Image]) -> str:
    """The store key of one request: where it comes from plus a digest of what it asks, so a changed
    prompt or image is never answered from an old record.

    >>> request_key("test", 3, "Q?", None, [])[:7]
    'test/3/'
    """
    h = hashlib.sha256(context.encode())
    h.update(repr(until).encode())
    for image in images:
        h.update(f"{image.mode}{image.size}".encode())
        h.update(image.tobytes())
    return f"{split}/{doc_id}/{h.hexdigest()[:16]}"


def trace_of(result: Result) -> dict[str, Any]:
    """A strategy result as lmms-eval logs it: the strategy and each step's name, prompt, answer,
    whether it answered, and what the strategy decided from it.

    >>> from attnprompt.types import Answer, Request, Step
    >>> step = Step("answer", Request.single((), "Q?"), Answer("red"))
    >>> r = Result("Q?", Answer("red"), (step,), {"strategy": "plain"})
    >>> trace_of(r)["steps"][0]["answer"]
    'red'
    """
    steps = [{"name": s.name, "prompt": s.prompt, "answer": s.answer.text, "ok": s.answer.ok,
              **({"error": s.answer.error} if not s.answer.ok else {}),
              **({"detail": dict(s.detail)} if s.detail else {}),
              **({"boxes": [list(a.box) if a.box is not None else None for a in s.annotations]}
                 if s.annotations else {})} for s in result.steps]
    out = {"strategy": result.config.get("strategy"), "answer": result.answer.text, "ok": result.answer.ok,
           "steps": steps}
    shown = result.config.get("map")
    if isinstance(shown, Mapping):
        out["map"] = {k: shown[k] for k in ("method", "model", "preset") if k in shown}
    return out


@dataclass
class _Job:
    """One request on its way: the sample to answer and, when done, the answer or why there is none."""

    index: int
    where: str
    key: str
    sample: Sample | None
    budget: int
    until: Any
    text: str | None = None
    raw: str = ""
    error: str | None = None
    trace: dict[str, Any] = field(default_factory=dict)


class LmmsAdapter:
    """Answers lmms-eval requests with one attnprompt strategy (see the module docstring).

    ``vlm`` answers (hub id, local path, ``shapes``, or an OpenAI-compatible URL with ``vlm_model``
    and the key read from the environment variable ``api_key_env``); ``strategy``, ``method``,
    ``preset``, ``form``, ``model`` and map parameters (``kernel=1``, ``layers=…``) as in
    :func:`attnprompt.ask`; ``segmenter`` for fgvp-mask, fgvp-rbm and som (``shapes``, ``sam`` or a SAM
    checkpoint); ``batch_size`` answers per forward on a local VLM, ``concurrency``
    requests in flight on a server; ``store``: a directory that keeps answers across runs.

    >>> adapter = LmmsAdapter(vlm="shapes", strategy="plain")
    >>> adapter.describe()["strategy"]
    'plain'
    """

    def __init__(self, vlm: str | None = None, strategy: str = "api", *, method: str | None = None,
                 preset: str | None = None, form: str | None = None, model: str | None = None,
                 vlm_model: str | None = None, api_key_env: str = "OPENAI_API_KEY", batch_size: int = 8,
                 concurrency: int | None = None, max_new_tokens: int | None = None, device: str | None = None,
                 dtype: str | None = None, store: str | None = None, suffix: str | None = None, timeout: float = 60.0,
                 gray: float = 0.0, progress: bool = True, segmenter: str | None = None, **params: Any) -> None:
        import os

        from ..backends import get_backend, is_url
        from ..evaluation.units import Runner
        from ..strategies.registry import STRATEGIES

        if not vlm:
            raise InputError("give the answering VLM: vlm=… in --model_args (a hub id, a local directory, shapes for "
                             "the small offline testbed model, or an OpenAI-compatible URL with vlm_model=…)")
        STRATEGIES.get(strategy)  # an unknown name fails here, before any model loads
        check_count("batch_size", batch_size)
        http = is_url(vlm)
        key = os.environ.get(api_key_env) if http and api_key_env else None
        # server settings given for a local model are refused by get_backend, with the reason
        try:
            self.backend = get_backend(vlm, vlm_model=vlm_model, api_key=key, timeout=float(timeout), device=device,
                                       dtype=dtype, concurrency=None if concurrency is None else int(concurrency))
        except ModelLoadError as e:
            raise _in_model_args(e) from None
        if self.backend.local_model is not None and hasattr(self.backend, "batch_size"):
            self.backend.batch_size = int(batch_size)
        self.chunk = int(batch_size) if self.backend.local_model is not None else 4 * int(concurrency or 4)
        self.strategy_name, self.method, self.preset, self.form, self.model = strategy, method, preset, form, model
        self.gray, self.params, self.device, self.dtype = float(gray), params, device, dtype
        self.max_new_tokens = max_new_tokens
        self.suffixes = tuple(s for s in (suffix,) if s)
        self.store_dir, self.progress = store, progress
        self.segmenter = segmenter or None
        self.runner = Runner(self.backend, segmenter=self.segmenter, device=device, dtype=dtype)
        self.strategies: dict[int, Any] = {}
        try:
            self.strategy(DEFAULT_MAX_NEW_TOKENS)  # bad map settings fail now, not at the first request
        except ModelLoadError as e:
            raise _in_model_args(e) from None
        self.answered = 0  # answers so far (stored ones too): a first batch that all fails stops the run
        self._warned_sampling = False

    def strategy(self, budget: int) -> Any:
        """The strategy answering with ``budget`` new tokens (one per budget, sharing their maps)."""
        from ..strategies.build import build_strategy

        if budget not in self.strategies:
            from ..strategies.registry import STRATEGIES

            drawing = STRATEGIES.get(self.strategy_name).needs.segmenter
            segmenter = self.runner.segmenter() if drawing else self.segmenter  # given to another: refused
            self.strategies[budget] = build_strategy(
                self.strategy_name, self.backend, method=self.method, model=self.model, preset=self.preset,
                form=self.form, max_new_tokens=budget, gray=self.gray, device=self.device, dtype=self.dtype,
                make_attributor=self.runner.attributor, segmenter=segmenter, **self.params)
        return self.strategies[budget]

    def describe(self, budget: int = DEFAULT_MAX_NEW_TOKENS) -> dict[str, Any]:
        """The configuration that identifies this adapter's answers (strategy, VLM, map, budget)."""
        return {"integration": "lmms-eval", **self.strategy(budget).describe(), "suffixes": list(self.suffixes)}

    # -- lmms-eval's calls -------------------------------------------------------------------------

    def generate(self, requests: Sequence[Any], task_dict: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """``(answer, trace)`` per ``generate_until`` request, in order; raises
        :class:`LmmsRequestsFailed` when any got no answer."""
        jobs = [self._job(i, req.args, task_dict) for i, req in enumerate(requests)]
        self._answer(jobs, desc="attnprompt")
        self._raise_failures(jobs)
        return [(j.text or "", j.trace) for j in jobs]

    def generate_multi_round(self, requests: Sequence[Any],
                             task_dict: Mapping[str, Any]) -> list[tuple[list[str], dict[str, Any]]]:
        """``(answers per round, trace)`` per ``generate_until_multi_round`` request: round 0 answers
        the context; then the task's ``doc_to_text(doc, previous_output=…, round_idx=…,
        previous_round_info=…)`` gives the next round's images and context, until it says stop."""
        states = []
        for i, req in enumerate(requests):
            context, gen_kwargs, doc_to_visual, doc_to_text, doc_id, task, split = req.args
            doc = task_dict[task][split][doc_id]
            args = (context, gen_kwargs, doc_to_visual, doc_id, task, split)
            job = self._job(i, args, task_dict)
            states.append({"job": job, "base": job.key, "where": job.where, "doc": doc, "next": doc_to_text,
                           "rounds": [], "info": None, "traces": [], "done": False, "gen": gen_kwargs})
        round_idx = 0
        while True:
            active = [s for s in states if not s["done"]]
            if not active:
                break
            self._answer([s["job"] for s in active], desc=f"attnprompt round {round_idx}")
            for s in active:
                job = s["job"]
                s["traces"].append(job.trace)
                if job.text is None:
                    s["done"] = True
                    continue
                s["rounds"].append(job.text)
            round_idx += 1
            for s in active:
                if s["done"]:
                    continue
                visuals, context, terminal, round_res, info = s["next"](
                    s["doc"], previous_output=list(s["rounds"]), round_idx=round_idx, previous_round_info=s["info"])
                s["rounds"], s["info"] = list(round_res), info
                if terminal:
                    s["done"] = True
                    continue
                # a later round's key: the first round's plus the round (its context holds earlier answers)
                s["job"] = self._make_job(s["job"].index, f"{s['where']} round {round_idx}", s["base"],
                                          f"r{round_idx}", context, s["gen"], lambda v=visuals: v)
        jobs = [s["job"] for s in states]
        self._raise_failures(jobs)
        return [(list(s["rounds"]), {"rounds": s["traces"]}) for s in states]

    # -- the work ----------------------------------------------------------------------------------

    def _job(self, index: int, args: tuple, task_dict: Mapping[str, Any]) -> _Job:
        context, gen_kwargs, doc_to_visual, doc_id, task, split = args
        return self._make_job(index, f"{task}/{split}/{doc_id}", split, doc_id, context, gen_kwargs,
                              lambda: doc_to_visual(task_dict[task][split][doc_id]))

    def _make_job(self, index: int, where: str, split: str, doc_id: Any, context: str, gen_kwargs: Any,
                  visuals: Any) -> _Job:
        """The job for one request; ``visuals()`` gives what the task shows (a bad one is this job's error)."""
        try:
            images = images_of(visuals(), where)
        except InputError as e:
            return _Job(index, where, f"{split}/{doc_id}", None, 0, None, error=str(e))
        gen = dict(gen_kwargs or {})
        budget = int(self.max_new_tokens or gen.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
        if not self._warned_sampling and (gen.get("do_sample") or float(gen.get("temperature") or 0) > 0):
            LOG.warning("attnprompt answers greedily; the task's sampling settings (%s) are ignored",
                        {k: gen[k] for k in ("do_sample", "temperature", "top_p") if k in gen})
            self._warned_sampling = True
        until = gen.get("until")
        key = request_key(split, doc_id, context, until, images)
        try:
            question, suffix = split_context(context, self.suffixes)
            sample = Sample(images, question, suffix=suffix, id=key)
        except InputError as e:
            return _Job(index, where, key, None, budget, until, error=str(e))
        return _Job(index, where, key, sample, budget, until)

    def _answer(self, jobs: list[_Job], desc: str) -> None:
        from tqdm.auto import tqdm

        store = self._open_store()
        try:
            todo = [j for j in jobs if j.sample is not None]
            by_budget: dict[int, list[_Job]] = {}
            for job in todo:
                by_budget.setdefault(job.budget, []).append(job)
            with tqdm(total=len(jobs), desc=desc, unit="request", disable=not self.progress) as bar:
                bar.update(len(jobs) - len(todo))
                for budget, group in by_budget.items():
                    strategy = self.strategy(budget)
                    config = self.describe(budget)
                    config_hash = config_hash_of(config)
                    kept = store.records("lmms", config_hash) if store is not None else {}
                    fresh = []
                    for job in group:
                        record = kept.get(job.key)
                        if record is not None and record.ok:
                            job.raw, job.text = record.prediction, cut_at_stops(record.prediction, job.until)
                            job.trace = {**record.record.get("trace", {}), "reused": True}
                            self.answered += 1
                            bar.update(1)
                        else:
                            fresh.append(job)
                    for start in range(0, len(fresh), self.chunk):
                        chunk = fresh[start : start + self.chunk]
                        self._run_chunk(strategy, chunk)
                        if store is not None:
                            store.put_config(config_hash, "lmms", config["strategy"], config)
                            store.put([self._record(j, config_hash, config["strategy"]) for j in chunk])
                        bar.update(len(chunk))
                        self.answered += sum(j.text is not None for j in chunk)
                        if self.answered == 0 and all(j.text is None and j.sample is not None for j in chunk):
                            # nothing has ever been answered and a whole batch failed: the server or a setting,
                            # not the data — say so now rather than after every request of the task
                            raise LmmsRequestsFailed([f"{j.where}: {j.error}" for j in chunk], len(chunk),
                                                     self.store_dir, first=True)
        finally:
            if store is not None:
                store.close()

    def _run_chunk(self, strategy: Any, chunk: list[_Job]) -> None:
        """The chunk through the harness's policy (one batched call; each request alone if that raises,
        so one bad request fails alone, recorded as its failure and never answered)."""
        from ..evaluation.units import run_chunk

        results, _ = run_chunk(lambda jobs: strategy.run([j.sample for j in jobs]), chunk)
        for job, result in zip(chunk, results):
            if isinstance(result, Exception):
                job.error = f"{type(result).__name__}: {result}"
                continue
            job.trace = trace_of(result)
            if result.answer.ok:
                job.raw = result.answer.text
                job.text = cut_at_stops(result.answer.text, job.until)
            else:
                job.error = f"{result.answer.failure or 'error'}: {result.answer.error or 'no answer'}"

    def _record(self, job: _Job, config_hash: str, condition: str) -> Any:
        from ..evaluation.store import Record

        ok = job.text is not None
        return Record("lmms", job.key, config_hash, condition, ok, job.raw if ok else "", job.error,
                      None if ok else "error", None, {"where": job.where, "trace": job.trace})

    def _open_store(self) -> Any:
        if not self.store_dir:
            return None
        from ..evaluation.store import RunStore

        return RunStore(self.store_dir)

    def _raise_failures(self, jobs: Sequence[_Job]) -> None:
        failures = [f"{j.where}: {j.error}" for j in jobs if j.text is None]
        if failures:
            raise LmmsRequestsFailed(failures, len(jobs), self.store_dir)


__all__ = ["KNOWN_SUFFIXES", "LmmsAdapter", "LmmsRequestsFailed", "cut_at_stops", "images_of", "request_key",
           "split_context", "trace_of"]
