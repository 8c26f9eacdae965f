"""``bipartite``: the CSR of ``A[:, index]`` (all rows, the K columns of ``index``).

Kernels: C++ on CPU (``csrc/cpu/graph_ops.cpp``), CUDA C++ in CUDA builds
(``csrc/cuda/graph_ops.cu``), the reference (``reference.bipartite``). Its output has a
data-dependent number of edges; no gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..graph import CSRGraph
from . import _dispatch, reference
from ._checks import check_graph_index, check_select_arrays

_ops = torch.ops.dynst_fast


def bipartite(graph: CSRGraph, index: Tensor) -> CSRGraph:
    """CSR of ``A[:, index]`` with shape ``(num_rows, K)``, columns relabelled, order kept."""
    graph, index = check_graph_index(graph, index, "bipartite")
    rowptr, col, w = _ops.bipartite(graph.rowptr, graph.col, graph.weight, index, graph.num_cols)
    return CSRGraph(rowptr, col, w, num_cols=index.numel(), validate=False)


def _reference(rowptr, col, weight, index, num_cols):
    g = CSRGraph(rowptr, col, weight, num_cols=num_cols, validate=False)
    out = reference.bipartite(g, index)
    return out.rowptr, out.col, out.weight


_dispatch.declare("bipartite", reference=_reference)


@torch.library.register_fake("dynst_fast::bipartite")
def _(rowptr, col, weight, index, num_cols):
    op = "dynst_fast::bipartite"
    torch._check(num_cols >= 0, lambda: f"{op}: num_cols must be >= 0, got {num_cols}")
    check_select_arrays(op, rowptr, col, weight, index)
    kept = torch.library.get_ctx().new_dynamic_size()
    rows = rowptr.shape[0] - 1
    return rowptr.new_empty((rows + 1,)), col.new_empty((kept,)), weight.new_empty((kept,))
