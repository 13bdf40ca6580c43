"""Lazy, loud registries: names → ``"module:attribute"`` targets (or objects), imported on first use;
an unknown name is an error listing the valid ones. Families, methods, strategies, forms, tasks and
segmenters are each one such registry, so adding one is a file plus one registry line.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from .errors import InputError


class Registry:
    """Names → ``"module:attribute"`` targets, imported on first use; an unknown name is an
    :class:`~attnprompt.errors.InputError` listing the valid ones.

    >>> r = Registry("colour", {"red": "attnprompt.render:colorize"})
    >>> r.get("red").__name__
    'colorize'
    >>> r.get("blue")
    Traceback (most recent call last):
    attnprompt.errors.InputError: unknown colour 'blue'; valid colours: red
    """

    def __init__(self, kind: str, targets: Mapping[str, Any], *, plural: str | None = None) -> None:
        self.kind = kind
        self.plural = plural or kind + "s"
        self._targets = dict(targets)

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order.

        >>> Registry("colour", {"red": "attnprompt.render:colorize", "blue": "attnprompt.render:colorize"}).names()
        ('red', 'blue')
        """
        return tuple(self._targets)

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def register(self, name: str, target: Any) -> None:
        """Add ``name`` → ``"module:attribute"`` (imported on first use) or the object itself (your own
        method, strategy, form, family or task, defined in your code).

        >>> r = Registry("colour", {})
        >>> r.register("red", "attnprompt.render:colorize"); r.register("green", len); r.names()
        ('red', 'green')
        """
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise InputError(f"a {self.kind} name is a non-empty string without surrounding spaces; got {name!r}")
        if isinstance(target, str) and target.count(":") != 1:
            raise InputError(f"{self.kind} target {target!r} must look like 'package.module:Name'")
        self._targets[name] = target

    def get(self, name: str) -> Any:
        """The object registered under ``name``, imported now.

        >>> Registry("colour", {"red": "attnprompt.render:colorize"}).get("red").__name__
        'colorize'
        """
        try:
            target = self._targets[name]
        except (KeyError, TypeError):
            raise InputError(f"unknown {self.kind} {name!r}; valid {self.plural}: {', '.join(self._targets)}") from None
        if not isinstance(target, str):
            return target
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)
