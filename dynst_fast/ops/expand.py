"""``expand``: scatter the K active sensors back to all N (the inverse of ``compact``).

Kernels: C++ on CPU (``csrc/cpu/compact.cpp``), Triton on CUDA (``kernels/compact.py``),
the reference ``index_copy`` into a filled tensor (``reference.expand``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _dispatch, reference
from ._checks import check_index, check_rank, check_same_device, check_tensor

_ops = torch.ops.dynst_fast


def expand(y: Tensor, index: Tensor, n: int, fill: float = 0.0) -> Tensor:
    """Scatter ``y[B, K, F]`` back to ``[B, n, F]``; other rows hold ``fill``.

    Differentiable in y.
    """
    op = "expand"
    check_tensor("y", y, op)
    check_rank("y", y, 3, "[B, K, F]", op)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{op}: n must be a positive int, got {n!r}")
    index = check_index(index, n, op)
    if index.numel() != y.shape[1]:
        raise ValueError(f"{op}: y has {y.shape[1]} sensors but index has {index.numel()} entries")
    check_same_device(op, y=y, index=index)
    return _ops.expand(y, index, n, float(fill))


def _triton_expand(y: Tensor, index: Tensor, n: int, fill: float) -> Tensor:
    from ..kernels import compact as k

    return k.scatter_rows(y, index, n, fill=fill)[0]


_dispatch.declare("expand", reference=reference.expand, triton=_triton_expand)


@torch.library.register_fake("dynst_fast::expand")
def _(y, index, n, fill):
    return y.new_empty((y.shape[0], n, y.shape[2]))


def _setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[1])


def _backward(ctx, grad):
    (index,) = ctx.saved_tensors
    return _ops.compact(grad, None, index), None, None, None


torch.library.register_autograd("dynst_fast::expand", _backward, setup_context=_setup)
