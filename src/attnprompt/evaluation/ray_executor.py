"""``attnprompt eval --executor ray``: the evaluation runner's chunks on a pool of Ray actors, one model
replica each, with the records flowing back to the one run store on the driver.

The driver does what it does without Ray — reads the tasks' rows, decides from the store what is left
(resume), writes every record as its chunk returns, runs the judge and writes the report — but loads no
model: each actor builds the backend, the attributors (with their map cache) and the strategies itself,
and the first actor tells the driver each condition's configuration, so a record's hash is the same
whichever executor made it. A chunk is sent to the actor with the fewest chunks in flight; each actor
holds at most two, so a slow replica is not handed more than its share.

- One actor per GPU (``num_gpus=1``) when the cluster has GPUs, else one per CPU (``num_cpus=1``, and
  torch in the actor uses that one thread); ``workers`` caps or sets the number.
- ``address``: ``None`` → ``$RAY_ADDRESS`` when set, else a local Ray started for this run (and
  stopped after it); ``auto`` → the running cluster on this machine (``ray start --head``);
  ``ray://host:10001`` → a remote cluster. Every node needs attnprompt installed (the same version:
  a worker whose configuration differs from the driver's refuses the work) and the models it loads.
- A chunk whose samples all raise is handled as without Ray (each tried alone, failures recorded);
  an actor that dies (out of memory, a node lost) stops the run with the records so far kept: rerun
  the same command to resume.

Why actors and not Ray Data's ``map_batches``: the hashes that decide what to skip must be known
before any work is sent, and Ray Data builds its replicas inside the pipeline; asking them first
would mean loading the model once more (or on the driver). The chunks are already a bounded stream
with back-pressure; an actor pool is what ``map_batches`` would run them on.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from ..checks import check_count
from ..errors import InputError, import_optional
from .executors import record_plans
from .runner import Runner
from .units import ConditionStats, Plan, Unit, run_unit


class WorkerDied(RuntimeError):
    """A Ray actor died while it held chunks; the records written so far are kept."""


def _no_rows(limit: int | None) -> list:
    raise RuntimeError("a Ray worker never reads a task's rows: the driver sends the samples")


def _portable(task: Any) -> Any:
    """The task without its row loader (the data stays on the driver; the samples travel)."""
    return replace(task, rows=_no_rows)


class _Replica:
    """What one actor holds: the backend, the runner and, per (task, condition), how to run a chunk."""

    def __init__(self, backend: Any, runner_args: Mapping[str, Any], threads: int | None) -> None:
        if threads:
            import torch

            torch.set_num_threads(threads)
        # the backend options travel, and each replica builds its own backend (and loads its model) from them
        self.backend = None if backend is None else backend.build()
        self.runner = Runner(self.backend, **runner_args)
        self.units: dict[tuple[str, str], tuple[str, Any, Any, Any]] = {}

    def describe(self) -> dict[str, Any]:
        return {"backend": None if self.backend is None else self.backend.describe(),
                "http": self.backend is not None and self.backend.local_model is None, "pid": os.getpid()}

    def prepare(self, task: Any, conditions: list[Any]) -> dict[str, tuple[str, dict[str, Any]]]:
        out = {}
        for condition in conditions:
            plan = self.runner.plan(task, condition)
            self.units[(task.name, condition.label)] = (plan.config_hash, task, condition, plan.run)
            out[condition.label] = (plan.config_hash, plan.config)
        return out

    def run(self, task_name: str, label: str, config_hash: str, samples: list[Any], indices: list[int],
            gallery: int) -> tuple[list, list, BaseException | None]:
        mine, task, condition, run = self.units[(task_name, label)]
        if mine != config_hash:
            raise InputError(f"{task_name} · {label}: this worker's configuration ({mine}) differs from the driver's "
                             f"({config_hash}); install the same attnprompt and models on every node")
        return run_unit(Unit(task, condition, config_hash, samples, indices, run), gallery)

    def cache_info(self) -> dict[str, dict[str, int]]:
        return self.runner.cache_info()


def _check_reachable(address: str | None, seconds: float = 5.0) -> None:
    """A ``host:port`` or ``ray://host:port`` address that nothing answers on is an error now: ``ray.init``
    would wait for it without end."""
    if not address or address == "auto" or address.startswith("local"):
        return
    import socket

    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"Ray address {address!r}: give auto, HOST:PORT (the head's GCS, default port 6379) or "
                         "ray://HOST:10001")
    try:
        socket.create_connection((host, int(port)), timeout=seconds).close()
    except OSError as e:
        raise InputError(f"cannot reach the Ray cluster at {address}: nothing answers on {host}:{port} ({e}); start "
                         "one with `ray start --head`, or leave --address out for a local Ray") from None


class RayExecutor:
    """A pool of Ray actors running the evaluation's chunks (see the module docstring); made by
    :func:`attnprompt.evaluate` with ``executor="ray"`` (an :class:`~attnprompt.evaluation.executors.Executor`).
    Needs ``pip install 'attnprompt[ray]'``."""

    def __init__(self, *, backend: Any, runner_args: Mapping[str, Any], address: str | None = None,
                 workers: int | None = None) -> None:
        """``backend``: the :class:`~attnprompt.evaluation.runner.BackendOptions` each replica builds its
        backend from (``None``: no VLM); ``runner_args``: its :class:`~attnprompt.evaluation.runner.Runner`'s."""
        ray = import_optional("ray", "ray", "--executor ray", "Ray")
        if workers is not None:
            check_count("workers", workers)
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            _check_reachable(address or os.environ.get("RAY_ADDRESS"))
            kwargs: dict[str, Any] = {"address": address} if address else {}
            if not address and not os.environ.get("RAY_ADDRESS"):
                kwargs.update(include_dashboard=False)
                self.started = True
            try:
                ray.init(logging_level="ERROR", log_to_driver=False, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise InputError(f"cannot reach the Ray cluster at {address or os.environ.get('RAY_ADDRESS')}: "
                                 f"{str(e).rstrip('.')}; start one with `ray start --head`, or leave --address out "
                                 "for a local Ray") from None
        resources = ray.cluster_resources()
        gpus, cpus = int(resources.get("GPU", 0)), max(1, int(resources.get("CPU", 1)))
        per = {"num_gpus": 1, "num_cpus": 1} if gpus else {"num_cpus": 1}
        available = gpus or cpus
        count = int(workers) if workers is not None else available
        if count > available:
            raise InputError(f"{count} workers asked, but the cluster has {available} "
                             f"{'GPUs' if gpus else 'CPUs'}: one replica each at most")
        actor = ray.remote(**per)(_Replica)
        threads = None if gpus else 1
        self.actors = [actor.remote(backend, dict(runner_args), threads) for _ in range(count)]
        self.busy = [0] * count
        self.lock = threading.Lock()
        try:
            info = ray.get(self.actors[0].describe.remote())
        except ray.exceptions.RayActorError as e:
            self.close()
            raise WorkerDied(f"the first Ray worker could not start: {e}") from None
        except ray.exceptions.RayTaskError as e:
            self.close()
            raise e.as_instanceof_cause() from None
        self.backend_description = info["backend"]
        self.http = info["http"]
        self.in_flight = 2 * count
        self.workers, self.device = count, ("GPU" if gpus else "CPU")

    def prepare(self, task: Any, conditions: list[Any], store: Any) -> dict[str, Plan]:
        """Every actor plans the task's conditions; the first one's configurations go to the store.
        The plans' ``run`` is None: the actors run them."""
        portable = _portable(task)
        plans = self._get([a.prepare.remote(portable, conditions) for a in self.actors])
        first = plans[0]
        for other in plans[1:]:
            if {k: v[0] for k, v in other.items()} != {k: v[0] for k, v in first.items()}:
                raise InputError(f"{task.name}: the Ray workers disagree on the configuration; install the same "
                                 "attnprompt and models on every node")
        plans = [Plan(c, first[c.label][1], ConditionStats(c.label, first[c.label][0])) for c in conditions]
        return record_plans(plans, task, store)

    def submit(self, unit: Any, gallery: int) -> Future:
        """Send one chunk to the least busy actor; its records come back through the future."""
        with self.lock:
            i = min(range(len(self.actors)), key=self.busy.__getitem__)
            self.busy[i] += 1
        ref = self.actors[i].run.remote(unit.task.name, unit.condition.label, unit.config_hash, unit.samples,
                                        unit.indices, gallery)
        out: Future = Future()

        def done(inner: Future) -> None:
            with self.lock:
                self.busy[i] -= 1
            if out.done():  # cancelled by the runner (an interrupt or another chunk's error): nothing to hand over
                return
            try:
                out.set_result(inner.result())
            except self.ray.exceptions.RayActorError as e:
                out.set_exception(WorkerDied(f"Ray worker {i} died ({type(e).__name__}); the records so far are "
                                             "kept: rerun the same command to resume"))
            except self.ray.exceptions.RayTaskError as e:
                out.set_exception(e.as_instanceof_cause())
            except BaseException as e:  # noqa: BLE001  # handed to the runner, which raises it
                out.set_exception(e)

        ref.future().add_done_callback(done)
        return out

    def describe(self) -> dict[str, Any]:
        """What the run's plan records of the executor: the replicas and what each holds."""
        return {"workers": f"{self.workers} ({self.device})"}

    def cache_info(self) -> dict[str, dict[str, int]]:
        """The map caches of all replicas, summed per attributor."""
        total: dict[str, dict[str, int]] = {}
        try:
            infos = self._get([a.cache_info.remote() for a in self.actors])
        except Exception:  # noqa: BLE001  # statistics only: a dead actor has none to give
            return total
        for info in infos:
            for name, counts in info.items():
                slot = total.setdefault(name, {})
                for k, v in counts.items():
                    slot[k] = slot.get(k, 0) + v
        return total

    def close(self) -> None:
        """Stop the actors, and the local Ray if this run started it."""
        for actor in getattr(self, "actors", []):
            self.ray.kill(actor)
        self.actors = []
        if self.started and self.ray.is_initialized():
            self.ray.shutdown()

    def _get(self, refs: list[Any]) -> list[Any]:
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as e:
            raise e.as_instanceof_cause() from None
        except self.ray.exceptions.RayActorError as e:
            raise WorkerDied(f"a Ray worker died: {e}") from None
