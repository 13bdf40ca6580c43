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
import dataclasses
import functools
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from .checks import check_count
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
def quiet_transformers() -> Iterator[None]:
    """transformers' own messages and progress bars kept out of the terminal while it works for us: the advice
    about optional backends (torchvision, accelerate) on load, its "Loading weights" bar (ours are the bars
    users see), and the tokenizer's "… will result in indexing errors" where we truncate and say so ourselves.
    Errors still show."""
    from transformers.utils import logging as hf_logging

    logger = logging.getLogger("transformers")
    old, bars = logger.level, hf_logging.is_progress_bar_enabled()
    logger.setLevel(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        logger.setLevel(old)
        if bars:
            hf_logging.enable_progress_bar()


_quiet_transformers = quiet_transformers


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
    """Map ``None``/``"auto"``/a name/a torch dtype (or the ``dtype`` of a :class:`LoadOptions`) to a torch dtype;
    without a checkpoint to ask, ``None`` and ``"auto"`` are float32 (:func:`resolve_dtype` asks the checkpoint).

    >>> str(pick_dtype("float64")), str(pick_dtype("auto"))
    ('torch.float64', 'torch.float32')
    """
    import torch

    if isinstance(dtype, (LoadOptions, Mapping)):
        dtype = LoadOptions.of(dtype).dtype
    if dtype is None or dtype == "auto":
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "float64": torch.float64}
    if dtype not in names:
        raise InputError(f"unknown dtype {dtype!r}; valid: auto, {', '.join(names)}")
    return names[dtype]


def checkpoint_dtype(config: Mapping[str, Any]) -> str | None:
    """The dtype a checkpoint's ``config.json`` says its weights are in (``dtype``, or the older ``torch_dtype``;
    a VLM's text config when the top level says nothing), or None.

    >>> checkpoint_dtype({"torch_dtype": "bfloat16"}), checkpoint_dtype({"text_config": {"dtype": "float16"}})
    ('bfloat16', 'float16')
    """
    for where in (config, config.get("text_config") or {}):
        for key in ("dtype", "torch_dtype"):
            value = where.get(key)
            if isinstance(value, str) and value in DTYPES[1:]:
                return value
    return None


def resolve_dtype(dtype: Any, config: Mapping[str, Any] | None = None, device: str = "cpu") -> Any:
    """The torch dtype a model is loaded in: ``"auto"`` is the checkpoint's own (:func:`checkpoint_dtype`, as
    its users load it) on a GPU, and float32 on the CPU (half precision is slow there, and the CPU results
    stay what they were); any other value is :func:`pick_dtype`'s. Needs no device: ``device`` is a name.

    >>> cfg = {"torch_dtype": "bfloat16"}
    >>> [str(resolve_dtype("auto", cfg, d)) for d in ("cuda", "cuda:1", "cpu")] + [str(resolve_dtype("float16", cfg))]
    ['torch.bfloat16', 'torch.bfloat16', 'torch.float32', 'torch.float16']
    """
    if dtype is None or dtype == "auto":
        found = checkpoint_dtype(config or {}) if str(device).split(":")[0] != "cpu" else None
        return pick_dtype(found)
    return pick_dtype(dtype)


#: The dtypes :class:`LoadOptions` takes; ``auto`` (the default) is :func:`resolve_dtype`'s rule.
DTYPES = ("auto", "float32", "float16", "bfloat16", "float64")
#: accelerate's ways to spread a model over the GPUs (and the CPU and disk) it finds.
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")
#: bitsandbytes' weight quantisations (``pip install 'attnprompt[quantize]'``).
QUANTIZATIONS = ("4bit", "8bit")
#: The attention kernels transformers offers every supported family (None: transformers' own choice, SDPA).
ATTENTION_KERNELS = ("sdpa", "flash_attention_2", "eager")
#: How the answering model is given an image its processor would crop (LLaVA-1.5's centre crop): ``pad`` to a
#: square in the processor's mean colour first, as LLaVA-1.5's own evaluation does and api-vlm's map does, so
#: the answer sees the whole image the map covers; or ``processor``, the processor's own resize and crop.
ANSWER_FITS = ("pad", "processor")
#: The ``generate()`` settings a user may set; everything else is greedy decoding's (:data:`GREEDY`).
GENERATION_KEYS = ("do_sample", "temperature", "top_p", "top_k", "min_p", "typical_p", "repetition_penalty",
                   "no_repeat_ngram_size", "num_beams", "length_penalty")
#: Greedy decoding, passed to every ``generate()`` whatever the checkpoint's ``generation_config.json`` says
#: (Qwen-VL's asks for sampling and ``repetition_penalty`` 1.05): one beam, no sampling, no penalty.
GREEDY: dict[str, Any] = {"do_sample": False, "num_beams": 1, "num_return_sequences": 1, "repetition_penalty": 1.0,
                          "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0,
                          "encoder_no_repeat_ngram_size": 0, "min_new_tokens": 0,
                          "length_penalty": 1.0, "guidance_scale": 1.0}
_SAMPLING_ONLY = ("temperature", "top_p", "top_k", "min_p", "typical_p")


@dataclass(frozen=True)
class LoadOptions:
    """How a model is loaded and run — every loading setting, validated here, in one place.

    - ``device``: ``cpu``, ``cuda``, ``cuda:N``, ``mps`` (default: a CUDA GPU if there is one);
    - ``dtype``: ``auto`` (default: the checkpoint's own on a GPU, float32 on the CPU; :func:`resolve_dtype`),
      ``float32``, ``float16``, ``bfloat16``, ``float64`` (a torch dtype is taken too);
    - ``device_map``: ``auto`` / ``balanced`` / ``balanced_low_0`` / ``sequential``: accelerate shards the model
      over the GPUs, offloading to the CPU and disk what does not fit (instead of ``device``);
    - ``quantize``: ``4bit`` (NF4) or ``8bit`` weights through bitsandbytes (``pip install 'attnprompt[quantize]'``);
    - ``attn_implementation``: ``sdpa``, ``flash_attention_2`` or ``eager`` for every attention layer (default:
      transformers' choice, SDPA); api-vlm and CARVE still read exact rows from the layers they capture;
    - ``max_pixels`` / ``min_pixels``: Qwen-VL's pixel budget per image (default max: lmms-eval's for the family,
      :attr:`attnprompt.families.qwen_vl.QwenVl.max_pixels`; min: the checkpoint's);
    - ``answer_fit``: ``pad`` (default) or ``processor``: how the answering model gets an image its processor
      would crop (LLaVA-1.5; :data:`ANSWER_FITS`);
    - ``generation``: ``generate()`` settings to use instead of pure greedy decoding (:data:`GENERATION_KEYS`),
      a mapping; by default every answer and map is greedy whatever the checkpoint's generation config says.

    :meth:`describe` is what configurations record; the defaults record nothing.

    >>> LoadOptions(dtype="bfloat16", attn_implementation="sdpa").describe()
    {'attn_implementation': 'sdpa'}
    >>> LoadOptions(quantize="3bit")
    Traceback (most recent call last):
    attnprompt.errors.InputError: quantize must be one of 4bit, 8bit (or None: full weights); got '3bit'
    """

    device: str | None = None
    dtype: str = "auto"
    device_map: str | None = None
    quantize: str | None = None
    attn_implementation: str | None = None
    max_pixels: int | None = None
    min_pixels: int | None = None
    answer_fit: str = "pad"
    generation: tuple[tuple[str, Any], ...] | Mapping[str, Any] = ()  # a mapping given is kept as its pairs

    def __post_init__(self) -> None:
        put = functools.partial(object.__setattr__, self)
        if self.device is not None:
            if not isinstance(self.device, str):
                put("device", str(self.device))  # a torch.device
            if not self.device.strip():
                raise InputError("device must be cpu, cuda, cuda:N or mps (or None: a GPU if there is one)")
        if self.dtype is None:
            put("dtype", "auto")
        elif not isinstance(self.dtype, str):
            put("dtype", str(self.dtype).removeprefix("torch."))  # a torch.dtype
        _choice("dtype", self.dtype, DTYPES)
        for name, valid, none in (("device_map", DEVICE_MAPS, "one device: give device instead"),
                                  ("quantize", QUANTIZATIONS, "full weights"),
                                  ("attn_implementation", ATTENTION_KERNELS, "transformers' choice, sdpa")):
            if getattr(self, name) is not None:
                _choice(name, getattr(self, name), valid, f" (or None: {none})")
        if self.device_map is not None and self.device is not None:
            raise InputError(f"give device ({self.device}) or device_map ({self.device_map}), not both: a device "
                             "map places the model itself")
        _choice("answer_fit", self.answer_fit, ANSWER_FITS)
        for name in ("max_pixels", "min_pixels"):
            if getattr(self, name) is not None:
                put(name, check_count(name, getattr(self, name)))
        if self.max_pixels is not None and self.min_pixels is not None and self.min_pixels > self.max_pixels:
            raise InputError(f"min_pixels {self.min_pixels} is above max_pixels {self.max_pixels}")
        put("generation", _check_generation(self.generation))

    @classmethod
    def of(cls, loading: Any = None, *, device: Any = None, dtype: Any = None) -> LoadOptions:
        """The options meant by what a caller gave: ``loading`` (a LoadOptions, a mapping, or None) and the older
        ``device=`` / ``dtype=`` keywords (``dtype`` may itself carry a whole LoadOptions or mapping: the settings
        plumbing passes it that way). A keyword that contradicts ``loading`` is an error.

        >>> LoadOptions.of({"quantize": "8bit"}, device="cuda:1").device
        'cuda:1'
        >>> LoadOptions.of(dtype=LoadOptions(dtype="float16")).dtype
        'float16'
        """
        if isinstance(dtype, (LoadOptions, Mapping)):
            if loading is not None:
                raise InputError("give the loading settings once: as loading=, or (what older callers do) as dtype=")
            loading, dtype = dtype, None
        if loading is None:
            options = cls()
        elif isinstance(loading, LoadOptions):
            options = loading
        elif isinstance(loading, Mapping):
            options = cls.from_mapping(loading)
        else:
            raise InputError(f"loading settings are a LoadOptions or a mapping of its fields; got "
                             f"{type(loading).__name__}")
        changes: dict[str, Any] = {}
        for name, value in (("device", device), ("dtype", dtype)):
            if value is None or value == "auto":
                continue
            value = value if isinstance(value, str) else str(value).removeprefix("torch.")
            current = getattr(options, name)
            if current not in (None, "auto") and current != value:
                raise InputError(f"{name} given twice: {value!r} and {current!r} in the loading settings")
            changes[name] = value
        return dataclasses.replace(options, **changes) if changes else options

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> LoadOptions:
        """Options from a mapping of field names to values; strings as a command line or lmms-eval's
        ``--model_args`` give them are read (``"1605632"``, ``"none"``); an unknown name is an error.

        >>> LoadOptions.from_mapping({"max_pixels": "1605632", "quantize": "none"}).max_pixels
        1605632
        >>> LoadOptions.from_mapping({"dtyp": "bf16"})
        Traceback (most recent call last):
        attnprompt.errors.InputError: unknown loading setting 'dtyp'; valid: device, dtype, device_map, \
quantize, attn_implementation, max_pixels, min_pixels, answer_fit, generation
        """
        names = [f.name for f in dataclasses.fields(cls)]
        values: dict[str, Any] = {}
        for key, value in mapping.items():
            if key not in names:
                raise InputError(f"unknown loading setting {key!r}; valid: {', '.join(names)}")
            if isinstance(value, str) and value.strip().lower() in ("", "none", "null"):
                value = None if key != "dtype" else "auto"
            if key in ("max_pixels", "min_pixels") and isinstance(value, str):
                try:
                    value = int(value.replace("_", ""))
                except ValueError:
                    raise InputError(f"{key} must be a whole number of pixels; got {value!r}") from None
            values[key] = value
        return cls(**values)

    def describe(self) -> dict[str, Any]:
        """The settings that change what a model says and that are not their defaults — what a configuration
        records (the resolved dtype is recorded by whoever loaded the model; the device is not recorded).

        >>> LoadOptions().describe(), LoadOptions(answer_fit="processor", generation={"top_p": 0.9,
        ...                                                                       "do_sample": True}).describe()
        ({}, {'answer_fit': 'processor', 'generation': {'do_sample': True, 'top_p': 0.9}})
        """
        out: dict[str, Any] = {}
        for name in ("quantize", "attn_implementation", "max_pixels", "min_pixels"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        if self.answer_fit != "pad":
            out["answer_fit"] = self.answer_fit
        if self.generation:
            out["generation"] = dict(self.generation)
        return out

    def generate_kwargs(self) -> dict[str, Any]:
        """What every ``generate()`` call gets: :data:`GREEDY`, then the user's own ``generation`` settings.

        >>> LoadOptions(generation={"repetition_penalty": 1.05}).generate_kwargs()["repetition_penalty"]
        1.05
        """
        return {**GREEDY, **dict(self.generation)}


def _choice(name: str, value: Any, valid: Sequence[str], extra: str = "") -> None:
    if value not in valid:
        raise InputError(f"{name} must be one of {', '.join(valid)}{extra}; got {value!r}")


def _check_generation(generation: Any) -> tuple[tuple[str, Any], ...]:
    if generation is None:
        return ()
    if isinstance(generation, tuple) and all(isinstance(p, tuple) and len(p) == 2 for p in generation):
        generation = dict(generation)
    if not isinstance(generation, Mapping):
        raise InputError(f"generation settings are a mapping like {{'repetition_penalty': 1.05}}; got "
                         f"{type(generation).__name__}")
    for key, value in generation.items():
        if key not in GENERATION_KEYS:
            raise InputError(f"unknown generation setting {key!r}; valid: {', '.join(GENERATION_KEYS)} (anything "
                             "else is greedy decoding's)")
        want = bool if key == "do_sample" else (int if key in ("top_k", "no_repeat_ngram_size", "num_beams") else float)
        ok = isinstance(value, bool) if want is bool else (
            isinstance(value, (int, float)) and not isinstance(value, bool) and (want is float or value == int(value)))
        if not ok:
            raise InputError(f"generation setting {key} must be {'true or false' if want is bool else 'a number'}"
                             f"{' (a whole one)' if want is int else ''}; got {value!r}")
    sampling = [k for k in _SAMPLING_ONLY if k in generation]
    if sampling and not generation.get("do_sample"):
        raise InputError(f"{', '.join(sampling)}: settings of sampled answers; set do_sample too (true), or leave "
                         "them out for greedy decoding")
    return tuple(sorted((k, int(v) if isinstance(v, float) and k in ("top_k", "no_repeat_ngram_size", "num_beams")
                         else v) for k, v in generation.items()))


def parse_generation(text: str) -> dict[str, Any]:
    """``KEY=VALUE,…`` (the command line's ``--generation``) → a mapping for :attr:`LoadOptions.generation`.

    >>> parse_generation("do_sample=true, temperature=0.7,top_k=5")
    {'do_sample': True, 'temperature': 0.7, 'top_k': 5}
    """
    out: dict[str, Any] = {}
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep:
            raise InputError(f"generation setting {part!r} is not KEY=VALUE (e.g. repetition_penalty=1.05)")
        value = value.strip()
        low = value.lower()
        if low in ("true", "false"):
            out[key.strip()] = low == "true"
            continue
        try:
            out[key.strip()] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            raise InputError(f"generation setting {key.strip()}: {value!r} is not a number or true/false") from None
    return out


def _weights_kwargs(options: LoadOptions, config: Mapping[str, Any], purpose: str) -> tuple[dict[str, Any], str | None]:
    """``from_pretrained``'s keywords for ``options`` (dtype, attention kernel, quantisation, device map) and the
    device to move the model to afterwards (None: the device map placed it). Everything that cannot work is an
    error here, before a byte of weights is read."""
    import importlib.util

    from .errors import import_optional

    if options.device_map is not None:
        import torch

        dev = None
        # what "auto" resolves its dtype for: the GPUs the map spreads over (on a machine without one, the CPU)
        target = "cuda" if torch.cuda.is_available() else "cpu"
    else:
        dev = pick_device(options.device)
        target = dev
    dt = resolve_dtype(options.dtype, config, target)
    kwargs: dict[str, Any] = {"dtype": dt}
    if options.attn_implementation is not None:
        if options.attn_implementation == "flash_attention_2":
            if importlib.util.find_spec("flash_attn") is None:
                raise InputError("attn_implementation flash_attention_2 needs the flash-attn package "
                                 "(pip install flash-attn) and a CUDA GPU; use sdpa (the default) or eager")
            if dev is not None and not dev.startswith("cuda"):
                raise InputError(f"attn_implementation flash_attention_2 runs on CUDA GPUs, not {dev}; use sdpa "
                                 "(the default) or eager")
        kwargs["attn_implementation"] = options.attn_implementation
    if options.quantize is not None:
        import_optional("bitsandbytes", "quantize", f"{purpose} with quantize={options.quantize}")
        import_optional("accelerate", "quantize", f"{purpose} with quantize={options.quantize}")
        from transformers import BitsAndBytesConfig

        if options.quantize == "4bit":
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                                               bnb_4bit_compute_dtype=dt)
        else:
            kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
    accelerate = importlib.util.find_spec("accelerate") is not None
    if options.device_map is not None:
        import_optional("accelerate", "gpu", f"{purpose} with device_map={options.device_map}")
        kwargs["device_map"] = options.device_map
        dev = None
    elif options.quantize is not None or (dev != "cpu" and accelerate):
        # straight onto the device, one tensor at a time: no full copy of the weights in CPU memory first
        kwargs["device_map"] = dev
        dev = None
    return kwargs, dev


@dataclass(frozen=True)
class LoadedClip:
    """A CLIP checkpoint ready for attribution: model (eval mode), tokenizer, image statistics, and the
    :class:`LoadOptions` it was loaded with.

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
    options: LoadOptions = LoadOptions()

    def record(self) -> dict[str, Any]:
        """How it was loaded, where that is not the default (its dtype unless float32, its attention kernel):
        what api-clip's configuration records beside the model's name.

        >>> load_clip("shapes").record()
        {}
        """
        return _record(self.model, self.options.describe())


def _record(model: Any, described: dict[str, Any]) -> dict[str, Any]:
    dtype = str(getattr(model, "dtype", "torch.float32")).removeprefix("torch.")
    return {**({"dtype": dtype} if dtype != "float32" else {}), **described}


def load_clip(name: str | None = None, *, device: str | None = None, dtype: Any = None,
              loading: LoadOptions | Mapping[str, Any] | None = None) -> LoadedClip:
    """Load (once) a ``transformers`` CLIP checkpoint by hub id, local path or embedded name, as ``loading``
    (a :class:`LoadOptions`; ``device=`` / ``dtype=`` are its fields as keywords) says: its device, dtype, device
    map and attention kernel; never quantised (api-clip reads the weights themselves), and the settings of a VLM's
    answers and image processor do not apply.

    >>> load_clip("shapes").model.config.vision_config.image_size
    192
    """
    options = LoadOptions.of(loading, device=device, dtype=dtype)
    name = name or DEFAULT_CLIP
    location, cfg = read_config(name, "clip")
    if cfg and cfg.get("model_type") != "clip":
        raise UnsupportedModelError(
            f"model {name!r} is a {cfg.get('model_type')!r} checkpoint; api-clip needs a CLIP model "
            f"(model_type 'clip', e.g. {DEFAULT_CLIP}); " + _help("clip")
        )
    # What is a VLM's alone (how it answers, its image processor's bounds) does not apply; nor does quantize:
    # api-clip splits CLIP's attention output exactly through its weights, so a CLIP (small) loads them whole.
    options = LoadOptions(device=options.device, dtype=options.dtype, device_map=options.device_map,
                          attn_implementation=options.attn_implementation)
    kwargs, dev = _weights_kwargs(options, cfg, f"loading {name!r}")

    def build() -> LoadedClip:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        model = from_pretrained(CLIPModel.from_pretrained, name, location, "clip", **kwargs)
        tokenizer = from_pretrained(AutoTokenizer.from_pretrained, name, location, "clip")
        processor = from_pretrained(AutoImageProcessor.from_pretrained, name, location, "clip")
        model.eval()
        if dev is not None:
            model.to(dev)
        return LoadedClip(
            model=model,
            tokenizer=tokenizer,
            image_mean=cast("tuple[float, float, float]", tuple(float(x) for x in processor.image_mean)),
            image_std=cast("tuple[float, float, float]", tuple(float(x) for x in processor.image_std)),
            model_id=name,
            location=location,
            options=options,
        )

    return _cached(("clip", location, *_model_key(kwargs, dev)), build)


def _model_key(kwargs: dict[str, Any], dev: str | None) -> tuple:
    """What decides the loaded weights: the device (or device map), dtype, kernel and quantisation."""
    quant = kwargs.get("quantization_config")
    return (dev, str(kwargs.get("device_map")), str(kwargs["dtype"]), kwargs.get("attn_implementation"),
            None if quant is None else quant.to_json_string(use_diff=True))


@dataclass(frozen=True)
class LoadedVlm:
    """A vision-language model ready to generate: model (eval mode), processor, family, and the
    :class:`LoadOptions` it was loaded with (which also say how it answers: greedy unless ``generation`` says
    otherwise, LLaVA-1.5's images padded to a square unless ``answer_fit`` says otherwise).

    ``family`` is the name of its :mod:`attnprompt.families` family (what configurations record), or ``None``
    for a model that can answer but whose image-token layout api-vlm does not know. ``pixels`` are the pixel
    bounds in force on its image processor (Qwen-VL's ``max_pixels`` / ``min_pixels``), where it has them.

    >>> vlm = load_vlm("shapes")
    >>> vlm.family, vlm.family_info.native_side(vlm.model.config, vlm.processor), vlm.options.answer_fit
    ('llava', 128, 'pad')
    """

    model: Any
    processor: Any
    family: str | None
    model_id: str
    location: str
    options: LoadOptions = LoadOptions()
    pixels: tuple[tuple[str, int], ...] = ()

    @property
    def family_info(self) -> Family | None:
        """Everything attnprompt knows about the model's family (:class:`attnprompt.families.Family`), found by
        its config's ``model_type`` (else by ``family``, a name that is also a model_type); ``None`` for a model
        api-vlm cannot lay out.

        >>> load_vlm("shapes").family_info.name
        'llava'
        """
        return family_of(getattr(self.model.config, "model_type", None)) or family_of(self.family)

    def record(self) -> dict[str, Any]:
        """How it was loaded and runs, where that is not the default: its dtype unless float32, the pixel bounds
        in force, and the non-default :class:`LoadOptions` (:meth:`LoadOptions.describe`) — what configurations
        record beside the model's name.

        >>> load_vlm("shapes").record()
        {}
        """
        return {**_record(self.model, {}), **dict(self.pixels),
                **{k: v for k, v in self.options.describe().items() if k not in ("max_pixels", "min_pixels")}}


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
    return sorted(t for t in FAMILIES.names() if (f := family_of(t)) is not None and f.image_only_processor)


def _image_only_family(model_type: str | None) -> tuple[Family, str]:
    """``model_type``'s family and the name of its image-only processor class in transformers."""
    family = family_of(model_type)
    if family is None or family.image_only_processor is None:
        raise UnsupportedModelError(f"no image-only processor for model_type {model_type!r}; valid: "
                                    f"{', '.join(_image_only_types())}")
    return family, family.image_only_processor


def image_only_processor(model_type: str | None, image_processor: Any, tokenizer: Any, chat_template: str | None,
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

    base = getattr(transformers, _image_only_family(model_type)[1])

    class ImageOnlyProcessor(base):  # type: ignore[misc, valid-type]
        def check_argument_for_proper_class(self, argument_name: str, argument: Any) -> Any:
            if argument_name == "video_processor" and argument is None:
                return None
            return super().check_argument_for_proper_class(argument_name, argument)

    ImageOnlyProcessor.__name__ = base.__name__
    parts: dict[str, Any] = {"image_processor": image_processor, "tokenizer": tokenizer}
    if "video_processor" in base.get_attributes():
        parts["video_processor"] = None
    return ImageOnlyProcessor(**parts, chat_template=chat_template, **settings)


def _image_only_from_checkpoint(name: str, location: str, model_type: str | None, config: Any) -> Any:
    import inspect

    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer

    with _quiet_transformers():
        image_processor = from_pretrained(AutoImageProcessor.from_pretrained, name, location, "vlm")
        tokenizer = from_pretrained(AutoTokenizer.from_pretrained, name, location, "vlm")
    template = _read_chat_template(location) or getattr(tokenizer, "chat_template", None)
    family, processor_class = _image_only_family(model_type)
    settings = family.processor_settings(config) if config is not None else {}
    saved = Path(location) / "processor_config.json"
    if saved.is_file():  # the checkpoint's own settings win over what the model config implies
        accepted = inspect.signature(getattr(transformers, processor_class).__init__).parameters
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


def load_vlm(name: str | None = None, *, device: str | None = None, dtype: Any = None,
             loading: LoadOptions | Mapping[str, Any] | None = None) -> LoadedVlm:
    """Load (once) an image-text-to-text model and its processor by hub id, path or embedded name, as ``loading``
    (a :class:`LoadOptions`; ``device=`` / ``dtype=`` are its fields as keywords) says: in the checkpoint's own
    dtype on a GPU (``auto``), straight onto the device, quantised, sharded or with another attention kernel if
    asked; the image processor within the family's pixel budget (:meth:`Family.pixel_budget`). One model object
    serves every set of options that loads the same weights.

    >>> load_vlm("shapes-vlm").family
    'llava'
    """
    options = LoadOptions.of(loading, device=device, dtype=dtype)
    name = name or DEFAULT_VLM
    location, cfg = read_config(name, "vlm")
    model_type = cfg.get("model_type")
    if cfg and model_type in ("clip", "clip_vision_model", "siglip"):
        raise UnsupportedModelError(
            f"model {name!r} is a {model_type!r} checkpoint, not a vision-language model that generates text "
            f"(e.g. {DEFAULT_VLM}); " + _help("vlm")
        )
    kwargs, dev = _weights_kwargs(options, cfg, f"loading {name!r}")
    model_key = ("vlm-model", location, *_model_key(kwargs, dev))

    def build_model() -> Any:
        from transformers import AutoModelForImageTextToText

        model = from_pretrained(AutoModelForImageTextToText.from_pretrained, name, location, "vlm", **kwargs)
        model.eval()
        if dev is not None:
            model.to(dev)
        return model

    def build() -> LoadedVlm:
        return wrap_vlm(_cached(model_key, build_model), name, loading=options)

    # options that load the same weights share the model; the device and dtype are in the model's key, resolved
    return _cached(("vlm", location, *_model_key(kwargs, dev), dataclasses.replace(options, device=None, dtype="auto")),
                   build)


def wrap_vlm(model: Any, name: str, *, loading: LoadOptions | Mapping[str, Any] | None = None) -> LoadedVlm:
    """A model built or loaded some other way (random weights to measure memory, your own device placement, an
    adapter) with the processor of checkpoint ``name`` (a directory or hub id that has one), made ready as
    :func:`load_vlm` makes its own: left padding, the family's pixel budget, greedy decoding (the model's generation
    config keeps only its token ids; :func:`greedy_generation_config`). ``loading`` gives what of
    :class:`LoadOptions` concerns the processor and the answers (its device and dtype are the model's business).

    >>> vlm = wrap_vlm(load_vlm("shapes").model, "shapes")
    >>> vlm.family, vlm.model is load_vlm("shapes").model
    ('llava', True)
    """
    options = LoadOptions.of(loading)
    location, _ = read_config(name, "vlm")
    model.generation_config = greedy_generation_config(model.generation_config)
    processor = _load_processor(name, location, model.config.model_type, model.config)
    tok = getattr(processor, "tokenizer", None)
    if tok is not None:
        tok.padding_side = "left"  # batched generation appends on the right
    family = family_of(model.config.model_type)
    if family is None and (options.max_pixels or options.min_pixels):
        raise InputError(f"max_pixels and min_pixels bound Qwen-VL's image processor; {name!r} is a "
                         f"{model.config.model_type!r} model")
    pixels = family.pixel_budget(processor, options.max_pixels, options.min_pixels) if family else {}
    return LoadedVlm(model, processor, family.name if family else None, name, location, options,
                     tuple(sorted(pixels.items())))


def greedy_generation_config(checkpoint: Any) -> Any:
    """A generation config that keeps only a checkpoint's token ids (start, end, padding) and drops everything
    else it asks for (sampling, penalties, beams …): ``generate()`` fills whatever a call leaves unset from the
    model's own config, so greedy decoding is only greedy once the checkpoint's wishes are gone
    (:data:`GREEDY` is then set on every call; :attr:`LoadOptions.generation` is the way to ask for more).

    >>> from transformers import GenerationConfig
    >>> g = greedy_generation_config(GenerationConfig(eos_token_id=[2, 7], repetition_penalty=1.05, do_sample=True))
    >>> g.eos_token_id, g.repetition_penalty, g.do_sample
    ([2, 7], None, None)
    """
    from transformers import GenerationConfig

    keep = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")
    ids = {k: getattr(checkpoint, k, None) for k in keep}
    return GenerationConfig(**{k: v for k, v in ids.items() if v is not None})


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
    if not hasattr(image, "reduce"):
        return image
    factor = input_factor(vlm, image.size)
    from .images import reduced

    return reduced(image, factor)


def input_factor(vlm: LoadedVlm, size: tuple[int, int]) -> int:
    """The integer factor by which :func:`bounded_input` reduces an image of ``size`` (W, H) for ``vlm``'s processor
    (:func:`~attnprompt.families.base.reduction_factor` of its family's ``input_size``): 1 leaves it as it is.

    >>> vlm = load_vlm("shapes")
    >>> input_factor(vlm, (7680, 4320)), input_factor(vlm, (896, 896))
    (8, 1)
    """
    from .families.base import reduction_factor

    family = vlm.family_info
    if family is None:
        return 1
    return reduction_factor(size, family.input_size(size, vlm.model.config, vlm.processor))


def answer_input(vlm: LoadedVlm, image: Any, fit: str | None = None) -> Any:
    """``image`` as the model is given it: prepared as its family says for ``fit`` (default the model's
    :attr:`LoadOptions.answer_fit`; LLaVA-1.5 with ``pad``: padded to a square in the processor's mean colour, so
    its processor's centre crop keeps the whole image, as the map covers it), then :func:`bounded_input`.

    >>> from PIL import Image
    >>> vlm = load_vlm("shapes")
    >>> answer_input(vlm, Image.new("RGB", (200, 100))).size, answer_input(vlm, Image.new("RGB", (200, 100)),
    ...                                                                    "processor").size
    ((200, 200), (200, 100))
    """
    family = vlm.family_info
    if family is not None and hasattr(image, "size"):
        image = family.prepare(image, vlm.processor, fit or vlm.options.answer_fit)[0]
    return bounded_input(vlm, image)


def generate(vlm: LoadedVlm, requests: Sequence[Request], *, capture: Sequence[int] = (),
             fit: str | None = None, share_prefix: bool = False) -> Generation:
    """Greedy answers to ``requests`` in one left-padded batch, each row cut at its first
    end-of-sequence token (:func:`end_of_sequence_ids`; it counts as a step, and is not part of
    the text) or at its own ``max_new_tokens``.

    Greedy means greedy: :data:`GREEDY` on every call, whatever the checkpoint's generation config asks, unless
    the model's :attr:`LoadOptions.generation` says otherwise. Each image is given as :func:`answer_input` says
    for ``fit`` (default the model's ``answer_fit``). The prompt's token ids are those of the documented
    ``processor.apply_chat_template(..., tokenize=True)``: one ``<bos>``, whether the chat template writes it
    or the tokenizer adds it.

    ``capture`` lists language-model layers whose last-row attention scores are recorded at every
    step (:class:`~attnprompt.capture.AttentionCapture`: the KV cache and the model's attention kernel stay).

    ``share_prefix``: rows whose requests show the very same image objects share the prompt up to the end of their
    image tokens — the image encoded once and that prefix prefilled once, its KV cache given to each row, which
    then goes on from its own text (:func:`shared_prefix`; where a model's cache cannot be shared exactly, the
    plain batch). The answers and captured scores are those of the plain batch, to float rounding.

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

    settings = vlm.options.generate_kwargs()
    if capture and settings["num_beams"] != 1:
        raise InputError(f"api-vlm and carve read the attention of one generated answer; num_beams must be 1, "
                         f"not {settings['num_beams']}")
    inputs, budget = _batch_inputs(vlm, requests, fit)
    given, cache = inputs, None
    if share_prefix:
        shared = shared_prefix(vlm, requests, inputs, fit)
        if shared is not None:
            inputs, given, cache = shared
    scores: dict[int, list[Any]] = {}
    if capture:
        from .capture import AttentionCapture

        watch: Any = AttentionCapture(vlm.model, capture)
    else:
        watch = contextlib.nullcontext()
    # log-probabilities only when asked: the logits of every step are then kept (B × vocab each)
    wanted = [r.top_logprobs for r in requests]
    extra = {"output_logits": True, "return_dict_in_generate": True} if any(k is not None for k in wanted) else {}
    if extra and settings.get("num_beams", 1) != 1:
        raise InputError("token log-probabilities are read from greedy or sampled generation, one row per request; "
                         f"the generation settings ask for beam search (num_beams={settings['num_beams']})")
    if cache is not None:
        extra["cache"] = cache
    with torch.no_grad(), watch:
        out = vlm.model.generate(**given, max_new_tokens=budget, **settings, **extra)
    step_logits = None
    if "output_logits" in extra:
        step_logits, out = out.logits, out.sequences
    if capture:
        scores = watch.scores
    texts, tokens, answers = _decoded(vlm, requests, out[:, inputs["input_ids"].shape[1] :].tolist(), budget)
    logprobs = [None] * len(requests) if step_logits is None else [
        token_logprobs(vlm, step_logits, b, row, k) if k is not None else None
        for b, (row, k) in enumerate(zip(answers, wanted))]
    return Generation(texts, tokens, inputs, scores, budget, logprobs)


def _batch_inputs(vlm: LoadedVlm, requests: Sequence[Request], fit: str | None) -> tuple[Any, int]:
    """The processor's left-padded batch for ``requests`` on the model's device, and the answer budget that fits
    the model's context (:func:`generate`)."""
    tokenizer = getattr(vlm.processor, "tokenizer", None)
    if tokenizer is not None and tokenizer.padding_side != "left":
        tokenizer.padding_side = "left"  # generation appends on the right
    inputs = vlm.processor(**_processor_kwargs(vlm, requests, fit))
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
    return inputs, budget


def _processor_kwargs(vlm: LoadedVlm, requests: Sequence[Request], fit: str | None) -> dict[str, Any]:
    """The processor's arguments for ``requests``: their chat prompts, padded, and their images as
    :func:`answer_input` gives them."""
    tokenizer = getattr(vlm.processor, "tokenizer", None)
    prompts = [chat_prompt(vlm.processor, r) for r in requests]
    kwargs: dict[str, Any] = dict(text=prompts, padding=True, return_tensors="pt")
    bos = getattr(tokenizer, "bos_token", None)
    if bos and prompts and prompts[0].startswith(bos):
        # the chat template wrote <bos> (Gemma 3): the tokenizer must not add a second, as apply_chat_template does
        kwargs["add_special_tokens"] = False
    images = [[answer_input(vlm, image, fit) for image in r.images] for r in requests]
    if any(images):
        kwargs["images"] = images
    return kwargs


#: The processor's outputs that hold one value per prompt token: laid out anew when rows share a prefix.
TOKEN_INPUTS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")


def shared_prefix(vlm: LoadedVlm, requests: Sequence[Request], inputs: Any,
                  fit: str | None = None) -> tuple[Any, dict[str, Any], Any] | None:
    """Rows that show the very same image objects, prefilled once (:func:`generate`'s ``share_prefix``).

    The rows are grouped by their images; a group's prefix is the longest run of tokens its prompts share, which
    must hold every image token (the chat template puts the images before the text), short of each row's last
    token. Each group's prefix runs once, alone (the vision tower encodes its images once), and its KV cache is
    copied to the group's rows; every row is laid out ``[pad][prefix][pad][own text]`` with the padding masked, so
    positions count real tokens only, as in the left-padded batch. Returns the batch's inputs laid out so (for
    reading the image tokens), what :meth:`generate` is given (the token inputs: no pixels), and the joined cache;
    None — use the plain batch — when no two rows share their images, a row shows none, the prefix does not hold
    the image tokens, or the model's cache is not one that can be joined exactly.
    """
    import torch

    groups: dict[tuple, list[int]] = {}
    for row, request in enumerate(requests):
        groups.setdefault(tuple(id(image) for image in request.images), []).append(row)
    family = vlm.family_info
    if family is None or () in groups or all(len(rows) == 1 for rows in groups.values()):
        return None
    mask = inputs["attention_mask"].bool()
    real = [inputs["input_ids"][b][mask[b]] for b in range(len(requests))]
    image_token = family.image_token_id(vlm.model.config)
    lengths, group_of = [], [0] * len(requests)
    for g, rows in enumerate(groups.values()):
        # each row keeps at least its last token to run after the prefix (a row alone: all the rest is prefix)
        n = min(_common_length([real[b] for b in rows]), min(len(real[b]) for b in rows) - 1)
        tokens = (real[rows[0]] == image_token).nonzero()
        if len(tokens) == 0 or int(tokens.max()) >= n:
            return None
        lengths.append(n)
        for b in rows:
            group_of[b] = g
    laid = dict(inputs)
    for key in TOKEN_INPUTS:
        if key in inputs:
            laid[key] = _laid_out(inputs[key], mask, lengths, group_of, _pad_value(vlm, key))
    longest = laid["input_ids"].shape[1] + max(r.max_new_tokens for r in requests)
    if _outgrows_window(vlm, longest):
        return None
    caches, deltas = [], []
    for rows, n in zip(groups.values(), lengths):
        prefilled = _prefill(vlm, requests[rows[0]], real[rows[0]], n, fit)
        if prefilled is None:
            return None
        caches.append(prefilled[0])
        deltas.append(prefilled[1])
    cache = _joined(caches, lengths, torch.tensor(group_of, device=inputs["input_ids"].device), longest)
    if cache is None:
        return None
    if deltas[0] is not None:  # M-RoPE (Qwen-VL): the text's position offset after each row's images
        vlm.model.model.rope_deltas = torch.cat([deltas[g] for g in group_of])
    return type(inputs)(laid), {k: laid[k] for k in TOKEN_INPUTS if k in laid}, cache


def _outgrows_window(vlm: LoadedVlm, longest: int) -> bool:
    """Whether rows of ``longest`` tokens would outgrow the sliding window of some of the language model's layers
    (Gemma 3): such a window counts the padding of the shared layout, so its rows would not see what they see in the
    plain batch."""
    config = vlm.model.config.get_text_config()
    window = getattr(config, "sliding_window", None) or 0
    sliding = "sliding_attention" in (getattr(config, "layer_types", None) or ())
    return bool(window) and sliding and longest >= int(window) - 1


def _common_length(rows: Sequence[Any]) -> int:
    """How many leading tokens all ``rows`` (1-D tensors) share."""
    n = min(len(r) for r in rows)
    for r in rows[1:]:
        differ = (r[:n] != rows[0][:n]).nonzero()
        n = int(differ[0]) if len(differ) else n
    return n


def _pad_value(vlm: LoadedVlm, key: str) -> int:
    pad = getattr(getattr(vlm.processor, "tokenizer", None), "pad_token_id", None)
    return int(pad or 0) if key == "input_ids" else 0


def _prefill(vlm: LoadedVlm, request: Request, ids: Any, n: int, fit: str | None) -> tuple[Any, Any] | None:
    """The KV cache of the first ``n`` tokens of ``request``'s prompt (whose tokens are ``ids``), run alone with its
    images, and the model's M-RoPE offset after it if it keeps one (Qwen-VL), else None; None if the processor
    gives the request alone other tokens than in the batch."""
    import inspect

    kwargs = _processor_kwargs(vlm, [request], fit)
    one = vlm.processor(**{k: v for k, v in kwargs.items() if k != "padding"})
    if not one["input_ids"][0].tolist() == ids.tolist():
        return None
    one = {k: (v[:, :n] if k in TOKEN_INPUTS else v) for k, v in one.to(vlm.model.device).items()}
    if "pixel_values" in one and one["pixel_values"].is_floating_point():
        one["pixel_values"] = one["pixel_values"].to(vlm.model.dtype)
    if "logits_to_keep" in inspect.signature(vlm.model.forward).parameters:
        one["logits_to_keep"] = 1  # the prefix's logits are never read
    out = vlm.model(**one, use_cache=True)
    cache = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
    delta = getattr(getattr(vlm.model, "model", None), "rope_deltas", None)
    return cache, None if delta is None else delta.clone()


def _laid_out(values: Any, mask: Any, lengths: Sequence[int], group_of: Sequence[int], fill: int) -> Any:
    """Each row's real values (``mask``) laid out ``[fill][prefix][fill][rest]``: its group's prefix of
    ``lengths[g]`` values right-aligned on the longest prefix, its rest right-aligned on the longest rest."""
    import torch

    reals = [values[b][mask[b]] for b in range(len(group_of))]
    prefix = max(lengths)
    rest = max(len(r) - lengths[g] for r, g in zip(reals, group_of))
    rows = []
    for r, g in zip(reals, group_of):
        n = lengths[g]
        gap, tail = prefix - n, rest - (len(r) - n)
        rows.append(torch.cat([r.new_full((gap,), fill), r[:n], r.new_full((tail,), fill), r[n:]]))
    return torch.stack(rows)


def _joined(caches: Sequence[Any], lengths: Sequence[int], group_of: Any, longest: int) -> Any:
    """The groups' prefix caches as one batch cache, row ``b`` holding group ``group_of[b]``'s, each left-padded to
    the longest prefix (the padding is masked); None if a cache is not one whose tensors can be joined exactly — a
    layer of another kind, or a sliding window the rows would outgrow (its window would count the padding)."""
    import torch
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    joined, prefix = caches[0], max(lengths)
    for i, layer in enumerate(joined.layers):
        kinds = [type(c.layers[i]) for c in caches]
        if any(k not in (DynamicLayer, DynamicSlidingWindowLayer) for k in kinds) or not layer.is_initialized:
            return None
        if isinstance(layer, DynamicSlidingWindowLayer) and longest >= layer.sliding_window - 1:
            return None
        for name in ("keys", "values"):
            parts = [torch.nn.functional.pad(getattr(c.layers[i], name), (0, 0, prefix - n, 0))
                     for c, n in zip(caches, lengths)]
            setattr(layer, name, torch.cat(parts).index_select(0, group_of))
        if isinstance(layer, DynamicSlidingWindowLayer):
            layer.cumulative_length = prefix
    return joined


@contextlib.contextmanager
def shared_image_features(vlm: LoadedVlm) -> Iterator[None]:
    """Inside the block, the vision tower encodes each distinct image once: the features of every row of pixels it
    is given (one image or crop: :attr:`~attnprompt.families.base.Family.vision_per_row`) are kept, keyed by the
    row's values, and given back when the same row comes again — CARVE's answer on the original then reuses the
    features its map's passes made. On exit the model's own encoder is back and the features are dropped, also
    when the block raises. A family whose pixel inputs are laid out otherwise (tiles, dynamic resolution) runs
    as it is.

    >>> from PIL import Image
    >>> from attnprompt.types import Request
    >>> vlm = load_vlm("shapes")
    >>> encoded = []
    >>> hook = vlm.model.base_model.vision_tower.register_forward_hook(lambda *a: encoded.append(1))
    >>> request = Request.single(Image.new("RGB", (64, 64), "red"), "What colour is it?", max_new_tokens=2)
    >>> with shared_image_features(vlm):
    ...     answers = [generate(vlm, [request]).texts for _ in range(3)]
    >>> hook.remove(); len(encoded), "get_image_features" in vars(vlm.model.base_model)
    (1, False)
    """
    family = vlm.family_info
    base: Any = getattr(vlm.model, "base_model", None)
    own = getattr(base, "get_image_features", None)
    if family is None or not family.vision_per_row or own is None or "get_image_features" in vars(base):
        yield  # not a family whose rows can be kept, or a block inside another: that one keeps them
        return
    kept: dict[Any, Any] = {}  # row key → its features; "form" → the type of the encoder's pooler_output

    def get_image_features(pixel_values: Any, *args: Any, **kwargs: Any) -> Any:
        return _features_by_row(own, kept, pixel_values, args, kwargs)

    base.get_image_features = get_image_features
    try:
        yield
    finally:
        del base.get_image_features


def _features_by_row(own: Callable[..., Any], kept: dict[Any, Any], pixel_values: Any, args: tuple,
                     kwargs: dict[str, Any]) -> Any:
    """``own(pixel_values, …)``'s ``pooler_output`` (in its form: a list per row, or a tensor), the rows in ``kept``
    taken from it and the others computed in one call and kept."""
    import hashlib

    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    if args or any(isinstance(v, torch.Tensor) for v in kwargs.values()) or pixel_values.dim() != 4:
        return own(pixel_values, *args, **kwargs)  # a call with per-image inputs besides the rows: as it is
    # None is the config's default, given or not (generate leaves it out, the model's forward passes it)
    settings = tuple(sorted((k, repr(v)) for k, v in kwargs.items()
                            if v is not None and k not in ("return_dict", "use_cache")))
    keys = [(hashlib.sha1(row.detach().cpu().contiguous().numpy().tobytes()).hexdigest(), tuple(row.shape),
             str(row.dtype), settings) for row in pixel_values]
    missing: dict[tuple, int] = {}
    for i, key in enumerate(keys):
        if key not in kept and key not in missing:
            missing[key] = i
    if missing:
        out = own(pixel_values[list(missing.values())], **kwargs)
        kept["form"] = type(out.pooler_output)
        kept.update(zip(missing, out.pooler_output))
    rows = [kept[key] for key in keys]
    pooled = torch.stack(rows) if kept["form"] is torch.Tensor else rows
    return BaseModelOutputWithPooling(pooler_output=pooled)  # type: ignore[arg-type]  # a list, as some encoders give


def _decoded(vlm: LoadedVlm, requests: Sequence[Request], rows: list[list[int]],
             budget: int) -> tuple[list[str], list[list[int]], list[list[int]]]:
    """Each generated row cut at its end-of-sequence token or its request's budget: (texts, tokens, the answers'
    tokens — without the end-of-sequence token, as a server reports them)."""
    tokenizer = getattr(vlm.processor, "tokenizer", None)
    eos = end_of_sequence_ids(vlm)
    decode = tokenizer.decode if tokenizer is not None else vlm.processor.decode
    texts, tokens, answers = [], [], []
    for row, request in zip(rows, requests):
        row = row[: min(request.max_new_tokens, budget)]
        n = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))  # rows pad after their end
        tokens.append(row[:n])
        answer = row[: n - 1] if row[n - 1 : n] and row[n - 1] in eos else row[:n]
        answers.append(answer)
        texts.append(decode(answer, skip_special_tokens=True).strip())
    return texts, tokens, answers


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
        alternatives: tuple[tuple[str, float], ...] = ()
        if top:
            values, ids = torch.topk(lp, min(top, lp.shape[-1]))
            names = tokenizer.convert_ids_to_tokens(ids.tolist())
            alternatives = tuple(zip(names, values.tolist()))
        out.append(TokenLogprob(tokenizer.convert_ids_to_tokens(int(token)), float(lp[int(token)]), alternatives))
    return tuple(out)
