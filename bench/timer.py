"""The benchmarks' one timing helper: :func:`measure` (side by side, interleaved rounds),
the device copy bandwidth and the machine line.

On a GPU: ``triton.testing.do_bench`` (CUDA events around each call, the L2 cache flushed
before each, median), or plain CUDA events where triton is missing. The functions of one
comparison are timed in interleaved rounds, so that clock and thermal drift fall on all of
them alike; the figure is the median over rounds. On CPU: ``dynst_fast.timing.side_by_side``
(torch.utils.benchmark, interleaved rounds). Times are ms per call.
"""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dynst_fast.timing import side_by_side


def _events(fn: Callable[[], Any], warmup_ms: float, rep_ms: float) -> float:
    """Median ms of ``fn`` between CUDA events, after ``warmup_ms`` of calls."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    fn()
    torch.cuda.synchronize()
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    once = max(start.elapsed_time(end), 1e-3)
    for _ in range(max(1, int(warmup_ms / once))):
        fn()
    times = []
    for _ in range(max(5, int(rep_ms / once))):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def _gpu_once(fn: Callable[[], Any], quick: bool) -> float:
    warmup, rep = (5, 20) if quick else (25, 100)
    try:
        from triton.testing import do_bench
    except ImportError:
        return _events(fn, warmup, rep)
    return float(do_bench(fn, warmup=warmup, rep=rep, return_mode="median"))


def measure(
    fns: dict[str, Callable[[], Any]], device: str, *, grad: bool = False, quick: bool = False
) -> dict[str, float]:
    """Median ms per call of each function, side by side on ``device``. ``grad`` False
    times under ``torch.inference_mode``."""
    if device != "cuda":
        return side_by_side(fns, repeats=3 if quick else 7, warmup=1 if quick else 3, grad=grad)
    rounds: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode(not grad):
        for _ in range(2 if quick else 3):
            for name, fn in fns.items():
                rounds[name].append(_gpu_once(fn, quick))
    return {name: statistics.median(v) for name, v in rounds.items()}


def copy_gbps(nbytes: int, device: str, quick: bool = False) -> float:
    """Device copy bandwidth, GB/s of bytes read + written, of an ``nbytes`` buffer."""
    src = torch.empty(max(nbytes // 4, 1), dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    t = measure({"copy": lambda: dst.copy_(src)}, device, quick=quick)["copy"]
    return 2 * src.numel() * 4 / (t * 1e-3) / 1e9


def machine(device: str) -> str:
    """One line naming the device (the CPU model), threads and torch version."""
    if device == "cuda":
        return f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    name = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{name}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads)"
    )
