"""The ``attnprompt`` command. Thin: parses arguments, calls the public API, prints.

Heavy imports (torch, transformers) happen inside the subcommands, so ``attnprompt --help``
is instant. ``main(argv)`` returns an exit code and is what the tests call.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any, Sequence

from .errors import AttnpromptError

EXIT_ERROR = 2
EXIT_PARTIAL = 1

#: Method parameters exposed as flags: (flag, dest, type, help). Only flags the user sets are
#: passed on, so each method's config keeps its own defaults and rejects what it does not know.
METHOD_FLAGS: list[tuple[str, str, Any, str]] = [
    ("--layers", "layers", str, "block(s) to read: index (-2), list (20,22) or slice (-4:)"),
    ("--parts", "parts", str, "api-clip: both | cls | comp"),
    ("--enhance", "enhance", float, "contrast coefficient of sigmoid(coe·z); 0 = off"),
    ("--kernel", "kernel", int, "odd mean-filter size on the grid (1 = none)"),
    ("--centering", "centering", str, "api-clip: cls (authors) | exact"),
    ("--similarity", "similarity", str, "api-clip: dot (authors) | cosine"),
    ("--comp-layer", "comp_layer", str, "api-clip: block whose output feeds the complementary map"),
    ("--fit", "fit", str, "api-clip: pad | squash; api-vlm (LLaVA-1.5): pad | processor"),
    ("--variant", "variant", str, "api-vlm: reference (softmax over image tokens) | paper"),
    ("--grid", "grid", str, "api-vlm, LLaVA-NeXT: highres | base"),
    ("--attribution-tokens", "attribution_tokens", int, "api-vlm: greedy tokens whose attention is averaged (default 20)"),
]
#: CLI dest → method parameter, where the names differ.
_PARAM_NAMES = {"attribution_tokens": "max_new_tokens"}


def _method_params(args: argparse.Namespace) -> dict[str, Any]:
    return {
        _PARAM_NAMES.get(dest, dest): getattr(args, dest)
        for _, dest, _, _ in METHOD_FLAGS
        if getattr(args, dest, None) is not None
    }


def _add_model_args(p: argparse.ArgumentParser, *, for_ask: bool = False) -> None:
    if not for_ask:
        p.add_argument("--method", default="api-clip", help="attribution method: api-clip (default) | api-vlm")
        p.add_argument(
            "--model",
            default=None,
            help="hub id, local checkpoint directory, or 'shapes' (embedded, offline); default: "
            "openai/clip-vit-large-patch14-336 for api-clip, llava-hf/llava-1.5-7b-hf for api-vlm",
        )
    p.add_argument("--preset", default=None, help="named parameter set: reference (default) | paper")
    for flag, dest, typ, help_ in METHOD_FLAGS:
        p.add_argument(flag, dest=dest, type=typ, default=None, help=help_)
    p.add_argument("--gray", type=float, default=0.0, help="level masked pixels fade to, 0–255 (default 0 = black)")
    p.add_argument("--resample", default="bilinear", help="grid → pixels: nearest | bilinear | bicubic | lanczos")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 … (default: cuda if available)")
    p.add_argument("--dtype", default=None, help="float32 (default) | float16 | bfloat16")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests).

    >>> build_parser().parse_args(["annotate", "a.png", "the star", "-o", "b.png"]).command
    'annotate'
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
    ann.add_argument("--batch", help="JSONL file, one {image, query, id} per line")
    ann.add_argument("--out-dir", help="batch mode: output directory (resumable)")
    ann.add_argument("--batch-size", type=int, default=8, help="batch mode: images per forward (default 8)")
    ann.add_argument("--visuals", action="store_true", help="batch mode: also write ID.visual.png per item")
    _add_model_args(ann)

    ask = sub.add_parser(
        "ask",
        help="answer a question about an image, with attention prompting",
        description="Annotate IMAGE for QUESTION with the attributor, then ask the VLM about the annotated image.",
    )
    ask.add_argument("image", help="image file")
    ask.add_argument("question", help="the question")
    ask.add_argument(
        "--vlm", default=None,
        help="who answers: hub id, local directory, 'shapes' (embedded, offline), or an OpenAI-compatible "
        "URL (http://host:port/v1); default llava-hf/llava-1.5-7b-hf",
    )
    ask.add_argument("--vlm-model", default=None, help="model name on the server (default: the server's first)")
    ask.add_argument("--api-key", default=None, help="API key for the server (default: $OPENAI_API_KEY)")
    ask.add_argument("--timeout", type=float, default=60.0, help="seconds per HTTP request (one retry after a wait)")
    ask.add_argument("--attributor", default="api-clip", help="api-clip (default) | api-vlm (self-reflection) | none")
    ask.add_argument(
        "--attributor-model", default=None,
        help="auxiliary model g (default: the paper's CLIP for api-clip — the shapes CLIP with --vlm shapes — "
        "and the answering VLM itself for api-vlm)",
    )
    ask.add_argument("--save-annotated", default=None, help="also write the annotated image the VLM saw")
    ask.add_argument("--compare", action="store_true", help="also answer without prompting, and print both")
    ask.add_argument("--max-new-tokens", type=int, default=128, help="answer length limit (default 128)")
    _add_model_args(ask, for_ask=True)

    srv = sub.add_parser(
        "serve",
        help="serve a local VLM as an OpenAI-compatible endpoint",
        description="Expose a local VLM at http://HOST:PORT/v1/chat/completions (images as base64 data URLs).",
    )
    srv.add_argument("--vlm", default=None, help="hub id, local directory or 'shapes' (default llava-hf/llava-1.5-7b-hf)")
    srv.add_argument("--host", default="127.0.0.1")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--name", default=None, help="model name the server reports (default: the --vlm value)")
    srv.add_argument("--device", default=None)
    srv.add_argument("--dtype", default=None)
    srv.add_argument("--verbose", action="store_true", help="log each request to stderr")
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 some batch items failed, 2 error).

    >>> main(["--help"])  # doctest: +SKIP
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_ERROR
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        if args.command == "annotate":
            return _annotate(args, parser)
        if args.command == "ask":
            return _ask(args)
        if args.command == "serve":
            from .backends.local import LocalVLM
            from .backends.server import serve

            backend = LocalVLM.from_pretrained(args.vlm, device=args.device, dtype=args.dtype)
            serve(backend, args.host, args.port, model_name=args.name or backend.name, verbose=args.verbose)
            return 0
        parser.error(f"unknown command {args.command}")
    except AttnpromptError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted" + ("; rerun the same command to resume" if getattr(args, "batch", None) else ""), file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous
    return 0


def _annotate(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from .errors import InputError

    if args.batch:
        if args.image or args.query or args.output:
            raise InputError("give either IMAGE QUERY -o OUT, or --batch FILE.jsonl --out-dir DIR, not both")
        if not args.out_dir:
            raise InputError("--batch needs --out-dir DIR for the outputs")
        from .batch import run_batch

        report = run_batch(
            args.batch, args.out_dir, **_common(args), batch_size=args.batch_size, visuals=args.visuals,
            params=_method_params(args),
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

    ann = annotate(args.image, args.query, **_common(args), **_method_params(args))
    ann.save(args.output, heatmap=args.heatmap, visual=args.visual)
    written = [args.output] + [p for p in (args.heatmap, args.visual) if p]
    print(f"wrote {', '.join(written)}")
    return 0


def _common(args: argparse.Namespace) -> dict:
    """The options single and batch annotation share."""
    return dict(method=args.method, model=args.model, preset=args.preset, gray=args.gray,
                resample=args.resample, device=args.device, dtype=args.dtype)


def _ask(args: argparse.Namespace) -> int:
    from .api import ask
    from .errors import InputError

    if args.save_annotated and args.attributor == "none":
        raise InputError("--save-annotated needs an attributor (api-clip or api-vlm), not 'none'")
    result = ask(
        args.image,
        args.question,
        vlm=args.vlm,
        attributor=args.attributor,
        attributor_model=args.attributor_model,
        compare=args.compare,
        answer_tokens=args.max_new_tokens,
        preset=args.preset,
        gray=args.gray,
        resample=args.resample,
        device=args.device,
        dtype=args.dtype,
        vlm_model=args.vlm_model,
        api_key=args.api_key,
        timeout=args.timeout,
        **_method_params(args),
    )
    if args.save_annotated and result.annotation is not None:
        from .files import save_image

        save_image(result.annotation.image, args.save_annotated)
    failed = [a for a in (result.answer, result.baseline) if a is not None and not a.ok]
    if args.compare and result.baseline is not None:
        label = f"with {args.attributor}"
        print(f"{label + ':':22s}{_shown(result.answer)}")
        print(f"{'without prompting:':22s}{_shown(result.baseline)}")
    else:
        print(_shown(result.answer))
    for a in failed:
        print(f"error: the VLM did not answer: {a.error}", file=sys.stderr)
    return EXIT_ERROR if failed else 0


def _shown(answer: Any) -> str:
    return answer.text if answer.ok else "<no answer>"
