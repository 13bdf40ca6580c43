"""The web demo: point a VLM at an image and see where the question makes it look.

A Gradio app over the public API only (:func:`attnprompt.ask`): pick an image (or a shapes
example), type a question, choose the map (method, preset, layers, kernel, enhance, gray), the
visual-prompt form, the strategy and the answering VLM; see the original, the colour heatmap, the
annotated image and the crop, every step of the strategy with its answer, the plain answer beside
it, the configuration, and download the heatmap (``.npy``) and the annotated image (``.png``).

Requests run one at a time (a local model is not shared between threads); others wait in the queue.
Any failure — not an image, an empty question, a model that cannot be loaded, a server that fails —
is one message on the page, and the app keeps serving.

    attnprompt demo                      # http://127.0.0.1:7860, the embedded shapes VLM, offline
"""

from __future__ import annotations

import json
import sys
import tempfile
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attnprompt

from .. import render
from ..api import ask_spec
from ..attribution.configs import METHODS
from ..forms import FORMS
from ..strategies.registry import STRATEGIES
from ..strategies.spec import AskSpec

#: Shapes scenes offered as examples (seed, objects), drawn when the app starts.
EXAMPLES = ((7, 5, "What colour is the circle?"), (11, 6, "What shape is the red object?"),
            (42, 4, "Is there a blue star?"))


def _gradio() -> Any:
    from ..errors import import_optional

    return import_optional("gradio", "demo", "the demo", "Gradio")


def example_files(directory: Path) -> list[list[str]]:
    """The example scenes written as PNG files, with their questions: ``[[path, question], …]``."""
    from ..shapes import make_scene

    directory.mkdir(parents=True, exist_ok=True)
    out = []
    for seed, n, question in EXAMPLES:
        path = directory / f"shapes-{seed}.png"
        scene = make_scene(seed, n_objects=n, size=320)  # made each time: the shapes segmenter knows it by this
        if not path.exists():
            scene.image.save(path)
        out.append([str(path), question])
    return out


def _optional_number(value: Any, kind: type, name: str = "value") -> Any:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise attnprompt.InputError(f"{name} is {value!r}; give a number, or leave it blank for the preset's") from None
    if kind is int and number != int(number):
        raise attnprompt.InputError(f"{name} is {value!r}; give a whole number")
    return kind(number)


#: The page's settings widgets, in the order the handler receives their values.
WIDGETS = ("method", "preset", "layers", "kernel", "enhance", "gray", "form", "strategy", "vlm", "model",
           "max_new_tokens", "segmenter")


def page_spec(widgets: Mapping[str, Any]) -> AskSpec:
    """The :class:`~attnprompt.strategies.spec.AskSpec` the page's widgets describe: blanks mean "the preset's"
    or "the default", numbers are checked, and of the page's settings the strategy keeps what it takes (the
    page shows every widget whatever the strategy).

    >>> page_spec({"strategy": "plain", "method": "api-clip", "kernel": "3", "gray": 0, "form": "overlay"}).given()
    {'max_new_tokens': 32}
    """
    method = widgets.get("method") or "api-clip"
    params = {"layers": (widgets.get("layers") or "").strip() or None,
              "kernel": _optional_number(widgets.get("kernel"), int, "kernel"),
              "enhance": _optional_number(widgets.get("enhance"), float, "enhance")}
    names = METHODS.config(method).parameter_names()
    settings: dict[str, Any] = {k: v for k, v in params.items() if v is not None and k in names}
    settings.update(strategy=widgets.get("strategy") or "api", method=method, preset=widgets.get("preset") or None,
                    model=(widgets.get("model") or "").strip() or None, gray=float(widgets.get("gray") or 0),
                    form=widgets.get("form") or None, segmenter=(widgets.get("segmenter") or "").strip() or None,
                    max_new_tokens=_optional_number(widgets.get("max_new_tokens"), int, "answer tokens") or 32)
    cls = STRATEGIES.get(settings["strategy"])
    if settings["form"] not in getattr(cls, "forms", (settings["form"],)):
        settings["form"] = None  # a form the strategy cannot show (zoom-search: zoom or crop): its own
    spec = AskSpec.from_mapping(settings)
    return spec.narrowed(cls.needs)


def answer(image_file: Any, question: str, widgets: Mapping[str, Any], progress: Any = None,
           loading: Any = None) -> tuple:
    """One request of the page: everything it shows, or the error message and nothing else. ``widgets``: the
    settings widgets' values by name (:data:`WIDGETS`); ``loading``: how local models load (the server's
    :class:`~attnprompt.models.LoadOptions`).

    Returns ``(status, original, heatmap, annotated, crop, answers, steps, config, downloads)``.
    """
    empty = (None, None, None, _gradio().update(value=None, visible=False), "", "", None, None)
    try:
        if progress is not None:
            progress(0.05, desc="reading the image")
        path = getattr(image_file, "name", image_file)
        if not path:
            raise attnprompt.InputError("choose an image first (upload one, or click an example)")
        image = attnprompt.load_image(path, name=Path(str(path)).name)
        if not question or not question.strip():
            raise attnprompt.InputError("the question is empty; type what you want to ask about the image")
        spec = page_spec(widgets).check()
        vlm = (widgets.get("vlm") or "").strip() or None
        if progress is not None:
            progress(0.2, desc=f"loading {vlm or 'the VLM'} and asking ({spec.strategy})")
        result = ask_spec(image, question.strip(), spec, vlm=vlm, compare=spec.strategy != "plain", loading=loading)
        if progress is not None:
            progress(0.9, desc="rendering")
        return ("",) + _shown(image, result)
    except attnprompt.AttnpromptError as e:
        return (f"**Error:** {e}",) + empty
    except Exception as e:  # noqa: BLE001  # the page says what went wrong and the app keeps serving
        traceback.print_exc(file=sys.stderr)
        return (f"**Error:** {type(e).__name__}: {e}",) + empty


def _shown(image: Any, result: Any) -> tuple:
    ann = result.annotation
    lines = [f"**{_label(result)}:** {_text(result)}"]
    if result.baseline is not None:
        lines.append(f"**plain:** {_text(result.baseline)}")
    steps = []
    for i, step in enumerate(result.steps, 1):
        said = step.answer.text if step.answer.ok else f"(failed: {step.answer.error})"
        detail = f" — {json.dumps(dict(step.detail))}" if step.detail else ""
        steps.append(f"{i}. **{step.name}** ({len(step.images)} image(s)): “{step.prompt}” → **{said}**{detail}")
    downloads = None
    if ann is not None:
        folder = Path(tempfile.mkdtemp(prefix="attnprompt-demo-"))
        ann.save(folder / "annotated.png", heatmap=folder / "heatmap.npy")
        downloads = [str(folder / "heatmap.npy"), str(folder / "annotated.png")]
    crop = None if ann is None else ann.crop
    shown: Sequence[Any] = result.steps[-1].images if result.steps else ()
    seen = ann.image if ann is not None else (shown[0] if shown else None)  # FGVP, SoM: the drawn image
    search = result.steps[-1].detail.get("search") if result.steps else None
    if search is not None:  # zoom-search, auto: the path on the image, the window it answered from
        seen, crop = render.draw_search(image, search), (shown[-1] if search.get("chosen") else None)
    return (image, None if ann is None else ann.colour_heatmap(), seen,
            _gradio().update(value=crop, visible=crop is not None), "\n\n".join(lines), "\n".join(steps),
            result.to_dict()["config"], downloads)


def _label(result: Any) -> str:
    config = result.config
    if "maps" in config:
        return f"{config['strategy']} ({'+'.join(m['method'] for m in config['maps'])})"
    return f"{config['strategy']} ({config['map']['method']})" if "map" in config else config["strategy"]


def _text(result: Any) -> str:
    return result.text if result.answer.ok else f"(no answer: {result.answer.error})"


def presets_for(method: str) -> Any:
    """The preset choices of ``method`` (a dropdown update)."""
    gr = _gradio()
    config = METHODS.config(method) if method in METHODS else None
    choices = list(config.PRESETS) if config else []
    return gr.update(choices=choices, value=config.DEFAULT_PRESET if config else None)


def preview(image_file: Any) -> tuple:
    """Show an uploaded file as the original at once, or say why it is not an image."""
    path = getattr(image_file, "name", image_file)
    if not path:
        return "", None
    try:
        return "", attnprompt.load_image(path, name=Path(str(path)).name)
    except attnprompt.AttnpromptError as e:
        return f"**Error:** {e}", None


def build_app(vlm: str = "shapes", *, examples_dir: str | Path | None = None, loading: Any = None) -> Any:
    """The Gradio app (not launched), answering with ``vlm`` unless the page says otherwise; local models load
    as ``loading`` says (a :class:`~attnprompt.models.LoadOptions`: device, dtype, quantisation …).

    >>> import importlib.util
    >>> labels = {getattr(b, "label", None) for b in build_app().blocks.values()} if importlib.util.find_spec(
    ...     "gradio") else {"Strategy"}
    >>> "Strategy" in labels
    True
    """
    gr = _gradio()
    folder = Path(examples_dir) if examples_dir else Path(tempfile.gettempdir()) / "attnprompt-demo-examples"
    with gr.Blocks(title="attnprompt — look where the question points") as app:
        gr.Markdown("# attnprompt\nAttention Prompting on Image and CARVE: the map a question draws on an image, "
                    "the image the VLM is shown, and what it answers — with and without the prompt.")
        with gr.Row():
            with gr.Column(scale=1):
                image_file = gr.File(label="Image (upload a file, or click an example below)", type="filepath",
                                     elem_id="image-file")
                question = gr.Textbox(label="Question", placeholder="What colour is the circle?", elem_id="question")
                with gr.Row():
                    method = gr.Dropdown(list(METHODS.names()), value="api-clip", label="Map method", elem_id="method")
                    preset = gr.Dropdown(list(METHODS.config("api-clip").PRESETS), value="reference",
                                         label="Preset", elem_id="preset")
                with gr.Row():
                    layers = gr.Textbox(label="Layers (blank: the preset's)", placeholder="-2, 0.5 or 20:26",
                                        elem_id="layers")
                    kernel = gr.Textbox(label="Kernel (blank: the preset's)", placeholder="1, 3, 5 …", elem_id="kernel")
                    enhance = gr.Textbox(label="Enhance (blank: the preset's)", placeholder="5", elem_id="enhance")
                gray = gr.Slider(0, 255, value=0, step=1, label="Gray level of the masked pixels", elem_id="gray")
                with gr.Row():
                    form = gr.Radio(list(FORMS.names()), value="overlay", label="Visual prompt", elem_id="form")
                    strategy = gr.Dropdown([n for n in STRATEGIES.names() if not STRATEGIES.get(n).needs.truth],
                                           value="api", label="Strategy",
                                           elem_id="strategy")
                with gr.Row():
                    vlm_box = gr.Textbox(value=vlm, label="Answering VLM (shapes, a hub id, a directory or a URL)",
                                         elem_id="vlm")
                    model = gr.Textbox(label="Map model (blank: the method's default)", elem_id="model")
                    segmenter = gr.Textbox(label="Segmenter for FGVP / SoM (blank: shapes beside the shapes VLM, "
                                           "else sam)", elem_id="segmenter")
                tokens = gr.Number(value=32, precision=0, label="Answer tokens", elem_id="tokens")
                ask = gr.Button("Ask", variant="primary", elem_id="ask")
                gr.Examples(example_files(folder), inputs=[image_file, question], label="Shapes examples")
            with gr.Column(scale=2):
                status = gr.Markdown(elem_id="status")
                answers = gr.Markdown(elem_id="answer")
                with gr.Row():
                    original = gr.Image(label="Original", type="pil", interactive=False, elem_id="original")
                    heatmap = gr.Image(label="Heatmap", type="pil", interactive=False, elem_id="heatmap")
                    annotated = gr.Image(label="Annotated (what the VLM saw)", type="pil", interactive=False,
                                         elem_id="annotated")
                    crop = gr.Image(label="Crop", type="pil", interactive=False, elem_id="crop", visible=False)
                steps = gr.Markdown(elem_id="steps")
                downloads = gr.File(label="Downloads: heatmap (.npy), annotated image (.png)", file_count="multiple",
                                    interactive=False, elem_id="downloads")
                config = gr.JSON(label="Configuration used", elem_id="config")
        def run(image: Any, question: str, *values: Any, progress: Any = gr.Progress()) -> tuple:  # noqa: B008
            # Gradio passes each input's value in order, and its progress tracker as a default argument
            return answer(image, question, dict(zip(WIDGETS, values)), progress=progress, loading=loading)

        method.change(presets_for, method, preset)
        image_file.change(preview, image_file, [status, original])
        # the previous answer goes at once (not queued), so the page never shows an old answer as the new one
        inputs = [image_file, question, method, preset, layers, kernel, enhance, gray, form, strategy, vlm_box, model,
                  tokens, segmenter]  # image, question, then the widgets in WIDGETS' order
        outputs = [status, original, heatmap, annotated, crop, answers, steps, config, downloads]
        cleared = ask.click(lambda: ("", "", ""), None, [status, answers, steps], queue=False)
        cleared.then(run, inputs, outputs, concurrency_limit=1)
    return app


def serve(vlm: str = "shapes", host: str = "127.0.0.1", port: int = 7860, *, block: bool = True,
          loading: Any = None) -> Any:
    """Build and launch the app (queued: one request at a time, the rest wait)."""
    app = build_app(vlm, loading=loading)
    app.queue(default_concurrency_limit=1, max_size=64)
    app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, quiet=not block,
               show_error=False)
    return app
