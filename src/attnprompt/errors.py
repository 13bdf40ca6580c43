"""Errors that reach users: each one names the problem and what would be valid.

The CLI prints ``str(error)`` as one line and exits non-zero, so messages are
written as complete sentences that stand alone.
"""

from __future__ import annotations


class AttnpromptError(Exception):
    """Base class for every error this package raises on purpose.

    >>> isinstance(InputError("bad"), AttnpromptError)
    True
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


class BackendError(AttnpromptError, RuntimeError):
    """A backend (local VLM or HTTP server) failed to produce an answer.

    >>> BackendError("timed out").args[0]
    'timed out'
    """
