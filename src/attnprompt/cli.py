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
    ("--fit", "fit", str, "api-clip: pad | squash (how a non-square image becomes square)"),
]


def _method_params(args: argparse.Namespace) -> dict[str, Any]:
    return {dest: getattr(args, dest) for _, dest, _, _ in METHOD_FLAGS if getattr(args, dest, None) is not None}


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="api-clip", help="attribution method (default: api-clip)")
    p.add_argument(
        "--model",
        default=None,
        help="hub id, local checkpoint directory, or 'shapes' (embedded, offline); "
        "default for api-clip: openai/clip-vit-large-patch14-336",
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
            args.batch,
            args.out_dir,
            method=args.method,
            model=args.model,
            preset=args.preset,
            gray=args.gray,
            resample=args.resample,
            device=args.device,
            dtype=args.dtype,
            batch_size=args.batch_size,
            visuals=args.visuals,
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

    ann = annotate(
        args.image,
        args.query,
        method=args.method,
        model=args.model,
        preset=args.preset,
        gray=args.gray,
        resample=args.resample,
        device=args.device,
        dtype=args.dtype,
        **_method_params(args),
    )
    ann.save(args.output, heatmap=args.heatmap, visual=args.visual)
    written = [args.output] + [p for p in (args.heatmap, args.visual) if p]
    print(f"wrote {', '.join(written)}")
    return 0
