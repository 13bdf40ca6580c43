"""A backend that asks an OpenAI-compatible chat-completions server (vLLM, SGLang, OpenAI, Gemini).

Reliability follows the API paper's protocol: a request that fails for a transient reason
(network error, timeout, HTTP 5xx or 429) is retried once after a fixed wait; if it fails
again it becomes a failed :class:`Answer` (``ok=False``) — never an exception, and never an
error message disguised as the model's text. ``timeout`` bounds each attempt as a whole (connect,
send, the reply's last byte), not each socket read; an empty completion is a failed answer too.
"""

from __future__ import annotations

import base64
import http.client
import io
import ipaddress
import json
import logging
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from PIL import Image

from ..checks import check_count
from ..errors import BackendError, InputError
from ..types import Answer, Request, TokenLogprob
from .base import Backend

log = logging.getLogger(__name__)

#: Image modes PNG stores as they are; anything else is converted first.
_PNG_MODES = frozenset({"1", "L", "LA", "P", "RGB", "RGBA", "I;16"})
#: How much of a server's reply an error message quotes.
_SNIPPET = 300
#: The error ``type`` with which ``attnprompt serve`` reports that the model generated no text.
EMPTY_ANSWER = "empty_answer"


def normalise_base_url(url: str) -> str:
    """The API root (``.../v1``) of an OpenAI-compatible server, from any usual spelling.

    Accepts ``http://host:port``, ``http://host:port/v1``, ``.../v1/`` and the full
    ``.../v1/chat/completions``; a root with its own path (Gemini's ``.../v1beta/openai``)
    is kept as it is.

    >>> normalise_base_url("http://localhost:8000/v1/chat/completions")
    'http://localhost:8000/v1'
    """
    text = str(url).strip()
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise InputError(
            f"base_url {url!r} is not an http(s) URL; give the server's address, "
            "e.g. http://localhost:8000/v1"
        )
    if parts.query or parts.fragment:
        raise InputError(
            f"base_url {url!r} has a query or fragment; give only the server's address, "
            "e.g. http://localhost:8000/v1"
        )
    path = parts.path.rstrip("/")
    for suffix in ("/chat/completions", "/models"):
        if path.endswith(suffix):
            path = path[: -len(suffix)].rstrip("/")
            break
    if not path:
        path = "/v1"
    return urllib.parse.urlunsplit((parts.scheme.lower(), parts.netloc, path, "", ""))


def encode_image(image: Image.Image, max_side: int | None = None) -> str:
    """A ``data:image/png;base64,...`` URL of ``image``, downscaled only if a side exceeds ``max_side``.

    PNG is lossless, so what the server sees is exactly the image (or its downscaled copy).

    >>> encode_image(Image.new("RGB", (8, 8))).startswith("data:image/png;base64,")
    True
    """
    w, h = image.size
    if max_side is not None and max(w, h) > max_side:
        scale = max_side / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        # Resampling filters are defined for RGB(A)/L; palette and bilevel images would be
        # resized by nearest neighbour otherwise.
        if image.mode in ("1", "P"):
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        image = image.resize(size, Image.Resampling.LANCZOS)
    if image.mode not in _PNG_MODES:
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


class _Failure(Exception):
    """One failed exchange with the server; ``retryable`` says whether trying again may help, and
    ``kind`` is the :class:`~attnprompt.types.Answer` failure it becomes."""

    def __init__(self, message: str, *, retryable: bool, attempts: int = 1, kind: str = "error"):
        super().__init__(message)
        self.retryable = retryable
        self.attempts = attempts
        self.kind = kind


# -- a deadline for the whole exchange ------------------------------------------------------------
# A socket timeout bounds each wait, not the request: a server that sends a byte every half second
# would hold a client for ever. The connections below hand their socket to the exchange's deadline,
# which shuts it down when the time is up; the blocked read then fails and is reported as a timeout.

_current = threading.local()


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        _current.deadline = self
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._timer.cancel()
        _current.deadline = None

    def attach(self, sock: socket.socket) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            if self._sock is not None:
                _shut(self._sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: nothing left to interrupt


def _attach_to_deadline(sock: socket.socket) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.attach(sock)


class _HTTPConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _attach_to_deadline(self.sock)


class _HTTPSConnection(http.client.HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _attach_to_deadline(self.sock)


class _HTTPHandler(urllib.request.HTTPHandler):
    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:  # the name urllib dispatches to
        return self.do_open(_HTTPConnection, req)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:  # the name urllib dispatches to
        return self.do_open(_HTTPSConnection, req, context=self._context)  # type: ignore[attr-defined]  # not in typeshed


class OpenAIBackend(Backend):
    """Answers requests through an OpenAI-compatible ``/chat/completions`` endpoint.

    Each turn of a request is one chat message; a user turn's images go as lossless PNG data URLs,
    in order, before its text. A request with ``top_logprobs`` asks for ``logprobs`` and ``top_logprobs``;
    what the server returns is the answer's ``logprobs`` (None when it returns none: a strategy that
    needs them says so, :func:`attnprompt.confidence.require_logprobs`). Requests run on a
    pool of ``concurrency`` threads; transient failures are retried once after
    ``retry_wait`` seconds. The object may be shared between threads.

    >>> backend = OpenAIBackend("http://localhost:8000", "llava-hf/llava-1.5-7b-hf")
    >>> backend.name
    'http://localhost:8000/v1#llava-hf/llava-1.5-7b-hf'
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 60.0,
        retry_wait: float = 5.0,
        concurrency: int = 4,
        max_side: int | None = 2048,
        temperature: float = 0.0,
        max_images: int | None = None,
        native_side: int | None = None,
    ):
        self.base_url = normalise_base_url(base_url)
        if model is not None and not str(model).strip():
            raise InputError("model is empty; give the served model's name, or None to ask the server")
        if not timeout > 0:
            raise InputError(f"timeout is {timeout}; give a positive number of seconds")
        if not retry_wait >= 0:
            raise InputError(f"retry_wait is {retry_wait}; give zero or a positive number of seconds")
        concurrency = check_count("concurrency", concurrency)
        max_side = None if max_side is None else check_count("max_side", max_side)
        max_images = None if max_images is None else check_count("max_images", max_images)
        self.max_images = max_images
        # the served model's input side (ViCrop's crop window); a server does not say it
        self._native_side = None if native_side is None else check_count("native_side", native_side)
        self._model = model
        self.api_key = api_key if api_key is not None else (os.environ.get("OPENAI_API_KEY") or None)
        self.timeout = float(timeout)
        self.retry_wait = float(retry_wait)
        self.concurrency = int(concurrency)
        self.max_side = None if max_side is None else int(max_side)
        self.temperature = float(temperature)
        self._opener = _opener_for(self.base_url)
        self._lock = threading.Lock()
        self._model_lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def native_side(self) -> int | None:
        """The served model's input side as given (``native_side=``, the CLI's ``--native-side``), else None.

        >>> OpenAIBackend("http://localhost:8000", "m", native_side=336).native_side()
        336
        """
        return self._native_side

    @property
    def model(self) -> str | None:
        """The model name sent with each request; ``None`` until discovered when not given.

        >>> OpenAIBackend("http://localhost:8000", "m").model
        'm'
        """
        return self._model

    @property
    def name(self) -> str:  # type: ignore[override]  # a property where the base has a plain attribute
        """``base_url#model`` (``#?`` while the model is still to be discovered).

        >>> OpenAIBackend("http://h:1/v1/", "m").name
        'http://h:1/v1#m'
        """
        return f"{self.base_url}#{self._model if self._model is not None else '?'}"

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "temperature": self.temperature, "max_side": self.max_side}

    def resolve_model(self) -> str:
        """The model name, asking ``GET {base_url}/models`` (first id) when none was given.

        Raises :class:`BackendError` when the server cannot say; a success is remembered.

        >>> OpenAIBackend("http://localhost:8000", "m").resolve_model()
        'm'
        """
        if self._model is not None:
            return self._model
        with self._model_lock:
            if self._model is not None:  # another thread found it while we waited
                return self._model
            url = f"{self.base_url}/models"
            try:
                listing, _ = self._exchange("GET", url, None)
            except _Failure as e:
                # two attempts: the server could not be reached; one: it answered, without a model list
                advice = "is the server running there?" if e.attempts > 1 else "pass the model name explicitly"
                raise BackendError(f"cannot find out which model {self.base_url} serves: {e}; {advice}") from None
            data = listing.get("data") if isinstance(listing, dict) else None
            first = data[0] if isinstance(data, list) and data else None
            model_id = first.get("id") if isinstance(first, dict) else None
            if not isinstance(model_id, str) or not model_id:
                raise BackendError(
                    f"cannot find out which model {self.base_url} serves: GET {url} listed no model id "
                    f"({_snippet(listing)}); pass the model name explicitly"
                )
            self._model = model_id
            return model_id

    def answer(self, requests: Sequence[Request]) -> list[Answer]:
        """One Answer per request, in request order; at most ``concurrency`` in flight at once.

        >>> [a] = OpenAIBackend("http://127.0.0.1:9", "m", retry_wait=0).answer([Request.single((), "Hi?")])
        >>> a.ok, a.attempts, a.error.split(": ", 1)[1]
        (False, 2, 'connection refused (is the server running?) (on both attempts, 0 s apart)')
        """
        requests = list(requests)
        if not requests:
            return []
        try:
            model = self.resolve_model()
        except BackendError as e:
            # The request itself was never sent, hence no attempts.
            return [Answer("", ok=False, error=str(e), attempts=0) for _ in requests]
        pool = self._executor()
        futures = [pool.submit(self._answer_one, r, model) for r in requests]
        return [f.result() for f in futures]

    def close(self) -> None:
        """Stop the worker threads (after the requests in flight); ``answer`` starts new ones.
        """
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="attnprompt-http")
            return self._pool

    def _answer_one(self, request: Request, model: str) -> Answer:
        start = time.monotonic()
        url = f"{self.base_url}/chat/completions"
        try:
            body = json.dumps(self._payload(request, model)).encode("utf-8")
        except Exception as e:  # noqa: BLE001  # an image PIL cannot encode fails this request only
            return Answer(
                "",
                ok=False,
                error=f"cannot encode the request: {type(e).__name__}: {e}",
                seconds=time.monotonic() - start,
                model=model,
                attempts=0,
            )
        try:
            reply, attempts = self._exchange("POST", url, body)
            text, meta, logprobs = _read_completion(reply, url)
        except _Failure as e:
            return Answer("", ok=False, error=str(e), seconds=time.monotonic() - start, model=model,
                          attempts=e.attempts, failure=e.kind)
        except Exception as e:  # noqa: BLE001  # failures are Answers, whatever raised them
            return Answer("", ok=False, error=f"{type(e).__name__}: {e}", seconds=time.monotonic() - start, model=model)
        if not text.strip():
            # an empty completion is no answer, whatever the status said
            why = f" (finish_reason {meta['finish_reason']!r})" if "finish_reason" in meta else ""
            return Answer("", ok=False, error=f"the server's answer is empty{why}", seconds=time.monotonic() - start,
                          model=model, attempts=attempts, meta=meta, failure="empty")
        return Answer(text, ok=True, seconds=time.monotonic() - start, model=model, attempts=attempts, meta=meta,
                      logprobs=logprobs)

    def _payload(self, request: Request, model: str) -> dict[str, Any]:
        messages: list[dict[str, Any]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        for turn in request.turns:
            if turn.role == "assistant":
                messages.append({"role": "assistant", "content": turn.text})
                continue
            if not turn.images:  # text alone as a plain string: what every chat endpoint (and judge) takes
                messages.append({"role": "user", "content": turn.text})
                continue
            content: list[dict[str, Any]] = [
                {"type": "image_url", "image_url": {"url": encode_image(image, self.max_side)}} for image in turn.images
            ]
            content.append({"type": "text", "text": turn.text})
            messages.append({"role": "user", "content": content})
        payload = {
            "model": model,
            "messages": messages,
            "max_tokens": request.max_new_tokens,
            "temperature": self.temperature,
        }
        if request.top_logprobs is not None:
            payload.update(logprobs=True, top_logprobs=request.top_logprobs)
        return payload

    def _exchange(self, method: str, url: str, body: bytes | None) -> tuple[Any, int]:
        """The parsed JSON reply and the number of attempts it took; raises ``_Failure``."""
        try:
            return self._once(method, url, body), 1
        except _Failure as e:
            if not e.retryable:
                raise
            first = str(e)
        log.info("%s %s failed (%s); retrying in %g s", method, url, first, self.retry_wait)
        time.sleep(self.retry_wait)
        try:
            return self._once(method, url, body), 2
        except _Failure as e:
            again = str(e)
            how = (
                f"on both attempts, {self.retry_wait:g} s apart"
                if again == first
                else f"on the second attempt, {self.retry_wait:g} s after the first failed with: {first}"
            )
            raise _Failure(f"{again} ({how})", retryable=False, attempts=2) from None

    def _once(self, method: str, url: str, body: bytes | None) -> Any:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        req = urllib.request.Request(url, data=body, headers=headers, method=method)
        deadline = _Deadline(self.timeout)
        try:
            with deadline, self._opener.open(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            status = e.code
            message, kind = _server_error(e)
            if kind == EMPTY_ANSWER:  # attnprompt serve: the model said nothing
                failure = "empty"
            else:  # the server refused the request itself (too long, too many images …) or failed
                failure = "input" if status in (400, 413, 422) else "error"
            raise _Failure(f"HTTP {status} from {method} {url}: {message}",
                           retryable=status == 429 or status >= 500, kind=failure) from None
        except (OSError, http.client.HTTPException, ValueError) as e:  # URLError is an OSError
            if deadline.expired:
                raise _Failure(f"{method} {url}: timed out: no complete reply within {self.timeout:g} s",
                               retryable=True) from None
            if isinstance(e, ValueError):
                raise
            raise _Failure(f"{method} {url}: {self._network_error(e)}", retryable=True) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise _Failure(
                f"malformed response from {method} {url}: not JSON: {_snippet(raw)}", retryable=False
            ) from None

    def _network_error(self, error: BaseException) -> str:
        if isinstance(error, urllib.error.URLError):
            if not isinstance(error.reason, BaseException):
                return f"network error: {error.reason}"
            error = error.reason
        if isinstance(error, (TimeoutError, socket.timeout)):
            return f"timed out after {self.timeout:g} s waiting for the server"
        if isinstance(error, ConnectionRefusedError):
            return "connection refused (is the server running?)"
        if isinstance(
            error,
            (
                ConnectionResetError,
                ConnectionAbortedError,
                BrokenPipeError,
                http.client.RemoteDisconnected,
                http.client.IncompleteRead,
            ),
        ):
            return f"the server closed the connection ({type(error).__name__})"
        if isinstance(error, socket.gaierror):
            return f"cannot resolve the server's host name ({error})"
        return f"network error: {type(error).__name__}: {error}"


def _opener_for(base_url: str) -> urllib.request.OpenerDirector:
    # A server on this machine is never behind the proxy that the environment may name for
    # the outside world; going through it would fail or leak the request.
    host = urllib.parse.urlsplit(base_url).hostname or ""
    loopback = host == "localhost"
    try:
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    # a context of our own: certificates are checked even where a library has turned the process-wide default
    # off (importing VLMEvalKit does)
    handlers: list[Any] = [_HTTPHandler(), _HTTPSHandler(context=ssl.create_default_context())]
    if loopback:
        handlers.append(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener(*handlers)


def _read_completion(reply: Any, url: str) -> tuple[str, dict[str, Any], tuple[TokenLogprob, ...] | None]:
    """The answer text of a chat.completion JSON, what else is worth keeping, and its tokens' logprobs."""
    try:
        choice = reply["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        raise _Failure(
            f"malformed response from POST {url}: no choices[0].message.content in {_snippet(reply)}",
            retryable=False,
        ) from None
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
    ):
        content = "".join(p["text"] for p in content)
    if not isinstance(content, str):
        raise _Failure(
            f"malformed response from POST {url}: choices[0].message.content is not text: {_snippet(content)}",
            retryable=False,
        )
    meta: dict[str, Any] = {}
    logprobs = _read_logprobs(choice.get("logprobs") if isinstance(choice, dict) else None, meta)
    if isinstance(choice, dict) and choice.get("finish_reason") is not None:
        meta["finish_reason"] = choice["finish_reason"]
    if isinstance(reply.get("usage"), dict):
        meta["usage"] = reply["usage"]
    if isinstance(reply.get("model"), str):
        meta["served_model"] = reply["model"]
    return content, meta, logprobs


def _read_logprobs(value: Any, meta: dict[str, Any]) -> tuple[TokenLogprob, ...] | None:
    """A choice's ``logprobs`` (the chat format: ``{"content": [{"token", "logprob", "top_logprobs": [...]}]}``)
    as :class:`TokenLogprob` per token; None when absent, and None with ``meta["logprobs_error"]`` saying why
    when present but unreadable (the answer's text stays good).

    >>> _read_logprobs({"content": [{"token": " Yes", "logprob": -0.1,
    ...                              "top_logprobs": [{"token": " Yes", "logprob": -0.1}]}]}, {})[0].top
    ((' Yes', -0.1),)
    """
    if value is None:
        return None
    content = value.get("content") if isinstance(value, dict) else None
    try:
        return tuple(TokenLogprob(t["token"], t["logprob"],
                                  tuple((a["token"], a["logprob"]) for a in t.get("top_logprobs") or ()))
                     for t in content)  # type: ignore[union-attr]
    except (KeyError, TypeError, ValueError, AttributeError):
        meta["logprobs_error"] = f"unreadable logprobs (not the chat format's content list): {_snippet(value)}"
        return None


def _server_error(error: urllib.error.HTTPError) -> tuple[str, str | None]:
    """The server's own explanation of an HTTP error (OpenAI-style JSON, or the raw body), and the
    error's ``type`` when it gives one."""
    try:
        raw = error.read()
    except (OSError, http.client.HTTPException):
        raw = b""
    finally:
        error.close()
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            kind = err.get("type")
            return str(err["message"]), kind if isinstance(kind, str) else None
        if isinstance(err, str) and err:
            return err, None
        for key in ("message", "detail"):
            if body.get(key):
                return str(body[key]), None
    text = _snippet(raw) if raw else ""
    return text or str(error.reason or "no message"), None


def _snippet(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    elif not isinstance(value, str):
        try:
            value = json.dumps(value)
        except (TypeError, ValueError):
            value = repr(value)
    value = value.strip()
    return value if len(value) <= _SNIPPET else value[:_SNIPPET] + "…"
