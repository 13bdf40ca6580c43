"""Where an evaluation's units run: the :class:`Executor` seam between the runner (which decides what is
left, writes the records and the report) and whoever answers — this process (:class:`LocalExecutor`:
inline, or on threads for a server), or a pool of Ray actors
(:class:`~attnprompt.evaluation.ray_executor.RayExecutor`).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

from .conditions import Condition
from .runner import Runner
from .store import RunStore
from .tasks import Task
from .units import Plan, Unit, run_unit


class Executor(Protocol):
    """What the runner asks of an executor.

    - ``http``: whether the answering VLM is a server (the runner sizes chunks by its concurrency);
    - ``in_flight``: how many units may be running at once;
    - ``backend_description``: the answering backend's configuration, for the run's plan (``None``: no VLM);
    - :meth:`prepare`: each condition's :class:`~attnprompt.evaluation.units.Plan`, its configuration
      recorded in the store; :meth:`submit`: run one unit, its records back through the future;
      :meth:`describe`: what the plan records of the executor; :meth:`cache_info`; :meth:`close`.
    """

    http: bool
    in_flight: int
    backend_description: dict[str, Any] | None

    def prepare(self, task: Task, conditions: list[Condition], store: RunStore) -> dict[str, Plan]: ...

    def submit(self, unit: Unit, gallery: int) -> Future: ...

    def describe(self) -> dict[str, Any]: ...

    def cache_info(self) -> dict[str, dict[str, int]]: ...

    def close(self) -> None: ...


def record_plans(plans: list[Plan], task: Task, store: RunStore) -> dict[str, Plan]:
    """Each plan's configuration into the store (what ``attnprompt report`` reads), by condition label."""
    for plan in plans:
        store.put_config(plan.config_hash, task.name, plan.condition.label, plan.config)
    return {plan.condition.label: plan for plan in plans}


class LocalExecutor:
    """Units run in this process: one at a time, inline, for a local model (it batches inside a unit);
    two at a time on threads for a server (each unit keeps ``concurrency`` requests in flight, so the
    next unit is ready when one ends).

    >>> from attnprompt.backends import get_backend
    >>> LocalExecutor(get_backend("shapes"), Runner(None)).in_flight
    1
    """

    def __init__(self, backend: Any, runner: Runner) -> None:
        self.backend = backend
        self.runner = runner
        self.http = backend is not None and backend.local_model is None
        self.in_flight = 2 if self.http else 1
        self.backend_description = None if backend is None else backend.describe()
        self._pool = ThreadPoolExecutor(self.in_flight, thread_name_prefix="attnprompt-eval") if self.http else None

    def prepare(self, task: Task, conditions: list[Condition], store: RunStore) -> dict[str, Plan]:
        return record_plans([self.runner.plan(task, c) for c in conditions], task, store)

    def submit(self, unit: Unit, gallery: int) -> Future:
        if self._pool is not None:
            return self._pool.submit(run_unit, unit, gallery)
        done: Future = Future()
        done.set_result(run_unit(unit, gallery))  # a scorer's error is raised here, as without a future
        return done

    def describe(self) -> dict[str, Any]:
        return {}

    def cache_info(self) -> dict[str, dict[str, int]]:
        return self.runner.cache_info()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


class RecordedExecutor:
    """Answers nothing: the plans of a run whose every record is already in the store (found by
    :func:`~attnprompt.evaluation.evaluate.evaluate` before any model loads), so that a finished run is
    reported again in seconds. ``known``: the earlier run's backend description and, per task, each
    condition's configuration hash."""

    http = False
    in_flight = 1

    def __init__(self, known: dict[str, Any]) -> None:
        self.known = known
        self.backend_description = known.get("backend")

    def prepare(self, task: Task, conditions: list[Condition], store: RunStore) -> dict[str, Plan]:
        from .units import ConditionStats

        hashes = self.known["tasks"][task.name]
        plans = [Plan(c, store.config(hashes[c.label]) or {}, ConditionStats(c.label, hashes[c.label]))
                 for c in conditions]
        return record_plans(plans, task, store)

    def submit(self, unit: Unit, gallery: int) -> Future:
        raise RuntimeError(f"{unit.task.name} · {unit.condition.label}: a recorded run was found to have work left")

    def describe(self) -> dict[str, Any]:
        return {}  # the report of a finished run is the same whether or not it was read again

    def cache_info(self) -> dict[str, dict[str, int]]:
        return {}

    def close(self) -> None:
        pass
