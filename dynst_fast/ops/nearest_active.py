"""``nearest_active``: for every sensor, the first m active entries of its candidate list
(its nearest sensors, nearest first): the neighbours a read-out by attention reads.

Kernels: C++ on CPU (``csrc/cpu/neighbours.cpp``), Triton on CUDA (``kernels/neighbours.py``),
the reference (a running count and a scatter, ``reference.nearest_active``), which is also
its export form. Cost O(N L), never O(N^2). Not differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _dispatch, reference
from ._checks import check_mask, check_rank, check_same_device, check_tensor

_ops = torch.ops.dynst_fast


def nearest_active(candidates: Tensor, active: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """``(index [N, m] int64, valid [N, m] bool)``: row i holds the first ``m`` entries of
    ``candidates[i]`` whose ``active`` flag is set, in list order; a row with fewer than
    ``m`` of them (or ``m > L``) fills the rest with index 0, valid False.

    candidates: ``[N, L]`` int64 sensor numbers in ``[0, S)``, nearest first, ``-1`` for
    padding (a row may hold fewer than L candidates, or none); active: ``[S]`` bool.
    """
    op = "nearest_active"
    check_tensor("candidates", candidates, op)
    check_rank("candidates", candidates, 2, "[N, L]", op)
    if candidates.dtype != torch.int64:
        raise TypeError(f"{op}: candidates must be int64, got {candidates.dtype}")
    check_tensor("active", active, op)
    check_rank("active", active, 1, "[S]", op)
    active = check_mask(active, active.numel(), op)
    if isinstance(m, bool) or not isinstance(m, int) or m < 1:
        raise ValueError(f"{op}: m must be a positive int, got {m!r}")
    check_same_device(op, candidates=candidates, active=active)
    if candidates.numel() and not torch.compiler.is_compiling():
        lo, hi = int(candidates.min()), int(candidates.max())
        if lo < -1 or hi >= active.numel():
            bad = lo if lo < -1 else hi
            raise ValueError(
                f"{op}: candidates holds {bad}, outside [-1, {active.numel()}) (-1 pads)"
            )
    return _ops.nearest_active(candidates, active, m)


def _triton_nearest_active(candidates: Tensor, active: Tensor, m: int):
    from ..kernels import neighbours as k

    return k.nearest_active(candidates, active, m)


_dispatch.declare(
    "nearest_active", reference=reference.nearest_active, triton=_triton_nearest_active
)


@torch.library.register_fake("dynst_fast::nearest_active")
def _(candidates, active, m):
    n = candidates.shape[0]
    return (
        candidates.new_empty((n, m)),
        torch.empty((n, m), dtype=torch.bool, device=candidates.device),
    )
