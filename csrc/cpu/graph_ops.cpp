// CPU kernels for induce_subgraph and bipartite (schemas in csrc/ops.cpp).
//
// Both ops keep a subset of the columns of a CSR graph and relabel them through
// a dense map (num_cols entries, -1 for a dropped column). They run in two
// passes over the output rows, each split across threads with at::parallel_for:
// first count the kept edges of every row (prefix-summed into the new rowptr),
// then copy the kept edges into place. Edge order inside a row is kept.

#include "graph_ops.h"

#include "../checks.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

namespace dynst_fast {
namespace {

// Edges handled by one parallel task (ATen's usual grain size for elementwise work).
constexpr int64_t kGrainEdges = 32768;

void check_inputs(const char* op, const at::Tensor& rowptr, const at::Tensor& col,
                  const at::Tensor& weight, const at::Tensor& index) {
  check_select_inputs(op, rowptr, col, weight, index, kCpu);
}

// rowptr must be contiguous here.
void check_rowptr_ends(const char* op, const at::Tensor& rowptr, const at::Tensor& col) {
  const int64_t* rp = rowptr.const_data_ptr<int64_t>();
  const int64_t last = rp[rowptr.numel() - 1];
  TORCH_CHECK(rp[0] == 0, op, ": rowptr[0] must be 0, got ", rp[0]);
  TORCH_CHECK(last == col.numel(), op, ": rowptr[-1] = ", last, " but col has ", col.numel(),
              " edges");
}

// map[index[k]] = k, -1 for every column not in index. Checks range and duplicates.
std::vector<int64_t> relabel_map(const char* op, const at::Tensor& index, int64_t num_cols) {
  std::vector<int64_t> map(static_cast<size_t>(num_cols), -1);
  const int64_t* idx = index.const_data_ptr<int64_t>();
  const int64_t k_total = index.numel();
  for (int64_t k = 0; k < k_total; ++k) {
    const int64_t i = idx[k];
    TORCH_CHECK(i >= 0 && i < num_cols, op, ": index[", k, "] = ", i,
                " is out of range [0, ", num_cols, ")");
    TORCH_CHECK(map[i] < 0, op, ": index has duplicate entries (", i, " at positions ", map[i],
                " and ", k, ")");
    map[i] = k;
  }
  return map;
}

// Keeps the columns with map[c] >= 0 of the input rows row_of(0..num_out_rows-1).
template <typename RowOf>
std::tuple<at::Tensor, at::Tensor, at::Tensor> select_columns(
    const char* op, const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight,
    const std::vector<int64_t>& map, int64_t num_out_rows, RowOf row_of) {
  const int64_t num_in_rows = rowptr.numel() - 1;
  const int64_t num_edges = col.numel();
  const int64_t num_cols = static_cast<int64_t>(map.size());
  const int64_t* rp = rowptr.const_data_ptr<int64_t>();
  const int64_t* cp = col.const_data_ptr<int64_t>();
  const int64_t* mp = map.data();

  // Rows per task: about kGrainEdges edges of work per task.
  const int64_t avg_degree = std::max<int64_t>(1, num_edges / std::max<int64_t>(1, num_in_rows));
  const int64_t grain = std::max<int64_t>(1, kGrainEdges / avg_degree);

  at::Tensor out_rowptr = at::empty({num_out_rows + 1}, rowptr.options());
  int64_t* orp = out_rowptr.mutable_data_ptr<int64_t>();
  orp[0] = 0;

  // Pass 1: kept edges per output row, stored at orp[r + 1].
  at::parallel_for(0, num_out_rows, grain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t src = row_of(r);
      const int64_t s = rp[src];
      const int64_t t = rp[src + 1];
      TORCH_CHECK(s >= 0 && s <= t && t <= num_edges, op,
                  ": rowptr is not a valid row pointer: row ", src, " spans [", s, ", ", t,
                  ") with ", num_edges, " edges (rowptr must be non-decreasing)");
      int64_t kept = 0;
      for (int64_t p = s; p < t; ++p) {
        const int64_t c = cp[p];
        TORCH_CHECK(c >= 0 && c < num_cols, op, ": col[", p, "] = ", c,
                    " is out of range [0, ", num_cols, ")");
        kept += mp[c] >= 0;
      }
      orp[r + 1] = kept;
    }
  });
  for (int64_t r = 0; r < num_out_rows; ++r) {
    orp[r + 1] += orp[r];
  }
  const int64_t kept_total = orp[num_out_rows];

  at::Tensor out_col = at::empty({kept_total}, col.options());
  at::Tensor out_weight = at::empty({kept_total}, weight.options());
  int64_t* ocp = out_col.mutable_data_ptr<int64_t>();

  // Pass 2: copy the kept edges, in their input order.
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, weight.scalar_type(), "dynst_fast_select_columns", [&] {
        const scalar_t* wp = weight.const_data_ptr<scalar_t>();
        scalar_t* owp = out_weight.mutable_data_ptr<scalar_t>();
        at::parallel_for(0, num_out_rows, grain, [&](int64_t begin, int64_t end) {
          for (int64_t r = begin; r < end; ++r) {
            const int64_t src = row_of(r);
            int64_t o = orp[r];
            for (int64_t p = rp[src]; p < rp[src + 1]; ++p) {
              const int64_t m = mp[cp[p]];
              if (m >= 0) {
                ocp[o] = m;
                owp[o] = wp[p];
                ++o;
              }
            }
          }
        });
      });
  return {out_rowptr, out_col, out_weight};
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> induce_subgraph_cpu(
    const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight,
    const at::Tensor& index) {
  const char* op = "dynst_fast::induce_subgraph";
  check_inputs(op, rowptr, col, weight, index);
  const at::Tensor rp = rowptr.contiguous();
  const at::Tensor cl = col.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor idx = index.contiguous();
  check_rowptr_ends(op, rp, cl);
  const int64_t num_nodes = rp.numel() - 1;
  const std::vector<int64_t> map = relabel_map(op, idx, num_nodes);
  const int64_t* ip = idx.const_data_ptr<int64_t>();
  return select_columns(op, rp, cl, w, map, idx.numel(), [ip](int64_t r) { return ip[r]; });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bipartite_cpu(
    const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight,
    const at::Tensor& index, int64_t num_cols) {
  const char* op = "dynst_fast::bipartite";
  check_inputs(op, rowptr, col, weight, index);
  TORCH_CHECK(num_cols >= 0, op, ": num_cols must be >= 0, got ", num_cols);
  const at::Tensor rp = rowptr.contiguous();
  const at::Tensor cl = col.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor idx = index.contiguous();
  check_rowptr_ends(op, rp, cl);
  const std::vector<int64_t> map = relabel_map(op, idx, num_cols);
  return select_columns(op, rp, cl, w, map, rp.numel() - 1, [](int64_t r) { return r; });
}

TORCH_LIBRARY_IMPL(dynst_fast, CPU, m) {
  m.impl("induce_subgraph", &induce_subgraph_cpu);
  m.impl("bipartite", &bipartite_cpu);
}

}  // namespace dynst_fast
