"""Fake (meta) and autograd registrations of the C++ graph ops in ``dynst_fast._C``.

Import only once the extension has loaded (``dynst_fast.ops`` does it): the schemas
live in ``csrc/ops.cpp``, the CPU kernels in ``csrc/cpu/``, the CUDA ones in
``csrc/cuda/`` (CUDA builds only), and this module adds what ``torch.library.opcheck``
and ``torch.compile`` need on top of them, as ``pytorch/extension-cpp`` does.
``induce_subgraph`` and ``bipartite`` get fake kernels only (their outputs have a
data-dependent number of edges and no gradient).

Differentiable ops (in ``x`` and ``gate``; the edge weights get no gradient):

* ``dynst_fast::gated_spmm_tr(rowptr, col, weight, t_rowptr, t_col, t_weight, x, gate,
  num_rows)``: the forward reads ``(rowptr, col, weight)``, the backward the given
  transposed CSR; ``dynst_fast.ops.gated_spmm`` passes ``graph.transpose()`` (cached
  on the graph), so no backward builds a transpose.
* ``dynst_fast::gated_spmm(rowptr, col, weight, x, gate, num_rows)``: the same, for
  callers without a transpose at hand; its backward builds one with
  ``dynst_fast::csr_transpose`` on every call.

Both backward passes run ``dynst_fast::gated_spmm_backward``, which is not itself
differentiable (no double backward).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import _C  # noqa: F401  (registers the schemas this module decorates)

_ops = torch.ops.dynst_fast


# ------------------------------------------------------------------ fake kernels
# x dtypes of the kernels per device type (CUDA adds the 16-bit types).
_X_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}


def _check_x_gate(op: str, x: Tensor, gate: Tensor) -> None:
    torch._check(x.dim() == 3, lambda: f"{op}: x must have shape [B, S, F] (3-D), got {x.shape}")
    dtypes = _X_DTYPES.get(x.device.type, _X_DTYPES["cpu"])
    torch._check(
        x.dtype in dtypes,
        lambda: f"{op}: x must be one of {dtypes} on {x.device.type}, got {x.dtype}",
    )
    torch._check(
        gate.dtype == x.dtype, lambda: f"{op}: gate must have x's dtype {x.dtype}, got {gate.dtype}"
    )
    torch._check(
        gate.dim() == 1 and gate.shape[0] == x.shape[1],
        lambda: f"{op}: gate must have shape [{x.shape[1]}], got {tuple(gate.shape)}",
    )


def _check_csr(op: str, rowptr: Tensor, col: Tensor, weight: Tensor, num_rows: int) -> None:
    torch._check(
        rowptr.dtype == torch.int64 and col.dtype == torch.int64,
        lambda: f"{op}: rowptr and col must be int64",
    )
    torch._check(weight.is_floating_point(), lambda: f"{op}: weight must be floating point")
    torch._check(
        rowptr.dim() == 1 and rowptr.shape[0] == num_rows + 1,
        lambda: f"{op}: rowptr must have {num_rows + 1} entries, got {tuple(rowptr.shape)}",
    )
    torch._check(
        col.dim() == 1 and weight.dim() == 1 and weight.shape[0] == col.shape[0],
        lambda: f"{op}: col and weight must be 1-D with one entry per edge",
    )


@torch.library.register_fake("dynst_fast::gated_spmm")
def _gated_spmm_fake(rowptr, col, weight, x, gate, num_rows):
    op = "dynst_fast::gated_spmm"
    torch._check(num_rows >= 0, lambda: f"{op}: num_rows must be >= 0, got {num_rows}")
    _check_csr(op, rowptr, col, weight, num_rows)
    _check_x_gate(op, x, gate)
    return x.new_empty((x.shape[0], num_rows, x.shape[2]))


@torch.library.register_fake("dynst_fast::gated_spmm_tr")
def _gated_spmm_tr_fake(rowptr, col, weight, t_rowptr, t_col, t_weight, x, gate, num_rows):
    op = "dynst_fast::gated_spmm_tr"
    _check_x_gate(op, x, gate)
    _check_csr(op, t_rowptr, t_col, t_weight, x.shape[1])
    torch._check(
        t_col.shape[0] == col.shape[0],
        lambda: f"{op}: the transpose has {t_col.shape[0]} edges but the graph has {col.shape[0]}",
    )
    return _gated_spmm_fake(rowptr, col, weight, x, gate, num_rows)


@torch.library.register_fake("dynst_fast::gated_spmm_backward")
def _gated_spmm_backward_fake(t_rowptr, t_col, t_weight, x, gate, grad_out, need_gate_grad):
    op = "dynst_fast::gated_spmm_backward"
    _check_x_gate(op, x, gate)
    _check_csr(op, t_rowptr, t_col, t_weight, x.shape[1])
    torch._check(
        grad_out.dim() == 3
        and grad_out.shape[0] == x.shape[0]
        and grad_out.shape[2] == x.shape[2]
        and grad_out.dtype == x.dtype,
        lambda: f"{op}: grad_out must be [B, R, F] of x's dtype, got {tuple(grad_out.shape)}",
    )
    return x.new_empty(x.shape), gate.new_empty(gate.shape)


@torch.library.register_fake("dynst_fast::csr_transpose")
def _csr_transpose_fake(rowptr, col, weight, num_cols):
    op = "dynst_fast::csr_transpose"
    torch._check(num_cols >= 0, lambda: f"{op}: num_cols must be >= 0, got {num_cols}")
    _check_csr(op, rowptr, col, weight, rowptr.shape[0] - 1)
    return (
        rowptr.new_empty((num_cols + 1,)),
        col.new_empty(col.shape),
        weight.new_empty(weight.shape),
    )


def _check_select(op: str, rowptr: Tensor, col: Tensor, weight: Tensor, index: Tensor) -> None:
    torch._check(
        rowptr.dtype == torch.int64 and col.dtype == torch.int64 and index.dtype == torch.int64,
        lambda: f"{op}: rowptr, col and index must be int64",
    )
    torch._check(weight.is_floating_point(), lambda: f"{op}: weight must be floating point")
    torch._check(
        rowptr.dim() == 1 and col.dim() == 1 and weight.dim() == 1 and index.dim() == 1,
        lambda: f"{op}: rowptr, col, weight and index must be 1-D",
    )
    torch._check(rowptr.shape[0] >= 1, lambda: f"{op}: rowptr must have num_rows + 1 >= 1 entries")
    torch._check(
        weight.shape[0] == col.shape[0],
        lambda: f"{op}: weight has {weight.shape[0]} entries but col has {col.shape[0]}",
    )


def _selected_edges(rowptr: Tensor, col: Tensor, weight: Tensor, rows: int):
    """Fake (rowptr [rows + 1], col [E'], weight [E']) with a data-dependent E'."""
    kept = torch.library.get_ctx().new_dynamic_size()
    return rowptr.new_empty((rows + 1,)), col.new_empty((kept,)), weight.new_empty((kept,))


@torch.library.register_fake("dynst_fast::induce_subgraph")
def _induce_subgraph_fake(rowptr, col, weight, index):
    _check_select("dynst_fast::induce_subgraph", rowptr, col, weight, index)
    return _selected_edges(rowptr, col, weight, index.shape[0])


@torch.library.register_fake("dynst_fast::bipartite")
def _bipartite_fake(rowptr, col, weight, index, num_cols):
    op = "dynst_fast::bipartite"
    torch._check(num_cols >= 0, lambda: f"{op}: num_cols must be >= 0, got {num_cols}")
    _check_select(op, rowptr, col, weight, index)
    return _selected_edges(rowptr, col, weight, rowptr.shape[0] - 1)


# ----------------------------------------------------------------------- autograd
def _no_weight_grad(op: str, needs_weight_grad: bool) -> None:
    if needs_weight_grad:
        raise NotImplementedError(
            f"{op}: the gradient with respect to the edge weights is not implemented "
            "(dynst_fast.ops.gated_spmm runs the PyTorch reference in that case)"
        )


def _grads(ctx, t_rowptr, t_col, t_weight, x, gate, grad_out):
    need_x, need_gate = ctx.needs_x_gate
    if not (need_x or need_gate):
        return None, None
    grad_x, grad_gate = _ops.gated_spmm_backward(
        t_rowptr, t_col, t_weight, x, gate, grad_out, need_gate
    )
    return (grad_x if need_x else None), (grad_gate if need_gate else None)


def _setup_gated_spmm(ctx, inputs, output):
    rowptr, col, weight, x, gate, _num_rows = inputs
    ctx.save_for_backward(rowptr, col, weight, x, gate)
    ctx.needs_x_gate = (ctx.needs_input_grad[3], ctx.needs_input_grad[4])
    ctx.needs_weight_grad = ctx.needs_input_grad[2]


def _backward_gated_spmm(ctx, grad_out):
    _no_weight_grad("dynst_fast::gated_spmm", ctx.needs_weight_grad)
    rowptr, col, weight, x, gate = ctx.saved_tensors
    t_rowptr, t_col, t_weight = _ops.csr_transpose(rowptr, col, weight, x.shape[1])
    grad_x, grad_gate = _grads(ctx, t_rowptr, t_col, t_weight, x, gate, grad_out)
    return None, None, None, grad_x, grad_gate, None


def _setup_gated_spmm_tr(ctx, inputs, output):
    _rowptr, _col, _weight, t_rowptr, t_col, t_weight, x, gate, _num_rows = inputs
    ctx.save_for_backward(t_rowptr, t_col, t_weight, x, gate)
    ctx.needs_x_gate = (ctx.needs_input_grad[6], ctx.needs_input_grad[7])
    ctx.needs_weight_grad = ctx.needs_input_grad[2] or ctx.needs_input_grad[5]


def _backward_gated_spmm_tr(ctx, grad_out):
    _no_weight_grad("dynst_fast::gated_spmm_tr", ctx.needs_weight_grad)
    grad_x, grad_gate = _grads(ctx, *ctx.saved_tensors, grad_out)
    return None, None, None, None, None, None, grad_x, grad_gate, None


torch.library.register_autograd(
    "dynst_fast::gated_spmm", _backward_gated_spmm, setup_context=_setup_gated_spmm
)
torch.library.register_autograd(
    "dynst_fast::gated_spmm_tr", _backward_gated_spmm_tr, setup_context=_setup_gated_spmm_tr
)
