"""Peak memory of ``attnprompt ask`` on a large image: plain, api and carve with the shapes models, on a 7680×4320
(8K) PNG against a 640×360 copy of the same scene, side by side, each as a multiple of plain's.

Each measurement is a fresh process (the CLI's ``ask``, as a user runs it), so one run's memory never hides
another's; its peak RSS is what the kernel reports for it (``ru_maxrss``), the same figure ``/usr/bin/time -v``
prints. CPU only; the shapes models are embedded, so nothing is downloaded. ``--smoke``: plain and api on a 640×360
image only, in seconds — it proves the script runs; its figures mean nothing.

    python benchmarks/bench_memory.py [--strategies plain,api,carve] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

from attnprompt.files import atomic_write
from attnprompt.shapes import make_scene

QUESTION = "What colour is the circle?"
SIZES = {"8K (7680×4320)": (7680, 4320), "640×360": (640, 360)}

# run in the child: the CLI's ask, then its own peak RSS (ru_maxrss is in KiB on Linux) and CPU seconds
CHILD = """
import resource, sys
from attnprompt.cli import main
code = main(["ask", sys.argv[1], sys.argv[2], "--vlm", "shapes", "--strategy", sys.argv[3]])
usage = resource.getrusage(resource.RUSAGE_SELF)
print("MAXRSS", usage.ru_maxrss, usage.ru_utime + usage.ru_stime, file=sys.stderr)
sys.exit(code)
"""


def images(folder: Path, sizes: dict[str, tuple[int, int]]) -> dict[str, Path]:
    """The scene drawn at 640×640, stretched to each size (nearest: sharp edges, as a photo's would be)."""
    scene = make_scene(7, n_objects=5, size=640).image
    out = {}
    for label, size in sizes.items():
        path = folder / f"{size[0]}x{size[1]}.png"
        scene.resize(size, Image.Resampling.NEAREST).save(path)
        out[label] = path
    return out


def measure(image: Path, strategy: str) -> tuple[float, float, str]:
    """Peak RSS (GB), CPU seconds (imports and model loading included) and the answer of one ``ask`` in a fresh
    process."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(image), QUESTION, strategy], capture_output=True,
                          text=True, check=True)
    kib, cpu = next(line.split()[1:] for line in done.stderr.splitlines() if line.startswith("MAXRSS"))
    return int(kib) * 1024 / 1e9, float(cpu), done.stdout.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--strategies", default="plain,api,carve", help="comma-separated; plain is always measured")
    ap.add_argument("--out", default=None, help="also write memory_cpu.txt into this folder")
    ap.add_argument("--smoke", action="store_true", help="plain and api on 640×360 only")
    args = ap.parse_args()
    sizes = {"640×360": (640, 360)} if args.smoke else SIZES
    strategies = ["plain"] + [s for s in ("api" if args.smoke else args.strategies).split(",") if s != "plain"]
    large, *small = sizes
    lines = [f"peak RSS of `attnprompt ask IMG {QUESTION!r} --vlm shapes --strategy S` (GB; CPU seconds; answer)",
             f"{'strategy':<10}" + "".join(f"{label:>32}" for label in sizes)]
    cells = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = images(Path(tmp), sizes)
        decoded = sizes[large][0] * sizes[large][1] * 3 / 1e9
        for strategy in strategies:
            cells[strategy] = [measure(paths[label], strategy) for label in sizes]
            row = cells[strategy]
            lines.append(f"{strategy:<10}" + "".join(f"{f'{gb:.2f} GB; {s:.1f} CPU s; {a}':>32}" for gb, s, a in row))
            if small:
                lines.append(f"{'':<10}{large} − {small[0]}: {row[0][0] - row[1][0]:.2f} GB = "
                             f"{(row[0][0] - row[1][0]) / decoded:.1f}× the decoded {large} image ({decoded:.2f} GB)")
    lines.append("as a multiple of plain's peak RSS (CPU seconds)")
    for strategy in strategies[1:]:
        lines.append(f"{strategy:<10}" + "".join(
            f"{f'{gb / p_gb:.2f}× ({s / p_s:.2f}×)':>32}"
            for (gb, s, _), (p_gb, p_s, _) in zip(cells[strategy], cells["plain"])))
    text = "\n".join(lines)
    print(text)
    if args.out:
        atomic_write(Path(args.out) / "memory_cpu.txt", lambda f: f.write(text + "\n"), binary=False)


if __name__ == "__main__":
    main()
