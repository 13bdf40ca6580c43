"""Pieces both training scripts share: a dataclass-driven command line, the training record and
atomic saving."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence


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


def warmup_cosine(step: int, warmup: int, steps: int) -> float:
    """Learning-rate factor: linear warm-up over ``warmup`` steps, then cosine decay to 0 at ``steps``.

    >>> warmup_cosine(0, 10, 100), warmup_cosine(9, 10, 100), round(warmup_cosine(55, 10, 100), 3)
    (0.1, 1.0, 0.5)
    """
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


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
