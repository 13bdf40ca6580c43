"""The ground-truth masks of the testbed's images, found from the pixels alone.

Every image :func:`~attnprompt.shapes.make_scene` or :func:`~attnprompt.shapes.make_detail` makes is
remembered here by the digest of its pixels, with how to remake its objects' masks (a few bytes: the
maker and its arguments, not the masks). The ``shapes`` segmenter asks :func:`masks_of` for an image
and gets the visible mask of every object, exactly — so the segmentation baselines (FGVP, SoM) run
offline on known masks. Recovering the masks from colours instead fails where objects of close
colours touch, or noise crosses a colour boundary; remaking them cannot.

Only images made in this process are known (the shapes tasks, the demo's examples); the same picture
loaded back from a lossless file is the same picture (the digest is of the pixels).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
from PIL import Image

from ..images import image_key

#: How many images are remembered (each costs a digest and a closure, not its masks).
CAPACITY = 65_536

_KNOWN: OrderedDict[str, Callable[[], list[tuple[str, np.ndarray]]]] = OrderedDict()
_LOCK = threading.Lock()


def remember(image: Image.Image, masks: Callable[[], list[tuple[str, np.ndarray]]]) -> None:
    """Remember that ``image``'s objects are ``masks()``: (name, visible boolean mask) each, in drawing
    order. Called by the scene makers.

    >>> img = Image.new("RGB", (2, 1)); remember(img, lambda: [("red square", np.array([[True, False]]))])
    >>> [(n, m.tolist()) for n, m in masks_of(img)]
    [('red square', [[True, False]])]
    """
    key = image_key(image)
    with _LOCK:
        _KNOWN[key] = masks
        _KNOWN.move_to_end(key)
        while len(_KNOWN) > CAPACITY:
            _KNOWN.popitem(last=False)


def masks_of(image: Image.Image) -> list[tuple[str, np.ndarray]] | None:
    """The (name, mask) of each object of a testbed image, or ``None`` for an image this process did
    not make.

    >>> masks_of(Image.new("RGB", (3, 3), (1, 2, 3))) is None
    True
    """
    with _LOCK:
        make = _KNOWN.get(image_key(image))
    return None if make is None else make()
