"""Public, shape-checked ops of DESIGN.md section 6.

Every op validates its arguments (clear ``ValueError``/``TypeError``), then runs
the fastest backend available for the input's device. The graph ops
(``induce_subgraph``, ``bipartite``, ``gated_spmm``) run in the C++ extension
``dynst_fast._C`` (fake and autograd registrations in ``_graph_autograd``): its CPU
kernels for CPU tensors, its CUDA kernels for CUDA tensors when it was built with them
(else the PyTorch reference, with a warning once).
``compact``, ``expand``, ``patchify_compact``, ``select_swap`` and ``prune_lowest``
are ``torch.library.custom_op`` ops (``_custom_ops``) that run the Triton kernels of
``dynst_fast.kernels`` on CUDA, C++ CPU kernels or the PyTorch composition on CPU;
``DYNST_BACKEND=triton|cpu|reference`` forces a backend (``_backend``).

Value checks that need the data (index range and duplicates, the number of active
sensors for k, NaN scores) run eagerly; while ``torch.compile`` traces they are
skipped (they would break the graph), so compiled code must pass checked indices.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .._extension import cpp_ops, cuda_kernels_built
from ..graph import CSRGraph
from . import _custom_ops, reference
from ._checks import (
    check_float,
    check_index,
    check_k,
    check_mask,
    check_no_nan,
    check_rank,
    check_same_device,
    check_tensor,
)

__all__ = [
    "compact",
    "expand",
    "patchify_compact",
    "select_swap",
    "prune_lowest",
    "gated_spmm",
    "induce_subgraph",
    "bipartite",
    "reference",
]

# torch.ops.dynst_fast once the extension and _graph_autograd are loaded (see _cpp_graph_ops).
_GRAPH_OPS = None
_GRAPH_OPS_RESOLVED = False
# Whether that extension has CUDA kernels (resolved with _GRAPH_OPS), and whether the
# fallback for CUDA tensors without them was reported already.
_GRAPH_OPS_CUDA = False
_WARNED_NO_CUDA_KERNELS = False
# x dtypes the graph kernels take, per device type.
_KERNEL_DTYPES = {
    "cpu": (torch.float32, torch.float64),
    "cuda": (torch.float32, torch.float64, torch.float16, torch.bfloat16),
}


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
    if torch.compiler.is_exporting():  # exported models hold standard operators only
        return reference.compact(x, theta.to(x.dtype), index)
    return _custom_ops.compact(x, theta.to(x.dtype), index)


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
    if torch.compiler.is_exporting():
        return reference.expand(y, index, n, float(fill))
    return _custom_ops.expand(y, index, n, float(fill))


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
    if torch.compiler.is_exporting():
        return reference.patchify_compact(frames, theta.to(frames.dtype), index, p)
    return _custom_ops.patchify_compact(frames, theta.to(frames.dtype), index, p)


def select_swap(score: Tensor, active: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The k lowest-score active sensors and the k highest-score inactive ones.

    score: ``[N]`` float, no NaN (``ValueError``); active: ``[N]`` bool. Returns
    ``(drop[k], grow[k])`` int64, most extreme first, ties to the lower index
    (-0.0 ties with +0.0). Not differentiable (score is detached).
    """
    op = "select_swap"
    check_tensor("score", score, op)
    check_rank("score", score, 1, "[N]", op)
    check_float("score", score, op)
    active = check_mask(active, score.numel(), op)
    check_same_device(op, score=score, active=active)
    if torch.compiler.is_compiling():
        check_k(k, score.numel(), "total", op)
    else:
        n_active = int(torch.count_nonzero(active))
        check_k(k, n_active, "active", op)
        check_k(k, score.numel() - n_active, "inactive", op)
        check_no_nan("score", score, op)
    return _custom_ops.select_swap(score.detach(), active, k)


def prune_lowest(score: Tensor, active: Tensor, k: int) -> Tensor:
    """New ``[N]`` bool mask without the k active sensors of lowest ``|score|``.

    Ties go to the lower index; NaN scores raise ``ValueError``. Not differentiable.
    """
    op = "prune_lowest"
    check_tensor("score", score, op)
    check_rank("score", score, 1, "[N]", op)
    check_float("score", score, op)
    active = check_mask(active, score.numel(), op)
    check_same_device(op, score=score, active=active)
    if torch.compiler.is_compiling():
        check_k(k, score.numel(), "total", op)
    else:
        check_k(k, int(torch.count_nonzero(active)), "active", op)
        check_no_nan("score", score, op)
    return _custom_ops.prune_lowest(score.detach(), active, k)


def gated_spmm(graph: CSRGraph, x: Tensor, gate: Tensor) -> Tensor:
    """Gated message passing ``out[b, i] = sum_j A[i, j] * gate[j] * x[b, j]``.

    graph: ``CSRGraph`` of shape ``(R, S)``; x: ``[B, S, F]``; gate: ``[S]``.
    Returns ``[B, R, F]``. Differentiable in x and gate.

    CPU float32/float64 x runs the C++ kernel (gate is cast to x's dtype, the edge
    weights are used in x's dtype); CUDA float32/float64/float16/bfloat16 x runs the
    CUDA kernel (float32 accumulation for the 16-bit types) when the extension was
    built with it. The backward reads ``graph.transpose()``, which is built on the
    first differentiable call and cached on the graph. Other dtypes and devices, and
    graphs whose weights require grad, run the PyTorch reference.
    """
    op = "gated_spmm"
    if not isinstance(graph, CSRGraph):
        raise TypeError(f"{op}: graph must be a CSRGraph, got {type(graph).__name__}")
    check_tensor("x", x, op)
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
    if torch.compiler.is_exporting():  # exported models hold standard ONNX operators only
        return reference.gated_spmm_export(graph, x, gate)
    lib = _cpp_graph_ops()
    if (
        lib is not None
        and _has_graph_kernel(x.device, op)
        and x.dtype in _KERNEL_DTYPES[x.device.type]
        and not graph.weight.requires_grad  # the C++ op has no weight gradient
    ):
        gate = gate.to(x.dtype)
        if torch.is_grad_enabled() and (x.requires_grad or gate.requires_grad):
            t_rowptr, t_col, t_weight = _transpose_arrays(lib, graph)
            return lib.gated_spmm_tr(
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
        return lib.gated_spmm(graph.rowptr, graph.col, graph.weight, x, gate, graph.num_rows)
    return reference.gated_spmm(graph, x, gate)


def _cpp_graph_ops():
    """``torch.ops.dynst_fast`` with the fake/autograd registrations, or ``None``.

    Resolved once into a module global (which ``torch.compile`` reads as a constant).
    """
    global _GRAPH_OPS, _GRAPH_OPS_RESOLVED, _GRAPH_OPS_CUDA
    if not _GRAPH_OPS_RESOLVED:
        lib = cpp_ops()
        if lib is not None:
            from . import _graph_autograd  # noqa: F401  (registers fake + autograd kernels)
        _GRAPH_OPS, _GRAPH_OPS_CUDA = lib, cuda_kernels_built()
        _GRAPH_OPS_RESOLVED = True
    return _GRAPH_OPS


def _has_graph_kernel(device: torch.device, op: str) -> bool:
    """Whether the extension has a kernel for tensors on ``device``.

    A CUDA tensor with an extension built without CUDA kernels warns once (the op then
    runs the PyTorch reference, correct but slow) and says how to rebuild.
    """
    global _WARNED_NO_CUDA_KERNELS
    if device.type == "cpu":
        return True
    if device.type != "cuda":
        return False
    if _GRAPH_OPS_CUDA:
        return True
    if not _WARNED_NO_CUDA_KERNELS:
        _WARNED_NO_CUDA_KERNELS = True
        warnings.warn(
            f"{op}: dynst_fast._C was built without CUDA kernels, so the graph ops run "
            "their PyTorch reference on CUDA tensors. Rebuild against a CUDA torch with "
            "nvcc on PATH (DYNST_WITH_CUDA=1 pip install --no-build-isolation -e .) to "
            "use the kernels of csrc/cuda.",
            RuntimeWarning,
            stacklevel=3,
        )
    return False


def _transpose_arrays(lib, graph: CSRGraph) -> tuple[Tensor, Tensor, Tensor]:
    """``(rowptr, col, weight)`` of the transposed graph, for the backward pass.

    Eagerly this is ``graph.transpose()``, built once and cached on the graph. While
    ``torch.compile`` traces, a transpose not cached yet is built by the C++ op
    ``csr_transpose`` inside the graph (the Python one has data-dependent shapes).
    """
    t = graph.cached_transpose
    if t is None:
        if torch.compiler.is_compiling():
            return lib.csr_transpose(graph.rowptr, graph.col, graph.weight, graph.num_cols)
        t = graph.transpose()
    return t.rowptr, t.col, t.weight


def _graph_index(graph: CSRGraph, index: Tensor, op: str) -> Tensor:
    if not isinstance(graph, CSRGraph):
        raise TypeError(f"{op}: graph must be a CSRGraph, got {type(graph).__name__}")
    index = check_index(index, graph.num_cols, op)
    check_same_device(op, graph=graph.col, index=index)
    return index


def induce_subgraph(graph: CSRGraph, index: Tensor) -> CSRGraph:
    """CSR of ``A[index][:, index]``, relabelled to ``0..K-1``, edge order kept."""
    op = "induce_subgraph"
    index = _graph_index(graph, index, op)
    if graph.num_rows != graph.num_cols:
        raise ValueError(f"{op}: the graph must be square, got shape {graph.shape}")
    lib = _cpp_graph_ops()
    if lib is not None and _has_graph_kernel(index.device, op):
        rowptr, col, w = lib.induce_subgraph(graph.rowptr, graph.col, graph.weight, index)
        return CSRGraph(rowptr, col, w, num_cols=index.numel(), validate=False)
    return reference.induce_subgraph(graph, index)


def bipartite(graph: CSRGraph, index: Tensor) -> CSRGraph:
    """CSR of ``A[:, index]`` with shape ``(num_rows, K)``, columns relabelled, order kept."""
    op = "bipartite"
    index = _graph_index(graph, index, op)
    lib = _cpp_graph_ops()
    if lib is not None and _has_graph_kernel(index.device, op):
        rowptr, col, w = lib.bipartite(graph.rowptr, graph.col, graph.weight, index, graph.num_cols)
        return CSRGraph(rowptr, col, w, num_cols=index.numel(), validate=False)
    return reference.bipartite(graph, index)
