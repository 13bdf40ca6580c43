"""VLM families: one file per family, found by the checkpoint config's ``model_type``.

Each file (``llava.py``, ``qwen_vl.py`` …) defines a :class:`~attnprompt.families.base.Family`: its model and
processor classes, processor quirks, image-token id, how an image is prepared, the image-token span's grid
layout(s) and the native input side. :data:`FAMILIES` maps each ``model_type`` a family serves to it, imported
on first use. Adding a family is its file plus one line here per ``model_type`` (and a builder in
``tests/builders.py``, which the tests require); see docs/families.md.
"""

from __future__ import annotations

from ..registry import Registry
from .base import Family, ImageSpan

__all__ = ["FAMILIES", "TARGETS", "Family", "ImageSpan", "family_names", "family_of"]

#: Config ``model_type`` → the family object that serves it (``"module:NAME"``); several may share one.
TARGETS = {
    "llava": "attnprompt.families.llava:LLAVA",
    "llava_next": "attnprompt.families.llava_next:LLAVA_NEXT",
    "qwen2_vl": "attnprompt.families.qwen_vl:QWEN2_VL",
    "qwen2_5_vl": "attnprompt.families.qwen_vl:QWEN2_5_VL",
    "qwen3_vl": "attnprompt.families.qwen_vl:QWEN3_VL",
    "internvl": "attnprompt.families.internvl:INTERNVL",
    "gemma3": "attnprompt.families.gemma3:GEMMA3",
    "idefics3": "attnprompt.families.idefics3:IDEFICS3",
    "smolvlm": "attnprompt.families.idefics3:SMOLVLM",  # Idefics3's architecture: same tiles, pixel shuffle, prompt
    "llava_onevision": "attnprompt.families.llava_onevision:LLAVA_ONEVISION",
}

#: The families api-vlm knows, by config ``model_type``.
FAMILIES = Registry("VLM family", TARGETS, plural="VLM families")


def family_of(model_type: str | None) -> Family | None:
    """The family serving checkpoints of ``model_type``, or ``None`` for a model whose image tokens api-vlm
    cannot lay out (it may still answer).

    >>> family_of("smolvlm").name, family_of("clip")
    ('idefics3', None)
    """
    if model_type is None or model_type not in FAMILIES:
        return None
    return FAMILIES.get(model_type)


def family_names() -> list[str]:
    """The names of the registered families (what configurations record), sorted, each once.

    >>> {"llava", "idefics3"} <= set(family_names()) and "smolvlm" not in family_names()
    True
    """
    return sorted({FAMILIES.get(t).name for t in FAMILIES.names()})
