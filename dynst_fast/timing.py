"""Side-by-side timing: the one timer of ``dynst run`` and ``bench/``.

Functions are timed in interleaved rounds in one process, each call by
``torch.utils.benchmark.Timer`` (which synchronises CUDA around the call and runs with a
fixed thread count), so that drifts of the machine hit every function alike; the figure
is the median over rounds. Speed claims are ratios of these medians.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch
import torch.utils.benchmark as benchmark

from .config import TimingConfig

METHOD = (
    "median of {repeats} interleaved rounds after {warmup} warm-up calls each, one process "
    "(torch.utils.benchmark)"
)


def side_by_side(
    fns: dict[str, Callable[[], Any]],
    repeats: int = TimingConfig.repeats,
    warmup: int = TimingConfig.warmup,
    threads: int | None = None,
    grad: bool = False,
    clock: Callable[[], float] | None = None,
) -> dict[str, float]:
    """Median wall time in ms of one call of each function, rounds interleaved.

    ``threads`` defaults to torch's current thread count; ``grad`` False times under
    ``torch.inference_mode``; ``clock`` replaces the benchmark's own clock (e.g.
    ``time.thread_time`` for CPU time on one thread).
    """
    threads = threads or torch.get_num_threads()
    extra = {} if clock is None else {"timer": clock}
    timers = {
        name: benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=threads, **extra)
        for name, fn in fns.items()
    }
    times: dict[str, list[float]] = {name: [] for name in fns}
    with torch.inference_mode(not grad):
        for _ in range(warmup):
            for fn in fns.values():
                fn()
        for _ in range(repeats):
            for name, timer in timers.items():
                times[name].append(timer.timeit(1).median * 1e3)
    return {name: statistics.median(v) for name, v in times.items()}
