"""attnprompt: make vision-language models look where a question points.

Training-free visual prompting — API (Attention Prompting on Image, ECCV 2024) and CARVE —
on stock ``transformers`` models. Importing this package is cheap: torch and transformers
are imported only when a model is needed.

>>> import attnprompt
>>> from attnprompt.shapes import make_scene
>>> scene = make_scene(7, n_objects=5, size=320).image
>>> attnprompt.annotate(scene, "What colour is the circle?", model="shapes").heatmap.shape
(320, 320)
>>> attnprompt.ask(scene, "What colour is the circle?", vlm="shapes", strategy="plain").text
'green'
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "annotate": ("attnprompt.api", "annotate"),
    "annotate_batch": ("attnprompt.api", "annotate_batch"),
    "ask": ("attnprompt.api", "ask"),
    "ask_spec": ("attnprompt.api", "ask_spec"),
    "AskSpec": ("attnprompt.strategies.spec", "AskSpec"),
    "FORMS": ("attnprompt.forms", "FORMS"),
    "MapSpec": ("attnprompt.strategies.spec", "MapSpec"),
    "VisualPrompt": ("attnprompt.strategies.spec", "VisualPrompt"),
    "evaluate": ("attnprompt.evaluation.evaluate", "evaluate"),
    "get_attributor": ("attnprompt.api", "get_attributor"),
    "get_task": ("attnprompt.evaluation.tasks", "get_task"),
    "get_backend": ("attnprompt.backends", "get_backend"),
    "load_image": ("attnprompt.images", "load_image"),
    "METHODS": ("attnprompt.attribution.configs", "METHODS"),
    "STRATEGIES": ("attnprompt.strategies.registry", "STRATEGIES"),
    "Annotation": ("attnprompt.types", "Annotation"),
    "Answer": ("attnprompt.types", "Answer"),
    "AttributionMap": ("attnprompt.types", "AttributionMap"),
    "Request": ("attnprompt.types", "Request"),
    "Result": ("attnprompt.types", "Result"),
    "Sample": ("attnprompt.types", "Sample"),
    "Step": ("attnprompt.types", "Step"),
    "Turn": ("attnprompt.types", "Turn"),
    "TokenLogprob": ("attnprompt.types", "TokenLogprob"),
    "yes_probability": ("attnprompt.confidence", "yes_probability"),
    "first_token_probability": ("attnprompt.confidence", "first_token_probability"),
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
