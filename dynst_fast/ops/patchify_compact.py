"""``patchify_compact``: the image stream morph and ``compact`` in one pass, reading only
the active patches (and its backward op).

Kernels: C++ on CPU (``csrc/cpu/patchify.cpp``), Triton on CUDA (``kernels/patchify.py``),
the reference ``compact(morph.image_to_stream(frames, p))`` (``reference.patchify_compact``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _dispatch, reference
from ._checks import check_float, check_index, check_rank, check_same_device, check_tensor

_ops = torch.ops.dynst_fast


def patchify_compact(frames: Tensor, theta: Tensor, index: Tensor, p: int) -> Tensor:
    """Stream morph and compact in one: ``[B, T, C, H, W]`` -> ``[B, K, T*C*p*p]``.

    H and W are zero-padded at the bottom/right to a multiple of p; patches are
    numbered row-major. Differentiable in frames and theta.
    """
    op = "patchify_compact"
    check_tensor("frames", frames, op)
    check_rank("frames", frames, 5, "[B, T, C, H, W]", op)
    check_float("frames", frames, op)
    if isinstance(p, bool) or not isinstance(p, int) or p < 1:
        raise ValueError(f"{op}: patch size p must be a positive int, got {p!r}")
    h, w = frames.shape[-2:]
    if h < p or w < p:
        raise ValueError(f"{op}: frame size {h}x{w} is smaller than the patch size {p}")
    n = -(-h // p) * -(-w // p)
    check_tensor("theta", theta, op)
    if theta.shape != (n,):
        raise ValueError(
            f"{op}: theta must have one entry per patch, [{n}], got {tuple(theta.shape)}"
        )
    index = check_index(index, n, op)
    check_same_device(op, frames=frames, theta=theta, index=index)
    check_float("theta", theta, op)
    return _ops.patchify_compact(frames, theta.to(frames.dtype), index, p)


# ------------------------------------------------------------------ kernels
def _triton_patchify_compact(frames: Tensor, theta: Tensor, index: Tensor, p: int) -> Tensor:
    from ..kernels import patchify as k

    return k.patchify_gather(frames, theta, index, p)


def _triton_patchify_compact_backward(
    grad: Tensor, frames: Tensor, theta: Tensor, index: Tensor, p: int, need_theta_grad: bool
) -> tuple[Tensor, Tensor]:
    from ..kernels import patchify as k

    dframes, dtheta = k.patchify_scatter(grad, frames, theta, index, p, need_theta_grad)
    return dframes, dtheta if dtheta is not None else theta.new_empty(0)


_dispatch.declare(
    "patchify_compact", reference=reference.patchify_compact, triton=_triton_patchify_compact
)
_dispatch.declare(
    "patchify_compact_backward",
    reference=reference.patchify_compact_backward,
    triton=_triton_patchify_compact_backward,
)


# ------------------------------------------------------------------ fake + autograd
@torch.library.register_fake("dynst_fast::patchify_compact")
def _(frames, theta, index, p):
    b, t, c = frames.shape[:3]
    return frames.new_empty((b, index.shape[0], t * c * p * p))


@torch.library.register_fake("dynst_fast::patchify_compact_backward")
def _(grad, frames, theta, index, p, need_theta_grad):
    return frames.new_empty(frames.shape), theta.new_empty(
        (theta.shape[0] if need_theta_grad else 0,)
    )


def _setup(ctx, inputs, output):
    frames, theta, index, p = inputs
    ctx.p = p
    ctx.save_for_backward(frames, theta, index)


def _backward(ctx, grad):
    frames, theta, index = ctx.saved_tensors
    need_theta = ctx.needs_input_grad[1]
    dframes, dtheta = _ops.patchify_compact_backward(
        grad.contiguous(), frames, theta, index, ctx.p, need_theta
    )
    return dframes, (dtheta if need_theta else None), None, None


torch.library.register_autograd("dynst_fast::patchify_compact", _backward, setup_context=_setup)
