"""What attnprompt knows about one VLM family: the :class:`Family` base every family file fills in.

A family is the set of checkpoints whose image tokens lie the same way: LLaVA-1.5, LLaVA-NeXT, Qwen2-VL …
Its file (``attnprompt/families/<family>.py``) says, for a model config and its processor:

- ``name``: the string recorded in configurations (``describe()["family"]``; part of the configuration hash,
  so it never changes once released);
- ``model_class``: the transformers class of its checkpoints; ``image_only_processor``: the processor class
  attnprompt builds without a video processor, for families whose stock processor insists on one (it needs
  torchvision), and :meth:`Family.processor_settings`, what such a processor needs from the model config
  when the checkpoint's ``processor_config.json`` is missing;
- :meth:`Family.image_token_id`, :meth:`Family.prepare` (how the image is given to the model) and
  :meth:`Family.layouts` (where each image token lies on the image: ``[base, …, highres]``);
- :meth:`Family.native_side`: the side in pixels of the image the model sees natively (ViCrop's crop window; by
  default the vision tower's ``image_size``);
- :meth:`Family.input_size`: the size its processor resizes an image to (the canvas its tiles cover), so that a
  much larger image is handed over as a bounded copy (:func:`reduced_for`) rather than at full resolution;
- :meth:`Family.pixel_budget`: the bound on the pixels (hence the image tokens) of a family whose processor takes
  any resolution (Qwen-VL's ``max_pixels``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InputError
from .grid import FULL, GridLayout, pair

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["FULL", "REDUCE_GAP", "Family", "ImageSpan", "reduced_for", "reduction_factor"]

#: An image stays at least this many times the processor's input size (per side) when it is reduced for it:
#: the processor's own anti-aliased resize still does the last, large step, so a normal-sized image is never
#: touched (below 2·GAP times the input nothing changes) and an 8K one costs the processor a few MB, not 100s.
REDUCE_GAP = 4


def reduction_factor(size: tuple[int, int], target: tuple[int, int] | None, gap: int = REDUCE_GAP) -> int:
    """The largest integer factor by which an image of ``size`` can shrink and stay at least ``gap`` times
    ``target`` on both sides (1: leave it; ``target`` None: the size the model reads is not fixed).

    >>> [reduction_factor(*a) for a in (((7680, 4320), (597, 336)), ((896, 896), (128, 128)), ((9, 9), None))]
    [3, 1, 1]
    """
    if target is None:
        return 1
    return max(1, min(size[0] // (gap * max(1, target[0])), size[1] // (gap * max(1, target[1]))))


def reduced_for(image: Image.Image, target: tuple[int, int] | None, gap: int = REDUCE_GAP) -> Image.Image:
    """``image`` reduced by :func:`reduction_factor` (PIL's ``reduce``, a box filter: one pass, no full-size
    temporary), or ``image`` itself when the factor is 1.

    >>> from PIL import Image
    >>> small = Image.new("RGB", (20, 10))
    >>> reduced_for(Image.new("RGB", (2000, 1000)), (100, 50)).size, reduced_for(small, (10, 5)) is small
    ((400, 200), True)
    """
    factor = reduction_factor(image.size, target, gap)
    from ..images import reduced

    return reduced(image, factor)


@dataclass(frozen=True)
class ImageSpan:
    """One prompt row's image tokens, as :meth:`Family.layouts` reads them: how many there are, the processor's
    outputs for the batch (``input_ids``, ``image_sizes``, ``image_grid_thw`` …) and this row's index in them,
    the prepared image's (height, width) where a family needs it and the processor's outputs do not carry it
    (``None`` if unknown), and where the original image lies in the prepared one.

    >>> ImageSpan(576, {}, 0, (336, 336)).extent
    (0.0, 0.0, 1.0, 1.0)
    """

    n_tokens: int
    inputs: Any
    row: int
    image_hw: tuple[int, int] | None = None
    extent: tuple[float, float, float, float] = FULL


@dataclass(frozen=True)
class Family:
    """One VLM family (see the module docstring); a family file subclasses it, overrides :meth:`layouts` (and what
    else differs: :meth:`input_size`, :meth:`prepare` …), and names one instance in ``attnprompt/families/__init__.py``.

    >>> f = Family("toy", "ToyForConditionalGeneration")
    >>> f.name, f.image_only_processor, f.processor_settings(None)
    ('toy', None, {})
    """

    name: str
    model_class: str
    image_only_processor: str | None = None
    #: The processor's pixel inputs hold one row per image (or crop), each encoded by the vision tower on its own, and
    #: its ``get_image_features`` needs no other per-image input: the features of one row can be kept and given back
    #: (:func:`attnprompt.models.shared_image_features`). LLaVA-1.5 and Gemma 3; the tiled and dynamic-resolution
    #: families lay their images out otherwise.
    vision_per_row: ClassVar[bool] = False

    def processor_settings(self, config: Any) -> dict[str, Any]:
        """The processor arguments the model ``config`` implies (how many tokens one image or tile becomes), for
        building a processor when the checkpoint's ``processor_config.json`` is missing; none by default.

        >>> Family("toy", "Toy").processor_settings(object())
        {}
        """
        return {}

    def image_token_id(self, config: Any) -> int:
        """The id of the token that stands for image features in the prompt (the config's ``image_token_id``,
        or ``image_token_index``).

        >>> from types import SimpleNamespace as NS
        >>> Family("toy", "Toy").image_token_id(NS(image_token_index=32000))
        32000
        """
        return int(getattr(config, "image_token_id", None) or config.image_token_index)

    def prepare(self, image: Image.Image, processor: Any,
                fit: str) -> tuple[Image.Image, tuple[float, float, float, float]]:
        """The image as the model should be given it, and where the original lies in it (fractions); ``fit`` is
        api-vlm's setting (``"pad"`` or ``"processor"``). By default the image as it is.

        >>> from PIL import Image
        >>> Family("toy", "Toy").prepare(Image.new("RGB", (20, 10)), None, "pad")[1]
        (0.0, 0.0, 1.0, 1.0)
        """
        return image, FULL

    def layouts(self, span: ImageSpan, config: Any, processor: Any) -> list[GridLayout]:
        """Where the image tokens of ``span`` lie on the image, coarsest first: ``[base, …, highres]`` (one entry
        for an untiled family). api-vlm's ``grid="highres"`` takes the last, ``grid="base"`` the first. A
        prompt that disagrees with the config is a :class:`~attnprompt.errors.ProcessorMismatchError`.

        >>> Family("toy", "Toy").layouts(ImageSpan(4, {}, 0), None, None)
        Traceback (most recent call last):
        NotImplementedError: family 'toy' does not say where its image tokens lie; override Family.layouts
        """
        raise NotImplementedError(f"family {self.name!r} does not say where its image tokens lie; "
                                  "override Family.layouts")

    def native_side(self, config: Any, processor: Any) -> int:
        """The side in pixels of the square image the model sees natively (one tile for tiled families): the
        default of ViCrop's crop window. By default the vision tower's ``vision_config.image_size`` (336 for
        LLaVA-1.5's CLIP ViT-L/14-336, 384 for LLaVA-OneVision's SigLIP tile, 448 for InternVL's tile, 896 for Gemma 3,
        364 / 512 for Idefics3 / SmolVLM's tile, 128 for the embedded shapes VLM); a family whose model has no single
        input side (Qwen-VL) overrides it and says where its value comes from.

        >>> from types import SimpleNamespace as NS
        >>> Family("toy", "Toy").native_side(NS(vision_config=NS(image_size=[448, 448])), None)
        448
        """
        return pair(config.vision_config.image_size)[0]

    def pixel_budget(self, processor: Any, max_pixels: int | None = None,
                     min_pixels: int | None = None) -> dict[str, int]:
        """Bound the pixels the processor lets through, for a family whose processor takes any resolution (Qwen-VL:
        ``max_pixels`` / ``min_pixels``), and return the bounds now in force (what configurations record). A family
        whose processor resizes to a fixed size or to at most so many tiles is bounded already: it records nothing,
        and refuses the settings.

        >>> Family("toy", "Toy").pixel_budget(None)
        {}
        >>> Family("toy", "Toy").pixel_budget(None, max_pixels=10**6)
        Traceback (most recent call last):
        attnprompt.errors.InputError: max_pixels and min_pixels bound Qwen-VL's dynamic resolution; family 'toy' \
resizes every image to a fixed size or a bounded number of tiles already
        """
        if max_pixels is not None or min_pixels is not None:
            raise InputError(f"max_pixels and min_pixels bound Qwen-VL's dynamic resolution; family {self.name!r} "
                             "resizes every image to a fixed size or a bounded number of tiles already")
        return {}

    def input_size(self, size: tuple[int, int], config: Any, processor: Any) -> tuple[int, int] | None:
        """The (width, height) the processor resizes an image of ``size`` to (for a tiled family: the whole canvas
        its tiles cover), so that a much larger image is handed over as a reduced copy; ``None`` (the default, for a
        processor attnprompt cannot read) hands every image over as it is.

        >>> Family("toy", "Toy").input_size((640, 480), None, None) is None
        True
        """
        return None
