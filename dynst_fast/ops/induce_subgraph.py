"""``induce_subgraph``: the CSR of ``A[index][:, index]``, relabelled to ``0..K-1``.

Kernels: C++ on CPU (``csrc/cpu/graph_ops.cpp``), CUDA C++ in CUDA builds
(``csrc/cuda/graph_ops.cu``), the reference (``reference.induce_subgraph``). Its output
has a data-dependent number of edges; no gradient.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..graph import CSRGraph
from . import _dispatch, reference
from ._checks import check_graph_index, check_select_arrays

_ops = torch.ops.dynst_fast


def induce_subgraph(graph: CSRGraph, index: Tensor) -> CSRGraph:
    """CSR of ``A[index][:, index]``, relabelled to ``0..K-1``, edge order kept."""
    op = "induce_subgraph"
    graph, index = check_graph_index(graph, index, op)
    if graph.num_rows != graph.num_cols:
        raise ValueError(f"{op}: the graph must be square, got shape {graph.shape}")
    rowptr, col, w = _ops.induce_subgraph(graph.rowptr, graph.col, graph.weight, index)
    return CSRGraph(rowptr, col, w, num_cols=index.numel(), validate=False)


def _reference(rowptr, col, weight, index):
    g = CSRGraph(rowptr, col, weight, num_cols=rowptr.numel() - 1, validate=False)
    out = reference.induce_subgraph(g, index)
    return out.rowptr, out.col, out.weight


_dispatch.declare("induce_subgraph", reference=_reference)


@torch.library.register_fake("dynst_fast::induce_subgraph")
def _(rowptr, col, weight, index):
    check_select_arrays("dynst_fast::induce_subgraph", rowptr, col, weight, index)
    kept = torch.library.get_ctx().new_dynamic_size()
    return (
        rowptr.new_empty((index.shape[0] + 1,)),
        col.new_empty((kept,)),
        weight.new_empty((kept,)),
    )
