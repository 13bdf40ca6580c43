"""attnprompt as a VLMEvalKit model: the kit's datasets (``VStarBench``, ``HRBench4K``, ``HRBench8K`` …), its
prompts, its scoring — with visual prompting in front of the answering VLM.

    attnprompt vlmeval --vlm llava-hf/llava-1.5-7b-hf --data HRBench4K VStarBench --model attnprompt-api \\
        --judge exact_matching --work-dir runs/vlmeval

How VLMEvalKit runs a model (``vlmeval/vlm/base.py``, ``vlmeval/inference.py``, ``run.py``): the model is a
``BaseModel`` whose ``generate_inner(message, dataset)`` answers one ``message`` — a list of
``{"type": "image" | "text", "value": path or text}`` built by the dataset's ``build_prompt`` (or the
model's, where ``use_custom_prompt(dataset)`` says so) — with a string; models are entries of
``vlmeval.config.supported_VLM`` (``functools.partial`` of a class) and ``run.py --config`` finds a
``"class"`` only by ``hasattr(vlmeval.vlm, name)``: :func:`register` adds both.

- **The prompt is the dataset's own** (``use_custom_prompt`` is False: scores are the published protocol's).
  The texts of a message, joined by line breaks, are the question; a known answer-format instruction at
  their end — the kit's multiple-choice line "Please select the correct answer from the options above."
  (:data:`~attnprompt.evaluation.judge_prompts.MCQ_INSTRUCTION`) or one of lmms-eval's
  (:data:`~attnprompt.integrations.lmms.KNOWN_SUFFIXES`), or ``suffix=`` — becomes the sample's suffix, so
  the map is made for the question and the options, as ``attnprompt eval``'s ``hr-bench-4k`` makes it.
  The images are the files the kit wrote; ``INTERLEAVE`` is False: they go first, in order.
- **A failure is raised, never returned.** The kit's convention is a reply containing "Failed to obtain
  answer" (``FAIL_MSG``): its API models return one after their retries, and ``SKIP_ERR=1`` turns a
  local model's ``RuntimeError`` into one. Such a reply is retried by the next run, but the run in hand
  *scores* it — the multiple-choice evaluation reads no option in it and counts it wrong. So a sample that
  gets no answer raises :class:`VlmevalRequestFailed` (not a ``RuntimeError``, so ``SKIP_ERR`` cannot turn
  it into a scored reply): ``run.py`` logs it, records the dataset as failed in its ``status.json`` and
  goes on to the next dataset without scoring this one (its ``--api-mode`` pipeline never writes the
  dataset's results either). ``attnprompt vlmeval`` then exits 1 naming the datasets. Every answer that
  succeeded is in the store, so the same command run again asks only what failed. When nothing of a
  dataset has been answered yet and a whole batch fails with an error (a wrong URL, a setting), the rest
  of that dataset is not asked (:func:`~attnprompt.evaluation.units.first_batch_failed`).
- **Every step is recorded** in a run store beside the kit's files (``store=``, default
  ``outputs/attnprompt``; ``attnprompt vlmeval`` uses ``WORK_DIR/attnprompt``): one record per message
  under task ``vlmeval/DATASET``, keyed by the first image's file name and a digest of the images and
  text, and the hash of the full configuration — the strategy's steps, prompts, answers and crop boxes, as
  the harness keeps them, and the size of the batch it was answered in. A record that answered is reused by
  the next run with the same configuration.
- **Maps are cached across samples** (one map-caching attributor per configuration, the harness's
  :class:`~attnprompt.evaluation.runner.Runner`): an image asked the same question again — by another row,
  another dataset, or a message the kit asks again after a failure — reuses its map.
- **Batching where the kit allows it.** The kit's local inference asks one sample at a time (sharded by
  ``torchrun`` rank); only a model that says it is an API model (``is_api``) is called from
  ``--api-nproc`` threads at once. With ``batch_size`` > 1 this model says so and answers the calls in
  flight together (up to ``batch_size``: pass ``--api-nproc`` ≥ it), one batched strategy call each; under
  ``torchrun`` (where the kit refuses API models) it answers one at a time.
- **VLMEvalKit imports torchvision** when it is imported (``vlmeval.dataset`` → MVBench, MMLongBench …),
  although no image dataset uses it. Where torchvision is not installed, :func:`import_kit` imports the kit
  with a stand-in whose every use raises ImportError naming torchvision, and takes it out of
  ``sys.modules`` afterwards, so nothing else (transformers) ever sees it. Install the kit without its
  requirements (they pull torchvision and GBs of CUDA torch) and ours for it:
  ``pip install 'attnprompt[vlmeval]' && pip install --no-deps ms-vlmeval==0.0.20``. Importing the kit also
  turns off the process's default TLS certificate checks (``vlmeval/__init__.py``, for its downloads); our
  client of an answering server uses a context of its own, which checks them.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import threading
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import EXIT_ERROR, AttnpromptError, InputError, ModelLoadError
from ..evaluation.judge_prompts import MCQ_INSTRUCTION
from ..files import config_hash_of
from ..strategies.registry import STRATEGIES
from ..strategies.spec import DEFAULT_MAX_NEW_TOKENS, AskSpec
from ..types import Sample
from .lmms import split_context, trace_of

LOG = logging.getLogger("attnprompt.vlmeval")

#: The class name :func:`register` gives ``vlmeval.vlm`` (a ``--config`` file's ``"class"``).
MODEL_CLASS = "AttnPromptVLM"
#: The ``supported_VLM`` entries :func:`register` adds by default: name → how it asks.
MODELS: dict[str, dict[str, Any]] = {
    "attnprompt-plain": {"strategy": "plain"},
    "attnprompt-api": {"strategy": "api"},
    "attnprompt-carve": {"strategy": "carve"},
    "attnprompt-vicrop": {"strategy": "carve", "preset": "vicrop"},
}
#: Where the records go when no ``store`` is given: beside the kit's default ``--work-dir``.
DEFAULT_STORE = os.path.join("outputs", "attnprompt")
#: The store's task of a dataset's records.
TASK_PREFIX = "vlmeval/"
#: The kit's answer-format lines split off as the suffix, besides lmms-eval's.
KIT_SUFFIXES = (MCQ_INSTRUCTION.strip(),)
#: Settings of who answers and how the model runs; every other keyword is a setting of the AskSpec.
BACKEND_SETTINGS = ("vlm", "vlm_model", "api_key_env", "timeout", "concurrency")
MODEL_SETTINGS = ("batch_size", "store", "suffix")


class VlmevalRequestFailed(AttnpromptError):
    """A message got no answer: raised, so VLMEvalKit scores nothing of the dataset (see the module docstring).

    >>> str(VlmevalRequestFailed("HRBench4K/7.png", "timed out", "runs/vlmeval/attnprompt")).splitlines()[0]
    'attnprompt: HRBench4K/7.png got no answer (timed out); VLMEvalKit skips the dataset without scoring it'
    """

    def __init__(self, where: str, error: str, store: str | None) -> None:
        self.where, self.error = where, error
        super().__init__(
            f"attnprompt: {where} got no answer ({error}); VLMEvalKit skips the dataset without scoring it\n"
            + (f"the answers that succeeded are kept in {store}: run the same command again to ask only the "
               "failed ones" if store else "give store=DIR to keep the answers that succeeded for a rerun"))


# -- a message as a sample -------------------------------------------------------------------------------


def message_sample(message: Sequence[Mapping[str, Any]], suffixes: Sequence[str] = ()) -> Sample:
    """The :class:`~attnprompt.types.Sample` of a VLMEvalKit message: its images (files), its texts joined by
    line breaks, a known answer-format line at the end split off as the suffix (``suffixes``: more of them).

    >>> s = message_sample([{"type": "text", "value": "Question: Colour?\\nOptions:\\nA. red\\nB. blue\\n"
    ...                      "Please select the correct answer from the options above. \\n"}])
    >>> s.question, s.suffix
    ('Question: Colour?\\nOptions:\\nA. red\\nB. blue', '\\nPlease select the correct answer from the options above.')
    """
    from ..images import load_image

    images, texts = [], []
    value: Any  # a path or an image for "image", text for "text" (load_image names a missing one)
    for item in message:
        kind, value = item.get("type"), item.get("value")
        if kind == "image":
            images.append(load_image(value))
        elif kind == "text":
            texts.append(str(value))
        else:
            raise InputError(f"attnprompt answers images and text; the message holds a {kind!r} "
                             f"({str(value)[:60]!r}) — pick an image dataset")
    question, suffix = split_context("\n".join(texts), (*KIT_SUFFIXES, *suffixes))
    return Sample(tuple(images), question, suffix=suffix)


def message_key(message: Sequence[Mapping[str, Any]], sample: Sample) -> str:
    """A message's store key: the first image's file name (the kit names it by the row's index) and a digest
    of everything asked, so a changed prompt or image is never answered from an old record.

    >>> message_key([{"type": "text", "value": "Q?"}], Sample((), "Q?"))[:5]
    'text/'
    """
    from ..images import image_digest

    first = next((Path(str(m["value"])).name for m in message if m.get("type") == "image"), "text")
    h = hashlib.sha256(f"{sample.question}\x00{sample.suffix}".encode())
    for image in sample.images:
        h.update(image_digest(image).encode())
    return f"{first}/{h.hexdigest()[:16]}"


# -- the answering -----------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class VlmevalOptions:
    """How the model runs: ``store`` (the records' directory; None keeps none), extra answer-format
    ``suffixes`` to split off, ``batch_size`` (calls answered together when the kit makes them at once)."""

    store: str | None = DEFAULT_STORE
    suffixes: tuple[str, ...] = ()
    batch_size: int = 1


@dataclasses.dataclass
class _Job:
    dataset: str
    where: str
    key: str = ""
    sample: Sample | None = None
    text: str | None = None
    error: str | None = None
    failure: str = "error"  # the kind, as the harness records it (an empty answer is the sample's own)
    trace: dict[str, Any] = dataclasses.field(default_factory=dict)


class VlmevalAdapter:
    """Answers VLMEvalKit messages with one strategy: ``backend`` answers, ``spec`` (an
    :class:`~attnprompt.strategies.spec.AskSpec`, checked here) says how, with ``spec.max_new_tokens`` new
    tokens (default 128: the kit gives a model no budget); ``options`` say where the records go.

    >>> import tempfile
    >>> from attnprompt.shapes import make_scene
    >>> path = Path(tempfile.mkdtemp()) / "0.png"
    >>> make_scene(7, n_objects=5, size=320).image.save(path)
    >>> adapter = VlmevalAdapter.from_settings({"vlm": "shapes", "strategy": "plain", "store": None})
    >>> adapter.answer([([{"type": "image", "value": str(path)}, {"type": "text", "value": "What colour is the "
    ...                   "circle?"}], "demo")])
    ['green']
    """

    def __init__(self, backend: Any, spec: AskSpec, options: VlmevalOptions | None = None, *,
                 loading: Any = None) -> None:
        from ..evaluation.runner import Runner

        self.backend = backend
        self.options = options or VlmevalOptions()
        spec = spec.check()  # bad settings fail now, not at the first message
        spec = spec.replace(max_new_tokens=spec.max_new_tokens or DEFAULT_MAX_NEW_TOKENS)
        self.runner = Runner(backend, spec, loading=loading)
        if spec.segmenter is not None or STRATEGIES.get(spec.strategy).needs.segmenter:
            spec = spec.replace(segmenter=self.runner.segmenter())
        self.spec = spec
        self.strategy = self.runner.strategy(spec)
        self.config = {"integration": "vlmevalkit", **self.strategy.describe(), "suffixes": list(self.options.suffixes)}
        self.config_hash = config_hash_of(self.config)
        self._store: Any = None
        self._kept: dict[str, dict[str, Any]] = {}  # dataset → the store's records of this configuration
        self._done: dict[str, dict[str, bool]] = {}  # dataset → {key: answered}, over this adapter's life
        self._stopped: dict[str, str] = {}  # dataset → why the rest of it is not asked

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> VlmevalAdapter:
        """The adapter flat keywords describe (the kit's model keywords): ``vlm`` (a hub id, a local directory,
        ``shapes``, or an OpenAI-compatible URL with ``vlm_model`` and the key in the environment variable
        ``api_key_env``), ``timeout``, ``concurrency`` (a server's requests in flight, default
        ``batch_size``); how a local model loads (``device``, ``dtype``, ``quantize``, ``attn_implementation`` … :
        :class:`~attnprompt.models.LoadOptions`); ``batch_size``, ``store``, ``suffix``; every other keyword a
        setting of how the question is asked (``strategy`` — default api —, ``method``, ``preset``, ``form``,
        ``model``, ``max_new_tokens``, map parameters such as ``kernel``)."""
        from ..backends import get_backend, is_url
        from ..checks import check_count
        from ..models import DEFAULT_VLM, LoadOptions, parse_generation
        from .lmms import LOADING_ARGS

        settings = dict(settings)
        known = {k: settings.pop(k) for k in (*BACKEND_SETTINGS, *MODEL_SETTINGS) if k in settings}
        load = {k: settings.pop(k) for k in LOADING_ARGS if k in settings and settings[k] is not None}
        if isinstance(load.get("generation"), str):
            load["generation"] = parse_generation(load["generation"])
        loading = LoadOptions.from_mapping(load)
        spec = AskSpec.from_mapping({"strategy": "api", **settings}).check()  # before any model loads
        vlm = known.get("vlm") or DEFAULT_VLM
        batch = check_count("batch_size", known.get("batch_size", 1))
        http = is_url(vlm)
        key_env = known.get("api_key_env", "OPENAI_API_KEY")
        concurrency = int(known.get("concurrency") or batch) if http else None
        try:
            backend = get_backend(vlm, vlm_model=known.get("vlm_model"),
                                  api_key=os.environ.get(key_env) if http and key_env else None,
                                  timeout=float(known.get("timeout", 60.0)), loading=loading,
                                  concurrency=concurrency,
                                  batch_size=None if http else batch)
        except ModelLoadError as e:
            raise type(e)(f"{e} — in VLMEvalKit, give vlm=… (answering) and model=… (the map's model) as the "
                          "model's keywords (attnprompt vlmeval --vlm …)") from None
        suffix = known.get("suffix")
        options = VlmevalOptions(store=known.get("store", DEFAULT_STORE),
                                 suffixes=tuple([suffix] if isinstance(suffix, str) else suffix or ()),
                                 batch_size=batch)
        return cls(backend, spec, options, loading=loading)

    def answer(self, calls: Sequence[tuple[Sequence[Mapping[str, Any]], str | None]]) -> list[str | Exception]:
        """One reply per ``(message, dataset)`` — the answer, or the :class:`VlmevalRequestFailed` to raise
        for it — with stored answers reused, the rest asked in one batched strategy call, and every record
        written before this returns."""
        from ..evaluation.units import first_batch_failed, pending, run_chunk

        jobs = [self._job(message, dataset or "") for message, dataset in calls]
        store = self._open_store()
        for dataset in dict.fromkeys(j.dataset for j in jobs):
            group = [j for j in jobs if j.dataset == dataset and j.error is None]
            if dataset in self._stopped:
                for job in group:
                    job.error = f"not asked: {self._stopped[dataset]}"
                continue
            kept = self._records(store, dataset)
            for job in group:
                record = kept.get(job.key)
                if record is not None and record.ok:
                    job.text, job.trace = record.prediction, {**record.record.get("trace", {}), "reused": True}
            done = self._done.setdefault(dataset, {})
            done.update({j.key: True for j in group if j.text is not None})
            fresh = [group[i] for i in pending([j.key for j in group], {j.key: True for j in group
                                                                         if j.text is not None})]
            if not fresh:
                continue
            results, _ = run_chunk(lambda js: self.strategy.run([j.sample for j in js]), fresh)
            for job, result in zip(fresh, results):
                self._settle(job, result)
            records = [self._record(j, len(fresh)) for j in fresh]
            if store is not None:
                store.put(records)
                kept.update({r.sample_id: r for r in records})
            if first_batch_failed(done, records):
                self._stopped[dataset] = (f"every message of the first batch of {dataset} failed ({fresh[0].error})"
                                          " — a server or setting problem, not the data's")
            done.update({r.sample_id: r.ok for r in records})
        return [j.text if j.text is not None else
                VlmevalRequestFailed(j.where, j.error or "no answer", self.options.store) for j in jobs]

    def close(self) -> None:
        """Close the store (the adapter opens it again when asked more)."""
        if self._store is not None:
            self._store.close()
            self._store = None
            self._kept.clear()

    def _job(self, message: Sequence[Mapping[str, Any]], dataset: str) -> _Job:
        first = next((Path(str(m.get("value"))).name for m in message if m.get("type") == "image"), "text")
        job = _Job(dataset, f"{dataset}/{first}")
        try:
            job.sample = message_sample(message, self.options.suffixes)
            job.key = message_key(message, job.sample)
        except InputError as e:
            job.error = str(e)
        return job

    def _settle(self, job: _Job, result: Any) -> None:
        if isinstance(result, Exception):
            job.error = f"{type(result).__name__}: {result}"
            return
        job.trace = trace_of(result)
        if result.answer.ok:
            job.text = result.answer.text.strip()  # stored and scored stripped, as the harness does
        else:
            job.failure = result.answer.failure or "error"
            job.error = f"{job.failure}: {result.answer.error or 'no answer'}"

    def _record(self, job: _Job, batch: int) -> Any:
        from ..evaluation.store import Record, RecordKey

        key = RecordKey(TASK_PREFIX + job.dataset, job.key, self.config_hash, self.spec.strategy)
        body = {"where": job.where, "batch": batch, "trace": job.trace}
        if job.text is None:
            return Record.failed(key, job.error or "no answer", job.failure, body)
        return Record.answered(key, job.text, None, body)

    def _open_store(self) -> Any:
        if self._store is None and self.options.store:
            from ..evaluation.store import RunStore

            self._store = RunStore(self.options.store)
            self._store.put_config(self.config_hash, TASK_PREFIX + "*", self.spec.strategy, self.config)
        return self._store

    def _records(self, store: Any, dataset: str) -> dict[str, Any]:
        if dataset not in self._kept:
            self._kept[dataset] = store.records(TASK_PREFIX + dataset, self.config_hash) if store is not None else {}
        return self._kept[dataset]


# -- answering the calls in flight together ------------------------------------------------------------


class _Call:
    __slots__ = ("item", "out", "done")
    out: Any  # the answer, or the exception that stopped its batch

    def __init__(self, item: Any) -> None:
        self.item, self.out, self.done = item, None, False


class Batcher:
    """Answers calls made from several threads at once together: the first caller to find no batch running
    waits until ``size`` calls are queued or none came for ``linger`` seconds, runs ``answer`` (a list of
    items → one output each) on them, and hands each caller its output; one batch runs at a time.

    >>> from concurrent.futures import ThreadPoolExecutor
    >>> batcher = Batcher(lambda items: [x * 10 for x in items], size=4)
    >>> with ThreadPoolExecutor(4) as pool:
    ...     list(pool.map(batcher.submit, range(8)))
    [0, 10, 20, 30, 40, 50, 60, 70]
    """

    def __init__(self, answer: Callable[[list[Any]], list[Any]], size: int, linger: float = 0.05) -> None:
        self.answer, self.size, self.linger = answer, size, linger
        self.sizes: list[int] = []  # each batch's size, in order
        self._cond = threading.Condition()
        self._queue: list[_Call] = []
        self._running = False

    def submit(self, item: Any) -> Any:
        """The output for ``item``, answered with the calls in flight beside it."""
        call = _Call(item)
        with self._cond:
            self._queue.append(call)
            self._cond.notify_all()
            while not call.done:
                if self._running or not self._queue:
                    self._cond.wait()
                    continue
                self._running = True
                batch: list[_Call] = []
                try:
                    while len(self._queue) < self.size:
                        seen = len(self._queue)
                        self._cond.wait(self.linger)
                        if len(self._queue) == seen:
                            break
                    batch, self._queue = self._queue[: self.size], self._queue[self.size :]
                    self.sizes.append(len(batch))
                    self._cond.release()
                    try:
                        outs = self._run([c.item for c in batch])
                    finally:
                        self._cond.acquire()
                    for c, out in zip(batch, outs):
                        c.out, c.done = out, True
                finally:
                    for c in batch:  # interrupted (KeyboardInterrupt): no caller of the batch waits forever
                        if not c.done:
                            c.out, c.done = RuntimeError("the batch was interrupted"), True
                    self._running = False
                    self._cond.notify_all()
        return call.out

    def _run(self, items: list[Any]) -> list[Any]:
        try:
            return list(self.answer(items))
        except Exception as e:  # noqa: BLE001  # every caller of the batch gets it, none waits forever
            return [e] * len(items)


# -- VLMEvalKit ------------------------------------------------------------------------------------------


class _StandIn(types.ModuleType):
    """A module of the torchvision stand-in: any name in it is a :class:`_Missing`."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Missing(f"{self.__name__}.{name}")


class _Missing:
    """A name of the torchvision stand-in: fine to import and to name, an ImportError to use."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Missing(f"{self._name}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise ImportError(f"{self._name} needs torchvision, which is not installed: this part of VLMEvalKit (a "
                          "video or document dataset) is not available; attnprompt's model does not use it")

    def __mro_entries__(self, bases: tuple) -> tuple:
        return (object,)


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec: Any) -> types.ModuleType:
        return _StandIn(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        module.__path__ = []  # a package, so that its submodules import


@contextlib.contextmanager
def _torchvision_stand_in() -> Iterator[None]:
    """While the kit is imported, a torchvision stand-in where none is installed (see the module docstring)."""
    if importlib.util.find_spec("torchvision") is not None:
        yield
        return
    # transformers asks once whether torchvision is there and remembers: ask it now, before the stand-in exists
    from transformers.utils import import_utils

    for check in ("is_torchvision_available", "is_torchvision_v2_available"):
        getattr(import_utils, check, lambda: None)()
    finder = _StandInFinder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]


def import_kit() -> types.ModuleType:
    """VLMEvalKit's ``vlmeval`` with its models, datasets, config and inference imported (torchvision or not).

    The error when it is not installed says how to install it (``vlmeval`` itself is not imported here)."""
    if importlib.util.find_spec("vlmeval") is None:
        raise InputError("VLMEvalKit is not installed: pip install 'attnprompt[vlmeval]' && pip install --no-deps "
                         "ms-vlmeval==0.0.20 (its own requirements pull torchvision)")
    with _torchvision_stand_in():
        kit = importlib.import_module("vlmeval")
        for part in ("config", "vlm", "dataset", "inference"):
            importlib.import_module(f"vlmeval.{part}")
    return kit


class _KitModel:
    """VLMEvalKit's model ``AttnPromptVLM``: visual prompting in front of the answering VLM. Keywords as
    :meth:`VlmevalAdapter.from_settings` takes them (``vlm``, ``strategy``, ``method``, ``preset``, ``form``,
    ``model``, ``batch_size``, ``store`` …); in a ``--config`` file, ``{"class": "AttnPromptVLM", "vlm": …}``."""

    INTERLEAVE = False  # the images go first, the texts after them (the kit's datasets put them so)
    allowed_types = ["text", "image"]
    #: Settings under every model's own (:func:`register` sets them), so that a ``--config`` entry by class
    #: name answers with ``attnprompt vlmeval``'s ``--vlm`` and records into its store.
    defaults: dict[str, Any] = {}

    def __init__(self, **settings: Any) -> None:
        super().__init__()  # the kit's BaseModel
        self.adapter = VlmevalAdapter.from_settings({**self.defaults, **settings})
        # the kit calls an API model from --api-nproc threads at once; under torchrun it refuses API models
        self.is_api = self.adapter.options.batch_size > 1 and not _distributed()
        self.batcher = Batcher(self.adapter.answer, self.adapter.options.batch_size) if self.is_api else None

    def use_custom_prompt(self, dataset: str) -> bool:
        return False  # the dataset's own prompt: the published protocol

    def generate_inner(self, message: list[dict[str, Any]], dataset: str | None = None) -> str:
        call = (message, dataset)
        out = self.batcher.submit(call) if self.batcher is not None else self.adapter.answer([call])[0]
        if isinstance(out, Exception):
            _FAILED.setdefault(dataset or "", str(out).splitlines()[0])
            raise out
        return out


def _distributed() -> bool:
    try:
        import torch.distributed as dist

        return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    except Exception:  # noqa: BLE001  # no torch.distributed: one process
        return False


#: Datasets whose answering raised in this process: dataset → the first error's first line.
_FAILED: dict[str, str] = {}
_MODEL_CLASS: type | None = None


def model_class() -> type:
    """The VLMEvalKit model class (a subclass of the kit's ``BaseModel``, made once; imports the kit)."""
    global _MODEL_CLASS
    if _MODEL_CLASS is None:
        import_kit()
        from vlmeval.vlm.base import BaseModel

        _MODEL_CLASS = type(MODEL_CLASS, (_KitModel, BaseModel), {"__module__": __name__,
                                                                   "__qualname__": MODEL_CLASS,
                                                                   "__doc__": _KitModel.__doc__})
    return _MODEL_CLASS


def register(models: Mapping[str, Mapping[str, Any]] | None = None, **settings: Any) -> list[str]:
    """Make attnprompt's models VLMEvalKit models: the class as ``vlmeval.vlm.AttnPromptVLM`` (what a
    ``--config`` file's ``"class"`` names) and one ``supported_VLM`` entry per name of ``models`` (default
    :data:`MODELS`: ``attnprompt-plain``, ``attnprompt-api``, ``attnprompt-carve``, ``attnprompt-vicrop``),
    each with its settings over ``settings`` (the answering ``vlm``, ``batch_size``, ``store`` … as
    :meth:`VlmevalAdapter.from_settings` takes them), which are also the defaults of a model a ``--config``
    file builds by class name (its keywords win). Nothing loads until the kit builds a model. Returns the
    names added; call it before VLMEvalKit's ``run.py`` main, or use ``attnprompt vlmeval``."""
    cls: Any = model_class()
    import vlmeval.vlm
    from vlmeval.config import supported_VLM

    cls.defaults = dict(settings)
    vlmeval.vlm.__dict__[MODEL_CLASS] = cls
    added = []
    for name, own in (MODELS if models is None else models).items():
        supported_VLM[name] = functools.partial(cls, **own)
        added.append(name)
    return added


# -- attnprompt vlmeval ---------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="attnprompt vlmeval", add_help=False, allow_abbrev=False,  # a prefix of the kit's flags stays the kit's
        description="Run VLMEvalKit (its run.py) with attnprompt's models registered: "
        + ", ".join(MODELS) + f" (or \"class\": \"{MODEL_CLASS}\" in a --config file).",
        epilog="Every other argument goes to VLMEvalKit's run.py as it is: --data (VStarBench HRBench4K "
        "HRBench8K …), --model, --config, --work-dir (default ./outputs), --mode, --judge (exact_matching: no "
        "judge model), --limit, --api-nproc (calls in flight: at least --batch-size), --reuse … "
        "(attnprompt vlmeval --kit-help prints them; it imports VLMEvalKit, which takes a while).")
    p.add_argument("-h", "--help", action="store_true", help="show this help and exit")
    p.add_argument("--kit-help", action="store_true", help="show VLMEvalKit run.py's own help and exit")
    p.add_argument("--vlm", default=None, help="who answers: hub id, local directory, 'shapes' (embedded, offline), "
                   "or an OpenAI-compatible URL (http://host:port/v1); default llava-hf/llava-1.5-7b-hf")
    p.add_argument("--vlm-model", default=None, help="model name on the server (default: the server's first)")
    p.add_argument("--api-key-env", default=None, help="environment variable holding the server's key "
                   "(default OPENAI_API_KEY)")
    p.add_argument("--vlm-timeout", dest="timeout", type=float, default=None, help="seconds per HTTP request to the "
                   "answering server (run.py's own --timeout is for its --base-url models)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")
    p.add_argument("--dtype", default=None, help="auto (default: the checkpoint's own on a GPU, float32 on the CPU) | "
                   "float32 | float16 | bfloat16")
    p.add_argument("--batch-size", type=int, default=None, help="calls answered together (default 1: the kit's "
                   "one at a time; more makes the model one the kit calls from --api-nproc threads)")
    p.add_argument("--store", default=None, help="where every step is recorded (default WORK_DIR/attnprompt)")
    return p


def _work_dir(kit_args: Sequence[str]) -> str:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--work-dir", default="./outputs")
    # run.py: $MMEVAL_ROOT, when set, is the work dir whatever --work-dir says
    return os.environ.get("MMEVAL_ROOT") or p.parse_known_args(list(kit_args))[0].work_dir


def _kit_main() -> Callable[[], Any]:
    """run.py's ``main``: ``vlmeval.run`` where the kit is packaged with it (ms-vlmeval), else the run.py
    beside the ``vlmeval`` package of a source checkout."""
    try:
        with _torchvision_stand_in():  # run.py imports more of the kit (its video and multi-turn inference)
            run = importlib.import_module("vlmeval.run")
    except ModuleNotFoundError as e:
        if e.name != "vlmeval.run":
            raise
        kit = sys.modules["vlmeval"]
        path = Path(kit.__file__ or "").resolve().parents[1] / "run.py"
        if not path.is_file():
            raise InputError(f"VLMEvalKit's run.py is neither vlmeval.run nor {path}: install ms-vlmeval==0.0.20 or "
                             "run from a checkout of VLMEvalKit") from None
        spec = importlib.util.spec_from_file_location("vlmeval_run", path)
        run = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
        with _torchvision_stand_in():
            spec.loader.exec_module(run)  # type: ignore[union-attr]
    return run.main


def run_kit(argv: Sequence[str]) -> int:
    """``attnprompt vlmeval ARGS``: our options (the answering VLM, batch size, store) read from ``argv``,
    the models registered with them, VLMEvalKit's run.py run on the rest. Returns 0, or 1 when a dataset got
    no scores because attnprompt's model raised (the kit itself logs that and exits 0)."""
    parser = _parser()
    ours, kit_args = parser.parse_known_args(list(argv))
    if ours.help:
        parser.print_help()
        return 0
    if ours.kit_help:
        kit_args = ["--help"]
    settings = {k: v for k, v in vars(ours).items() if k not in ("help", "kit_help") and v is not None}
    settings.setdefault("store", os.path.join(_work_dir(kit_args), "attnprompt"))
    register(**settings)
    main = _kit_main()
    _FAILED.clear()
    saved = sys.argv
    sys.argv = ["run.py", *kit_args]
    try:
        main()
    except SystemExit as e:  # run.py's argparse: --help, or a bad argument
        return e.code if isinstance(e.code, int) else EXIT_ERROR
    finally:
        sys.argv = saved
    if _FAILED:
        print("attnprompt: VLMEvalKit scored nothing of " + ", ".join(_FAILED) + " (a message got no answer):",
              file=sys.stderr)
        for dataset, why in _FAILED.items():
            print(f"  {dataset}: {why}", file=sys.stderr)
        return 1
    return 0


__all__ = ["MODELS", "MODEL_CLASS", "Batcher", "VlmevalAdapter", "VlmevalOptions", "VlmevalRequestFailed",
           "import_kit", "message_key", "message_sample", "model_class", "register", "run_kit"]
