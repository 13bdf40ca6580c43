"""The ``attnprompt`` command. Thin: parses arguments, calls the public API, prints.

Heavy imports (torch, transformers) happen inside the subcommands, so ``attnprompt --help``
is instant. Method flags are derived from the methods' config dataclasses
(:func:`attnprompt.presets.cli_parameters`), so each default is written once. ``main(argv)``
returns an exit code and is what the tests call.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from .attribution.configs import METHODS
from .errors import EXIT_ERROR, AttnpromptError
from .forms import FORMS
from .presets import cli_parameters
from .regions import RegionConfig
from .strategies.registry import STRATEGIES

EXIT_PARTIAL = 1

#: Prefix of a method flag whose name the ``ask`` command uses itself (``--map-max-new-tokens``).
MAP_PREFIX = "map_"
#: The method parameters that ``ask`` takes with :data:`MAP_PREFIX` (its own ``--max-new-tokens``
#: is the answer's budget).
ASK_RESERVED = ("max_new_tokens",)
#: Prefix of the region-selection flags (``--region-top``).
REGION_PREFIX = "region_"
SEGMENTER_HELP = ("fgvp-mask, fgvp-rbm, som: where the masks come from: shapes (the testbed's ground truth) | sam "
                  "(SAM ViT-H, facebook/sam-vit-huge) | a SAM hub id or local directory (default: shapes beside "
                  "the shapes VLM, else sam)")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_method_flags(p: argparse.ArgumentParser, *, model_defaults: str, reserved: Sequence[str] = ()) -> None:
    """One flag per method parameter (default None: only what the user sets is passed on, so each
    method keeps its own defaults and rejects what it does not know)."""
    group = p.add_argument_group("attribution map", "the method's parameters (only those you set are passed on)")
    group.add_argument("--method", default=None, help=f"attribution method: {' | '.join(METHODS.names())} "
                       "(default api-clip; carve for --strategy carve)")
    group.add_argument(
        "--model", default=None,
        help="the method's model: hub id, local checkpoint directory, or 'shapes' (embedded, offline); default "
        + model_defaults,
    )
    group.add_argument("--preset", default=None, help="named parameter set: reference (default) | paper | grounding "
                       "(api-clip)")
    for param in cli_parameters(METHODS.configs()):
        dest = MAP_PREFIX + param.name if param.name in reserved else param.name
        if param.parse is bool:
            group.add_argument(_flag(dest), dest=dest, action=argparse.BooleanOptionalAction, default=None,
                               help=param.help)
        else:
            group.add_argument(_flag(dest), dest=dest, type=param.parse, default=None, help=param.help)
    group.add_argument("--gray", type=float, default=0.0, help="level masked pixels fade to, 0–255 (default 0 = black)")
    group.add_argument("--resample", default="bilinear", help="grid → pixels: nearest | bilinear | bicubic | lanczos")


def _add_region_flags(p: argparse.ArgumentParser) -> None:
    """``--regions PRESET`` and one ``--region-*`` flag per field of :class:`~attnprompt.regions.RegionConfig`."""
    group = p.add_argument_group("regions", "how a crop is chosen from the map (only those you set are passed on)")
    group.add_argument("--regions", default=None, help=f"rule preset: {' | '.join(RegionConfig.PRESETS)} (default: "
                       "the method's own: vicrop for --method carve --preset vicrop, else carve)")
    for param in cli_parameters({"regions": RegionConfig}):
        dest = REGION_PREFIX + param.name
        kwargs: dict[str, Any] = {"action": argparse.BooleanOptionalAction} if param.parse is bool else {
            "type": param.parse}
        group.add_argument(_flag(dest), dest=dest, default=None, help=param.help.removeprefix("regions: "), **kwargs)


def _regions(args: argparse.Namespace) -> RegionConfig | None:
    fields = {name: getattr(args, REGION_PREFIX + name) for name in RegionConfig.parameter_names()
              if getattr(args, REGION_PREFIX + name, None) is not None}
    if args.regions is None and not fields:
        return None  # the method's own rule, if a crop is made at all
    return RegionConfig.from_preset(args.regions, **fields)


def _method_params(args: argparse.Namespace, *, reserved: Sequence[str] = ()) -> dict[str, Any]:
    out = {}
    for param in cli_parameters(METHODS.configs()):
        dest = MAP_PREFIX + param.name if param.name in reserved else param.name
        if getattr(args, dest, None) is not None:
            out[dest] = getattr(args, dest)
    return out


def _add_device_flags(p: argparse.ArgumentParser) -> None:
    from .models import ANSWER_FITS, ATTENTION_KERNELS, DEVICE_MAPS, DTYPES, QUANTIZATIONS

    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")
    p.add_argument("--dtype", default="auto", choices=DTYPES,
                   help="auto (default: the checkpoint's own, e.g. bfloat16, on a GPU; float32 on the CPU) | "
                   "float32 | float16 | bfloat16")
    p.add_argument("--device-map", default=None, choices=DEVICE_MAPS,
                   help="shard the model over the GPUs, offloading what does not fit (accelerate; instead of --device)")
    p.add_argument("--quantize", default=None, choices=QUANTIZATIONS,
                   help="4-/8-bit weights (bitsandbytes: pip install 'attnprompt[quantize]')")
    p.add_argument("--attn-implementation", default=None, choices=ATTENTION_KERNELS,
                   help="the attention kernel (default: transformers' choice, sdpa); maps stay exact on any")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="Qwen-VL: pixels per image (default lmms-eval's: 602112 Qwen2-VL, 1605632 Qwen2.5/3-VL)")
    p.add_argument("--min-pixels", type=int, default=None, help="Qwen-VL: least pixels per image (default the "
                   "checkpoint's)")
    p.add_argument("--answer-fit", default="pad", choices=ANSWER_FITS,
                   help="LLaVA-1.5: the answering model sees the image padded to a square, as the map covers it "
                   "(pad, default) or its processor's centre crop (processor)")
    p.add_argument("--generation", default=None, metavar="KEY=VALUE,…",
                   help="decode otherwise than greedily, e.g. do_sample=true,temperature=0.7 or "
                   "repetition_penalty=1.05 (default: greedy, whatever the checkpoint's generation config says)")


def _loading(args: argparse.Namespace) -> Any:
    """The loading settings of the device flags, as one :class:`attnprompt.models.LoadOptions` (passed as
    ``dtype=`` until the settings spec carries it)."""
    from .models import LoadOptions, parse_generation

    return LoadOptions(device=args.device, dtype=args.dtype, device_map=args.device_map, quantize=args.quantize,
                       attn_implementation=args.attn_implementation, max_pixels=args.max_pixels,
                       min_pixels=args.min_pixels, answer_fit=args.answer_fit,
                       generation=parse_generation(args.generation) if args.generation else ())


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests).

    >>> build_parser().parse_args(["annotate", "a.png", "the star", "-o", "b.png", "--kernel", "1"]).kernel
    1
    """
    parser = argparse.ArgumentParser(
        prog="attnprompt",
        description="Make vision-language models look where a question points (Attention Prompting on Image).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ann = sub.add_parser(
        "annotate",
        help="overlay a query-guided heatmap on an image",
        description="Annotate IMAGE for QUERY, or every line of --batch FILE.jsonl "
        '({"image": ..., "query": ..., "id": ...} per line) into --out-dir.',
    )
    ann.add_argument("image", nargs="?", help="image file")
    ann.add_argument("query", nargs="?", help="question or phrase naming what to look at")
    ann.add_argument("-o", "--output", help="annotated image to write (PNG unless the suffix says otherwise)")
    ann.add_argument("--heatmap", help="also write the H×W float32 heatmap, lossless, as .npy")
    ann.add_argument("--visual", help="also write a side-by-side picture: image | heatmap | annotated")
    ann.add_argument("--crop", help="also select regions from the map and write their crop (see the regions flags)")
    ann.add_argument("--batch", help="JSONL file, one {image, query, id} per line")
    ann.add_argument("--out-dir", help="batch mode: output directory (resumable)")
    ann.add_argument("--batch-size", type=int, default=8, help="batch mode: images per forward (default 8)")
    ann.add_argument("--visuals", action="store_true", help="batch mode: also write ID.visual.png per item")
    ann.add_argument("--overwrite", action="store_true",
                     help="batch mode: recompute finished items that were made with other settings (without it, "
                     "such items are an error; items made with these settings are always kept)")
    _add_method_flags(ann, model_defaults="openai/clip-vit-large-patch14-336 for api-clip, "
                      "llava-hf/llava-1.5-7b-hf for api-vlm and carve")
    _add_region_flags(ann)
    _add_device_flags(ann)

    ask = sub.add_parser(
        "ask",
        help="answer a question about an image, with attention prompting",
        description="Ask the VLM about IMAGE with a strategy: 'api' (default) annotates the image for QUESTION "
        "with the attribution method and asks about the annotated image; 'plain' asks about the original.",
    )
    ask.add_argument("image", help="image file")
    ask.add_argument("question", help="the question")
    ask.add_argument("--strategy", default="api", help=f"how the VLM is asked: {' | '.join(STRATEGIES.names())} "
                     "(default api)")
    ask.add_argument("--form", default=None, choices=FORMS,
                     help="the visual prompt of strategies that show a map: overlay (the paper's blend) | crop (the "
                     "original and a crop of the map's regions) | both (the blend and the crop); default the "
                     "strategy's (crop for carve, else overlay)")
    ask.add_argument("--sources", default=None,
                     help="ensemble: the attribution sources, comma-separated method:model (default: api-clip with "
                     "the paper's CLIP, api-vlm with the answering VLM)")
    ask.add_argument("--segmenter", default=None, help=SEGMENTER_HELP)
    ask.add_argument("--suffix", default="", help="the task's answer-format instruction, e.g. 'Answer the question "
                     "using a single word or phrase.' (placed by the strategy)")
    ask.add_argument("--max-new-tokens", type=int, default=128, help="the answer's token budget (default 128)")
    ask.add_argument("--compare", action="store_true", help="also ask with 'plain', and print both")
    ask.add_argument("--json", action="store_true", help="print the whole result (every step) as JSON")
    ask.add_argument("--save-annotated", default=None, help="also write the annotated image the VLM saw")
    vlm_args = ask.add_argument_group("answering VLM")
    vlm_args.add_argument(
        "--vlm", default=None,
        help="who answers: hub id, local directory, 'shapes' (embedded, offline), or an OpenAI-compatible "
        "URL (http://host:port/v1); default llava-hf/llava-1.5-7b-hf",
    )
    vlm_args.add_argument("--vlm-model", default=None, help="model name on the server (default: the server's first)")
    vlm_args.add_argument("--api-key", default=None, help="API key for the server (default: $OPENAI_API_KEY)")
    vlm_args.add_argument("--native-side", type=int, default=None,
                          help="a server's model input side in pixels (ViCrop's default crop window; a local "
                               "model's family says it: 336 LLaVA-1.5, 224 Qwen-VL, 128 shapes)")
    vlm_args.add_argument("--timeout", type=float, default=60.0,
                          help="seconds per HTTP request (one retry after a wait)")
    _add_method_flags(ask, reserved=ASK_RESERVED, model_defaults="the paper's CLIP for api-clip (the shapes CLIP "
                      "with --vlm shapes), the answering VLM itself for api-vlm and carve")
    _add_region_flags(ask)
    _add_device_flags(ask)

    srv = sub.add_parser(
        "serve",
        help="serve a local VLM as an OpenAI-compatible endpoint",
        description="Expose a local VLM at http://HOST:PORT/v1/chat/completions (multi-turn; images as base64 "
        "data URLs).",
    )
    srv.add_argument(
        "--vlm", default=None, help="hub id, local directory or 'shapes' (default llava-hf/llava-1.5-7b-hf)"
    )
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--name", default=None, help="model name the server reports (default: the --vlm value)")
    from .serve import Limits

    limits = Limits()
    srv.add_argument("--max-body-mb", type=float, default=limits.max_body / 2**20,
                     help=f"largest request body, MB (default {limits.max_body / 2**20:g})")
    srv.add_argument("--max-images", type=int, default=limits.max_images,
                     help=f"images per conversation (default {limits.max_images})")
    srv.add_argument("--max-image-mpx", type=float, default=limits.max_image_pixels / 1e6,
                     help=f"pixels per image, millions (default {limits.max_image_pixels / 1e6:g})")
    srv.add_argument("--max-prompt-chars", type=int, default=limits.max_prompt_chars,
                     help=f"characters of text per conversation (default {limits.max_prompt_chars}); the model's "
                     "context is checked too")
    _add_device_flags(srv)
    srv.add_argument("--batch-size", type=int, default=4, help="requests answered per forward (default 4)")
    srv.add_argument("--verbose", action="store_true", help="log each request to stderr")

    ev = sub.add_parser(
        "eval",
        help="evaluate strategies (or maps) on benchmark tasks; resumable; writes a report",
        description="Answer every sample of each task with each strategy (map tasks: each method and preset), "
        "one record per sample in DIR/records.sqlite; rerun the same command to resume. Writes DIR/report.md, "
        "report.json, report.html and samples.jsonl.",
    )
    ev.add_argument("--task", required=True, help="comma-separated tasks: shapes-vqa | shapes-pope | shapes-pointing "
                    "| path/to/file.py[:NAME] | vqa (a generic task over --data)")
    ev.add_argument("--out", required=True, help="output directory (records, report); resumable")
    ev.add_argument("--strategy", default="plain,api", help="comma-separated strategies (default plain,api): "
                    + " | ".join(STRATEGIES.names()))
    ev.add_argument("--form", default=None, help="comma-separated visual-prompt forms for strategies that show a map: "
                    + " | ".join(FORMS) + " (default: each strategy's)")
    ev.add_argument("--sources", default=None, help="ensemble: comma-separated method:model sources")
    ev.add_argument("--segmenter", default=None, help=SEGMENTER_HELP)
    ev.add_argument("--limit", type=int, default=None, help="the first N samples of each task")
    ev.add_argument("--batch-size", type=int, default=8, help="answers per forward on a local VLM (default 8)")
    ev.add_argument("--concurrency", type=int, default=None, help="requests in flight to a server (default 4)")
    ev.add_argument("--retry-failed", action="store_true",
                    help="run again the samples whose record is a failure, and ask the judge again about unreadable "
                    "verdicts (answers the judge gave no reply on are asked again by every run)")
    ev.add_argument("--max-new-tokens", type=int, default=None, help="answer budget (default: each task's own)")
    ev.add_argument("--gallery", type=int, default=200, help="keep pictures of what the VLM saw for the first N "
                    "samples of each task, for the report's gallery (default 200; 0: none)")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ray_group = ev.add_argument_group("Ray (pip install 'attnprompt[ray]')")
    ray_group.add_argument("--executor", default="local", choices=("local", "ray"),
                           help="where the chunks run: this process (default) or a pool of Ray actors, one model "
                           "replica each; records, resume and the report are the same")
    ray_group.add_argument("--address", default=None, help="the Ray cluster: auto (ray start --head on this machine), "
                           "ray://HOST:10001, or default $RAY_ADDRESS, else a local Ray for this run")
    ray_group.add_argument("--workers", type=int, default=None, help="model replicas (default one per GPU, else one "
                           "per CPU)")
    ev.add_argument("--data", default=None, help="where benchmarks' data is: TASK=PATH[,TASK=PATH…] (a save_to_disk "
                    "folder, parquet files, the original release's folder, or a hub id), or one PATH for a single "
                    "such task or for --task vqa (a .jsonl/.json/.csv file or a dataset)")
    judge = ev.add_argument_group("judge (mmvet, llava-bench)")
    judge.add_argument("--judge", default=None, help="an OpenAI-compatible URL for the GPT judge (without it, judged "
                       "tasks record their answers and the report says they await a judge)")
    judge.add_argument("--judge-model", default=None, help="the judge's model (default: the original's: gpt-4-0613 "
                       "for MM-Vet, gpt-4-0314 for LLaVA-Bench)")
    judge.add_argument("--judge-key-env", default="OPENAI_API_KEY", help="environment variable holding the judge's "
                       "API key (default OPENAI_API_KEY; the key is never written anywhere)")
    judge.add_argument("--judge-concurrency", type=int, default=4, help="judge requests in flight (default 4)")
    generic = ev.add_argument_group("generic VQA task (--task vqa --data FILE)")
    generic.add_argument("--columns", default=None, help="role=column,… for image, question, answer, id, category "
                         "(default: the role names)")
    generic.add_argument("--metric", default="exact", help="exact | first-word | vqa | yesno (default exact)")
    generic.add_argument("--split", default=None, help="the dataset's split")
    generic.add_argument("--suffix", default="", help="answer-format instruction appended to every question")
    generic.add_argument("--images-root", default=None, help="folder relative image paths start from (default: the "
                         "data file's)")
    vlm_eval = ev.add_argument_group("answering VLM")
    vlm_eval.add_argument("--vlm", default=None, help="hub id, local directory, 'shapes', or an OpenAI-compatible URL "
                          "(default llava-hf/llava-1.5-7b-hf)")
    vlm_eval.add_argument("--vlm-model", default=None, help="model name on the server (default: the server's first)")
    vlm_eval.add_argument("--api-key", default=None, help="API key for the server (default: $OPENAI_API_KEY)")
    vlm_eval.add_argument("--native-side", type=int, default=None,
                          help="a server's model input side in pixels (ViCrop's default crop window; a local "
                               "model's family says it: 336 LLaVA-1.5, 224 Qwen-VL, 128 shapes)")
    vlm_eval.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request")
    _add_method_flags(ev, reserved=ASK_RESERVED, model_defaults="as for ask; --method and --preset take "
                      "comma-separated lists, crossed with the strategies (map tasks: every preset by default)")
    _add_region_flags(ev)
    _add_device_flags(ev)

    demo = sub.add_parser("demo", help="start the web demo (Gradio; pip install 'attnprompt[demo]')",
                          description="Serve the web demo at http://HOST:PORT: an image, a question, the map, the "
                          "annotated image, the answers with and without the prompt.")
    demo.add_argument("--vlm", default="shapes", help="the answering VLM the page starts with (default: the "
                      "embedded shapes VLM, offline)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=7860)

    rep = sub.add_parser("report", help="write the report of an evaluation directory again",
                         description="Rebuild DIR/report.md, report.json, report.html and samples.jsonl from "
                         "DIR/records.sqlite.")
    rep.add_argument("directory", help="the --out directory of attnprompt eval")
    return parser


#: Flags whose values may start with "-" without being numbers (slices and lists of layers).
_DASHED_VALUE_FLAGS = ("--layers", "--comp-layer")
_DASHED_VALUE = re.compile(r"^-\d*[:,][\d:,\s-]*$")


def _attach_dashed_values(argv: list[str]) -> list[str]:
    """``--layers -4:`` → ``--layers=-4:``: argparse would read ``-4:`` as an unknown flag (a plain
    negative number like ``-2`` it already accepts).

    >>> _attach_dashed_values(["annotate", "--layers", "-4:", "--kernel", "1"])
    ['annotate', '--layers=-4:', '--kernel', '1']
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in _DASHED_VALUE_FLAGS and i + 1 < len(argv) and _DASHED_VALUE.match(argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 some batch items failed, 2 error).

    >>> main(["ask", "no-such.png", "q", "--vlm", "shapes"])
    2
    """
    parser = build_parser()
    args = parser.parse_args(_attach_dashed_values(sys.argv[1:] if argv is None else list(argv)))
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        commands = {"annotate": _annotate, "ask": _ask, "serve": _serve, "eval": _eval, "report": _report,
                    "demo": _demo}
        if args.command not in commands:
            parser.error(f"unknown command {args.command}")
        return commands[args.command](args)
    except AttnpromptError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(
            "interrupted" + ("; rerun the same command to resume"
                             if getattr(args, "batch", None) or args.command == "eval" else ""),
            file=sys.stderr,
        )
        return 130
    finally:
        warnings.showwarning = previous
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .backends.local import LocalVLM
    from .errors import InputError
    from .serve import Limits, check_address, serve

    for flag, value in (("--max-body-mb", args.max_body_mb), ("--max-images", args.max_images),
                        ("--max-image-mpx", args.max_image_mpx), ("--max-prompt-chars", args.max_prompt_chars)):
        if not value > 0:
            raise InputError(f"{flag} must be a positive number; got {value:g}")
    limits = Limits(max_body=max(1, int(args.max_body_mb * 2**20)), max_images=args.max_images,
                    max_image_pixels=max(1, int(args.max_image_mpx * 1e6)), max_prompt_chars=args.max_prompt_chars)
    check_address(args.host, args.port, try_bind=True)  # before minutes of model loading
    backend = LocalVLM.from_pretrained(args.vlm, loading=_loading(args), batch_size=args.batch_size)
    serve(backend, args.host, args.port, model_name=args.name or backend.name, verbose=args.verbose, limits=limits)
    return 0


def _map_args(args: argparse.Namespace) -> dict[str, Any]:
    """The attribution and loading options ``annotate`` and ``ask`` share, by their API names."""
    return dict(method=args.method, model=args.model, preset=args.preset, gray=args.gray, resample=args.resample,
                device=args.device, dtype=_loading(args))


def _annotate(args: argparse.Namespace) -> int:
    from .errors import InputError

    common = {**_map_args(args), "method": args.method or "api-clip"}
    if args.batch:
        if args.image or args.query or args.output:
            raise InputError("give either IMAGE QUERY -o OUT, or --batch FILE.jsonl --out-dir DIR, not both")
        if args.crop or _regions(args) is not None:
            raise InputError("batch mode writes no crops yet; annotate one image with --crop OUT.png")
        if not args.out_dir:
            raise InputError("--batch needs --out-dir DIR for the outputs")
        from .batch import run_batch

        report = run_batch(
            args.batch,
            args.out_dir,
            **common,
            batch_size=args.batch_size,
            visuals=args.visuals,
            params=_method_params(args),
            overwrite=args.overwrite,
        )
        print(report.summary())
        return EXIT_PARTIAL if report.failed else 0

    if not args.image or args.query is None:
        raise InputError("annotate needs IMAGE and QUERY (or --batch FILE.jsonl --out-dir DIR)")
    if not args.output:
        raise InputError("annotate needs -o OUT.png for the annotated image")
    if args.heatmap and not args.heatmap.lower().endswith(".npy"):
        raise InputError(f"--heatmap {args.heatmap}: heatmaps are saved losslessly as .npy; use a .npy suffix")
    from .api import annotate
    from .checks import check_query
    from .files import check_writable
    from .images import load_image

    # everything that can be checked is, before a model loads
    for flag, path in (("-o", args.output), ("--heatmap", args.heatmap), ("--visual", args.visual),
                       ("--crop", args.crop)):
        if path:
            check_writable(path, flag)
    image = load_image(args.image, name=args.image)
    regions = _regions(args)
    if regions is not None and not args.crop:
        raise InputError("the regions flags choose a crop; give --crop OUT.png to write it")
    ann = annotate(image, check_query(args.query), regions=regions or bool(args.crop), **common,
                   **_method_params(args))
    ann.save(args.output, heatmap=args.heatmap, visual=args.visual, crop=args.crop)
    written = [args.output] + [p for p in (args.heatmap, args.visual, args.crop) if p]
    print(f"wrote {', '.join(written)}")
    return 0


def _ask(args: argparse.Namespace) -> int:
    from .api import ask
    from .backends import get_backend
    from .errors import InputError

    strategy = STRATEGIES.get(args.strategy)
    if args.save_annotated and not strategy.needs.map:
        raise InputError(f"--save-annotated needs a strategy that annotates the image, not {args.strategy!r}")
    if args.segmenter and not strategy.needs.segmenter:
        drawing = [n for n in STRATEGIES.names() if STRATEGIES.get(n).needs.segmenter]
        raise InputError(f"--segmenter is for the strategies that draw from masks ({', '.join(drawing)}), "
                         f"not {args.strategy!r}")
    from .checks import check_query
    from .files import check_writable
    from .images import load_image

    # everything that can be checked is, before a model loads
    if args.save_annotated:
        check_writable(args.save_annotated, "--save-annotated")
    image, question = load_image(args.image, name=args.image), check_query(args.question)
    backend = get_backend(
        args.vlm,
        vlm_model=args.vlm_model,
        api_key=args.api_key,
        timeout=args.timeout,
        device=args.device,
        dtype=_loading(args),
        native_side=args.native_side,
    )
    result = ask(
        image, question, vlm=backend, strategy=args.strategy, suffix=args.suffix,
        sources=[s for s in args.sources.split(",") if s.strip()] if args.sources else None,
        segmenter=args.segmenter, max_new_tokens=args.max_new_tokens, compare=args.compare, form=args.form,
        regions=_regions(args),
        **_map_args(args), **_method_params(args, reserved=ASK_RESERVED),
    )
    results = [result] + ([result.baseline] if result.baseline is not None else [])
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    elif result.baseline is not None:
        width = max(24, *(len(_label(r)) + 2 for r in results))
        for r in results:
            print(f"{_label(r) + ':':{width}s}{_shown(r)}")
    else:
        print(_shown(result))
    failed = [step.answer for r in results for step in r.steps if not step.answer.ok]
    for a in failed:
        print(f"error: the VLM did not answer: {a.error}", file=sys.stderr)
    if args.save_annotated and result.annotation is not None:
        # after the answer is printed: a file that cannot be written must not lose it
        from .files import save_image

        save_image(result.annotation.image, args.save_annotated)
    return EXIT_ERROR if failed else 0


def _label(result: Any) -> str:
    strategy, config = result.config["strategy"], result.config
    if "maps" in config:
        return f"{strategy} ({'+'.join(m['method'] for m in config['maps'])})"
    return f"{strategy} ({config['map']['method']})" if "map" in config else strategy


def _shown(result: Any) -> str:
    return result.text if result.answer.ok else "<no answer>"


def _eval(args: argparse.Namespace) -> int:
    from .errors import InputError
    from .evaluation.runner import evaluate
    from .evaluation.tasks import generic_task

    tasks: list[Any] = [t.strip() for t in args.task.split(",") if t.strip()]
    data = _data_locations(args.data, tasks)
    if "vqa" in tasks:
        if "vqa" not in data:
            raise InputError("--task vqa is a generic task over your data; give --data FILE.jsonl|.csv|DATASET")
        tasks[tasks.index("vqa")] = generic_task(data.pop("vqa"), columns=args.columns, metric=args.metric,
                                                 split=args.split, suffix=args.suffix, images_root=args.images_root)
    run = evaluate(
        tasks, out=args.out, vlm=args.vlm, strategies=args.strategy, methods=args.method, presets=args.preset,
        forms=args.form, model=args.model, sources=args.sources.split(",") if args.sources else None,
        segmenter=args.segmenter,
        limit=args.limit, batch_size=args.batch_size, concurrency=args.concurrency, retry_failed=args.retry_failed,
        max_new_tokens=args.max_new_tokens, gray=args.gray, resample=args.resample, regions=_regions(args),
        gallery=args.gallery, progress=not args.quiet, device=args.device, dtype=_loading(args),
        vlm_model=args.vlm_model, api_key=args.api_key, timeout=args.timeout, native_side=args.native_side,
        data=data or None,
        judge=args.judge, judge_model=args.judge_model, judge_key_env=args.judge_key_env,
        judge_concurrency=args.judge_concurrency, executor=args.executor, address=args.address, workers=args.workers,
        **_method_params(args, reserved=ASK_RESERVED),
    )
    print(run.summary())
    return EXIT_PARTIAL if run.failed else 0


def _data_locations(value: str | None, tasks: list[str]) -> dict[str, str]:
    """``--data``: ``task=PATH,…``, or one PATH for the one task among ``tasks`` that reads data.

    >>> _data_locations("mme=/d/mme,pope=/d/pope", ["mme", "pope"]), _data_locations("x.jsonl", ["vqa"])
    ({'mme': '/d/mme', 'pope': '/d/pope'}, {'vqa': 'x.jsonl'})
    """
    from .errors import InputError
    from .evaluation.tasks import TASKS, Task

    if not value:
        return {}
    pairs = [p.partition("=") for p in value.split(",")]
    if all(sep and name.strip() in tasks for name, sep, _ in pairs):
        return {name.strip(): path.strip() for name, _, path in pairs}
    readers = [t for t in tasks if t == "vqa" or (t in TASKS and not isinstance(TASKS.get(t), Task))]
    if len(readers) != 1:
        raise InputError(f"--data {value}: say which task each location is for (TASK=PATH,…); tasks that read data: "
                         f"{', '.join(readers) or 'none'}")
    return {readers[0]: value}


def _demo(args: argparse.Namespace) -> int:
    from .demo.app import _gradio, serve
    from .serve import check_address

    _gradio()  # says how to install it, before anything else
    check_address(args.host, args.port, try_bind=True)
    print(f"attnprompt demo on http://{args.host}:{args.port} (Ctrl-C to stop)", flush=True)
    serve(args.vlm, args.host, args.port)
    return 0


def _report(args: argparse.Namespace) -> int:
    from .evaluation.report import write_report

    for path in write_report(args.directory):
        print(f"wrote {path}")
    return 0
