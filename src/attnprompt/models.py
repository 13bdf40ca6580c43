"""Finding, loading and running models: hub ids, local directories and the embedded shapes models.

Loaded models are cached by (kind, location, device, dtype), so repeated calls to
:func:`attnprompt.annotate` reuse one model. Every failure becomes a :class:`ModelLoadError`
that says how to pass a local checkpoint.

:func:`generate` is the one greedy generation routine: the answering backend and the api-vlm
attributor both use it (one end-of-sequence rule, left-padded batches, optional attention capture
with the KV cache kept).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import InputError, MissingChatTemplateError, ModelLoadError, UnsupportedModelError
from .families import FAMILIES, family_of

if TYPE_CHECKING:
    from .families import Family
    from .types import Request

#: The CLIP the paper used for API-CLIP (ViT-L/14 at 336 px).
DEFAULT_CLIP = "openai/clip-vit-large-patch14-336"

#: The VLM used by default for api-vlm attribution and for answering (LLaVA-1.5, HF format).
DEFAULT_VLM = "llava-hf/llava-1.5-7b-hf"

#: Models shipped inside the package, selectable by short names; "shapes" means the shapes
#: model of the kind asked for (the CLIP for api-clip, the VLM for answering and api-vlm).
EMBEDDED: dict[str, dict[str, str]] = {
    "clip": {"shapes": "shapes-clip", "shapes-clip": "shapes-clip"},
    "vlm": {"shapes": "shapes-vlm", "shapes-vlm": "shapes-vlm"},
}

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.RLock()


def embedded_dir() -> Path:
    """Directory that holds the embedded models.

    >>> embedded_dir().name
    'models'
    """
    return Path(__file__).resolve().parent / "shapes" / "models"


def is_embedded(name: str, kind: str) -> bool:
    """Whether ``name`` is a short name of a shipped model of ``kind`` ("clip" or "vlm").

    >>> is_embedded("shapes", "vlm"), is_embedded("openai/clip-vit-base-patch32", "clip")
    (True, False)
    """
    return name in EMBEDDED.get(kind, {})


def is_embedded_location(location: str, kind: str) -> bool:
    """Whether a loaded model's location is the shipped shapes model of ``kind``.

    >>> is_embedded_location(resolve("shapes", "vlm"), "vlm"), is_embedded_location("/tmp/x", "vlm")
    (True, False)
    """
    return str(location) in {str(embedded_dir() / d) for d in EMBEDDED.get(kind, {}).values()}


def resolve(name: str, kind: str = "clip") -> str:
    """Map a model name to what ``from_pretrained`` should receive: a local path or a hub id.

    Embedded names map to directories inside the package: ``shapes`` is the shapes CLIP
    for ``kind="clip"`` and the shapes VLM for ``kind="vlm"``; ``shapes-vlm`` names the VLM.

    >>> resolve("shapes").endswith("shapes-clip"), resolve("shapes", "vlm").endswith("shapes-vlm")
    (True, True)
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelLoadError(f"model must be a non-empty hub id or directory, got {name!r}")
    if is_embedded(name, kind):
        return str(embedded_dir() / EMBEDDED[kind][name])
    return name


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1


def _help(kind: str) -> str:
    if kind == "segmenter":
        return ("pass a local SAM checkpoint directory with --segmenter PATH (segmenter= in Python), "
                "or --segmenter shapes for the testbed's ground-truth masks")
    # a VLM is loaded to answer (--vlm) or for its attention map (--model): name both
    where = "--vlm PATH (who answers) or --model PATH (api-vlm's map)" if kind == "vlm" else "--model PATH"
    return (
        f"pass a local checkpoint directory with {where} (vlm=/model= in Python), "
        "or 'shapes' for the embedded offline model"
    )


def read_config(name: str, kind: str) -> tuple[str, dict]:
    """Locate a checkpoint and read its ``config.json`` (local directories only; hub ids → ``{}``).

    >>> read_config("shapes", "clip")[1].get("model_type") in (None, "clip")
    True
    """
    location = resolve(name, kind)
    path = Path(location).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"model {name!r}: {path} is a file; a checkpoint is a directory with config.json")
        cfg = path / "config.json"
        if not cfg.exists():
            if is_embedded(name, kind):
                raise ModelLoadError(
                    f"embedded model {name!r} is missing from this installation ({path}); "
                    "reinstall attnprompt, or " + _help(kind)
                )
            raise ModelLoadError(
                f"model {name!r}: {path} has no config.json, so it is not a Hugging Face checkpoint; " + _help(kind)
            )
        try:
            return str(path), json.loads(cfg.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ModelLoadError(f"model {name!r}: cannot read {cfg} ({e})") from e
    if _looks_like_path(location):
        raise ModelLoadError(f"model {name!r}: no such directory; " + _help(kind))
    return location, {}


@contextlib.contextmanager
def _quiet_transformers():
    # transformers logs advice about optional backends (torchvision, accelerate) on load;
    # our users cannot act on it, so keep it out of their terminal.
    logger = logging.getLogger("transformers")
    old = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(old)


def hub_unreachable() -> str | None:
    """Why the Hugging Face hub cannot be reached right now, or None when it can: ``HF_HUB_OFFLINE``
    (or ``TRANSFORMERS_OFFLINE``) is set, or a connection to ``HF_ENDPOINT`` (default huggingface.co;
    through the environment's proxy, if one is set) fails within a few seconds. Probed once a process.

    >>> before = os.environ.get("HF_HUB_OFFLINE"); os.environ["HF_HUB_OFFLINE"] = "1"
    >>> hub_unreachable()
    'HF_HUB_OFFLINE is set'
    >>> _ = os.environ.pop("HF_HUB_OFFLINE") if before is None else os.environ.update(HF_HUB_OFFLINE=before)
    """
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{var} is set"
    return _probe_hub(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


@functools.cache
def _probe_hub(endpoint: str, seconds: float = 3.0) -> str | None:
    import socket
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(endpoint)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = p.hostname or host, p.port or 80
    outcome: list[str | None] = []

    def connect() -> None:  # in a thread: name resolution has no timeout of its own
        try:
            socket.create_connection((host, port), timeout=seconds).close()
            outcome.append(None)
        except OSError as e:
            outcome.append(f"{host}:{port} cannot be reached ({e.strerror or e})")

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(seconds + 0.5)
    return outcome[0] if outcome else f"{host}:{port} did not answer within {seconds:g} s"


def _hub_kwargs(name: str, location: str, kind: str) -> dict[str, Any]:
    """For a hub id: nothing when the hub is reachable; ``local_files_only`` when it is not but the
    model is cached (no retries against a network that is not there); else one clear error now."""
    if Path(location).exists():
        return {}
    why = hub_unreachable()
    if why is None:
        return {}
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(location, "config.json"), str)
    except (ImportError, ValueError):  # not a valid repo id: let from_pretrained say so
        cached = False
    if not cached:
        raise ModelLoadError(
            f"cannot load model {name!r} (hub id): it is not in the local Hugging Face cache and {why}; " + _help(kind)
        )
    return {"local_files_only": True}


def from_pretrained(loader: Callable[..., Any], name: str, location: str, kind: str, **kwargs: Any) -> Any:
    """Call ``loader(location, **kwargs)`` turning any failure into a one-line ModelLoadError; a hub
    id fails at once when the hub cannot be reached and the model is not cached (:func:`hub_unreachable`).

    >>> from_pretrained(lambda p: p.upper(), "x", "/", "clip")
    '/'
    """
    kwargs = {**_hub_kwargs(name, location, kind), **kwargs}
    try:
        with _quiet_transformers():
            return loader(location, **kwargs)
    except ModelLoadError:
        raise
    except OSError as e:
        where = "local directory" if Path(location).exists() else "hub id"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(
            f"cannot load model {name!r} ({where}): {first} — no network or not cached? " + _help(kind)
        ) from e
    except (ValueError, KeyError, TypeError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelLoadError(f"cannot load model {name!r}: {first}; " + _help(kind)) from e


def pick_device(device: Any) -> str:
    """``None`` → ``"cuda"`` when available, else ``"cpu"``; a device this machine does not have is an
    :class:`~attnprompt.errors.InputError` that says which it has.

    >>> pick_device("cpu")
    'cpu'
    >>> pick_device("tpu:9")
    Traceback (most recent call last):
    attnprompt.errors.InputError: unknown device 'tpu:9'; give cpu, cuda, cuda:N or mps
    """
    import torch

    if not device:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(str(device))
    except (RuntimeError, ValueError, TypeError):
        raise InputError(f"unknown device {device!r}; give cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise InputError(f"device {device!r}: this machine has no CUDA GPU that torch can use; give cpu")
        if dev.index is not None and dev.index >= count:
            raise InputError(f"device {device!r}: this machine has {count} CUDA GPU(s), cuda:0 to cuda:{count - 1}")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"device {device!r}: MPS is not available on this machine; give cpu")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device {device!r}: attnprompt runs on cpu, cuda or mps")
    return str(device)


def pick_dtype(dtype: Any) -> Any:
    """Map ``None``/a name/a torch dtype to a torch dtype (``None`` → float32).

    >>> str(pick_dtype("float64"))
    'torch.float64'
    """
    import torch

    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
    if dtype not in names:
        raise InputError(f"unknown dtype {dtype!r}; valid: {', '.join(names)}")
    return names[dtype]


@dataclass(frozen=True)
class LoadedClip:
    """A CLIP checkpoint ready for attribution: model (eval mode), tokenizer, image statistics.

    >>> clip = load_clip("shapes")
    >>> clip.model.training, len(clip.image_mean)
    (False, 3)
    """

    model: Any
    tokenizer: Any
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    model_id: str
    location: str


def load_clip(name: str | None = None, *, device: str | None = None, dtype: Any = None) -> LoadedClip:
    """Load (once) a ``transformers`` CLIP checkpoint by hub id, local path or embedded name.

    >>> load_clip("shapes").model.config.vision_config.image_size
    192
    """
    name = name or DEFAULT_CLIP
    location, cfg = read_config(name, "clip")
    if cfg and cfg.get("model_type") != "clip":
        raise UnsupportedModelError(
            f"model {name!r} is a {cfg.get('model_type')!r} checkpoint; api-clip needs a CLIP model "
            f"(model_type 'clip', e.g. {DEFAULT_CLIP}); " + _help("clip")
        )
    dev, dt = pick_device(device), pick_dtype(dtype)

    def build() -> LoadedClip:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        model = from_pretrained(CLIPModel.from_pretrained, name, location, "clip", dtype=dt)
        tokenizer = from_pretrained(AutoTokenizer.from_pretrained, name, location, "clip")
        processor = from_pretrained(AutoImageProcessor.from_pretrained, name, location, "clip")
        model.eval().to(dev)
        return LoadedClip(
            model=model,
            tokenizer=tokenizer,
            image_mean=tuple(float(x) for x in processor.image_mean),
            image_std=tuple(float(x) for x in processor.image_std),
            model_id=name,
            location=location,
        )

    return _cached(("clip", location, dev, str(dt)), build)


@dataclass(frozen=True)
class LoadedVlm:
    """A vision-language model ready to generate: model (eval mode), processor, family.

    ``family`` is the name of its :mod:`attnprompt.families` family (what configurations record), or ``None``
    for a model that can answer but whose image-token layout api-vlm does not know.

    >>> vlm = load_vlm("shapes")
    >>> vlm.family, vlm.family_info.native_side(vlm.model.config, vlm.processor)
    ('llava', 128)
    """

    model: Any
    processor: Any
    family: str | None
    model_id: str
    location: str

    @property
    def family_info(self) -> Family | None:
        """Everything attnprompt knows about the model's family (:class:`attnprompt.families.Family`), found by
        its config's ``model_type`` (else by ``family``, a name that is also a model_type); ``None`` for a model
        api-vlm cannot lay out.

        >>> load_vlm("shapes").family_info.name
        'llava'
        """
        return family_of(getattr(self.model.config, "model_type", None)) or family_of(self.family)


def _load_processor(name: str, location: str, model_type: str | None, config: Any = None) -> Any:
    from transformers import AutoProcessor

    try:
        with _quiet_transformers():
            return AutoProcessor.from_pretrained(location, **_hub_kwargs(name, location, "vlm"))
    except (AttributeError, ImportError, TypeError, ValueError, OSError) as e:
        family = family_of(model_type)
        if family is None or family.image_only_processor is None:
            if isinstance(e, (ValueError, OSError)):
                raise
            raise ModelLoadError(f"cannot load the processor of {name!r}: {e}; " + _help("vlm")) from e
        # The stock processor insists on a video processor (torchvision) or num2words; images need neither.
        return _image_only_from_checkpoint(name, location, model_type, config)


def _image_only_types() -> list[str]:
    return sorted(t for t in FAMILIES.names() if family_of(t).image_only_processor)


def image_only_processor(model_type: str, image_processor: Any, tokenizer: Any, chat_template: str | None,
                         **settings: Any) -> Any:
    """A family's processor without a video processor (its ``Family.image_only_processor``): the stock ones
    insist on one, which needs torchvision; images need none. SmolVLM gets Idefics3's processor, whose image
    prompt (tiles, row/column tokens, global image) is the same.
    ``settings`` are the processor's own arguments (e.g. ``image_seq_length``).

    >>> from attnprompt.models import image_only_processor
    >>> image_only_processor("llava", None, None, None)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    attnprompt.errors.UnsupportedModelError: no image-only processor for model_type 'llava'; valid: idefics3, ...
    """
    import transformers

    family = family_of(model_type)
    if family is None or family.image_only_processor is None:
        raise UnsupportedModelError(f"no image-only processor for model_type {model_type!r}; valid: "
                                    f"{', '.join(_image_only_types())}")
    base = getattr(transformers, family.image_only_processor)

    class ImageOnlyProcessor(base):  # type: ignore[misc, valid-type]
        def check_argument_for_proper_class(self, argument_name, argument):
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    ImageOnlyProcessor.__name__ = base.__name__
    parts: dict[str, Any] = {"image_processor": image_processor, "tokenizer": tokenizer}
    if "video_processor" in base.get_attributes():
        parts["video_processor"] = None
    return ImageOnlyProcessor(**parts, chat_template=chat_template, **settings)


def _image_only_from_checkpoint(name: str, location: str, model_type: str, config: Any) -> Any:
    import inspect

    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer

    with _quiet_transformers():
        image_processor = from_pretrained(AutoImageProcessor.from_pretrained, name, location, "vlm")
        tokenizer = from_pretrained(AutoTokenizer.from_pretrained, name, location, "vlm")
    template = _read_chat_template(location) or getattr(tokenizer, "chat_template", None)
    family = family_of(model_type)
    settings = family.processor_settings(config) if config is not None else {}
    saved = Path(location) / "processor_config.json"
    if saved.is_file():  # the checkpoint's own settings win over what the model config implies
        accepted = inspect.signature(getattr(transformers, family.image_only_processor).__init__).parameters
        try:
            stored = json.loads(saved.read_text())
        except (OSError, json.JSONDecodeError):
            stored = {}
        settings.update({k: v for k, v in stored.items() if k in accepted and k not in ("chat_template",)})
    return image_only_processor(model_type, image_processor, tokenizer, template, **settings)


def _read_chat_template(location: str) -> str | None:
    path = Path(location)
    for fname in ("chat_template.jinja", "chat_template.json"):
        f = path / fname
        if f.is_file():
            text = f.read_text()
            return json.loads(text)["chat_template"] if fname.endswith(".json") else text
    cfg = path / "processor_config.json"
    if cfg.is_file():
        return json.loads(cfg.read_text()).get("chat_template")
    return None


def load_vlm(name: str | None = None, *, device: str | None = None, dtype: Any = None) -> LoadedVlm:
    """Load (once) an image-text-to-text model and its processor by hub id, path or embedded name.

    >>> load_vlm("shapes-vlm").family
    'llava'
    """
    name = name or DEFAULT_VLM
    location, cfg = read_config(name, "vlm")
    model_type = cfg.get("model_type")
    if cfg and model_type in ("clip", "clip_vision_model", "siglip"):
        raise UnsupportedModelError(
            f"model {name!r} is a {model_type!r} checkpoint, not a vision-language model that generates text "
            f"(e.g. {DEFAULT_VLM}); " + _help("vlm")
        )
    dev, dt = pick_device(device), pick_dtype(dtype)

    def build() -> LoadedVlm:
        from transformers import AutoModelForImageTextToText

        model = from_pretrained(AutoModelForImageTextToText.from_pretrained, name, location, "vlm", dtype=dt)
        model_type = model.config.model_type
        processor = _load_processor(name, location, model_type, model.config)
        tok = getattr(processor, "tokenizer", None)
        if tok is not None:
            tok.padding_side = "left"  # batched generation appends on the right
        model.eval().to(dev)
        family = family_of(model_type)
        return LoadedVlm(model, processor, family.name if family else None, name, location)

    return _cached(("vlm", location, dev, str(dt)), build)


def _cached(key: tuple, build: Callable[[], Any]) -> Any:
    # One lock for all loads: two threads asking for the same model must not load it twice.
    with _LOCK:
        if key not in _CACHE:
            _CACHE[key] = build()
        return _CACHE[key]


# -- generation ------------------------------------------------------------------------------


def require_chat_template(vlm: LoadedVlm, purpose: str) -> None:
    """Raise :class:`MissingChatTemplateError` unless ``vlm``'s processor has a chat template.

    >>> from dataclasses import replace
    >>> from types import SimpleNamespace as NS
    >>> require_chat_template(replace(load_vlm("shapes"), processor=NS(chat_template=None)), "api-vlm")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    attnprompt.errors.MissingChatTemplateError: 'shapes' has no chat template, so api-vlm cannot build its prompts; ...
    """
    if getattr(vlm.processor, "chat_template", None) is None:
        raise MissingChatTemplateError(
            f"{vlm.model_id!r} has no chat template, so {purpose} cannot build its prompts; save one with the "
            "checkpoint (chat_template.jinja) or pass a model whose processor has one"
        )


def chat_prompt(processor: Any, request: Request) -> str:
    """The prompt text of ``request`` through the model's own chat template: an optional system
    message, then each turn with its images before its text.

    >>> from attnprompt.types import Request
    >>> chat_prompt(load_vlm("shapes").processor, Request.single((), "Is there a star?"))
    'USER: Is there a star? ASSISTANT:'
    """
    messages: list[dict[str, Any]] = []
    if request.system:
        messages.append({"role": "system", "content": [{"type": "text", "text": request.system}]})
    for turn in request.turns:
        content: list[dict[str, Any]] = [{"type": "image"} for _ in turn.images]
        content.append({"type": "text", "text": turn.text})
        messages.append({"role": turn.role, "content": content})
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def end_of_sequence_ids(vlm: LoadedVlm) -> frozenset[int]:
    """The token ids that end an answer: the generation config's, else the tokenizer's.

    >>> vlm = load_vlm("shapes")
    >>> end_of_sequence_ids(vlm) == {vlm.processor.tokenizer.eos_token_id}
    True
    """
    eos = vlm.model.generation_config.eos_token_id
    if eos is None:
        eos = getattr(getattr(vlm.processor, "tokenizer", None), "eos_token_id", None)
    ids = eos if isinstance(eos, (list, tuple)) else [eos]
    return frozenset(int(i) for i in ids if i is not None)


class PromptTooLongError(InputError):
    """A prompt (its images' tokens included) does not fit in the model's context."""


def context_length(vlm: LoadedVlm) -> int | None:
    """How many tokens the language model's positions cover (prompt and answer together), if it says.

    >>> context_length(load_vlm("shapes"))
    1024
    """
    n = getattr(vlm.model.config.get_text_config(), "max_position_embeddings", None)
    return int(n) if isinstance(n, int) and n > 0 else None


@dataclass
class Generation:
    """What :func:`generate` returns for a batch of requests, row by row.

    - ``texts``: each answer, decoded without special tokens and stripped;
    - ``tokens``: each row's generated token ids, up to and including its end-of-sequence token
      and never past its request's ``max_new_tokens`` (nor past the model's context: ``budget``
      is the number of new tokens the batch was allowed);
    - ``inputs``: the processor's outputs (``input_ids`` left-padded, image grids …);
    - ``scores``: with ``capture``, per captured layer one tensor (B, heads, kv) per forward step —
      step 0 is the prefill's last position, step t the query of generated token t — masked
      pre-softmax scores; row b's steps are ``scores[layer][:len(tokens[b])]``;
    - ``logprobs``: when a request asks for them (``Request.top_logprobs``), each row's
      :class:`~attnprompt.types.TokenLogprob` per answer token (the log-softmax of the model's own
      logits at that step, read from the generation: no extra forward pass; the end-of-sequence token
      is not part of the answer, as a server reports it), else None per row.

    >>> Generation(["red"], [[5, 2]], {}).steps
    [2]
    """

    texts: list[str]
    tokens: list[list[int]]
    inputs: Any
    scores: dict[int, list[Any]] = field(default_factory=dict)
    budget: int = 0
    logprobs: list[Any] = field(default_factory=list)

    @property
    def steps(self) -> list[int]:
        """Forward steps that produced each row's tokens (its end-of-sequence token included).

        >>> Generation(["a", ""], [[7, 8, 2], [2]], {}).steps
        [3, 1]
        """
        return [len(t) for t in self.tokens]


def bounded_input(vlm: LoadedVlm, image: Any) -> Any:
    """``image`` as the processor should get it: reduced (:func:`~attnprompt.families.base.reduced_for`) when it
    is many times the size the model's family resizes it to (``Family.input_size``), else the image itself —
    the processor then converts a bounded copy, not an 8K original, and a normal-sized image is untouched.

    >>> from PIL import Image
    >>> vlm = load_vlm("shapes")
    >>> bounded_input(vlm, Image.new("RGB", (7680, 4320))).size, bounded_input(vlm, Image.new("RGB", (896, 896))).size
    ((960, 540), (896, 896))
    """
    from .families.base import reduced_for

    family = vlm.family_info
    if family is None or not hasattr(image, "reduce"):
        return image
    return reduced_for(image, family.input_size(image.size, vlm.model.config, vlm.processor))


def generate(vlm: LoadedVlm, requests: Sequence[Request], *, capture: Sequence[int] = ()) -> Generation:
    """Greedy answers to ``requests`` in one left-padded batch, each row cut at its first
    end-of-sequence token (:func:`end_of_sequence_ids`; it counts as a step, and is not part of
    the text) or at its own ``max_new_tokens``.

    ``capture`` lists language-model layers whose last-row attention scores are recorded at every
    step (:class:`~attnprompt.capture.AttentionCapture`: SDPA and the KV cache stay).

    A prompt that does not fit the model's context (:func:`context_length`), its images' tokens
    included, is a :class:`PromptTooLongError` before any model work; an answer budget that would run
    past the context is shortened to fit (``Generation.budget``).

    >>> from attnprompt.shapes import make_scene
    >>> from attnprompt.types import Request
    >>> scene = make_scene(7, n_objects=5, size=320)
    >>> request = Request.single(scene.image, "What colour is the circle?", max_new_tokens=3)
    >>> out = generate(load_vlm("shapes"), [request])
    >>> out.texts, out.steps
    (['green'], [2])
    """
    import contextlib

    import torch

    tokenizer = getattr(vlm.processor, "tokenizer", None)
    if tokenizer is not None and tokenizer.padding_side != "left":
        tokenizer.padding_side = "left"  # generation appends on the right
    prompts = [chat_prompt(vlm.processor, r) for r in requests]
    kwargs: dict[str, Any] = dict(text=prompts, padding=True, return_tensors="pt")
    images = [[bounded_input(vlm, image) for image in r.images] for r in requests]
    if any(images):
        kwargs["images"] = images
    inputs = vlm.processor(**kwargs)
    budget = max(r.max_new_tokens for r in requests)
    context = context_length(vlm)
    if context is not None:
        lengths = inputs["attention_mask"].sum(1).tolist() if "attention_mask" in inputs else [
            inputs["input_ids"].shape[1]] * len(requests)
        longest = max(lengths)
        if longest >= context:
            raise PromptTooLongError(
                f"the prompt is {longest} tokens, its images' tokens included, and {vlm.model_id!r} reads at most "
                f"{context} (prompt and answer together); shorten the text or give fewer or smaller images"
            )
        budget = min(budget, context - inputs["input_ids"].shape[1])
    inputs = inputs.to(vlm.model.device)
    if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
        inputs["pixel_values"] = inputs["pixel_values"].to(vlm.model.dtype)
    scores: dict[int, list[Any]] = {}
    if capture:
        from .capture import AttentionCapture

        watch: Any = AttentionCapture(vlm.model, capture)
    else:
        watch = contextlib.nullcontext()
    # log-probabilities only when asked: the logits of every step are then kept (B × vocab each)
    wanted = [r.top_logprobs for r in requests]
    extra = {"output_logits": True, "return_dict_in_generate": True} if any(k is not None for k in wanted) else {}
    with torch.no_grad(), watch:
        out = vlm.model.generate(
            **inputs, max_new_tokens=budget, do_sample=False, temperature=None, top_p=None, top_k=None, **extra
        )
    step_logits = None
    if extra:
        step_logits, out = out.logits, out.sequences
    if capture:
        scores = watch.scores
    eos = end_of_sequence_ids(vlm)
    decode = tokenizer.decode if tokenizer is not None else vlm.processor.decode
    texts, tokens, answers = [], [], []
    for row, request in zip(out[:, inputs["input_ids"].shape[1] :].tolist(), requests):
        row = row[: min(request.max_new_tokens, budget)]
        n = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))  # rows pad after their end
        tokens.append(row[:n])
        answer = row[: n - 1] if row[n - 1 : n] and row[n - 1] in eos else row[:n]
        answers.append(answer)
        texts.append(decode(answer, skip_special_tokens=True).strip())
    # the answer's tokens, as a server reports them (its end-of-sequence token is not part of the text)
    logprobs = [None] * len(requests) if step_logits is None else [
        token_logprobs(vlm, step_logits, b, row, k) if k is not None else None
        for b, (row, k) in enumerate(zip(answers, wanted))]
    return Generation(texts, tokens, inputs, scores, budget, logprobs)


def token_logprobs(vlm: LoadedVlm, step_logits: Sequence[Any], row: int, tokens: Sequence[int],
                   top: int) -> tuple[Any, ...]:
    """Row ``row``'s :class:`~attnprompt.types.TokenLogprob` per generated token: the log-softmax (float32)
    of the step's logits (``step_logits[t]``: B × vocab, the generation's raw ``output_logits``), the chosen
    token's value and the ``top`` most likely tokens, spelt as the tokenizer's vocabulary entries.

    >>> import math, torch
    >>> vlm = load_vlm("shapes")
    >>> logits = [torch.zeros(1, vlm.model.config.get_text_config().vocab_size)]
    >>> t = token_logprobs(vlm, logits, 0, [112], 1)[0]
    >>> t.token, round(t.logprob, 4) == round(-math.log(logits[0].shape[1]), 4), len(t.top)
    ('yes', True, 1)
    """
    import torch

    from .types import TokenLogprob

    tokenizer = getattr(vlm.processor, "tokenizer", vlm.processor)
    out = []
    for t, token in enumerate(tokens):
        lp = torch.log_softmax(step_logits[t][row].float(), dim=-1)
        alternatives = ()
        if top:
            values, ids = torch.topk(lp, min(top, lp.shape[-1]))
            names = tokenizer.convert_ids_to_tokens(ids.tolist())
            alternatives = tuple(zip(names, values.tolist()))
        out.append(TokenLogprob(tokenizer.convert_ids_to_tokens(int(token)), float(lp[int(token)]), alternatives))
    return tuple(out)
