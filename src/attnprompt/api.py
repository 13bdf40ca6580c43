"""The public Python API: annotate images for queries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from . import render
from .attribution.base import Attributor, get_attributor_class
from .errors import InputError
from .images import ImageLike, load_image
from .types import Annotation, AttributionMap


def get_attributor(
    method: str = "api-clip",
    *,
    model: str | Attributor | None = None,
    device: str | None = None,
    dtype: Any = None,
    preset: str | None = None,
    **params: Any,
) -> Attributor:
    """Build (or pass through) an attributor; the underlying model is loaded once and cached.

    >>> attributor = get_attributor("api-clip", model="shapes", kernel=1)  # doctest: +SKIP
    """
    if isinstance(model, Attributor):
        if params or preset:
            raise InputError(
                f"parameters {sorted(params) + (['preset'] if preset else [])} were given with an already built "
                "attributor; give them when building it instead"
            )
        return model
    cls = get_attributor_class(method)
    return cls.from_pretrained(model, device=device, dtype=dtype, preset=preset, **params)


def render_annotation(
    image: Any, query: str, amap: AttributionMap, config: dict[str, Any], *, gray: float = 0.0, resample: str = "bilinear"
) -> Annotation:
    """Grid map → heatmap aligned with ``image`` → annotated image (pure rendering step).

    >>> import numpy as np
    >>> from PIL import Image
    >>> a = render_annotation(Image.new("RGB", (8, 8), "white"), "q", AttributionMap(np.ones((2, 2))), {})
    >>> a.heatmap.shape
    (8, 8)
    """
    heatmap = render.upsample(amap.grid, image.size, extent=amap.extent, resample=resample)
    annotated = render.overlay(image, heatmap, gray=gray)
    full = dict(config)
    full.update(gray=float(gray), resample=resample, image_size=list(image.size), grid_shape=list(amap.shape))
    return Annotation(
        image=annotated, heatmap=heatmap, attribution=amap.grid, config=full, original=image, query=query, parts=amap.parts
    )


def annotate(
    image: ImageLike,
    query: str,
    *,
    method: str = "api-clip",
    model: str | Attributor | None = None,
    preset: str | None = None,
    gray: float = 0.0,
    resample: str = "bilinear",
    device: str | None = None,
    dtype: Any = None,
    **params: Any,
) -> Annotation:
    """Annotate ``image`` for ``query``: attribution map → heatmap → overlay (API, paper §3).

    ``model`` is a hub id, a local checkpoint directory, an embedded name (``"shapes"``) or a
    built attributor; ``preset`` and ``params`` set the method's hyper-parameters (see
    ``ClipConfig`` for api-clip); ``gray`` is the level masked pixels fade to (0 = black).

    >>> ann = annotate("scene.png", "What colour is the star?", model="shapes")  # doctest: +SKIP
    >>> ann.image.save("annotated.png"); ann.heatmap.shape  # doctest: +SKIP
    (224, 224)
    """
    [ann] = annotate_batch(
        [image], [query], method=method, model=model, preset=preset, gray=gray, resample=resample,
        device=device, dtype=dtype, **params,
    )
    return ann


def annotate_batch(
    images: Sequence[ImageLike],
    queries: Sequence[str],
    *,
    method: str = "api-clip",
    model: str | Attributor | None = None,
    preset: str | None = None,
    gray: float = 0.0,
    resample: str = "bilinear",
    device: str | None = None,
    dtype: Any = None,
    **params: Any,
) -> list[Annotation]:
    """Annotate many (image, query) pairs in one batched forward of the model.

    The same image path or object may appear several times with different queries; it is
    loaded and encoded once.

    >>> anns = annotate_batch(["a.png", "a.png"], ["the star", "the circle"], model="shapes")  # doctest: +SKIP
    """
    if len(images) != len(queries):
        raise InputError(f"got {len(images)} images but {len(queries)} queries; give one query per image")
    if not 0.0 <= float(gray) <= 255.0:
        raise InputError(f"gray must be a level in [0, 255]; got {gray!r}")
    if resample not in render.RESAMPLE:
        raise InputError(f"resample must be one of {', '.join(render.RESAMPLE)}; got {resample!r}")
    attributor = get_attributor(method, model=model, device=device, dtype=dtype, preset=preset, **params)
    loaded: dict[Any, Any] = {}
    rgb = []
    for img in images:
        key = img if isinstance(img, (str, bytes)) or hasattr(img, "__fspath__") else id(img)
        if key not in loaded:
            loaded[key] = load_image(img)
        rgb.append(loaded[key])
    maps = attributor.attribute(rgb, list(queries))
    config = attributor.describe()
    return [
        render_annotation(img, q.strip(), m, config, gray=gray, resample=resample) for img, q, m in zip(rgb, queries, maps)
    ]


@dataclass(frozen=True)
class AskResult:
    """The answer to one question, how it was obtained, and what it was compared with.

    - ``answer``: the VLM's answer about the annotated image (or the plain image when the
      attributor is ``none``); ``answer.ok`` is False if the backend failed;
    - ``annotation``: the annotated image and heatmap the VLM saw (None without an attributor);
    - ``baseline``: with ``compare=True``, the answer about the original image;
    - ``config``: every setting used (backend, attributor, its parameters).

    >>> AskResult("q", None, None, None, {}).question
    'q'
    """

    question: str
    answer: Any
    annotation: Annotation | None
    baseline: Any
    config: Mapping[str, Any]


ATTRIBUTORS = ("api-clip", "api-vlm", "none")


def ask(
    image: ImageLike,
    question: str,
    *,
    vlm: Any = None,
    attributor: str = "api-clip",
    attributor_model: str | Attributor | None = None,
    compare: bool = False,
    answer_tokens: int = 128,
    preset: str | None = None,
    gray: float = 0.0,
    resample: str = "bilinear",
    device: str | None = None,
    dtype: Any = None,
    vlm_model: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    **params: Any,
) -> AskResult:
    """Ask a VLM about an image with Attention Prompting: annotate, then ask about the annotated image.

    ``vlm`` is a hub id, a local directory, ``"shapes"`` or an OpenAI-compatible URL (with
    ``vlm_model`` the server's model name); ``answer_tokens`` bounds the answer's length.
    ``attributor`` picks the auxiliary model g:
    ``api-clip`` (default model: the paper's CLIP, or the shapes CLIP when ``vlm`` is
    ``shapes``), ``api-vlm`` (default: the answering VLM itself — self-reflection) or ``none``.

    >>> r = ask("scene.png", "What colour is the star?", vlm="shapes", compare=True)  # doctest: +SKIP
    >>> r.answer.text, r.baseline.text  # doctest: +SKIP
    ('red', 'red')
    """
    from .backends import get_backend, is_url
    from .models import DEFAULT_CLIP, is_embedded

    if attributor not in ATTRIBUTORS:
        raise InputError(f"attributor must be one of {', '.join(ATTRIBUTORS)}; got {attributor!r}")
    question_text = check_question(question)
    g = attributor_model
    if attributor != "none" and g is None:
        if attributor == "api-vlm":
            if isinstance(vlm, str) and is_url(vlm):
                raise InputError(
                    "api-vlm needs local access to a VLM's attention and the answering VLM is a server; "
                    "pass --attributor-model ID|PATH (a LLaVA/Qwen2-VL checkpoint) or use --attributor api-clip"
                )
            g = vlm.vlm.model_id if hasattr(vlm, "vlm") else vlm  # self-reflection: g = f
        else:
            g = "shapes" if isinstance(vlm, str) and is_embedded(vlm, "vlm") else DEFAULT_CLIP
    img = load_image(image)
    backend = get_backend(vlm, model=vlm_model, api_key=api_key, timeout=timeout, device=device, dtype=dtype)
    config: dict[str, Any] = {"vlm": backend.name, "attributor": attributor, "answer_tokens": answer_tokens}
    annotation = None
    if attributor != "none":
        [annotation] = annotate_batch(
            [img], [question_text], method=attributor, model=g, preset=preset, gray=gray, resample=resample,
            device=device, dtype=dtype, **params,
        )
        config["attribution"] = dict(annotation.config)
    from .backends import Request

    requests = [Request((annotation.image if annotation else img,), question_text, max_new_tokens=answer_tokens)]
    if compare and annotation is not None:
        requests.append(Request((img,), question_text, max_new_tokens=answer_tokens))
    answers = backend.answer(requests)
    baseline = answers[1] if len(answers) > 1 else None
    return AskResult(question_text, answers[0], annotation, baseline, config)


def check_question(question: Any) -> str:
    """A question must be a non-blank string; returns it stripped.

    >>> check_question(" What colour is the star? ")
    'What colour is the star?'
    """
    from .attribution.base import check_query

    return check_query(question)
