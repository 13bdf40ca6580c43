"""Errors that reach users: each one names the problem and what would be valid.

The CLI prints ``str(error)`` as one line and exits with :data:`EXIT_ERROR`, so messages are
written as complete sentences that stand alone. One class per condition: what the user gave
(:class:`InputError`), a model that cannot be loaded or used as asked (:class:`ModelLoadError`
and its kinds), a backend that failed (:class:`BackendError`).
"""

from __future__ import annotations

from types import ModuleType

#: Exit status of the ``attnprompt`` command (and the tools beside it) after an error.
EXIT_ERROR = 2
#: Exit code of a run that completed but whose results cannot be trusted as asked (``--strict`` with failures,
#: nothing answered, no judge verdict at all), and of a batch with failed items.
EXIT_PARTIAL = 1


class AttnpromptError(Exception):
    """Base class for every error this package raises on purpose.
    """


class InputError(AttnpromptError, ValueError):
    """An image, query or parameter the user gave cannot be used.

    >>> raise InputError("query is empty; give a non-empty question")
    Traceback (most recent call last):
    attnprompt.errors.InputError: query is empty; give a non-empty question
    """


class ModelLoadError(AttnpromptError, OSError):
    """A model could not be loaded (not a local directory, not downloadable, wrong kind).

    >>> str(ModelLoadError("cannot load 'x'"))
    "cannot load 'x'"
    """


class MissingChatTemplateError(ModelLoadError):
    """A VLM's processor has no chat template, so no prompt can be built for it.
    """


class ProcessorMismatchError(ModelLoadError):
    """A processor's output does not fit its model (image tokens, grid), e.g. one saved with
    another checkpoint.
    """


class UnsupportedModelError(ModelLoadError):
    """The model loads, but a method cannot use it (api-vlm on a family whose image-token layout
    it does not know, a CLIP where a VLM is needed …).
    """


class OutputError(AttnpromptError, OSError):
    """An output file or directory cannot be written (missing permission, a directory in the way,
    a full disk); nothing half-written is left behind.
    """


class BackendError(AttnpromptError, RuntimeError):
    """A backend (local VLM or HTTP server) failed to produce an answer.

    >>> BackendError("timed out").args[0]
    'timed out'
    """


def import_optional(module: str, extra: str, purpose: str, name: str | None = None) -> ModuleType:
    """``module``, imported; when it is not installed, an :class:`InputError` naming what needs it
    (``name``, default the module's) and the extra that installs it.

    >>> import_optional("json", "eval", "reading").__name__
    'json'
    >>> import_optional("no_such_module_here", "demo", "the demo")
    Traceback (most recent call last):
    attnprompt.errors.InputError: the demo needs no_such_module_here: pip install 'attnprompt[demo]'
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise InputError(f"{purpose} needs {name or module}: pip install 'attnprompt[{extra}]'") from None
