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
- :meth:`Family.native_side`: the side in pixels of the image the model sees natively (ViCrop's crop window).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from .grid import GridLayout

#: The whole frame (x0, y0, x1, y1 as fractions): the original image fills the prepared image, or the grid.
FULL = (0.0, 0.0, 1.0, 1.0)


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
    """One VLM family (see the module docstring); a family file subclasses it, overrides :meth:`layouts` and
    :meth:`native_side` (and what else differs), and names one instance in ``attnprompt/families/__init__.py``.

    >>> f = Family("toy", "ToyForConditionalGeneration")
    >>> f.name, f.image_only_processor, f.processor_settings(None)
    ('toy', None, {})
    """

    name: str
    model_class: str
    image_only_processor: str | None = None

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

    def prepare(self, image: Image.Image, processor: Any, fit: str) -> tuple[Image.Image, tuple[float, ...]]:
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
        default of ViCrop's crop window. Each family's docstring says where its value comes from.

        >>> Family("toy", "Toy").native_side(None, None)
        Traceback (most recent call last):
        NotImplementedError: family 'toy' does not say its native input side; override Family.native_side
        """
        raise NotImplementedError(f"family {self.name!r} does not say its native input side; "
                                  "override Family.native_side")
