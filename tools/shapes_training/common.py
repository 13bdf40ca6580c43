"""Pieces the training scripts share: a dataclass-driven command line, the learning-rate
schedule, resuming an interrupted run, the training record and atomic saving."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def parse_config(cls: type, smoke: dict[str, Any], argv: Sequence[str] | None, description: str):
    """Build ``cls`` (a dataclass with an ``out`` field) from ``--out DIR [--smoke] [--field V] …``.

    Every field becomes a flag (``--n-scenes``; booleans as ``--bf16/--no-bf16``); ``--smoke``
    starts from the tiny configuration ``smoke`` that CI runs.

    >>> @dataclasses.dataclass
    ... class C:
    ...     out: str
    ...     steps: int = 10
    >>> parse_config(C, {"steps": 1}, ["--out", "x", "--smoke"], "").steps
    1
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--out", required=True, help="output checkpoint directory")
    p.add_argument("--smoke", action="store_true", help="tiny configuration that runs in seconds (for CI)")
    fields = [f for f in dataclasses.fields(cls) if f.name != "out"]
    for f in fields:
        flag = f"--{f.name.replace('_', '-')}"
        if isinstance(f.default, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            p.add_argument(flag, type=type(f.default), default=None)
    a = p.parse_args(argv)
    values = dict(smoke) if a.smoke else {}
    values.update({f.name: getattr(a, f.name) for f in fields if getattr(a, f.name) is not None})
    return cls(out=a.out, **values)


def run_training(train: Callable[..., Any], cls: type, smoke: dict[str, Any], argv: Sequence[str] | None,
                 description: str) -> int:
    """A training script's command line: parse the flags, train with the log on stdout; a bad
    configuration prints its one-line explanation on stderr and exits 2, as the ``attnprompt``
    command does.

    >>> @dataclasses.dataclass
    ... class C:
    ...     out: str
    ...     steps: int = 10
    >>> def train(cfg, log):
    ...     log(f"{cfg.steps} steps")
    >>> run_training(train, C, {"steps": 1}, ["--out", "x", "--smoke"], "")
    1 steps
    0
    """
    from attnprompt.errors import EXIT_ERROR, AttnpromptError

    try:
        train(parse_config(cls, smoke, argv, description), log=lambda s: print(s, flush=True))
    except AttnpromptError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def usable_cpus() -> int:
    """CPUs this process may run on (honours ``taskset`` and CPU sets, unlike ``os.cpu_count``), so
    two trainings pinned to one core each do not each start two threads.

    >>> usable_cpus() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def warmup_cosine(step: int, warmup: int, steps: int) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``steps``.

    >>> warmup_cosine(0, 10, 100), warmup_cosine(9, 10, 100), round(warmup_cosine(55, 10, 100), 3)
    (0.1, 1.0, 0.5)
    """
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


class Resumable:
    """The full state of a training run, saved beside its output at every evaluation, so that an
    interrupted run, started again with the same command, continues where it stopped and ends
    with the same weights as an uninterrupted one.

    The state lives in ``<out>.resume.pt`` (written atomically) and is removed once the
    checkpoint is saved. Resuming with a different configuration is refused.

    Use: ``start, history, elapsed = resume.load(model, opt, rng, gen)`` before the loop, and
    ``resume.save(step + 1, model, opt, rng, gen, history, elapsed)`` after each evaluation.
    """

    def __init__(self, out: Path, cfg: Any) -> None:
        self.path = Path(out).with_name(Path(out).name + ".resume.pt")
        self.config = dataclasses.asdict(cfg)

    def load(self, model, optimizer, rng, generator=None) -> tuple[int, list[dict[str, Any]], float]:
        """Restore a saved state if there is one; returns (next step, history, seconds trained)."""
        import torch

        if not self.path.exists():
            return 0, [], 0.0
        state = torch.load(self.path, weights_only=False)  # our own file: numpy RNG state inside
        if state["config"] != self.config:
            changed = sorted(k for k in self.config if state["config"].get(k) != self.config[k])
            raise ValueError(
                f"{self.path} holds an interrupted run with a different configuration ({', '.join(changed)} "
                "differ); rerun with the same options to resume it, or delete that file to start afresh"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        if generator is not None:
            generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        return state["step"], state["history"], state["elapsed"]

    def save(self, step: int, model, optimizer, rng, generator, history: list[dict[str, Any]], elapsed: float) -> None:
        """Save the state reached after ``step`` steps."""
        import torch

        from attnprompt.files import atomic_write

        state = {
            "config": self.config, "step": step, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "rng": rng.bit_generator.state, "generator": None if generator is None else generator.get_state(),
            "torch_rng": torch.get_rng_state(), "history": history, "elapsed": elapsed,
        }
        atomic_write(self.path, lambda f: torch.save(state, f))

    def done(self) -> None:
        """The run is complete and saved: the resume state is no longer needed."""
        self.path.unlink(missing_ok=True)


def training_record(cfg: Any, n_params: int, vocab_size: int, history: list[dict[str, Any]],
                    t_start: float, t_train: float) -> dict[str, Any]:
    """What ``training.json`` records: the configuration, size, evaluation history and timings.

    >>> import time
    >>> @dataclasses.dataclass
    ... class C:
    ...     steps: int = 3
    >>> r = training_record(C(), 10, 5, [{"step": 3}], time.perf_counter(), time.perf_counter())
    >>> r["final"], r["config"]
    ({'step': 3}, {'steps': 3})
    """
    import time

    import torch

    now = time.perf_counter()
    return {
        "config": dataclasses.asdict(cfg),
        "parameters": n_params,
        "vocab_size": vocab_size,
        "history": history,
        "final": history[-1] if history else {},
        "train_seconds": round(now - t_train, 1),
        "total_seconds": round(now - t_start, 1),
        "torch": torch.__version__,
    }


def save_directory(out: Path, write: Callable[[Path], None], record: dict[str, Any]) -> None:
    """Write a checkpoint directory atomically: ``write(tmp)`` fills a sibling temporary
    directory, ``training.json`` is added, and the result is renamed over ``out``.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()) / "ckpt"
    >>> save_directory(d, lambda p: (p / "w.txt").write_text("x"), {"steps": 1})
    >>> sorted(x.name for x in d.iterdir())
    ['training.json', 'w.txt']
    """
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    (tmp / "training.json").write_text(json.dumps(record, indent=2))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
