"""A minimal OpenAI-compatible HTTP server in front of any :class:`Backend`.

It lets a local model answer the HTTP client (:class:`~attnprompt.backends.openai_http.OpenAIBackend`)
exactly as vLLM or a hosted API would, and gives tests a real server to talk to. Only what the
client uses is implemented: ``GET /v1/models`` and non-streaming ``POST /v1/chat/completions``
with system, user and assistant messages (several turns), text and ``data:`` image parts.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import sys
import threading
import time
import uuid
import warnings
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image, UnidentifiedImageError

from .backends.base import Backend
from .backends.openai_http import EMPTY_ANSWER
from .checks import check_count
from .errors import InputError
from .images import load_image
from .types import Request, Turn


@dataclass(frozen=True)
class Limits:
    """What one request may hold, checked before any model work (too much is a 413 or a 400).

    - ``max_body``: bytes of the JSON body (a dozen large PNGs as base64 fit in the default);
    - ``max_images``: images in the whole conversation;
    - ``max_image_pixels``: pixels of one image, read from its header before it is decoded;
    - ``max_prompt_chars``: characters of text in the whole conversation, system prompt included
      (the backend then checks the tokens against the model's context).

    >>> Limits().max_images, Limits(max_images=2).max_images
    (16, 2)
    """

    max_body: int = 64 * 1024 * 1024
    max_images: int = 16
    max_image_pixels: int = 50_000_000
    max_prompt_chars: int = 1_000_000

    def __post_init__(self) -> None:
        for name in ("max_body", "max_images", "max_image_pixels", "max_prompt_chars"):
            check_count(name, getattr(self, name))


class BadRequest(Exception):
    """A request the server cannot serve; ``status`` and message go back as OpenAI-style error JSON.

    >>> BadRequest("messages is missing").status
    400
    """

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class BackendServer(ThreadingHTTPServer):
    """A threading HTTP server that holds the backend, the advertised model name and the settings."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], backend: Backend,
                 model_name: str, *, verbose: bool = False, max_parallel: int | None = 1,
                 limits: Limits | None = None):
        super().__init__(address, handler)
        self.limits = limits or Limits()
        if self.limits.max_image_pixels > (Image.MAX_IMAGE_PIXELS or 0) // 2:
            # PIL warns past its limit and refuses past twice it: in a server, --max-image-mpx governs instead
            Image.MAX_IMAGE_PIXELS = 2 * self.limits.max_image_pixels
        self.backend = backend
        self.model_name = model_name
        self.verbose = verbose
        # Local models are rarely safe (or faster) when called from several threads at once.
        self.backend_slots = threading.BoundedSemaphore(max_parallel) if max_parallel else None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Print the traceback only when verbose: clients that time out and hang up are routine."""
        if self.verbose:
            super().handle_error(request, client_address)


class ChatCompletionsHandler(BaseHTTPRequestHandler):
    """Serves ``/v1/models`` and ``/v1/chat/completions`` for ``self.server.backend``.

    Subclass it to change behaviour (tests simulate failures that way) and pass the subclass
    to :func:`make_server` as ``handler``.
    """

    server: BackendServer
    protocol_version = "HTTP/1.1"
    server_version = "attnprompt"

    def do_GET(self) -> None:  # the name http.server dispatches to
        """``GET /v1/models``: the one model this server answers with."""
        if self._route() != "/models":
            self.send_error_json(HTTPStatus.NOT_FOUND, f"no such endpoint: GET {self.path}")
            return
        self.send_json(HTTPStatus.OK, {
            "object": "list",
            "data": [{"id": self.server.model_name, "object": "model", "owned_by": "attnprompt"}],
        })

    def do_POST(self) -> None:  # the name http.server dispatches to
        """``POST /v1/chat/completions``: one request to the backend, one chat.completion back."""
        try:
            body = self.read_body()
            if self._route() != "/chat/completions":
                raise BadRequest(f"no such endpoint: POST {self.path}", HTTPStatus.NOT_FOUND)
            request = parse_chat_request(body, self.server.limits)
        except BadRequest as e:
            self.send_error_json(e.status, str(e))
            return
        self.send_json(*self.complete(request))

    def complete(self, request: Request) -> tuple[int, dict[str, Any]]:
        """Ask the backend; the HTTP status and the JSON to send back: 200 with the answer; 400 for a
        request the model cannot take (longer than its context …); 422 with error type
        ``empty_answer`` when the model generated no text; 500 when the backend failed."""
        slots = self.server.backend_slots
        try:
            if slots is not None:
                slots.acquire()
            try:
                answer = self.server.backend.answer([request])[0]
            finally:
                if slots is not None:
                    slots.release()
        except InputError as e:
            return HTTPStatus.BAD_REQUEST, error_body(str(e))
        except Exception as e:  # noqa: BLE001  # any backend failure is the client's 500, not our crash
            return HTTPStatus.INTERNAL_SERVER_ERROR, error_body(f"{type(e).__name__}: {e}", "server_error")
        if not answer.ok:
            message = answer.error or "the backend failed"
            if answer.failure == "input":
                return HTTPStatus.BAD_REQUEST, error_body(message)
            if answer.failure == "empty":  # never an empty 200 a client might score as an answer
                return HTTPStatus.UNPROCESSABLE_ENTITY, error_body(message, EMPTY_ANSWER)
            return HTTPStatus.INTERNAL_SERVER_ERROR, error_body(message, "server_error")
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": answer.text},
            "finish_reason": "stop",
        }
        if request.top_logprobs is not None:  # asked for: the tokens the backend gave (null when it gave none)
            choice["logprobs"] = None if answer.logprobs is None else {"content": [
                {"token": t.token, "logprob": t.logprob,
                 "top_logprobs": [{"token": a, "logprob": lp} for a, lp in t.top]} for t in answer.logprobs]}
        return HTTPStatus.OK, {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.server.model_name,
            "choices": [choice],
            "usage": usage(answer),
        }

    def read_body(self) -> bytes:
        """The request body; always read in full, so a kept-alive connection stays in step."""
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise BadRequest("the request has no Content-Length; send the JSON body with its length",
                             HTTPStatus.LENGTH_REQUIRED)
        try:
            n = int(length)
        except ValueError:
            self.close_connection = True
            raise BadRequest(f"Content-Length {length!r} is not a number") from None
        limit = self.server.limits.max_body
        if n < 0 or n > limit:
            self.close_connection = True
            self._drain(n, 16 * limit)
            raise BadRequest(f"the body is {n} bytes; at most {limit} are accepted (serve --max-body-mb)",
                             HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        return self.rfile.read(n)

    def _drain(self, n: int, most: int) -> None:
        """Read and drop a refused body (up to ``most`` bytes), so the client, still sending, gets our 413
        instead of a broken pipe; a body beyond that is cut off with the connection."""
        left = min(max(n, 0), most)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                break
            left -= len(chunk)

    def send_json(self, status: int, payload: dict[str, Any]) -> None:
        """Send ``payload`` as a JSON response with ``status``."""
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def send_error_json(self, status: int, message: str) -> None:
        """Send an OpenAI-style error: ``{"error": {"message": ..., "type": ...}}``.
        """
        kind = "server_error" if status >= 500 else "invalid_request_error"
        self.send_json(status, error_body(message, kind))

    def log_message(self, format: str, *args: Any) -> None:  # the base class's name
        """Log to stderr only when the server is verbose."""
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def _route(self) -> str:
        # Clients disagree on whether the base URL includes /v1; accept both spellings.
        path = self.path.split("?", 1)[0].rstrip("/")
        return path[3:] if path.startswith("/v1/") else path


def error_body(message: str, kind: str = "invalid_request_error") -> dict[str, Any]:
    """The OpenAI error JSON for ``message``.

    >>> error_body("bad")["error"]["type"]
    'invalid_request_error'
    """
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


def parse_chat_request(body: bytes, limits: Limits | None = None) -> Request:
    """A :class:`~attnprompt.types.Request` from a chat-completions JSON body; raises :class:`BadRequest`.

    System (and developer) messages become ``Request.system``; user and assistant messages become
    the conversation's turns, a user message's images (in order) and text parts (joined by
    newlines) its turn. Consecutive messages of one role are one turn. The conversation must end
    with the user. ``limits`` (default :class:`Limits`) bound the images and the text. ``logprobs: true``
    (with ``top_logprobs``, default 0) asks for the answer tokens' log-probabilities.

    >>> parse_chat_request(b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}').prompt
    'hi'
    >>> turns = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
    ...          {"role": "user", "content": "bye"}]
    >>> parse_chat_request(json.dumps({"messages": turns}).encode()).roles()
    ('user', 'assistant', 'user')
    """
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"the body is not valid JSON ({e})") from None
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object with 'messages'")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("'messages' is missing or empty; give a list of chat messages")
    if payload.get("stream"):
        raise BadRequest("streaming is not supported; send 'stream': false")
    max_tokens = payload.get("max_completion_tokens", payload.get("max_tokens", 128))
    if max_tokens is None:
        max_tokens = 128
    try:
        check_count("max_tokens", max_tokens)
    except InputError as e:  # the client's mistake: a 400, not a server error
        raise BadRequest(str(e)) from None
    top_logprobs = None
    if payload.get("logprobs"):
        top_logprobs = payload.get("top_logprobs") or 0
        if isinstance(top_logprobs, bool) or not isinstance(top_logprobs, int) or not 0 <= top_logprobs <= 20:
            raise BadRequest(f"'top_logprobs' must be an integer in 0..20; got {top_logprobs!r}")
    limits = limits or Limits()
    system: list[str] = []
    turns: list[tuple[str, list[str], list[Image.Image]]] = []  # role, texts, images
    n_images = 0
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise BadRequest(f"messages[{i}] is not an object")
        role = message.get("role")
        where = f"messages[{i}]"
        if role in ("system", "developer"):
            system.extend(_text_parts(message.get("content"), where))
            continue
        if role not in ("user", "assistant"):
            raise BadRequest(f"{where} has role {role!r}; give system, user or assistant messages")
        if not turns or turns[-1][0] != role:
            turns.append((role, [], []))
        _, texts, images = turns[-1]
        if role == "user":
            _user_content(message.get("content"), where, texts, images, n_images, limits)
            n_images = sum(len(t[2]) for t in turns)
        else:
            texts.extend(_text_parts(message.get("content"), where))
    if not turns or turns[-1][0] != "user" or not (turns[-1][1] or turns[-1][2]):
        raise BadRequest("the conversation must end with a user message with text or images")
    chars = sum(len(t) for _, texts, _ in turns for t in texts) + sum(len(t) for t in system)
    if chars > limits.max_prompt_chars:
        raise BadRequest(f"the conversation holds {chars} characters of text; at most {limits.max_prompt_chars} are "
                         "accepted (serve --max-prompt-chars)", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
    try:
        return Request(tuple(Turn(role, "\n".join(texts), tuple(images)) for role, texts, images in turns),
                       max_new_tokens=max_tokens, system="\n".join(system) if system else None,
                       top_logprobs=top_logprobs)
    except InputError as e:
        raise BadRequest(str(e)) from None


def _text_parts(content: Any, where: str) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        out = []
        for j, part in enumerate(content):
            if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                raise BadRequest(f"{where}.content[{j}] must be a text part")
            out.append(part["text"])
        return out
    raise BadRequest(f"{where}.content must be a string or a list of parts")


def _user_content(
    content: Any, where: str, texts: list[str], images: list[Image.Image], before: int, limits: Limits
) -> None:
    if isinstance(content, str):
        texts.append(content)
        return
    if not isinstance(content, list):
        raise BadRequest(f"{where}.content must be a string or a list of parts")
    for j, part in enumerate(content):
        here = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif kind == "image_url":
            ref = part.get("image_url")
            url = ref.get("url") if isinstance(ref, dict) else ref
            if not isinstance(url, str):
                raise BadRequest(f"{here}.image_url has no url")
            if before + len(images) >= limits.max_images:
                raise BadRequest(f"{here}: more than {limits.max_images} images in the conversation "
                                 "(serve --max-images)", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            images.append(decode_data_url(url, f"{here} (image {before + len(images) + 1})", limits.max_image_pixels))
        else:
            raise BadRequest(f"{here} is not a text or image_url part (type {kind!r})")


def decode_data_url(url: str, label: str = "image", max_pixels: int | None = None) -> Image.Image:
    """The RGB image in a ``data:image/...;base64,`` URL; other URLs, and images of more than
    ``max_pixels`` (read from the header, before decoding), are a :class:`BadRequest`.

    >>> import base64, io
    >>> buf = io.BytesIO(); Image.new("RGB", (9, 9), "red").save(buf, "PNG")
    >>> decode_data_url("data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()).size
    (9, 9)
    """
    # The server never fetches remote URLs: that would let any client make it reach the network.
    if not url.startswith("data:"):
        raise BadRequest(f"{label}: only data: URLs (base64 images) are accepted, not {url[:60]!r}")
    header, sep, data = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise BadRequest(f"{label}: the data URL must be base64-encoded (data:image/png;base64,...)")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise BadRequest(f"{label}: the base64 data is invalid ({e})") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            w, h = image.size
            if max_pixels is not None and w * h > max_pixels:
                raise BadRequest(f"{label}: the image is {w}×{h} = {w * h / 1e6:.1f} Mpx; at most "
                                 f"{max_pixels / 1e6:g} Mpx are accepted (serve --max-image-mpx)",
                                 HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # PIL refuses it from its header, before our own count could be read: over any limit we would set
        limit = f"at most {max_pixels / 1e6:g} Mpx are accepted (serve --max-image-mpx)" if max_pixels else (
            "over PIL's decompression-bomb limit")
        raise BadRequest(f"{label}: the image is too large to decode; {limit}",
                         HTTPStatus.REQUEST_ENTITY_TOO_LARGE) from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise BadRequest(f"{label}: not an image PIL can decode ({e})") from None
    try:
        return load_image(image, name=label)
    except InputError as e:
        raise BadRequest(str(e)) from None


def usage(answer: Any) -> dict[str, int]:
    """An answer's token counts as OpenAI's ``usage`` reports them: the prompt's (image tokens included) and the
    answer's (its end-of-sequence token included), from what the backend measured.

    >>> from attnprompt.types import Answer
    >>> usage(Answer("red", meta={"tokens": 2, "prompt_tokens": 40}))
    {'prompt_tokens': 40, 'completion_tokens': 2, 'total_tokens': 42}
    """
    prompt = int(answer.meta.get("prompt_tokens", 0))
    completion = int(answer.meta.get("tokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def make_server(backend: Backend, host: str = "127.0.0.1", port: int = 0, *, model_name: str | None = None,
                verbose: bool = False, max_parallel: int | None = 1, limits: Limits | None = None,
                handler: type[ChatCompletionsHandler] = ChatCompletionsHandler) -> BackendServer:
    """A bound, not yet serving, OpenAI-compatible server for ``backend``; run ``serve_forever()``.

    ``port=0`` picks a free port (read it from ``server.server_address[1]``). ``model_name``
    (default: ``backend.name``) is what ``/v1/models`` lists. At most ``max_parallel``
    requests reach the backend at once (``None``: no limit); ``limits`` bound each request. An
    address that cannot be bound is an :class:`~attnprompt.errors.InputError` naming it.

    >>> from attnprompt.backends.local import LocalVLM
    >>> server = make_server(LocalVLM.from_pretrained("shapes"))
    >>> server.model_name, server.server_address[1] > 0
    ('shapes', True)
    >>> server.server_close()
    """
    check_address(host, port)
    name = model_name or getattr(backend, "name", "") or "attnprompt"
    try:
        return BackendServer((host, port), handler, backend, name, verbose=verbose, max_parallel=max_parallel,
                             limits=limits)
    except OSError as e:
        raise InputError(_bind_error(host, port, e)) from None


def check_address(host: str, port: int, *, try_bind: bool = False) -> None:
    """Raise :class:`~attnprompt.errors.InputError` unless ``port`` is 0–65535 (and, with ``try_bind``,
    ``host:port`` can be bound now — checked before a model is loaded, then released).

    >>> check_address("127.0.0.1", 70000)
    Traceback (most recent call last):
    attnprompt.errors.InputError: port 70000 is not a TCP port; give 1–65535, or 0 for any free port
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InputError(f"port {port!r} is not a TCP port; give 1–65535, or 0 for any free port")
    if try_bind:
        import socket

        try:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
        except OSError as e:
            raise InputError(_bind_error(host, port, e)) from None


def _bind_error(host: str, port: int, error: OSError) -> str:
    import errno

    known: dict[int | None, str] = {errno.EADDRINUSE: "the port is in use (by another server?)",
                                    errno.EACCES: "permission denied (ports below 1024 need privileges)",
                                    errno.EADDRNOTAVAIL: "this machine has no such address"}
    why = known.get(error.errno, error.strerror or str(error))
    return f"cannot listen on {host}:{port}: {why}; pick another --port (0: any free one) or --host"


def serve(backend: Backend, host: str = "127.0.0.1", port: int = 8000, *, model_name: str | None = None,
          verbose: bool = False, max_parallel: int | None = 1, limits: Limits | None = None) -> None:
    """Serve ``backend`` until interrupted (Ctrl-C); the backend itself stays open."""
    server = make_server(backend, host, port, model_name=model_name, verbose=verbose, max_parallel=max_parallel,
                         limits=limits)
    bound_host, bound_port = str(server.server_address[0]), server.server_address[1]  # a str host: an AF_INET server
    print(f"attnprompt: serving {server.model_name!r} at http://{bound_host}:{bound_port}/v1 (Ctrl-C stops)",
          file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
