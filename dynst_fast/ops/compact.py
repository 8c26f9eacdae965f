"""``compact``: keep the active sensors, scaled by their score (and its backward op).

Kernels: C++ on CPU (``csrc/cpu/compact.cpp``), Triton on CUDA (``kernels/compact.py``),
the reference ``x[:, index] * theta[index, None]`` (``reference.compact``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _dispatch, reference
from ._checks import check_float, check_index, check_rank, check_same_device, check_tensor

_ops = torch.ops.dynst_fast


def compact(x: Tensor, theta: Tensor, index: Tensor) -> Tensor:
    """Keep the active sensors, scaled by their score: ``x[:, index] * theta[index, None]``.

    x: ``[B, N, F]`` float; theta: ``[N]`` float; index: ``[K]`` int64, distinct.
    Returns ``[B, K, F]``. Differentiable in x and theta.
    """
    op = "compact"
    check_tensor("x", x, op)
    check_tensor("theta", theta, op)
    check_rank("x", x, 3, "[B, N, F]", op)
    check_float("x", x, op)
    check_float("theta", theta, op)
    n = x.shape[1]
    if theta.shape != (n,):
        raise ValueError(f"{op}: theta must have shape [N] = [{n}], got {tuple(theta.shape)}")
    index = check_index(index, n, op)
    check_same_device(op, x=x, theta=theta, index=index)
    return _ops.compact(x, theta.to(x.dtype), index)


# ------------------------------------------------------------------ kernels
def _triton_compact(x: Tensor, theta: Tensor | None, index: Tensor) -> Tensor:
    from ..kernels import compact as k

    return k.gather_rows(x, index, theta)


def _triton_compact_backward(
    grad: Tensor, x: Tensor, theta: Tensor, index: Tensor, need_theta_grad: bool
) -> tuple[Tensor, Tensor]:
    from ..kernels import compact as k

    dx, dtheta = k.scatter_rows(
        grad, index, x.shape[1], theta=theta, x=x if need_theta_grad else None
    )
    return dx, dtheta if dtheta is not None else x.new_empty(0)


_dispatch.declare("compact", reference=reference.compact, triton=_triton_compact)
_dispatch.declare(
    "compact_backward", reference=reference.compact_backward, triton=_triton_compact_backward
)


# ------------------------------------------------------------------ fake + autograd
@torch.library.register_fake("dynst_fast::compact")
def _(x, theta, index):
    return x.new_empty((x.shape[0], index.shape[0], x.shape[2]))


@torch.library.register_fake("dynst_fast::compact_backward")
def _(grad, x, theta, index, need_theta_grad):
    return x.new_empty(x.shape), x.new_empty((x.shape[1] if need_theta_grad else 0,))


def _setup(ctx, inputs, output):
    x, theta, index = inputs
    ctx.has_theta = theta is not None
    ctx.n = x.shape[1]
    ctx.save_for_backward(x if ctx.has_theta else None, theta, index)


def _backward(ctx, grad):
    x, theta, index = ctx.saved_tensors
    if not ctx.has_theta:
        return _ops.expand(grad, index, ctx.n, 0.0), None, None
    need_theta = ctx.needs_input_grad[1]
    dx, dtheta = _ops.compact_backward(grad.contiguous(), x, theta, index, need_theta)
    return dx, (dtheta if need_theta else None), None


torch.library.register_autograd("dynst_fast::compact", _backward, setup_context=_setup)
