"""The ``attnprompt`` command. Thin: parses arguments into one
:class:`~attnprompt.strategies.spec.AskSpec` (and the few options of each command), calls the public API,
prints.

Heavy imports (torch, transformers) happen inside the subcommands, so ``attnprompt --help`` is quick.
The flags of how a question is asked come from the spec's fields
(:func:`~attnprompt.strategies.spec.spec_fields`), the methods' parameters from their configs
(:func:`attnprompt.presets.cli_parameters`) and the forms from their registry, so each default and help
text is written once. ``main(argv)`` returns an exit code and is what the tests call.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any, TextIO

from .errors import EXIT_ERROR, EXIT_PARTIAL, AttnpromptError

#: Prefix of the region-selection flags (``--region-top``).
REGION_PREFIX = "region_"
#: The spec's settings that ``eval`` crosses (comma-separated lists of its own flags).
CROSSED = ("method", "preset", "form")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _add_spec_flags(p: argparse.ArgumentParser, *, crossed: bool = False) -> None:
    """One flag per setting of how a question is asked (:func:`~attnprompt.strategies.spec.spec_fields`),
    one per method parameter (``--map-max-new-tokens`` for api-vlm's own budget beside the answer's) and
    the regions flags; default None everywhere, so only what the user sets is passed on and each method keeps
    its own defaults. ``crossed``: ``eval``, whose method, preset and form are comma-separated lists."""
    from .attribution.configs import METHODS
    from .forms import forms_help
    from .presets import cli_parameters
    from .strategies.spec import MAP_PREFIX, spec_fields

    group = p.add_argument_group("how the question is asked", "the map, its visual prompt, the segmenter (only "
                                 "what you set is passed on)")
    for name, meta, _ in spec_fields():
        if crossed and name in CROSSED:
            continue
        help_ = meta["help"] + (f": {forms_help()}" if name == "form" else "")
        kwargs: dict[str, Any] = {"type": meta["parse"]} if meta["parse"] not in (None, str) else {}
        group.add_argument(_flag(name), dest=name, default=None, help=help_, **kwargs)
    for param in cli_parameters(METHODS.configs()):
        dest = MAP_PREFIX + param.name if param.name == "max_new_tokens" else param.name
        kwargs = {"action": argparse.BooleanOptionalAction} if param.parse is bool else {"type": param.parse}
        group.add_argument(_flag(dest), dest=dest, default=None, help=param.help, **kwargs)
    _add_region_flags(p)


def _add_region_flags(p: argparse.ArgumentParser) -> None:
    """``--regions PRESET`` and one ``--region-*`` flag per field of :class:`~attnprompt.regions.RegionConfig`."""
    from .presets import cli_parameters
    from .regions import RegionConfig
    group = p.add_argument_group("regions", "how a crop is chosen from the map (only those you set are passed on)")
    group.add_argument("--regions", default=None, help=f"rule preset: {' | '.join(RegionConfig.PRESETS)} (default: "
                       "the method's own: vicrop for --method carve --preset vicrop, else carve)")
    for param in cli_parameters({"regions": RegionConfig}):
        dest = REGION_PREFIX + param.name
        kwargs: dict[str, Any] = {"action": argparse.BooleanOptionalAction} if param.parse is bool else {
            "type": param.parse}
        group.add_argument(_flag(dest), dest=dest, default=None, help=param.help.removeprefix("regions: "), **kwargs)


def _add_device_flags(p: Any) -> None:
    """How local models load and run (one :class:`~attnprompt.models.LoadOptions`: :func:`_loading`)."""
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
    p.add_argument("--threads", type=int, default=None, help="CPU threads torch may use (default: torch's, one per "
                   "core); on a shared machine 1 or 2 is often much faster than many threads fighting for cores")


def _loading(args: argparse.Namespace) -> Any:
    """The loading flags as one :class:`attnprompt.models.LoadOptions`."""
    from .models import LoadOptions, parse_generation

    return LoadOptions(device=args.device, dtype=args.dtype, device_map=args.device_map, quantize=args.quantize,
                       attn_implementation=args.attn_implementation, max_pixels=args.max_pixels,
                       min_pixels=args.min_pixels, answer_fit=args.answer_fit,
                       generation=parse_generation(args.generation) if args.generation else ())


def _add_vlm_flags(p: argparse.ArgumentParser, *, server: bool = True) -> None:
    """The answering VLM: ``--vlm`` and, for a server, its model name, key, native side and timeout."""
    group = p.add_argument_group("answering VLM")
    group.add_argument("--vlm", default=None, help="who answers: hub id, local directory, 'shapes' (embedded, "
                       "offline)" + (", or an OpenAI-compatible URL (http://host:port/v1)" if server else "")
                       + "; default llava-hf/llava-1.5-7b-hf")
    if server:
        group.add_argument("--vlm-model", default=None, help="model name on the server (default: the server's first)")
        group.add_argument("--api-key", default=None, help="API key for the server (default: $OPENAI_API_KEY)")
        group.add_argument("--native-side", type=int, default=None,
                           help="a server's model input side in pixels (ViCrop's default crop window; a local "
                                "model's family says it: 336 LLaVA-1.5, 224 Qwen-VL, 128 shapes)")
        group.add_argument("--timeout", type=float, default=60.0,
                           help="seconds per HTTP request (one retry after a wait)")
    _add_device_flags(group)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests); with ``only``, the flags of that command
    alone (``""``: none, for the top-level help), so a command imports only what it needs.

    >>> build_parser().parse_args(["annotate", "a.png", "the star", "-o", "b.png", "--kernel", "1"]).kernel
    1
    """
    parser = argparse.ArgumentParser(
        prog="attnprompt",
        description="Make vision-language models look where a question points (Attention Prompting on Image).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_, add_flags) in _commands().items():
        command = sub.add_parser(name, help=help_)
        if only is None or only == name:  # the other commands' flags (and their imports) are not needed
            add_flags(command)
    return parser


def _commands() -> dict[str, tuple[str, Any]]:
    """Each command: its one-line help, and what adds its description and flags."""
    return {"annotate": ("overlay a query-guided heatmap on an image", _annotate_parser),
            "ask": ("answer a question about an image, with attention prompting", _ask_parser),
            "serve": ("serve a local VLM as an OpenAI-compatible endpoint", _serve_parser),
            "eval": ("evaluate strategies (or maps) on benchmark tasks; resumable; writes a report", _eval_parser),
            "demo": ("start the web demo (Gradio; pip install 'attnprompt[demo]')", _demo_parser),
            "report": ("write the report of an evaluation directory again", _report_parser),
            "vlmeval": ("run VLMEvalKit's run.py with attnprompt's models (attnprompt vlmeval -h)", _vlmeval_parser)}


def _annotate_parser(ann: argparse.ArgumentParser) -> None:
    from .attribution.configs import METHODS
    from .presets import cli_parameters
    ann.description = ("Annotate IMAGE for QUERY, or every line of --batch FILE.jsonl "
        '({"image": ..., "query": ..., "id": ...} per line) into --out-dir.')
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
    group = ann.add_argument_group("attribution map", "the method's parameters (only those you set are passed on)")
    group.add_argument("--method", default=None, help=f"attribution method: {' | '.join(METHODS.names())} "
                       "(default api-clip)")
    group.add_argument("--model", default=None, help="the method's model: hub id, local checkpoint directory, or "
                       "'shapes' (embedded, offline); default openai/clip-vit-large-patch14-336 for api-clip, "
                       "llava-hf/llava-1.5-7b-hf for api-vlm and carve")
    group.add_argument("--preset", default=None, help="named parameter set (default the method's own)")
    group.add_argument("--gray", type=float, default=0.0, help="level masked pixels fade to, 0–255 (default 0 = black)")
    group.add_argument("--resample", default="bilinear", help="grid → pixels: nearest | bilinear | bicubic | lanczos")
    for param in cli_parameters(METHODS.configs()):
        kwargs: dict[str, Any] = {"action": argparse.BooleanOptionalAction} if param.parse is bool else {
            "type": param.parse}
        # the map's own parameters keep their names here (annotate has no answer budget of its own)
        dest = "map_max_new_tokens" if param.name == "max_new_tokens" else param.name
        group.add_argument(_flag(param.name), dest=dest, default=None, help=param.help, **kwargs)
    _add_region_flags(ann)
    _add_device_flags(ann)


def _ask_parser(ask: argparse.ArgumentParser) -> None:
    from .strategies.registry import STRATEGIES
    ask.description = ("Ask the VLM about IMAGE with a strategy: 'api' (default) annotates the image for QUESTION "
        "with the attribution method and asks about the annotated image; 'plain' asks about the original.")
    ask.add_argument("image", help="image file")
    ask.add_argument("question", help="the question")
    ask.add_argument("--strategy", default="api", help=f"how the VLM is asked: {' | '.join(STRATEGIES.names())} "
                     "(default api)")
    ask.add_argument("--suffix", default="", help="the task's answer-format instruction, e.g. 'Answer the question "
                     "using a single word or phrase.' (placed by the strategy)")
    ask.add_argument("--max-new-tokens", type=int, default=128, help="the answer's token budget (default 128)")
    ask.add_argument("--compare", action="store_true", help="also ask with 'plain', and print both")
    ask.add_argument("--json", action="store_true", help="print the whole result (every step) as JSON")
    ask.add_argument("--save-annotated", default=None, help="also write the annotated image the VLM saw")
    _add_vlm_flags(ask)
    _add_spec_flags(ask)


def _serve_parser(srv: argparse.ArgumentParser) -> None:
    from .serve import Limits

    srv.description = ("Expose a local VLM at http://HOST:PORT/v1/chat/completions (multi-turn; images as base64 "
        "data URLs).")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--name", default=None, help="model name the server reports (default: the --vlm value)")
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
    srv.add_argument("--verbose", action="store_true", help="log each request to stderr")
    srv.add_argument("--batch-size", type=int, default=4, help="requests answered per forward (default 4)")
    _add_vlm_flags(srv, server=False)


def _eval_parser(ev: argparse.ArgumentParser) -> None:
    from .attribution.configs import METHODS
    from .evaluation.tasks import TASKS
    from .forms import FORMS
    from .strategies.registry import STRATEGIES

    ev.description = ("Answer every sample of each task with each strategy (map tasks: each method and preset), "
        "one record per sample in DIR/records.sqlite; rerun the same command to resume. Writes DIR/report.md, "
        "report.json, report.html and samples.jsonl.")
    ev.add_argument("--task", required=True, help="comma-separated tasks: " + " | ".join(TASKS.names())
                    + " | path/to/file.py[:NAME] | vqa (a generic task over --data)")
    ev.add_argument("--out", required=True, help="output directory (records, report); resumable")
    ev.add_argument("--strategy", default="plain,api", help="comma-separated strategies (default plain,api): "
                    + " | ".join(STRATEGIES.names()))
    ev.add_argument("--method", default=None, help="comma-separated attribution methods crossed with the "
                    f"strategies that show a map: {' | '.join(METHODS.names())} (default each strategy's own; map "
                    "tasks: api-clip)")
    ev.add_argument("--preset", default=None, help="comma-separated presets, each crossed with the methods that "
                    "have it (map tasks: every preset by default)")
    ev.add_argument("--form", default=None, help="comma-separated visual-prompt forms for strategies that show a "
                    "map: " + " | ".join(FORMS.names()) + " (default: each strategy's)")
    ev.add_argument("--max-new-tokens", type=int, default=None, help="answer budget (default: each task's own)")
    _add_run_flags(ev)
    _add_data_flags(ev)
    _add_vlm_flags(ev)
    _add_spec_flags(ev, crossed=True)


def _add_run_flags(ev: argparse.ArgumentParser) -> None:
    ev.add_argument("--limit", type=int, default=None, help="the first N samples of each task")
    ev.add_argument("--batch-size", type=int, default=8, help="answers per forward on a local VLM (default 8)")
    ev.add_argument("--concurrency", type=int, default=None, help="requests in flight to a server (default 4)")
    ev.add_argument("--retry-failed", action="store_true",
                    help="run again the samples whose record is a failure, and ask the judge again about unreadable "
                    "verdicts (answers the judge gave no reply on are asked again by every run)")
    ev.add_argument("--gallery", type=int, default=200, help="keep pictures of what the VLM saw for the first N "
                    "samples of each task, for the report's gallery (default 200; 0: none)")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.add_argument("--strict", action="store_true", help="a data row that cannot be read stops the run, and any "
                    "failed sample makes the command exit 1 (default: failures are recorded, counted in the summary "
                    "and the report, and the command exits 0 when the run completed)")
    ray_group = ev.add_argument_group("Ray (pip install 'attnprompt[ray]')")
    ray_group.add_argument("--executor", default="local", choices=("local", "ray"),
                           help="where the chunks run: this process (default) or a pool of Ray actors, one model "
                           "replica each; records, resume and the report are the same")
    ray_group.add_argument("--address", default=None, help="the Ray cluster: auto (ray start --head on this machine), "
                           "ray://HOST:10001, or default $RAY_ADDRESS, else a local Ray for this run")
    ray_group.add_argument("--workers", type=int, default=None, help="model replicas (default one per GPU, else one "
                           "per CPU)")
    judge = ev.add_argument_group("judge (mmvet, llava-bench; optional for hr-bench, aokvqa)")
    judge.add_argument("--judge", default=None, help="an OpenAI-compatible URL for the GPT judge (without it, MM-Vet "
                       "and LLaVA-Bench record their answers and the report says they await a judge; HR-Bench and "
                       "A-OKVQA use it only for replies their readers cannot match to an option)")
    judge.add_argument("--judge-model", default=None, help="the judge's model (default: the original's: gpt-4-0613 "
                       "for MM-Vet, gpt-4-0314 for LLaVA-Bench)")
    judge.add_argument("--judge-key-env", default="OPENAI_API_KEY", help="environment variable holding the judge's "
                       "API key (default OPENAI_API_KEY; the key is never written anywhere)")
    judge.add_argument("--judge-concurrency", type=int, default=4, help="judge requests in flight (default 4)")


def _add_data_flags(ev: argparse.ArgumentParser) -> None:
    ev.add_argument("--data", default=None, help="where benchmarks' data is: TASK=PATH[,TASK=PATH…] (a save_to_disk "
                    "folder, parquet files, the original release's folder, or a hub id), or one PATH for a single "
                    "such task or for --task vqa (a .jsonl/.json/.csv file or a dataset)")
    generic = ev.add_argument_group("generic VQA task (--task vqa --data FILE)")
    generic.add_argument("--columns", default=None, help="role=column,… for image, question, answer, id, category "
                         "(default: the role names)")
    generic.add_argument("--metric", default="exact", help="exact | first-word | vqa | yesno (default exact)")
    generic.add_argument("--split", default=None, help="the dataset's split")
    generic.add_argument("--suffix", default="", help="answer-format instruction appended to every question")
    generic.add_argument("--images-root", default=None, help="folder relative image paths start from (default: the "
                         "data file's)")


def _demo_parser(demo: argparse.ArgumentParser) -> None:
    demo.description = ("Serve the web demo at http://HOST:PORT: an image, a question, the map, the "
                          "annotated image, the answers with and without the prompt.")
    demo.add_argument("--vlm", default="shapes", help="the answering VLM the page starts with (default: the "
                      "embedded shapes VLM, offline)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=7860)
    _add_device_flags(demo.add_argument_group("how local models load"))


def _report_parser(rep: argparse.ArgumentParser) -> None:
    rep.description = ("Rebuild DIR/report.md, report.json, report.html and samples.jsonl from "
                         "DIR/records.sqlite.")
    rep.add_argument("directory", help="the --out directory of attnprompt eval")


def _vlmeval_parser(kit: argparse.ArgumentParser) -> None:
    # "+" is no flag prefix of VLMEvalKit's: every argument (-h too) reaches run_kit as it is, which reads
    # ours and hands the rest to the kit's run.py
    kit.prefix_chars = "+"
    kit.add_argument("arguments", nargs="*")


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


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code: 0 done (failures, if any, recorded and counted), 1 done
    but not as asked (``eval --strict`` with failures, nothing answered, every judge call unanswered; batch
    items failed; the VLM gave no answer), 2 an error, 130 interrupted.

    >>> main(["ask", "no-such.png", "q", "--vlm", "shapes"])
    2
    """
    argv = _attach_dashed_values(sys.argv[1:] if argv is None else list(argv))
    # only the command asked for gets its flags (and imports what they need): `attnprompt --help` stays quick
    named = next((a for a in argv if not a.startswith("-")), "")
    parser = build_parser(only=named if named in _commands() else "")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        _set_threads(getattr(args, "threads", None))
        commands = {"annotate": _annotate, "ask": _ask, "serve": _serve, "eval": _eval, "report": _report,
                    "demo": _demo, "vlmeval": _vlmeval}
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


def _set_threads(threads: int | None) -> None:
    """``--threads N``: torch's intra-op threads, set before any model runs."""
    if threads is None:
        return
    from .checks import check_count

    check_count("--threads", threads)
    import torch

    torch.set_num_threads(threads)


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


def _map_settings(args: argparse.Namespace) -> tuple[dict[str, Any], Any]:
    """``annotate``'s map settings by their API names (read through the spec, as every command does), and
    the regions the flags choose (``None``: none chosen)."""
    from .strategies.spec import AskSpec, regions_from_flags

    m = AskSpec.from_flags(args).map
    settings = dict(method=m.method or "api-clip", model=m.model, preset=m.preset, gray=m.gray, resample=m.resample,
                    loading=_loading(args), **m.params)
    return settings, regions_from_flags(args)


def _annotate(args: argparse.Namespace) -> int:
    from .errors import InputError

    settings, regions = _map_settings(args)
    if args.batch:
        if args.image or args.query or args.output:
            raise InputError("give either IMAGE QUERY -o OUT, or --batch FILE.jsonl --out-dir DIR, not both")
        if args.crop or regions is not None:
            raise InputError("batch mode writes no crops yet; annotate one image with --crop OUT.png")
        if not args.out_dir:
            raise InputError("--batch needs --out-dir DIR for the outputs")
        from .batch import BatchOptions, run_batch

        options = BatchOptions(batch_size=args.batch_size, visuals=args.visuals, overwrite=args.overwrite)
        report = run_batch(args.batch, args.out_dir, options, **settings)
        print(report.summary())
        return EXIT_PARTIAL if report.failed else 0
    return _annotate_one(args, settings, regions)


def _annotate_one(args: argparse.Namespace, settings: dict[str, Any], regions: Any) -> int:
    from .api import annotate
    from .checks import check_query
    from .errors import InputError
    from .files import check_writable
    from .images import load_image

    if not args.image or args.query is None:
        raise InputError("annotate needs IMAGE and QUERY (or --batch FILE.jsonl --out-dir DIR)")
    if not args.output:
        raise InputError("annotate needs -o OUT.png for the annotated image")
    if args.heatmap and not args.heatmap.lower().endswith(".npy"):
        raise InputError(f"--heatmap {args.heatmap}: heatmaps are saved losslessly as .npy; use a .npy suffix")
    # everything that can be checked is, before a model loads
    for flag, path in (("-o", args.output), ("--heatmap", args.heatmap), ("--visual", args.visual),
                       ("--crop", args.crop)):
        if path:
            check_writable(path, flag)
    image = load_image(args.image, name=args.image)
    if regions is not None and not args.crop:
        raise InputError("the regions flags choose a crop; give --crop OUT.png to write it")
    ann = annotate(image, check_query(args.query), regions=regions or bool(args.crop), **settings)
    ann.save(args.output, heatmap=args.heatmap, visual=args.visual, crop=args.crop)
    written = [args.output] + [p for p in (args.heatmap, args.visual, args.crop) if p]
    print(f"wrote {', '.join(written)}")
    return 0


def _ask(args: argparse.Namespace) -> int:
    from .api import ask_spec
    from .backends import get_backend
    from .checks import check_query
    from .errors import InputError
    from .files import check_writable
    from .images import load_image
    from .strategies.registry import STRATEGIES
    from .strategies.spec import AskSpec

    # everything that can be checked is, before a model loads: the settings, the files, the question
    spec = AskSpec.from_flags(args).replace(strategy=args.strategy, max_new_tokens=args.max_new_tokens).check()
    if args.save_annotated and not STRATEGIES.get(spec.strategy).needs.map:
        raise InputError(f"--save-annotated needs a strategy that annotates the image, not {args.strategy!r}")
    if args.save_annotated:
        check_writable(args.save_annotated, "--save-annotated")
    image, question = load_image(args.image, name=args.image), check_query(args.question, name="QUESTION")
    loading = _loading(args)
    backend = get_backend(args.vlm, vlm_model=args.vlm_model, api_key=args.api_key, timeout=args.timeout,
                          loading=loading, native_side=args.native_side)
    result = ask_spec(image, question, spec, vlm=backend, suffix=args.suffix, compare=args.compare,
                      loading=loading)
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
    from .evaluation.evaluate import evaluate
    from .evaluation.tasks import generic_task
    from .strategies.spec import AskSpec

    spec = AskSpec.from_flags(args, skip=CROSSED).replace(max_new_tokens=args.max_new_tokens)
    tasks: list[Any] = [t.strip() for t in args.task.split(",") if t.strip()]
    data = _data_locations(args.data, tasks)
    if "vqa" in tasks:
        if "vqa" not in data:
            raise InputError("--task vqa is a generic task over your data; give --data FILE.jsonl|.csv|DATASET")
        tasks[tasks.index("vqa")] = generic_task(data.pop("vqa"), columns=args.columns, metric=args.metric,
                                                 split=args.split, suffix=args.suffix, images_root=args.images_root)
    run = evaluate(
        tasks, out=args.out, spec=spec, vlm=args.vlm, strategies=args.strategy, methods=args.method,
        presets=args.preset, forms=args.form, limit=args.limit, batch_size=args.batch_size,
        concurrency=args.concurrency, retry_failed=args.retry_failed, gallery=args.gallery, progress=not args.quiet,
        loading=_loading(args), vlm_model=args.vlm_model, api_key=args.api_key, timeout=args.timeout,
        native_side=args.native_side, data=data or None, judge=args.judge, judge_model=args.judge_model,
        judge_key_env=args.judge_key_env, judge_concurrency=args.judge_concurrency, executor=args.executor,
        address=args.address, workers=args.workers, strict=args.strict,
    )
    print(run.summary())
    return run.exit_code(strict=args.strict)


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
    serve(args.vlm, args.host, args.port, loading=_loading(args))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .evaluation.report import write_report

    for path in write_report(args.directory):
        print(f"wrote {path}")
    return 0


def _vlmeval(args: argparse.Namespace) -> int:
    from .integrations.vlmeval import run_kit

    return run_kit(args.arguments)
