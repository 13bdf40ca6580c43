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

import contextlib
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from ..checks import check_count
from ..errors import InputError, ModelLoadError
from ..files import config_hash_of
from ..strategies.registry import STRATEGIES
from ..strategies.spec import DEFAULT_MAX_NEW_TOKENS, AskSpec
from ..types import Result, Sample

LOG = logging.getLogger("attnprompt.lmms")
#: The task name the adapter's records are stored under.
LMMS_TASK = "lmms"

#: Answer-format instructions that lmms-eval's tasks put on the context's last line; one of them
#: ending a context becomes the sample's suffix (the map is computed for the question only).
KNOWN_SUFFIXES = (
    "Answer the question using a single word or phrase.",
    "Answer with the option's letter from the given choices directly.",
    "Answer the option letter directly.",
    "Please answer the question using a single word or phrase.",
    "Answer the question with Yes or No.",
    "Please answer yes or no.",
)


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


#: lmms-eval's model arguments that say who answers and how the adapter runs; every other one is a
#: setting of the :class:`~attnprompt.strategies.spec.AskSpec` (strategy, method, form, kernel …).
BACKEND_ARGS = ("vlm", "vlm_model", "api_key_env", "batch_size", "concurrency", "timeout")
#: lmms-eval's model arguments that say how a local model loads (:class:`~attnprompt.models.LoadOptions`).
LOADING_ARGS = ("device", "dtype", "device_map", "quantize", "attn_implementation", "max_pixels", "min_pixels",
                "answer_fit", "generation")
ADAPTER_ARGS = ("store", "suffix", "progress")


@dataclass(frozen=True)
class AdapterOptions:
    """How the adapter runs: ``store`` (a directory that keeps answers across runs), extra answer-format
    ``suffixes`` to split off contexts, ``chunk`` (requests per batched call), ``progress`` bars."""

    store: str | None = None
    suffixes: tuple[str, ...] = ()
    chunk: int = 8
    progress: bool = True


class LmmsAdapter:
    """Answers lmms-eval requests with one attnprompt strategy (see the module docstring): ``backend``
    answers, ``spec`` (an :class:`~attnprompt.strategies.spec.AskSpec`, checked here, before any request)
    says how; its ``max_new_tokens``, when set, overrides the tasks' budgets. :meth:`from_model_args` builds
    one from lmms-eval's ``--model_args``.

    >>> adapter = LmmsAdapter.from_model_args({"vlm": "shapes", "strategy": "plain"})
    >>> adapter.describe()["strategy"]
    'plain'
    """

    def __init__(self, backend: Any, spec: AskSpec, options: AdapterOptions | None = None, *,
                 loading: Any = None) -> None:
        from ..evaluation.runner import Runner

        self.backend = backend
        self.spec = spec.check()  # bad settings fail now, not at the first request
        self.options = options or AdapterOptions()
        self.runner = Runner(backend, self.spec, loading=loading)
        self.strategies: dict[int, Any] = {}
        try:
            self.strategy(DEFAULT_MAX_NEW_TOKENS)  # a model that cannot load fails now too
        except ModelLoadError as e:
            raise _in_model_args(e) from None
        self._warned_sampling = False
        self.done: dict[str, bool] = {}  # request key → answered, over this adapter's life (stored ones too)

    @classmethod
    def from_model_args(cls, args: Mapping[str, Any]) -> LmmsAdapter:
        """The adapter lmms-eval's ``--model_args`` describe: ``vlm`` (a hub id, a local directory, ``shapes``,
        or an OpenAI-compatible URL with ``vlm_model`` and the key in the environment variable
        ``api_key_env``), ``batch_size`` answers per forward on a local VLM, ``concurrency`` requests in flight
        on a server, ``timeout``; how a local model loads (``device``, ``dtype``, ``device_map``, ``quantize``,
        ``attn_implementation``, ``max_pixels``, ``min_pixels``, ``answer_fit``, ``generation``: a
        :class:`~attnprompt.models.LoadOptions`); ``store``, ``suffix``, ``progress``; every other
        argument a setting of how the question is asked (``strategy`` — default api —, ``method``, ``preset``,
        ``form``, ``model``, ``segmenter``, ``max_new_tokens``, map parameters such as ``kernel``)."""
        import os

        from ..backends import get_backend, is_url

        args = dict(args)
        from ..models import LoadOptions, parse_generation

        known = {k: args.pop(k) for k in (*BACKEND_ARGS, *ADAPTER_ARGS) if k in args}
        load = {k: args.pop(k) for k in LOADING_ARGS if k in args}
        if isinstance(load.get("generation"), str):
            load["generation"] = parse_generation(load["generation"])
        loading = LoadOptions.from_mapping(load)
        vlm = known.get("vlm")
        if not vlm:
            raise InputError("give the answering VLM: vlm=… in --model_args (a hub id, a local directory, shapes for "
                             "the small offline testbed model, or an OpenAI-compatible URL with vlm_model=…)")
        spec = AskSpec.from_mapping({"strategy": "api", **args}).check()  # before any model loads
        batch_size = check_count("batch_size", known.get("batch_size", 8))
        concurrency = known.get("concurrency")
        http = is_url(vlm)
        key_env = known.get("api_key_env", "OPENAI_API_KEY")
        try:  # server settings given for a local model are refused by get_backend, with the reason
            backend = get_backend(vlm, vlm_model=known.get("vlm_model"), api_key=os.environ.get(key_env) if http and
                                  key_env else None, timeout=float(known.get("timeout", 60.0)),
                                  loading=loading,
                                  concurrency=None if concurrency is None else int(concurrency), batch_size=batch_size)
        except ModelLoadError as e:
            raise _in_model_args(e) from None
        chunk = batch_size if backend.local_model is not None else 4 * int(concurrency or 4)
        options = AdapterOptions(store=known.get("store"), suffixes=tuple(s for s in (known.get("suffix"),) if s),
                                 chunk=chunk, progress=bool(known.get("progress", True)))
        return cls(backend, spec, options, loading=loading)

    def strategy(self, budget: int) -> Any:
        """The strategy answering with ``budget`` new tokens (one per budget, sharing their maps)."""
        if budget not in self.strategies:
            spec = self.spec.replace(max_new_tokens=budget)
            if self.spec.segmenter is not None or STRATEGIES.get(spec.strategy).needs.segmenter:
                spec = spec.replace(segmenter=self.runner.segmenter())
            self.strategies[budget] = self.runner.strategy(spec)
        return self.strategies[budget]

    def describe(self, budget: int = DEFAULT_MAX_NEW_TOKENS) -> dict[str, Any]:
        """The configuration that identifies this adapter's answers (strategy, VLM, map, budget)."""
        return {"integration": "lmms-eval", **self.strategy(budget).describe(),
                "suffixes": list(self.options.suffixes)}

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
        budget = int(self.spec.max_new_tokens or gen.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
        if not self._warned_sampling and (gen.get("do_sample") or float(gen.get("temperature") or 0) > 0):
            LOG.warning("attnprompt answers greedily; the task's sampling settings (%s) are ignored",
                        {k: gen[k] for k in ("do_sample", "temperature", "top_p") if k in gen})
            self._warned_sampling = True
        until = gen.get("until")
        key = request_key(split, doc_id, context, until, images)
        try:
            question, suffix = split_context(context, self.options.suffixes)
            sample = Sample(images, question, suffix=suffix, id=key)
        except InputError as e:
            return _Job(index, where, key, None, budget, until, error=str(e))
        return _Job(index, where, key, sample, budget, until)

    def _answer(self, jobs: list[_Job], desc: str) -> None:
        """Answer the jobs, grouped by budget: the stored answers reused, the rest in chunks, each chunk's
        records written at once; the harness's rules decide what is left and when a first batch that all
        failed stops the work (:func:`~attnprompt.evaluation.units.pending`,
        :func:`~attnprompt.evaluation.units.first_batch_failed`)."""
        from tqdm.auto import tqdm

        todo = [j for j in jobs if j.sample is not None]
        by_budget: dict[int, list[_Job]] = {}
        for job in todo:
            by_budget.setdefault(job.budget, []).append(job)
        with self._open_store() as store, tqdm(total=len(jobs), desc=desc, unit="request",
                                               disable=not self.options.progress) as bar:
            bar.update(len(jobs) - len(todo))
            for budget, group in by_budget.items():
                self._answer_group(budget, group, store, bar)

    def _answer_group(self, budget: int, group: list[_Job], store: Any, bar: Any) -> None:
        from ..evaluation.units import first_batch_failed, pending

        config = self.describe(budget)
        config_hash = config_hash_of(config)
        kept = store.records(LMMS_TASK, config_hash) if store is not None else {}
        for job in group:
            record = kept.get(job.key)
            if record is not None and record.ok:
                job.raw, job.text = record.prediction, cut_at_stops(record.prediction, job.until)
                job.trace = {**record.record.get("trace", {}), "reused": True}
        self.done.update({j.key: True for j in group if j.text is not None})
        bar.update(sum(j.text is not None for j in group))
        fresh = [group[i] for i in pending([j.key for j in group], {j.key: True for j in group if j.text is not None})]
        strategy = self.strategy(budget)
        for start in range(0, len(fresh), self.options.chunk):
            chunk = fresh[start : start + self.options.chunk]
            self._run_chunk(strategy, chunk)
            records = [self._record(j, config_hash, config["strategy"]) for j in chunk]
            if store is not None:
                store.put_config(config_hash, LMMS_TASK, config["strategy"], config)
                store.put(records)
            bar.update(len(chunk))
            if first_batch_failed(self.done, records):
                # nothing has ever been answered and a whole batch failed: the server or a setting, not the
                # data — say so now rather than after every request of the task
                raise LmmsRequestsFailed([f"{j.where}: {j.error}" for j in chunk], len(chunk), self.options.store,
                                         first=True)
            self.done.update({r.sample_id: r.ok for r in records})

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
        from ..evaluation.store import Record, RecordKey

        key = RecordKey(LMMS_TASK, job.key, config_hash, condition)
        body = {"where": job.where, "trace": job.trace}
        if job.text is None:
            return Record.failed(key, job.error or "no answer", "error", body)
        return Record.answered(key, job.raw, None, body)

    def _open_store(self) -> Any:
        if not self.options.store:
            return contextlib.nullcontext()
        from ..evaluation.store import RunStore

        return RunStore(self.options.store)

    def _raise_failures(self, jobs: Sequence[_Job]) -> None:
        failures = [f"{j.where}: {j.error}" for j in jobs if j.text is None]
        if failures:
            raise LmmsRequestsFailed(failures, len(jobs), self.options.store)


__all__ = ["KNOWN_SUFFIXES", "LmmsAdapter", "LmmsRequestsFailed", "cut_at_stops", "images_of", "request_key",
           "split_context", "trace_of"]
