// CPU implementations of the graph ops declared in csrc/ops.cpp.
//
// CSR convention (see dynst_fast/graph.py): row i is the target, column j the
// source; rowptr int64 [R + 1], col int64 [E], weight floating [E].
#pragma once

#include <tuple>

#include <ATen/core/Tensor.h>

namespace dynst_fast {

// CSR of A[index][:, index] for a square graph with N = rowptr.numel() - 1
// nodes, relabelled to 0..K-1 (row k and column k are node index[k]).
// Edge order inside a row is kept. Returns (rowptr [K + 1], col, weight).
std::tuple<at::Tensor, at::Tensor, at::Tensor> induce_subgraph_cpu(
    const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight,
    const at::Tensor& index);

// CSR of A[:, index] (shape num_rows x K) of a graph with num_cols columns;
// column index[k] becomes column k, rows are unchanged, edge order is kept.
// Returns (rowptr [num_rows + 1], col, weight).
std::tuple<at::Tensor, at::Tensor, at::Tensor> bipartite_cpu(
    const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight,
    const at::Tensor& index, int64_t num_cols);

}  // namespace dynst_fast
