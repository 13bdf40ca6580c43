"""``carve``: CARVE's answer (paper: contrastive attention refinement) — the original image and a crop of
the regions its contrastive map selects, with the question, in one request. For a backend that takes
one image, the crop alone, said in the step (:meth:`~attnprompt.forms.Form.shown`)."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from ..models import shared_image_features
from ..types import Result, Sample
from .api import Api


class Carve(Api):
    """The ``api`` strategy in CARVE's form: ``crop`` (original + crop) and, unless another method is
    chosen, the ``carve`` map. Any map can crop (``--method api-clip --strategy carve``).

    >>> from attnprompt.strategies.build import build_strategy
    >>> from attnprompt.backends import get_backend
    >>> from attnprompt.shapes import make_scene
    >>> r = build_strategy("carve", get_backend("shapes"))(make_scene(7, n_objects=5, size=320).image,
    ...                                                     "What colour is the circle?")
    >>> len(r.steps[0].images), r.config["map"]["method"], r.steps[0].annotations[0].box is not None
    (2, 'carve', True)
    """

    name = "carve"
    default_form = "crop"
    default_method = "carve"

    def run(self, samples: Sequence[Sample]) -> list[Result]:
        """:meth:`Api.run`, each image encoded once by the answering VLM for the map's passes and the answer on the
        original where its family allows (:func:`~attnprompt.models.shared_image_features`)."""
        vlm = self.backend.local_model
        with contextlib.nullcontext() if vlm is None else shared_image_features(vlm):
            return super().run(samples)
