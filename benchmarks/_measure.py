"""Shared measurement helpers for the benchmark scripts (not part of the package)."""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

import torch


def exact_cpu_memory() -> None:
    """Re-run this script with glibc's mmap threshold fixed, so that CPU peak memory is visible.

    By default glibc raises its mmap threshold after large frees, so later tensors come from the
    heap and RSS never drops: every op after the first would show ~0 extra memory. With a fixed
    threshold, large tensors are mmapped and unmapped, and sampled RSS follows live memory.
    """
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        os.environ["MALLOC_MMAP_THRESHOLD_"] = str(1 << 16)
        os.execv(sys.executable, [sys.executable, *sys.argv])


class PeakMemory:
    """Peak extra memory during a block: CUDA allocator peak, or sampled process RSS on CPU (``sampler_cpu``: the CPU
    seconds the sampling thread itself used, for a caller that times the block in CPU seconds).

    >>> with PeakMemory("cpu") as pm:
    ...     _ = bytearray(10**7)
    >>> pm.peak >= 0
    True
    """

    def __init__(self, device: str) -> None:
        self.device = str(device)
        self.peak = 0
        self.sampler_cpu = 0.0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * 4096

    def _sample(self) -> None:
        start = time.thread_time()
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss() - self.base)
            time.sleep(0.0005)
        self.sampler_cpu = time.thread_time() - start

    def __enter__(self) -> PeakMemory:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = self._rss()
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, self._rss() - self.base)


class Measure(NamedTuple):
    """One op's median time (``seconds``: CPU seconds of this process on a CPU device — with one thread, what the op
    costs whatever else the machine runs — or wall seconds on CUDA), peak extra bytes, and median wall seconds."""

    seconds: float
    peak: int
    wall: float
    clock: str


def compare(ops: dict[str, Callable[[], object]], device: str, repeats: int,
            warmup: Iterable[str] | None = None) -> dict[str, Measure]:
    """Median time and peak extra bytes of each op (:class:`Measure`), interleaved so drift affects all alike; the
    ops named in ``warmup`` (default all) run once first, untimed. On a CPU device the time is the process's CPU
    seconds less the memory sampler's own: a shared machine slows the wall clock, not the work done.

    >>> r = compare({"a": lambda: sum(range(1000))}, "cpu", 2)
    >>> sorted(r), r["a"].clock
    (['a'], 'cpu')
    """
    cuda = device.startswith("cuda")
    times: dict[str, list[float]] = {k: [] for k in ops}
    walls: dict[str, list[float]] = {k: [] for k in ops}
    peaks = {k: 0 for k in ops}
    for name in (ops if warmup is None else warmup):
        ops[name]()
    for _ in range(repeats):
        for name, fn in ops.items():
            with PeakMemory(device) as pm:
                c0, t0 = time.process_time(), time.perf_counter()
                fn()
                if cuda:
                    torch.cuda.synchronize()
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            walls[name].append(wall)
            times[name].append(wall if cuda else cpu - pm.sampler_cpu)
            peaks[name] = max(peaks[name], pm.peak)
    return {k: Measure(statistics.median(times[k]), peaks[k], statistics.median(walls[k]), "wall" if cuda else "cpu")
            for k in ops}


def table(title: str, results: dict[str, Measure], base: str, *more: str) -> str:
    """Rows of time (CPU or wall seconds, as measured) and memory with ratios to ``base`` (and to each of ``more``).

    >>> print(table("t", {"a": Measure(1.0, 2**20, 1.0, "cpu"), "b": Measure(2.0, 2**21, 2.0, "cpu")}, "a"))
    t
      op                           CPU s          × a   peak MB          × a
      a                            1.000         1.00       1.0         1.00
      b                            2.000         2.00       2.0         2.00
    """
    bases = (base, *more)
    unit = "CPU s" if results[base].clock == "cpu" else "wall s"
    ratios = "".join(f"{'× ' + b:>12s}" for b in bases)
    lines = [f"{title}", f"  {'op':24s} {unit:>9s} {ratios} {'peak MB':>9s} {ratios}"]
    for name, r in results.items():
        times = "".join(f"{r.seconds / results[b].seconds:12.2f}" for b in bases)
        peaks = "".join(f"{r.peak / max(results[b].peak, 1):12.2f}" for b in bases)
        lines.append(f"  {name:24s} {r.seconds:9.3f} {times} {r.peak / 2**20:9.1f} {peaks}")
    return "\n".join(lines)


def add_device_args(ap) -> None:
    """``--device`` (default cuda when there is one) and ``--dtype`` (default fp32 on CPU, fp16 on CUDA)."""
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default=None, help="default float32 on CPU, float16 on CUDA")


def device_dtype(args) -> torch.dtype:
    """The chosen dtype; on CPU, also re-runs the script so that peak memory is measurable."""
    if not args.device.startswith("cuda"):
        exact_cpu_memory()
    return getattr(torch, args.dtype or ("float16" if args.device.startswith("cuda") else "float32"))
