"""``step-by-step``: "[Question] Let's think step by step." on the original image (the paper's
chain-of-thought baseline, §4, §9.3)."""

from __future__ import annotations

from .api_prompts import STEP_BY_STEP
from .plain import Plain


class StepByStep(Plain):
    """The plain request with the zero-shot chain-of-thought trigger after the question and its suffix.

    >>> from attnprompt.backends import get_backend
    >>> from attnprompt.shapes import make_scene
    >>> r = StepByStep(get_backend("shapes"))(make_scene(7, n_objects=5, size=320).image, "What colour is the circle?")
    >>> r.steps[0].prompt
    "What colour is the circle? Let's think step by step."
    """

    name = "step-by-step"
    template = STEP_BY_STEP
