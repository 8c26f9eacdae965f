"""``prune_lowest``: switch off the k active sensors of lowest ``|score|`` (Eq. 4).

Kernels: C++ on CPU (``csrc/cpu/select.cpp``), Triton on CUDA (``kernels/select.py``), the
reference (a stable sort of the eligible magnitudes, ``reference.prune_lowest``).
Not differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _dispatch, reference
from ._checks import check_k, check_movable, check_no_nan, check_scores

_ops = torch.ops.dynst_fast


def prune_lowest(score: Tensor, active: Tensor, k: int, movable: Tensor | None = None) -> Tensor:
    """New ``[N]`` bool mask without the k active sensors of lowest ``|score|``.

    movable: ``[N]`` bool or None; only movable sensors are pruned (kept sensors are
    not movable: the kernels never pick them). Ties go to the lower index; NaN scores
    raise ``ValueError``. Not differentiable.
    """
    op = "prune_lowest"
    active = check_scores(score, active, op)
    movable = check_movable(movable, active, op)
    if torch.compiler.is_compiling():
        check_k(k, score.numel(), "total", op)
    else:
        pool = active if movable is None else active & movable
        what = "active" if movable is None else "movable active"
        check_k(k, int(torch.count_nonzero(pool)), what, op)
        check_no_nan("score", score, op)
    return _ops.prune_lowest(score.detach(), active, k, movable)


def _triton_prune_lowest(
    score: Tensor, active: Tensor, k: int, movable: Tensor | None = None
) -> Tensor:
    from ..kernels import select as s

    pool = active if movable is None else active & movable
    out = active.clone()
    out[s.masked_smallest(score, pool, k, "smallest_abs")] = False
    return out


_dispatch.declare("prune_lowest", reference=reference.prune_lowest, triton=_triton_prune_lowest)


@torch.library.register_fake("dynst_fast::prune_lowest")
def _(score, active, k, movable=None):
    return torch.empty_like(active)
