"""Who answers: a local ``transformers`` VLM or an OpenAI-compatible HTTP server.

>>> from attnprompt.backends import is_url
>>> is_url("http://127.0.0.1:8000/v1"), is_url("llava-hf/llava-1.5-7b-hf")
(True, False)
"""

from __future__ import annotations

from typing import Any

from .base import Backend

__all__ = ["Backend", "get_backend", "is_url"]


def is_url(spec: Any) -> bool:
    """Whether a ``--vlm`` value names an HTTP server rather than a model.

    >>> is_url("https://api.openai.com/v1")
    True
    """
    return isinstance(spec, str) and spec.lower().startswith(("http://", "https://"))


def get_backend(
    spec: str | Backend | None = None,
    *,
    vlm_model: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    concurrency: int | None = None,
    native_side: int | None = None,
    batch_size: int | None = None,
    loading: Any = None,
    **load: Any,
) -> Backend:
    """A backend from a spec: an http(s) URL → OpenAI-compatible client (``vlm_model`` = the
    server's model name, default its first; ``api_key`` default ``$OPENAI_API_KEY``; ``concurrency``
    requests in flight, default 4; ``native_side`` = the served model's input side in pixels, ViCrop's
    default crop window, which a server does not say); anything
    else → a local VLM (hub id, path, or ``shapes``; default LLaVA-1.5-7B) loaded as ``loading`` says (a
    :class:`~attnprompt.models.LoadOptions`, or its fields as keywords ``load``: ``device=``, ``dtype=`` …), answering
    ``batch_size`` requests per forward (default 4); a Backend passes through. A server's model is loaded by the
    server: the loading settings and ``batch_size`` are a local model's, and are not used for a URL.

    >>> get_backend("http://127.0.0.1:8000/v1", vlm_model="llava").name
    'http://127.0.0.1:8000/v1#llava'
    >>> get_backend("shapes", batch_size=16).batch_size
    16
    """
    if isinstance(spec, Backend):
        return spec
    if spec is not None and is_url(spec):
        from .openai_http import OpenAIBackend

        return OpenAIBackend(spec, vlm_model, api_key=api_key, timeout=timeout, native_side=native_side,
                             **({} if concurrency is None else {"concurrency": concurrency}))
    from ..errors import InputError

    if vlm_model is not None or api_key is not None or concurrency is not None or native_side is not None:
        raise InputError(f"vlm_model, api_key, concurrency and native_side are for a server URL; {spec!r} is a "
                         "local model (its family says its input side; batch_size sets how many answers run at once)")
    from ..models import LoadOptions
    from .local import LocalVLM

    device, dtype = load.pop("device", None), load.pop("dtype", None)
    if load:  # the other fields of LoadOptions as keywords (quantize=, attn_implementation= …)
        if loading is not None:
            raise InputError(f"give the loading settings once: as loading=, or as keywords ({', '.join(load)})")
        loading = LoadOptions.from_mapping(load)
    return LocalVLM.from_pretrained(spec, device=device, dtype=dtype, loading=loading,
                                    **({} if batch_size is None else {"batch_size": batch_size}))
