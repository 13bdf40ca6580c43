"""attnprompt: make vision-language models look where a question points.

Training-free visual prompting — API (Attention Prompting on Image, ECCV 2024) and CARVE —
on stock ``transformers`` models. Importing this package is cheap: torch and transformers
are imported only when a model is needed.

>>> import attnprompt
>>> ann = attnprompt.annotate("scene.png", "What colour is the star?", model="shapes")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "annotate": ("attnprompt.api", "annotate"),
    "annotate_batch": ("attnprompt.api", "annotate_batch"),
    "ask": ("attnprompt.api", "ask"),
    "AskResult": ("attnprompt.api", "AskResult"),
    "get_attributor": ("attnprompt.api", "get_attributor"),
    "load_image": ("attnprompt.images", "load_image"),
    "Annotation": ("attnprompt.types", "Annotation"),
    "AttributionMap": ("attnprompt.types", "AttributionMap"),
    "AttnpromptError": ("attnprompt.errors", "AttnpromptError"),
    "InputError": ("attnprompt.errors", "InputError"),
    "ModelLoadError": ("attnprompt.errors", "ModelLoadError"),
    "BackendError": ("attnprompt.errors", "BackendError"),
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'attnprompt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
