"""What the kernel benchmarks share: their flags, the machine line, the copy bandwidth and
the results folder. Timings are ``dynst_fast.timing.side_by_side`` (the one timer)."""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import torch

from dynst_fast.timing import side_by_side

RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(description: str, ap: argparse.ArgumentParser | None = None) -> argparse.Namespace:
    """The kernel benches' shared flags (``--device``, ``--repeats``, ``--threads``) added to
    ``ap`` (which may hold a bench's own flags), parsed; applies ``--threads``."""
    ap = ap or argparse.ArgumentParser(description=description)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def machine(device: str) -> str:
    """One line naming the device, threads and torch version."""
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


def copy_gbps(nbytes: int, device: str, repeats: int = 7) -> float:
    """Device copy bandwidth (read + write GB/s) of a ``nbytes`` buffer, measured now."""
    src = torch.empty(max(nbytes // 4, 1), dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    t = side_by_side({"copy": lambda: dst.copy_(src)}, repeats, warmup=2)["copy"]
    return 2 * src.numel() * 4 / (t * 1e-3) / 1e9


def write_result(name: str, text: str) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(text)
    return path
