"""``prune_lowest``: switch off the k active sensors of lowest ``|score|`` (Eq. 4).

Kernels: C++ on CPU (``csrc/cpu/select.cpp``), Triton on CUDA (``kernels/select.py``), the
reference (a stable sort of the eligible magnitudes, ``reference.prune_lowest``).
Not differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _dispatch, reference
from ._checks import check_k, check_no_nan, check_scores

_ops = torch.ops.dynst_fast


def prune_lowest(score: Tensor, active: Tensor, k: int) -> Tensor:
    """New ``[N]`` bool mask without the k active sensors of lowest ``|score|``.

    Ties go to the lower index; NaN scores raise ``ValueError``. Not differentiable.
    """
    op = "prune_lowest"
    active = check_scores(score, active, op)
    if torch.compiler.is_compiling():
        check_k(k, score.numel(), "total", op)
    else:
        check_k(k, int(torch.count_nonzero(active)), "active", op)
        check_no_nan("score", score, op)
    _dispatch.sync()
    return _ops.prune_lowest(score.detach(), active, k)


def _triton_prune_lowest(score: Tensor, active: Tensor, k: int) -> Tensor:
    from ..kernels import select as s

    out = active.clone()
    out[s.masked_smallest(score, active, k, "smallest_abs")] = False
    return out


_dispatch.declare("prune_lowest", reference=reference.prune_lowest, triton=_triton_prune_lowest)


@torch.library.register_fake("dynst_fast::prune_lowest")
def _(score, active, k):
    return torch.empty_like(active)
