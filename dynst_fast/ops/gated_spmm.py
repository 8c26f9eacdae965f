"""``gated_spmm``: gated message passing ``out_i = sum_j A_ij g_j x_j`` over a CSR graph,
with its backward op and ``csr_transpose``.

Kernels: C++ on CPU (``csrc/cpu/gated_spmm.cpp``, float32/float64), CUDA C++ in CUDA builds
(``csrc/cuda/gated_spmm.cu``, also float16/bfloat16 with float32 accumulation), the
reference ``index_add`` of the gathered, weighted messages (``reference.gated_spmm``).
Differentiable in x and gate, not in the edge weights.

Schemas (``csrc/ops.cpp``):

* ``gated_spmm_tr(rowptr, col, weight, t_rowptr, t_col, t_weight, x, gate, num_rows)``: the
  forward reads ``(rowptr, col, weight)``, the backward the given transposed CSR;
  :func:`gated_spmm` passes ``graph.transpose()`` (cached on the graph), so no backward
  builds a transpose.
* ``gated_spmm(rowptr, col, weight, x, gate, num_rows)``: the same, for callers without a
  transpose at hand; its backward builds one with ``csr_transpose`` on every call.

Both backward passes run ``gated_spmm_backward``, which is not itself differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..graph import CSRGraph, as_graph
from . import _dispatch, reference
from ._checks import check_csr_arrays, check_float, check_rank, check_same_device, check_tensor

_ops = torch.ops.dynst_fast

# x dtypes the kernels take, per device type; others (and graphs whose weights require
# grad: the kernels have no weight gradient) run the reference.
KERNEL_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}


def gated_spmm(graph: CSRGraph, x: Tensor, gate: Tensor) -> Tensor:
    """Gated message passing ``out[b, i] = sum_j A[i, j] * gate[j] * x[b, j]``.

    graph: ``CSRGraph`` of shape ``(R, S)`` (or anything :func:`~dynst_fast.graph.as_graph`
    takes: a PyG ``Data``, ``(edge_index, edge_weight)``; square, S = x's nodes);
    x: ``[B, S, F]``; gate: ``[S]``.
    Returns ``[B, R, F]``. Differentiable in x and gate.

    Float32/float64 x (and on CUDA float16/bfloat16, accumulated in float32) runs the
    kernel of its device (gate is cast to x's dtype, the edge weights are used in x's
    dtype). The backward reads ``graph.transpose()``, which is built on the first
    differentiable call and cached on the graph. Other dtypes, and graphs whose weights
    require grad, run the PyTorch reference.
    """
    op = "gated_spmm"
    check_tensor("x", x, op)
    graph = as_graph(graph, x.shape[1] if x.dim() == 3 else None, op)
    check_tensor("gate", gate, op)
    check_rank("x", x, 3, "[B, N, F]", op)
    check_float("x", x, op)
    check_float("gate", gate, op)
    if x.shape[1] != graph.num_cols:
        raise ValueError(
            f"{op}: x has {x.shape[1]} nodes but the graph has {graph.num_cols} source nodes"
        )
    if gate.shape != (graph.num_cols,):
        raise ValueError(f"{op}: gate must have shape [{graph.num_cols}], got {tuple(gate.shape)}")
    check_same_device(op, x=x, gate=gate, graph=graph.col)
    if graph.weight.requires_grad or x.dtype not in KERNEL_DTYPES.get(x.device.type, ()):
        return reference.gated_spmm(graph, x, gate)
    gate = gate.to(x.dtype)
    if torch.is_grad_enabled() and (x.requires_grad or gate.requires_grad):
        t_rowptr, t_col, t_weight = _transpose_arrays(graph)
        return _ops.gated_spmm_tr(
            graph.rowptr,
            graph.col,
            graph.weight,
            t_rowptr,
            t_col,
            t_weight,
            x,
            gate,
            graph.num_rows,
        )
    return _ops.gated_spmm(graph.rowptr, graph.col, graph.weight, x, gate, graph.num_rows)


def _transpose_arrays(graph: CSRGraph) -> tuple[Tensor, Tensor, Tensor]:
    """``(rowptr, col, weight)`` of the transposed graph, for the backward pass.

    Eagerly this is ``graph.transpose()``, built once and cached on the graph. While
    ``torch.compile`` traces, a transpose not cached yet is built by the op
    ``csr_transpose`` inside the graph (the Python one has data-dependent shapes).
    """
    t = graph.cached_transpose
    if t is None:
        if torch.compiler.is_compiling():
            return _ops.csr_transpose(graph.rowptr, graph.col, graph.weight, graph.num_cols)
        t = graph.transpose()
    return t.rowptr, t.col, t.weight


# ------------------------------------------------------------------ reference kernels
def _csr(rowptr: Tensor, col: Tensor, weight: Tensor, num_cols: int) -> CSRGraph:
    return CSRGraph(rowptr, col, weight, num_cols=num_cols, validate=False)


def _ref_gated_spmm(rowptr, col, weight, x, gate, num_rows):
    return reference.gated_spmm(_csr(rowptr, col, weight, x.shape[1]), x, gate)


def _ref_gated_spmm_tr(rowptr, col, weight, t_rowptr, t_col, t_weight, x, gate, num_rows):
    return _ref_gated_spmm(rowptr, col, weight, x, gate, num_rows)


def _ref_gated_spmm_backward(t_rowptr, t_col, t_weight, x, gate, grad_out, need_gate_grad):
    graph_t = _csr(t_rowptr, t_col, t_weight, grad_out.shape[1])
    return reference.gated_spmm_backward(graph_t, x, gate, grad_out, need_gate_grad)


def _ref_csr_transpose(rowptr, col, weight, num_cols):
    t = _csr(rowptr, col, weight, num_cols).transpose()
    return t.rowptr, t.col, t.weight


_dispatch.declare("gated_spmm", reference=_ref_gated_spmm)
_dispatch.declare("gated_spmm_tr", reference=_ref_gated_spmm_tr)
_dispatch.declare("gated_spmm_backward", reference=_ref_gated_spmm_backward)
_dispatch.declare("csr_transpose", reference=_ref_csr_transpose)


# ------------------------------------------------------------------ fake kernels
def _check_x_gate(op: str, x: Tensor, gate: Tensor) -> None:
    torch._check(x.dim() == 3, lambda: f"{op}: x must have shape [B, S, F] (3-D), got {x.shape}")
    dtypes = KERNEL_DTYPES.get(x.device.type, KERNEL_DTYPES["cpu"])
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


@torch.library.register_fake("dynst_fast::gated_spmm")
def _gated_spmm_fake(rowptr, col, weight, x, gate, num_rows):
    op = "dynst_fast::gated_spmm"
    torch._check(num_rows >= 0, lambda: f"{op}: num_rows must be >= 0, got {num_rows}")
    check_csr_arrays(op, rowptr, col, weight, num_rows)
    _check_x_gate(op, x, gate)
    return x.new_empty((x.shape[0], num_rows, x.shape[2]))


@torch.library.register_fake("dynst_fast::gated_spmm_tr")
def _(rowptr, col, weight, t_rowptr, t_col, t_weight, x, gate, num_rows):
    op = "dynst_fast::gated_spmm_tr"
    _check_x_gate(op, x, gate)
    check_csr_arrays(op, t_rowptr, t_col, t_weight, x.shape[1])
    torch._check(
        t_col.shape[0] == col.shape[0],
        lambda: f"{op}: the transpose has {t_col.shape[0]} edges but the graph has {col.shape[0]}",
    )
    return _gated_spmm_fake(rowptr, col, weight, x, gate, num_rows)


@torch.library.register_fake("dynst_fast::gated_spmm_backward")
def _(t_rowptr, t_col, t_weight, x, gate, grad_out, need_gate_grad):
    op = "dynst_fast::gated_spmm_backward"
    _check_x_gate(op, x, gate)
    check_csr_arrays(op, t_rowptr, t_col, t_weight, x.shape[1])
    torch._check(
        grad_out.dim() == 3
        and grad_out.shape[0] == x.shape[0]
        and grad_out.shape[2] == x.shape[2]
        and grad_out.dtype == x.dtype,
        lambda: f"{op}: grad_out must be [B, R, F] of x's dtype, got {tuple(grad_out.shape)}",
    )
    return x.new_empty(x.shape), gate.new_empty(gate.shape)


@torch.library.register_fake("dynst_fast::csr_transpose")
def _(rowptr, col, weight, num_cols):
    op = "dynst_fast::csr_transpose"
    torch._check(num_cols >= 0, lambda: f"{op}: num_cols must be >= 0, got {num_cols}")
    check_csr_arrays(op, rowptr, col, weight, rowptr.shape[0] - 1)
    return (
        rowptr.new_empty((num_cols + 1,)),
        col.new_empty(col.shape),
        weight.new_empty(weight.shape),
    )


# ------------------------------------------------------------------ autograd
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
