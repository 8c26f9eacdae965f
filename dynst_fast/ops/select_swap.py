"""``select_swap``: the k active sensors to drop and the k inactive ones to regrow.

Kernels: C++ on CPU (``csrc/cpu/select.cpp``: nth_element, then a sort of the k picked),
Triton on CUDA (``kernels/select.py``: a multi-block radix select), the reference
(a stable sort of the eligible scores, ``reference.select_swap``). Not differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _dispatch, reference
from ._checks import check_k, check_movable, check_no_nan, check_scores

_ops = torch.ops.dynst_fast


def select_swap(
    score: Tensor, active: Tensor, k: int, movable: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The k lowest-score active sensors and the k highest-score inactive ones.

    score: ``[N]`` float, no NaN (``ValueError``); active: ``[N]`` bool; movable: ``[N]``
    bool or None, the sensors that may be dropped or grown (the others are kept or
    forbidden: the kernels never pick them). Returns ``(drop[k], grow[k])`` int64, most
    extreme first, ties to the lower index (-0.0 ties with +0.0). Not differentiable.
    """
    op = "select_swap"
    active = check_scores(score, active, op)
    movable = check_movable(movable, active, op)
    if torch.compiler.is_compiling():
        check_k(k, score.numel(), "total", op)
    else:
        drop_from, grow_from = active, ~active
        if movable is not None:
            drop_from, grow_from = drop_from & movable, grow_from & movable
        what = "" if movable is None else "movable "
        check_k(k, int(torch.count_nonzero(drop_from)), what + "active", op)
        check_k(k, int(torch.count_nonzero(grow_from)), what + "inactive", op)
        check_no_nan("score", score, op)
    return _ops.select_swap(score.detach(), active, k, movable)


def _triton_select_swap(
    score: Tensor, active: Tensor, k: int, movable: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    from ..kernels import select as s

    drop_from, grow_from = active, ~active
    if movable is not None:
        drop_from, grow_from = drop_from & movable, grow_from & movable
    return s.masked_smallest(score, drop_from, k, "smallest"), s.masked_smallest(
        score, grow_from, k, "largest"
    )


_dispatch.declare("select_swap", reference=reference.select_swap, triton=_triton_select_swap)


@torch.library.register_fake("dynst_fast::select_swap")
def _(score, active, k, movable=None):
    return score.new_empty((k,), dtype=torch.int64), score.new_empty((k,), dtype=torch.int64)
