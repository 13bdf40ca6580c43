"""Large photos through every family (issue 39): a 4000×3000 and an 8K (7680×4320) photo, and a 640×480 one beside
them for the baseline, on reduced random-weight models built from each hub id's real files (tools/checkpoints.py:
the real config with a small language model and vision tower; the real processor, tokenizer, chat template), as a
user runs them:

- the image tokens one photo becomes for the answering model (and, for Qwen-VL, what the checkpoint's own processor
  would make of it without attnprompt's pixel budget), against the model's context;
- ``attnprompt ask PHOTO Q --vlm DIR --strategy carve --preset vicrop``, each in a fresh process (one thread): its
  exit status, wall and CPU seconds, and peak RSS (``ru_maxrss``, what ``/usr/bin/time -v`` prints).

The memory is the reduced models' (a few MB of weights; the vocabulary's embeddings are most of it); what it bounds
is the image handling — decoding, the bounded copy, the processor, the crop — which does not depend on the model's
width. CPU only; nothing is downloaded.

    PYTHONPATH=src python benchmarks/bench_large_photos.py [--hub-ids A,B] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tools beside the package

from tools.checkpoints import CHECKPOINT_VLMS, CHECKPOINTS  # noqa: E402  (no torch: this process stays small)

SIZES = {"640×480": (640, 480), "4000×3000": (4000, 3000), "8K 7680×4320": (7680, 4320)}
QUESTION = "What is written on the small sign at the left of the picture?"
CHILD = """
import resource, sys
from attnprompt.cli import main
code = main(["ask", sys.argv[1], sys.argv[2], "--vlm", sys.argv[3], "--strategy", "carve", "--preset", "vicrop",
             "--max-new-tokens", "8", "--device", "cpu"])
print("MAXRSS", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
sys.exit(code)
"""


def photo(size: tuple[int, int], seed: int = 0) -> Image.Image:
    """Smooth colour fields with fine noise: as costly to decode and resize as a photo."""
    w, h = size
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (h // 200 + 2, w // 200 + 2, 3), dtype=np.uint8))
    base = np.asarray(small.resize((w, h), Image.Resampling.BILINEAR), dtype=np.int16)
    return Image.fromarray(np.clip(base + rng.integers(-10, 11, (h, w, 3), dtype=np.int16), 0, 255).astype(np.uint8))


def tokens(directory: Path, image: Image.Image, **loading) -> tuple[int, int]:
    """(image tokens of one photo as the answering model is given it, the model's context)."""
    from attnprompt.models import LoadOptions, answer_input, chat_prompt, context_length, load_vlm
    from attnprompt.types import Request

    vlm = load_vlm(str(directory), loading=LoadOptions(device="cpu", **loading))
    prompt = chat_prompt(vlm.processor, Request.single(image, QUESTION))
    ids = vlm.processor(text=[prompt], images=[[answer_input(vlm, image)]], return_tensors="pt")["input_ids"][0]
    return int((ids == vlm.family_info.image_token_id(vlm.model.config)).sum()), context_length(vlm)


def run_cli(image: Path, directory: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    t0 = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(image), QUESTION, str(directory)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    err = child.stderr.read()
    maxrss = next((int(line.split()[1]) for line in err.splitlines() if line.startswith("MAXRSS")), usage.ru_maxrss)
    code = os.waitstatus_to_exitcode(status)
    failed = [line for line in err.splitlines() if line.startswith("error:")]
    return {"exit": code, "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "peak_rss_mb": round(maxrss / 1024), "error": failed[0] if failed else ""}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hub-ids", default=",".join(CHECKPOINT_VLMS))
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS)
    parser.add_argument("--out", type=Path, default=None, help="also write large_photos_cpu.md here")
    parser.add_argument("--smoke", action="store_true",
                        help="the first checkpoint found, one small photo: proves the script runs")
    args = parser.parse_args(argv)
    hubs = [h.strip() for h in args.hub_ids.split(",") if h.strip()]
    hubs = [h for h in hubs if (args.checkpoints / h / "config.json").is_file()]
    if not hubs:
        print(f"no checkpoint's files under {args.checkpoints} for {args.hub_ids}: pass --checkpoints DIR",
              file=sys.stderr)
        return 2
    sizes = {"320×240": (320, 240)} if args.smoke else SIZES
    hubs = hubs[:1] if args.smoke else hubs
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    with tempfile.TemporaryDirectory() as tmp:
        # Everything heavy happens in children: a child forked from a large process would inherit its memory
        # high-water mark (ru_maxrss survives exec), so this process stays small until every run is measured.
        subprocess.run([sys.executable, "-m", "tools.checkpoints", "--out", tmp, "--checkpoints",
                        str(args.checkpoints), *hubs], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        files = {}
        for name, size in sizes.items():
            files[name] = Path(tmp) / f"photo-{size[0]}x{size[1]}.jpg"
            photo(size).save(files[name], quality=92)
        runs = {(hub_id, name): run_cli(files[name], Path(tmp) / hub_id) for hub_id in hubs for name in sizes}
        lines = ["| hub id | photo | image tokens (bound in force) | without the budget | context | ask carve vicrop: "
                 "exit | wall s | CPU s | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|"]
        for (hub_id, name), run in runs.items():
            directory = Path(tmp) / hub_id
            image = Image.open(files[name]).convert("RGB")
            n, context = tokens(directory, image)
            unbounded = "—"
            if "Qwen" in hub_id:  # the checkpoint's own processor bound (12.8–16.8 Mpx): what it was before
                saved = json.loads((args.checkpoints / hub_id / "preprocessor_config.json").read_text())
                own = saved.get("max_pixels") or saved["size"]["longest_edge"]
                unbounded = str(tokens(directory, image, max_pixels=own)[0])
            lines.append(f"| {hub_id} | {name} | {n} | {unbounded} | {context} | {run['exit']} {run['error'][:60]} | "
                         f"{run['wall_s']} | {run['cpu_s']} | {run['peak_rss_mb']} |")
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "large_photos_cpu.md").write_text(
            "Large photos through every family (benchmarks/bench_large_photos.py; CPU, one thread; reduced models "
            "from the real files). Exit 2: the random-weight model's answer was empty, a recorded failure; the run "
            "itself finished.\n\n" + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
