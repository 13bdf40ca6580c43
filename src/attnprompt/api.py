"""The public Python API: annotate images for queries, and ask VLMs about them with a strategy.

The same words mean the same thing in every function and on the command line: ``method`` is
the attribution method (``api-clip``, ``api-vlm``) and ``model`` its model; ``vlm`` is who
answers; ``strategy`` how it is asked; ``max_new_tokens`` the answer's token budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from .annotation import annotate_images, check_rendering, region_config
from .attribution import get_attributor
from .checks import check_pairs
from .images import ImageLike, load_image
from .strategies.build import build_strategy
from .strategies.spec import AskSpec
from .types import Annotation, Result, Sample

__all__ = ["AskSpec", "annotate", "annotate_batch", "ask", "ask_spec", "build_strategy", "get_attributor"]


def annotate(
    image: ImageLike,
    query: str,
    *,
    method: str = "api-clip",
    model: Any = None,
    preset: str | None = None,
    gray: float = 0.0,
    resample: str = "bilinear",
    regions: Any = None,
    device: str | None = None,
    dtype: Any = None,
    loading: Any = None,
    **params: Any,
) -> Annotation:
    """Annotate ``image`` for ``query``: attribution map → heatmap → overlay (API, paper §3).

    ``model`` is a hub id, a local checkpoint directory, an embedded name (``"shapes"``) or a
    built attributor; ``preset`` and ``params`` set the method's hyper-parameters (see
    :class:`~attnprompt.attribution.configs.ClipConfig`, :class:`~attnprompt.attribution.configs.VlmConfig`,
    :class:`~attnprompt.attribution.configs.CarveConfig`); ``gray`` is the level masked pixels fade to (0 =
    black); ``regions`` (``True`` for the method's own rule, ``"carve"``, ``"vicrop"`` or a
    :class:`~attnprompt.regions.RegionConfig`) also selects regions: ``.crop`` and ``.box``.

    >>> from attnprompt.shapes import make_scene
    >>> ann = annotate(make_scene(7, n_objects=5, size=320).image, "What colour is the circle?", model="shapes",
    ...                regions=True)
    >>> ann.heatmap.shape, ann.config["method"], ann.crop is not None
    ((320, 320), 'api-clip', True)
    """
    [ann] = annotate_batch(
        [image], [query], method=method, model=model, preset=preset, gray=gray, resample=resample, regions=regions,
        device=device, dtype=dtype, loading=loading, **params,
    )
    return ann


def annotate_batch(
    images: Sequence[ImageLike],
    queries: Sequence[str],
    *,
    method: str = "api-clip",
    model: Any = None,
    preset: str | None = None,
    gray: float = 0.0,
    resample: str = "bilinear",
    regions: Any = None,
    device: str | None = None,
    dtype: Any = None,
    loading: Any = None,
    **params: Any,
) -> list[Annotation]:
    """Annotate many (image, query) pairs in one batched forward of the model.

    The same image path or object may appear several times with different queries; it is
    loaded and encoded once.

    >>> from attnprompt.shapes import make_scene
    >>> image = make_scene(7, n_objects=5, size=320).image
    >>> anns = annotate_batch([image, image], ["the star", "the circle"], model="shapes")
    >>> [a.query for a in anns]
    ['the star', 'the circle']
    """
    queries, _ = check_pairs(images, queries)
    check_rendering(gray, resample)
    loaded: dict[Any, Any] = {}
    rgb = []
    for img in images:  # images and queries first: a bad one fails before a model loads
        key = img if isinstance(img, (str, bytes)) or hasattr(img, "__fspath__") else id(img)
        if key not in loaded:
            loaded[key] = load_image(img)
        rgb.append(loaded[key])
    attributor = get_attributor(method, model=model, device=device, dtype=dtype, loading=loading, preset=preset,
                                **params)
    chosen = None
    if regions is not None and regions is not False:
        chosen = region_config(None if regions is True else regions, attributor)
    return annotate_images(attributor, rgb, queries, gray=gray, resample=resample, regions=chosen)


def ask(
    image: ImageLike,
    question: str,
    *,
    vlm: Any = None,
    strategy: str = "api",
    method: str | None = None,
    model: Any = None,
    preset: str | None = None,
    suffix: str = "",
    max_new_tokens: int = 128,
    gray: float = 0.0,
    resample: str = "bilinear",
    compare: bool = False,
    sources: Sequence[Any] | None = None,
    segmenter: Any = None,
    form: str | None = None,
    regions: Any = None,
    device: str | None = None,
    dtype: Any = None,
    loading: Any = None,
    **params: Any,
) -> Result:
    """Ask a VLM about an image with a strategy (default ``api``: annotate, then ask about the
    annotated image); returns a :class:`~attnprompt.types.Result` whose steps show what the VLM saw.

    - who answers: ``vlm`` — a hub id, a local directory, ``"shapes"``, an OpenAI-compatible URL,
      or a backend from :func:`attnprompt.backends.get_backend` (for a server's model name, API key,
      timeout); how local models load: ``loading`` (a :class:`~attnprompt.models.LoadOptions`: dtype, device map,
      quantisation, attention kernel …) or ``device``/``dtype`` alone;
    - how it is asked (one :class:`~attnprompt.strategies.spec.AskSpec` is built from these keywords and
      checked before any model loads): ``strategy`` (see ``attnprompt.STRATEGIES``), ``suffix`` (the task's
      answer-format instruction, placed by the strategy), ``max_new_tokens`` (the answer's budget),
      ``compare`` (also ask with ``plain``: the result's ``baseline``);
    - the map, for strategies that annotate: ``method`` (default the strategy's: api-clip, carve for
      ``carve``), its ``model`` (default: the paper's CLIP — the shapes CLIP beside the shapes VLM —
      for api-clip; the answering VLM itself for api-vlm and carve),
      ``preset`` and ``params``; a method parameter whose name ``ask`` uses itself is given with a
      ``map_`` prefix (``map_max_new_tokens``: api-vlm's own generation length); ``gray``, ``resample``;
      for ``ensemble``, ``sources``: ``"method:model"`` strings or built attributors (default api-clip
      and api-vlm as above; with a server as the answering VLM they must be given), each taking the
      parameters its method has; for the segmentation baselines (``fgvp-mask``, ``fgvp-rbm``, ``som``),
      ``segmenter``: ``"shapes"`` (the testbed's ground truth), ``"sam"``, a SAM hub id or directory, or a
      built segmenter (default ground truth beside the shapes VLM, else ``facebook/sam-vit-huge``);
      ``form`` (``overlay``, ``crop``, ``both``, ``zoom``: the visual prompt, :mod:`attnprompt.forms`;
      default the strategy's) and ``regions`` (how a crop is chosen: ``carve``, ``vicrop`` or a
      :class:`~attnprompt.regions.RegionConfig`; default the method's).

    >>> from attnprompt.shapes import make_scene
    >>> r = ask(make_scene(7, n_objects=5, size=320).image, "What colour is the circle?", vlm="shapes", compare=True)
    >>> r.text, r.baseline.text, r.steps[0].images[0] is r.annotation.image
    ('green', 'green', True)
    """
    spec = AskSpec.from_mapping(dict(strategy=strategy, method=method, model=model, preset=preset, sources=sources,
                                     segmenter=segmenter, max_new_tokens=max_new_tokens, gray=gray,
                                     resample=resample, form=form, regions=regions, **params))
    from .models import LoadOptions

    loading = LoadOptions.of(loading, device=device, dtype=dtype)
    return ask_spec(image, question, spec, vlm=vlm, suffix=suffix, compare=compare, loading=loading)


def ask_spec(image: ImageLike, question: str, spec: AskSpec, *, vlm: Any = None, suffix: str = "",
             compare: bool = False, loading: Any = None) -> Result:
    """:func:`ask` with its settings as one :class:`~attnprompt.strategies.spec.AskSpec` (what the CLI and the
    demo build): the spec is checked, then the image and question, before any model loads; ``loading`` (a
    :class:`~attnprompt.models.LoadOptions`) says how local models load.

    >>> from attnprompt.shapes import make_scene
    >>> spec = AskSpec(strategy="carve", max_new_tokens=4)
    >>> ask_spec(make_scene(7, n_objects=5, size=320).image, "What colour is the circle?", spec, vlm="shapes").text
    'green'
    """
    from .backends import get_backend

    spec = spec.check()
    sample = Sample((load_image(image),), question, suffix=suffix)  # before any model loads
    backend = get_backend(vlm, loading=loading)
    result = build_strategy(spec, backend, loading=loading).run([sample])[0]
    if compare and spec.strategy != "plain":
        plain = AskSpec(strategy="plain", max_new_tokens=spec.max_new_tokens)
        result = dataclasses.replace(result, baseline=build_strategy(plain, backend).run([sample])[0])
    return result
