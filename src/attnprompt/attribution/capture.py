"""Forward-hook capture in a context manager that always removes its hooks."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import torch
from torch import nn


@contextmanager
def capture_outputs(modules: Mapping[str, nn.Module]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output of each named module during the ``with`` block.

    The hooks are removed on exit, also when the block raises; errors are never swallowed.

    >>> lin = nn.Linear(2, 2)
    >>> with capture_outputs({"lin": lin}) as seen:
    ...     _ = lin(torch.zeros(1, 2))
    >>> tuple(seen["lin"].shape), len(lin._forward_hooks)
    ((1, 2), 0)
    """
    store: dict[str, torch.Tensor] = {}
    handles = []

    def make_hook(name: str):
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            # Encoder layers return a tensor in transformers 5 and a tuple in older releases.
            store[name] = output[0] if isinstance(output, (tuple, list)) else output

        return hook

    try:
        for name, module in modules.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield store
    finally:
        for h in handles:
            h.remove()
