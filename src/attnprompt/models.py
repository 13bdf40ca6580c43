"""Finding and loading models: hub ids, local directories and the embedded shapes models.

Loaded models are cached by (kind, location, device, dtype), so repeated calls to
:func:`attnprompt.annotate` reuse one model. Every failure becomes a :class:`ModelLoadError`
that says how to pass a local checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import ModelLoadError

#: The CLIP the paper used for API-CLIP (ViT-L/14 at 336 px).
DEFAULT_CLIP = "openai/clip-vit-large-patch14-336"

#: Models shipped inside the package, selectable by these short names.
EMBEDDED: dict[str, str] = {
    "shapes": "shapes-clip",
    "shapes-clip": "shapes-clip",
    "shapes-vlm": "shapes-vlm",
}

_CACHE: dict[tuple, Any] = {}
_LOCK = threading.RLock()


def embedded_dir() -> Path:
    """Directory that holds the embedded models.

    >>> embedded_dir().name
    'models'
    """
    return Path(__file__).resolve().parent / "shapes" / "models"


def resolve(name: str) -> str:
    """Map a model name to what ``from_pretrained`` should receive: a local path or a hub id.

    Embedded names (``shapes``, ``shapes-vlm``) map to directories inside the package.

    >>> resolve("shapes").endswith("shapes-clip")
    True
    """
    if not isinstance(name, str) or not name.strip():
        raise ModelLoadError(f"model must be a non-empty hub id or directory, got {name!r}")
    if name in EMBEDDED:
        return str(embedded_dir() / EMBEDDED[name])
    return name


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "\\" in name or name.count("/") > 1


def _help(kind: str) -> str:
    shapes = {"clip": "'shapes'", "vlm": "'shapes-vlm'"}.get(kind, "'shapes'")
    return (
        f"pass a local checkpoint directory with --model PATH (model=PATH in Python), "
        f"or {shapes} for the embedded offline model"
    )


def read_config(name: str, kind: str) -> tuple[str, dict]:
    """Locate a checkpoint and read its ``config.json`` (local directories only; hub ids → ``{}``).

    >>> read_config("shapes", "clip")[1].get("model_type") in (None, "clip")
    True
    """
    location = resolve(name)
    path = Path(location).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"model {name!r}: {path} is a file; a checkpoint is a directory with config.json")
        cfg = path / "config.json"
        if not cfg.exists():
            if name in EMBEDDED:
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


def from_pretrained(loader: Callable[..., Any], name: str, location: str, kind: str, **kwargs: Any) -> Any:
    """Call ``loader(location, **kwargs)`` turning any failure into a one-line ModelLoadError.

    >>> from_pretrained(lambda p: p.upper(), "x", "x", "clip")
    'X'
    """
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


def pick_device(device: str | None) -> str:
    """``None`` → ``"cuda"`` when available, else ``"cpu"``.

    >>> pick_device("cpu")
    'cpu'
    """
    if device:
        return str(device)
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


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
        raise ModelLoadError(f"unknown dtype {dtype!r}; valid: {', '.join(names)}")
    return names[dtype]


@dataclass(frozen=True)
class LoadedClip:
    """A CLIP checkpoint ready for attribution: model (eval mode), tokenizer, image statistics.

    >>> LoadedClip.__dataclass_fields__.keys() >= {"model", "tokenizer", "image_mean"}
    True
    """

    model: Any
    tokenizer: Any
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    model_id: str
    location: str


def load_clip(name: str | None = None, *, device: str | None = None, dtype: Any = None) -> LoadedClip:
    """Load (once) a ``transformers`` CLIP checkpoint by hub id, local path or embedded name.

    >>> clip = load_clip("shapes")  # doctest: +SKIP
    """
    name = name or DEFAULT_CLIP
    location, cfg = read_config(name, "clip")
    if cfg and cfg.get("model_type") != "clip":
        raise ModelLoadError(
            f"model {name!r} is a {cfg.get('model_type')!r} checkpoint; api-clip needs a CLIP model "
            f"(model_type 'clip', e.g. {DEFAULT_CLIP}); " + _help("clip")
        )
    dev, dt = pick_device(device), pick_dtype(dtype)
    key = ("clip", location, dev, str(dt))
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        model = from_pretrained(CLIPModel.from_pretrained, name, location, "clip", dtype=dt)
        tokenizer = from_pretrained(AutoTokenizer.from_pretrained, name, location, "clip")
        processor = from_pretrained(AutoImageProcessor.from_pretrained, name, location, "clip")
        model.eval().to(dev)
        loaded = LoadedClip(
            model=model,
            tokenizer=tokenizer,
            image_mean=tuple(float(x) for x in processor.image_mean),
            image_std=tuple(float(x) for x in processor.image_std),
            model_id=name,
            location=location,
        )
        _CACHE[key] = loaded
        return loaded


def clear_cache() -> None:
    """Forget every loaded model (frees memory once nothing else refers to them).

    >>> clear_cache()
    """
    with _LOCK:
        _CACHE.clear()
