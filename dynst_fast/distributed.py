"""Data-parallel training across processes with ``torch.distributed``.

``dynst run`` joins the process group that ``torchrun`` (or ``dynst run --nproc P``)
describes in its environment: gloo for the CPU training of ``dynst run``; a training loop
of your own on GPUs initialises NCCL itself, and the ``Sparsifier``'s all-reduce then
runs on its GPU tensors. Every rank trains on its own share of each batch
(:func:`rank_share`), gradients are averaged by ``DistributedDataParallel`` and the gate
gradients by the ``Sparsifier``, so that the weights, theta, every prune and every swap
are the same on every rank. Rank 0 writes the run directory.

Collectives time out after ``DYNST_DIST_TIMEOUT`` seconds (default 300), so that a rank
that died never leaves the others waiting for ever.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
from torch import Tensor


def active() -> bool:
    """Whether a process group of more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """The number of ranks (1 outside a process group)."""
    return dist.get_world_size() if active() else 1


def rank() -> int:
    """This process's rank (0 outside a process group)."""
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    """Rank 0, or the only process: the one that writes files and shows progress."""
    return rank() == 0


def timeout() -> datetime.timedelta:
    raw = os.environ.get("DYNST_DIST_TIMEOUT", "300")
    try:
        seconds = float(raw)
    except ValueError:
        raise ValueError(f"DYNST_DIST_TIMEOUT must be a number of seconds, got {raw!r}") from None
    if not seconds > 0:
        raise ValueError(f"DYNST_DIST_TIMEOUT must be positive, got {raw!r}")
    return datetime.timedelta(seconds=seconds)


def init_from_env(backend: str = "gloo") -> bool:
    """Join the process group described by ``torchrun``'s environment (``WORLD_SIZE`` > 1;
    ``RANK``, ``MASTER_ADDR``, ``MASTER_PORT``). True if this call created the group (the
    caller then shuts it down); nothing happens outside ``torchrun`` or when a group
    exists already (a caller's own)."""
    if dist.is_available() and dist.is_initialized():
        return False
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_available():
        raise RuntimeError("this torch build has no torch.distributed")
    dist.init_process_group(backend, timeout=timeout())
    return True


def shutdown() -> None:
    """Leave the process group, if there is one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: Tensor) -> Tensor:
    """``t`` summed over every rank, in place (returned; unchanged with one process). A
    tensor on a device the backend cannot reduce on (a CPU tensor under NCCL, a GPU
    tensor under gloo) is reduced through a copy on one it can."""
    if not active():
        return t
    backend = dist.get_backend()
    if backend == "nccl" and t.device.type != "cuda":
        where = torch.device("cuda", torch.cuda.current_device())
    elif backend == "gloo" and t.device.type != "cpu":
        where = torch.device("cpu")
    else:
        dist.all_reduce(t)
        return t
    moved = t.to(where)
    dist.all_reduce(moved)
    return t.copy_(moved)


def all_ok(ok: bool) -> bool:
    """Whether ``ok`` holds on every rank (a collective: every rank must call it)."""
    if not active():
        return ok
    flag = torch.tensor([0.0 if ok else 1.0], dtype=torch.float64)
    return float(all_reduce_sum(flag)) == 0


def all_reduce_mean(t: Tensor) -> Tensor:
    """``t`` averaged over every rank (a new tensor; ``t`` itself with one process)."""
    if not active():
        return t
    out = all_reduce_sum(t.clone())
    return out.div_(dist.get_world_size())


def rank_share(batch: Sequence[int], rank_: int, world: int) -> list[int]:
    """This rank's contiguous share of one global batch: ``len(batch) / world`` windows
    (shares differ by at most one). A batch smaller than ``world`` is repeated cyclically
    so that no rank gets an empty share, as ``DistributedSampler`` pads."""
    items = list(batch)
    if world <= 1:
        return items
    if len(items) < world:
        return [items[rank_ % len(items)]]
    base, extra = divmod(len(items), world)
    lo = rank_ * base + min(rank_, extra)
    return items[lo : lo + base + (rank_ < extra)]


class RankBatches(torch.utils.data.Sampler[list[int]]):
    """This rank's share of every batch of ``batches`` (a sampler of global batches)."""

    def __init__(
        self, batches: torch.utils.data.Sampler[list[int]], rank_: int, world: int
    ) -> None:
        self.batches, self.rank, self.world = batches, rank_, world

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[int]]:
        for b in self.batches:
            yield rank_share(b, self.rank, self.world)


def launch(nproc: int, argv: list[str], module: str = "dynst_fast") -> int:
    """Run ``python -m MODULE ARGV`` on ``nproc`` local processes, as ``torchrun
    --standalone --nproc-per-node NPROC -m MODULE ARGV`` does (one thread each unless
    ``OMP_NUM_THREADS`` says otherwise). Returns 0, or, when a rank fails, prints one line
    naming it (its own error is above) and returns its exit code."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    args = get_args_parser().parse_args(
        ["--standalone", "--nproc-per-node", str(nproc), "--module", module, *argv]
    )
    try:
        torchrun(args)
    except ChildFailedError as exc:
        failed_rank, failure = exc.get_first_failure()
        exitcode = failure.exitcode if failure.exitcode is not None else 1
        code = exitcode if exitcode > 0 else 1
        how = f"exit code {exitcode}" if exitcode >= 0 else "killed by a signal"
        print(
            f"dynst run: error: rank {failed_rank} of {nproc} failed ({how}); its error is "
            "above, and the other ranks were stopped",
            file=sys.stderr,
        )
        return code
    return 0
