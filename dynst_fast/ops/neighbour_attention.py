"""``neighbour_attention``: every target attends over its m neighbours (``index``,
``valid``: e.g. from ``nearest_active``) in one pass: gather, scores, softmax and weighted
sum, with per-source gates in the weights (DESIGN.md section 5: ``g_j exp(s_ij) / sum_k
g_k exp(s_ik)``), so that a gate of 0 removes a source exactly and its gradient is the
first-order gain of switching it on.

Kernels: C++ on CPU (``csrc/cpu/neighbours.cpp``, float32/float64), Triton on CUDA
(``kernels/neighbours.py``), the reference (``reference.neighbour_attention``: gather,
einsum, softmax; also its export form). Cost O(B N m (D + E)), never O(N S).
Differentiable in q, k, v, bias and gate.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _dispatch, reference
from ._checks import check_float, check_rank, check_same_device, check_tensor

_ops = torch.ops.dynst_fast

# dtypes the CPU kernel takes; others run the reference
KERNEL_DTYPES = {"cpu": (torch.float32, torch.float64)}


def neighbour_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    index: Tensor,
    valid: Tensor,
    bias: Tensor | None = None,
    gate: Tensor | None = None,
    scale: float | None = None,
) -> Tensor:
    """``[B, N, E]``: for target i and its valid neighbours j = ``index[i, :]``,
    ``out[b, i] = sum_j w_bij v[b, j]`` with ``w_bij`` proportional to
    ``gate[j] * exp(scale * <q[b, i], k[b, j]> + bias[b, i, j'])`` over the valid ones;
    a target whose weights sum to 0 (no valid neighbour, or every gate 0) gets 0.

    q: ``[B, N, D]``; k: ``[B, S, D]``; v: ``[B, S, E]``; index: ``[N, m]`` int64 in
    ``[0, S)`` where valid; valid: ``[N, m]`` bool; bias: ``[B, N, m]`` or ``[1, N, m]``
    (None: 0); gate: ``[S]`` (None: ones); scale: default ``1 / sqrt(D)``.
    """
    op = "neighbour_attention"
    for name, t in (("q", q), ("k", k), ("v", v)):
        check_tensor(name, t, op)
        check_rank(name, t, 3, {"q": "[B, N, D]", "k": "[B, S, D]", "v": "[B, S, E]"}[name], op)
        check_float(name, t, op)
    b, n, d = q.shape
    s = k.shape[1]
    if k.shape[0] != b or k.shape[2] != d:
        raise ValueError(f"{op}: k must be [{b}, S, {d}], got {tuple(k.shape)}")
    if v.shape[:2] != (b, s):
        raise ValueError(f"{op}: v must be [{b}, {s}, E], got {tuple(v.shape)}")
    check_tensor("index", index, op)
    check_rank("index", index, 2, "[N, m]", op)
    if index.dtype != torch.int64:
        raise TypeError(f"{op}: index must be int64, got {index.dtype}")
    if index.shape[0] != n:
        raise ValueError(f"{op}: index must have {n} rows (one per target), got {index.shape[0]}")
    m = index.shape[1]
    check_tensor("valid", valid, op)
    if valid.dtype != torch.bool or valid.shape != index.shape:
        raise ValueError(
            f"{op}: valid must be a bool mask shaped like index {tuple(index.shape)}, got "
            f"{valid.dtype} {tuple(valid.shape)}"
        )
    if bias is None:
        bias = q.new_zeros((1, n, m))
    check_tensor("bias", bias, op)
    if bias.dim() != 3 or bias.shape[0] not in (1, b) or bias.shape[1:] != (n, m):
        raise ValueError(f"{op}: bias must be [{b} or 1, {n}, {m}], got {tuple(bias.shape)}")
    if gate is None:
        gate = q.new_ones(s)
    check_tensor("gate", gate, op)
    if gate.shape != (s,):
        raise ValueError(f"{op}: gate must have shape [{s}], got {tuple(gate.shape)}")
    check_float("gate", gate, op)
    check_same_device(op, q=q, k=k, v=v, index=index, valid=valid, bias=bias, gate=gate)
    if index.numel() and not torch.compiler.is_compiling():
        picked = index[valid]
        if picked.numel() and (int(picked.min()) < 0 or int(picked.max()) >= s):
            raise ValueError(f"{op}: index holds entries outside [0, {s}) where valid")
    scale = 1.0 / math.sqrt(d) if scale is None else float(scale)
    dt = q.dtype
    k, v, bias, gate = (t.to(dt) for t in (k, v, bias, gate))
    if q.device.type == "cpu" and dt not in KERNEL_DTYPES["cpu"]:
        return reference.neighbour_attention(q, k, v, index, valid, bias, gate, scale)
    return _ops.neighbour_attention(q, k, v, index, valid, bias, gate, scale)


def _triton_attention(q, k, v, index, valid, bias, gate, scale):
    from ..kernels import neighbours as kn

    return kn.neighbour_attention(q, k, v, index, valid, bias, gate, scale)


def _triton_attention_backward(grad_out, q, k, v, index, valid, bias, gate, scale):
    from ..kernels import neighbours as kn

    return kn.neighbour_attention_backward(grad_out, q, k, v, index, valid, bias, gate, scale)


_dispatch.declare(
    "neighbour_attention", reference=reference.neighbour_attention, triton=_triton_attention
)
_dispatch.declare(
    "neighbour_attention_backward",
    reference=reference.neighbour_attention_backward,
    triton=_triton_attention_backward,
)


# ------------------------------------------------------------------ fake + autograd
@torch.library.register_fake("dynst_fast::neighbour_attention")
def _(q, k, v, index, valid, bias, gate, scale):
    return q.new_empty((q.shape[0], q.shape[1], v.shape[2]))


@torch.library.register_fake("dynst_fast::neighbour_attention_backward")
def _(grad_out, q, k, v, index, valid, bias, gate, scale):
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape),
            bias.new_empty(bias.shape), gate.new_empty(gate.shape))  # fmt: skip


def _setup(ctx, inputs, output):
    q, k, v, index, valid, bias, gate, scale = inputs
    ctx.save_for_backward(q, k, v, index, valid, bias, gate)
    ctx.scale = scale


def _backward(ctx, grad_out):
    q, k, v, index, valid, bias, gate = ctx.saved_tensors
    dq, dk, dv, dbias, dgate = _ops.neighbour_attention_backward(
        grad_out.contiguous(), q, k, v, index, valid, bias, gate, ctx.scale
    )
    need = ctx.needs_input_grad
    return (dq if need[0] else None, dk if need[1] else None, dv if need[2] else None, None,
            None, dbias if need[5] else None, dgate if need[6] else None, None)  # fmt: skip


torch.library.register_autograd("dynst_fast::neighbour_attention", _backward, setup_context=_setup)
