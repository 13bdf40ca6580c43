"""``api-reemphasize``: "[Question] (Hint: The answer is related to the unmasked visible regions)."
on the annotated image — "API + reflection via re-emphasize" (paper §4.3, Table 5)."""

from __future__ import annotations

from .api import Api
from .api_prompts import REEMPHASIZE


class ApiReemphasize(Api):
    """API, with a hint that the answer lies in the regions the annotation leaves visible.

    >>> from attnprompt.attribution import get_attributor
    >>> from attnprompt.backends import get_backend
    >>> from attnprompt.shapes import make_scene
    >>> r = ApiReemphasize(get_backend("shapes"), get_attributor(model="shapes"))(
    ...     make_scene(7, n_objects=5, size=320).image, "What colour is the circle?")
    >>> r.steps[0].prompt
    'What colour is the circle? (Hint: The answer is related to the unmasked visible regions).'
    """

    name = "api-reemphasize"
    template = REEMPHASIZE
