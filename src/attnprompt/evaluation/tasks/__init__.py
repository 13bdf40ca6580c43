"""The task registry: names → task objects, imported on first use.

A task is asked for by name (``shapes-vqa``), by a Python file that defines one (``my_task.py`` or
``my_task.py:NAME``), or built from a data file or Hugging Face dataset with :func:`generic_task`.

>>> TASKS.names()[:3]
('shapes-vqa', 'shapes-pope', 'shapes-pointing')
>>> get_task("shapes-pope").headline
'f1'
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ...errors import InputError
from ...registry import Registry
from .base import EvalSample, Task, score_columns
from .generic import METRICS as GENERIC_METRICS
from .generic import generic_task

__all__ = ["GENERIC_METRICS", "TASKS", "EvalSample", "Task", "generic_task", "get_task", "register_task",
           "score_columns"]

#: Built-in tasks: name → ``module:TASK``.
TASKS = Registry(
    "task",
    {
        "shapes-vqa": "attnprompt.evaluation.tasks.shapes_vqa:TASK",
        "shapes-pope": "attnprompt.evaluation.tasks.shapes_pope:TASK",
        "shapes-pointing": "attnprompt.evaluation.tasks.shapes_pointing:TASK",
        "shapes-detail": "attnprompt.evaluation.tasks.shapes_detail:TASK",
        "shapes-detail-4x": "attnprompt.evaluation.tasks.shapes_detail:TASK_4X",
        "shapes-detail-crowded-4x": "attnprompt.evaluation.tasks.shapes_detail:CROWDED_4X",
        "shapes-detail-crowded-8x": "attnprompt.evaluation.tasks.shapes_detail:CROWDED_8X",
        # training-range seeds, for choosing defaults (auto's gate threshold), never for reporting
        "tuning-shapes-vqa": "attnprompt.evaluation.tasks.shapes_vqa:TUNING_TASK",
        "tuning-shapes-detail-crowded-4x": "attnprompt.evaluation.tasks.shapes_detail:TUNING_CROWDED_4X",
        "mme": "attnprompt.evaluation.tasks.mme:make",
        "pope": "attnprompt.evaluation.tasks.pope:make",
        "textvqa": "attnprompt.evaluation.tasks.textvqa:make",
        "vizwiz": "attnprompt.evaluation.tasks.vizwiz:make",
        "mmmu": "attnprompt.evaluation.tasks.mmmu:make",
        "mmvet": "attnprompt.evaluation.tasks.mmvet:make",
        "llava-bench": "attnprompt.evaluation.tasks.llava_bench:make",
        "vstar": "attnprompt.evaluation.tasks.vstar:make",
        "hr-bench-4k": "attnprompt.evaluation.tasks.hr_bench:make_4k",
        "hr-bench-8k": "attnprompt.evaluation.tasks.hr_bench:make_8k",
        "hr-bench-4k-lmms": "attnprompt.evaluation.tasks.hr_bench:make_4k_lmms",
        "hr-bench-8k-lmms": "attnprompt.evaluation.tasks.hr_bench:make_8k_lmms",
        "gqa": "attnprompt.evaluation.tasks.gqa:make",
        "aokvqa": "attnprompt.evaluation.tasks.aokvqa:make",
        "aokvqa-da": "attnprompt.evaluation.tasks.aokvqa:make_da",
        "docvqa": "attnprompt.evaluation.tasks.docvqa:make",
    },
)

_REGISTERED: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    """Make a :class:`Task` built in your own code available by its name (``--task`` in this process).

    >>> t = register_task(generic_task([{"image": "a.png", "question": "q?", "answer": "yes"}], name="mine"))
    >>> get_task("mine") is t
    True
    """
    if not isinstance(task, Task):
        raise InputError(f"register_task takes a Task; got {type(task).__name__}")
    if task.name in TASKS:
        raise InputError(f"{task.name!r} is a built-in task; give yours another name")
    _REGISTERED[task.name] = task
    return task


def get_task(spec: Any, *, data: str | None = None) -> Task:
    """A task from a name (built-in or registered), a ``.py`` file (``path.py`` holding one Task,
    or ``path.py:NAME``), a generic spec (``{"generic": {...}}``, see :func:`generic_task`), or a
    :class:`Task`. The task's ``spec`` says how it was found, so a report can find it again.
    ``data``: where a benchmark's data is (a hub id, a ``save_to_disk`` folder, parquet files, or
    the original release's folder); default the hub id its file names.

    >>> get_task("shapes-vqa").spec
    'shapes-vqa'
    >>> get_task("no-such-task")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    attnprompt.errors.InputError: unknown task 'no-such-task'; valid tasks: shapes-vqa, shapes-pope, ... Task)
    """
    from dataclasses import replace

    if isinstance(spec, Task):
        return spec
    if isinstance(spec, Mapping) and "generic" in spec:
        return generic_task(**spec["generic"])
    if isinstance(spec, Mapping) and "task" in spec:
        return get_task(spec["task"], data=spec.get("data"))
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"a task is a name, a path/to/file.py[:NAME] or a Task; got {spec!r}")
    spec = spec.strip()
    if spec.endswith(".py") or ".py:" in spec:
        path, attr = (spec, None) if spec.endswith(".py") else spec.rsplit(":", 1)
        return replace(_task_from_file(Path(path), attr), spec=spec)
    if spec in _REGISTERED:
        return _REGISTERED[spec]
    if spec not in TASKS:
        raise InputError(f"unknown task {spec!r}; valid tasks: {', '.join(TASKS.names() + tuple(_REGISTERED))} "
                         "(or a path/to/file.py defining a Task)")
    target = TASKS.get(spec)
    if isinstance(target, Task):
        if data is not None:
            raise InputError(f"task {spec!r} is generated in code; it reads no data (drop --data for it)")
        return replace(target, spec=spec)
    task = target(data=data)  # a benchmark: a function of where its data is
    return replace(task, spec=spec if data is None else {"task": spec, "data": data})


def _task_from_file(path: Path, attr: str | None) -> Task:
    if not path.is_file():
        raise InputError(f"task file {path} does not exist")
    name = f"attnprompt_user_task_{abs(hash(str(path.resolve())))}"
    module = sys.modules.get(name)
    if module is None:
        loader_spec = importlib.util.spec_from_file_location(name, path)
        if loader_spec is None or loader_spec.loader is None:
            raise InputError(f"cannot import the task file {path}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        try:
            loader_spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            raise InputError(f"task file {path} failed to import: {type(e).__name__}: {e}") from e
    if attr is not None:
        task = getattr(module, attr, None)
        if not isinstance(task, Task):
            raise InputError(f"{path} has no Task named {attr!r}")
        return task
    tasks = [v for v in vars(module).values() if isinstance(v, Task)]
    if len(tasks) != 1:
        found = ", ".join(k for k, v in vars(module).items() if isinstance(v, Task)) or "none"
        raise InputError(f"{path} defines {len(tasks)} Task objects ({found}); name one: {path}:NAME")
    return tasks[0]
