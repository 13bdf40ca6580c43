"""Who answers: a local ``transformers`` VLM or an OpenAI-compatible HTTP server.

>>> from attnprompt.backends import is_url
>>> is_url("http://127.0.0.1:8000/v1"), is_url("llava-hf/llava-1.5-7b-hf")
(True, False)
"""

from __future__ import annotations

from typing import Any

from .base import Answer, Backend, Request

__all__ = ["Answer", "Backend", "Request", "get_backend", "is_url"]


def is_url(spec: str) -> bool:
    """Whether a ``--vlm`` value names an HTTP server rather than a model.

    >>> is_url("https://api.openai.com/v1")
    True
    """
    return isinstance(spec, str) and spec.lower().startswith(("http://", "https://"))


def get_backend(
    spec: str | Backend | None = None,
    *,
    model: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    device: str | None = None,
    dtype: Any = None,
    **kwargs: Any,
) -> Backend:
    """A backend from a spec: an http(s) URL → OpenAI-compatible client (``model`` = the server's
    model name); anything else → a local VLM (hub id, path, or ``shapes``); a Backend passes through.

    >>> get_backend("http://127.0.0.1:8000/v1", model="llava").name
    'http://127.0.0.1:8000/v1#llava'
    """
    if isinstance(spec, Backend):
        return spec
    if spec is not None and is_url(spec):
        from .openai_http import OpenAIBackend

        return OpenAIBackend(spec, model, api_key=api_key, timeout=timeout, **kwargs)
    from .local import LocalVLM

    return LocalVLM.from_pretrained(spec, device=device, dtype=dtype, **kwargs)
