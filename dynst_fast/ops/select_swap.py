"""``select_swap``: the k active sensors to drop and the k inactive ones to regrow.

Kernels: C++ on CPU (``csrc/cpu/select.cpp``: nth_element, then a sort of the k picked),
Triton on CUDA (``kernels/select.py``: a multi-block radix select), the reference
(a stable sort of the eligible scores, ``reference.select_swap``). Not differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _dispatch, reference
from ._checks import check_k, check_no_nan, check_scores

_ops = torch.ops.dynst_fast


def select_swap(score: Tensor, active: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k lowest-score active sensors and the k highest-score inactive ones.

    score: ``[N]`` float, no NaN (``ValueError``); active: ``[N]`` bool. Returns
    ``(drop[k], grow[k])`` int64, most extreme first, ties to the lower index
    (-0.0 ties with +0.0). Not differentiable (score is detached).
    """
    op = "select_swap"
    active = check_scores(score, active, op)
    if torch.compiler.is_compiling():
        check_k(k, score.numel(), "total", op)
    else:
        n_active = int(torch.count_nonzero(active))
        check_k(k, n_active, "active", op)
        check_k(k, score.numel() - n_active, "inactive", op)
        check_no_nan("score", score, op)
    _dispatch.sync()
    return _ops.select_swap(score.detach(), active, k)


def _triton_select_swap(score: Tensor, active: Tensor, k: int) -> tuple[Tensor, Tensor]:
    from ..kernels import select as s

    return s.masked_smallest(score, active, k, "smallest"), s.masked_smallest(
        score, ~active, k, "largest"
    )


_dispatch.declare("select_swap", reference=reference.select_swap, triton=_triton_select_swap)


@torch.library.register_fake("dynst_fast::select_swap")
def _(score, active, k):
    return score.new_empty((k,), dtype=torch.int64), score.new_empty((k,), dtype=torch.int64)
