// CUDA kernels of induce_subgraph / bipartite and the CSR check (launchers declared in
// graph_kernels.h).
//
// Both ops keep the columns c with map[c] >= 0 of some input rows and relabel them to
// map[c], where map[index[k]] = k (so the new column order is index's order, as on
// CPU). The binding runs: relabel map -> count kept edges per output row -> exclusive
// prefix sum of the counts (the new rowptr) -> copy. Count and copy use one warp per
// output row: the warp reads 32 edges at a time, a ballot of "kept" bits gives each
// kept edge its position (the popcount of the kept lanes below it), so edges keep
// their input order inside a row, with no atomics.

#include <cstdint>

#include <cuda_runtime.h>

#include "common.cuh"
#include "graph_kernels.h"

namespace dynst_fast {
namespace cuda {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr int64_t kWarpsPerBlock = kThreads / kWarp;

__device__ __forceinline__ void check_rowptr_ends(const int64_t* rowptr, int64_t num_rows,
                                                  int64_t num_edges, int* error) {
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    if (rowptr[0] != 0) flag_error(error, kRowptrFirst);
    if (rowptr[num_rows] != num_edges) flag_error(error, kRowptrLast);
  }
}

__global__ void __launch_bounds__(kThreads)
    check_csr_kernel(const int64_t* __restrict__ rowptr, const int64_t* __restrict__ col,
                     int64_t num_rows, int64_t num_cols, int64_t num_edges, int* error) {
  check_rowptr_ends(rowptr, num_rows, num_edges, error);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  const int64_t start = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  for (int64_t r = start; r < num_rows; r += stride) {
    const int64_t s = rowptr[r];
    const int64_t e = rowptr[r + 1];
    if (!(0 <= s && s <= e && e <= num_edges)) flag_error(error, kRowptrOrder);
  }
  for (int64_t p = start; p < num_edges; p += stride) {
    const int64_t c = col[p];
    if (c < 0 || c >= num_cols) flag_error(error, kColRange);
  }
}

__global__ void __launch_bounds__(kThreads)
    relabel_map_kernel(const int64_t* __restrict__ index, int64_t num_index, int64_t num_cols,
                       int64_t* map, int* error) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kThreads;
  for (int64_t k = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; k < num_index;
       k += stride) {
    const int64_t i = index[k];
    if (i < 0 || i >= num_cols) {
      flag_error(error, kIndexRange);
      continue;
    }
    const unsigned long long prev =
        atomicCAS(reinterpret_cast<unsigned long long*>(map + i),
                  static_cast<unsigned long long>(-1LL), static_cast<unsigned long long>(k));
    if (prev != static_cast<unsigned long long>(-1LL)) flag_error(error, kIndexDuplicate);
  }
}

// The input row of output row r and its edge range; an invalid source row (flagged by
// the relabel map) or row range (flagged here when error is given) reads as empty.
__device__ __forceinline__ void row_range(const int64_t* rowptr, const int64_t* row_of,
                                          int64_t r, int64_t num_in_rows, int64_t num_edges,
                                          int* error, int lane, int64_t& s, int64_t& e) {
  s = e = 0;
  const int64_t src = row_of == nullptr ? r : row_of[r];
  if (src < 0 || src >= num_in_rows) return;
  const int64_t a = rowptr[src];
  const int64_t b = rowptr[src + 1];
  if (0 <= a && a <= b && b <= num_edges) {
    s = a;
    e = b;
  } else if (error != nullptr && lane == 0) {
    flag_error(error, kRowptrOrder);
  }
}

__global__ void __launch_bounds__(kThreads)
    count_kept_kernel(const int64_t* __restrict__ rowptr, const int64_t* __restrict__ col,
                      const int64_t* __restrict__ map, const int64_t* __restrict__ row_of,
                      int64_t num_out_rows, int64_t num_in_rows, int64_t num_cols,
                      int64_t num_edges, int64_t* __restrict__ counts, int* error) {
  check_rowptr_ends(rowptr, num_in_rows, num_edges, error);
  const int lane = static_cast<int>(threadIdx.x) & (kWarp - 1);
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  // All lanes of a warp share r, so every loop below is warp-uniform (full-mask ballots).
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
       r < num_out_rows; r += warps) {
    int64_t s, e;
    row_range(rowptr, row_of, r, num_in_rows, num_edges, error, lane, s, e);
    int64_t kept = 0;
    for (int64_t p0 = s; p0 < e; p0 += kWarp) {
      const int64_t p = p0 + lane;
      bool keep = false;
      if (p < e) {
        const int64_t c = col[p];
        if (c >= 0 && c < num_cols) {
          keep = map[c] >= 0;
        } else {
          flag_error(error, kColRange);
        }
      }
      kept += __popc(__ballot_sync(kFullMask, keep));
    }
    if (lane == 0) counts[r] = kept;
  }
}

template <typename W>
__global__ void __launch_bounds__(kThreads)
    copy_kept_kernel(const int64_t* __restrict__ rowptr, const int64_t* __restrict__ col,
                     const W* __restrict__ weight, const int64_t* __restrict__ map,
                     const int64_t* __restrict__ row_of, int64_t num_out_rows,
                     int64_t num_in_rows, int64_t num_cols, int64_t num_edges,
                     const int64_t* __restrict__ out_rowptr, int64_t* __restrict__ out_col,
                     W* __restrict__ out_weight) {
  const int lane = static_cast<int>(threadIdx.x) & (kWarp - 1);
  const unsigned below = (1u << lane) - 1u;  // lanes before this one
  const int64_t warps = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
       r < num_out_rows; r += warps) {
    int64_t s, e;
    row_range(rowptr, row_of, r, num_in_rows, num_edges, nullptr, lane, s, e);
    int64_t o = out_rowptr[r];
    const int64_t o_end = out_rowptr[r + 1];
    for (int64_t p0 = s; p0 < e; p0 += kWarp) {
      const int64_t p = p0 + lane;
      int64_t m = -1;
      if (p < e) {
        const int64_t c = col[p];
        if (c >= 0 && c < num_cols) m = map[c];
      }
      const unsigned kept = __ballot_sync(kFullMask, m >= 0);
      const int64_t pos = o + __popc(kept & below);
      if (m >= 0 && pos < o_end) {
        out_col[pos] = m;
        out_weight[pos] = weight[p];
      }
      o += __popc(kept);
    }
  }
}

}  // namespace

cudaError_t launch_check_csr(const int64_t* rowptr, const int64_t* col, int64_t num_rows,
                             int64_t num_cols, int64_t num_edges, int* error,
                             cudaStream_t stream) {
  const int64_t items = num_rows > num_edges ? num_rows : num_edges;
  check_csr_kernel<<<grid_for(items, kThreads), kThreads, 0, stream>>>(
      rowptr, col, num_rows, num_cols, num_edges, error);
  return cudaGetLastError();
}

cudaError_t launch_relabel_map(const int64_t* index, int64_t num_index, int64_t num_cols,
                               int64_t* map, int* error, cudaStream_t stream) {
  if (num_index == 0) return cudaSuccess;
  relabel_map_kernel<<<grid_for(num_index, kThreads), kThreads, 0, stream>>>(
      index, num_index, num_cols, map, error);
  return cudaGetLastError();
}

cudaError_t launch_count_kept(const int64_t* rowptr, const int64_t* col, const int64_t* map,
                              const int64_t* row_of, int64_t num_out_rows, int64_t num_in_rows,
                              int64_t num_cols, int64_t num_edges, int64_t* counts, int* error,
                              cudaStream_t stream) {
  // Launched even for num_out_rows == 0: it also checks the ends of rowptr.
  count_kept_kernel<<<grid_for(num_out_rows, kWarpsPerBlock), kThreads, 0, stream>>>(
      rowptr, col, map, row_of, num_out_rows, num_in_rows, num_cols, num_edges, counts, error);
  return cudaGetLastError();
}

cudaError_t launch_copy_kept(const int64_t* rowptr, const int64_t* col, const void* weight,
                             int weight_bytes, const int64_t* map, const int64_t* row_of,
                             int64_t num_out_rows, int64_t num_in_rows, int64_t num_cols,
                             int64_t num_edges, const int64_t* out_rowptr, int64_t* out_col,
                             void* out_weight, cudaStream_t stream) {
  if (num_out_rows == 0) return cudaSuccess;
  const unsigned int grid = grid_for(num_out_rows, kWarpsPerBlock);
  switch (weight_bytes) {
    case 2:
      copy_kept_kernel<uint16_t><<<grid, kThreads, 0, stream>>>(
          rowptr, col, static_cast<const uint16_t*>(weight), map, row_of, num_out_rows,
          num_in_rows, num_cols, num_edges, out_rowptr, out_col,
          static_cast<uint16_t*>(out_weight));
      break;
    case 4:
      copy_kept_kernel<uint32_t><<<grid, kThreads, 0, stream>>>(
          rowptr, col, static_cast<const uint32_t*>(weight), map, row_of, num_out_rows,
          num_in_rows, num_cols, num_edges, out_rowptr, out_col,
          static_cast<uint32_t*>(out_weight));
      break;
    case 8:
      copy_kept_kernel<uint64_t><<<grid, kThreads, 0, stream>>>(
          rowptr, col, static_cast<const uint64_t*>(weight), map, row_of, num_out_rows,
          num_in_rows, num_cols, num_edges, out_rowptr, out_col,
          static_cast<uint64_t*>(out_weight));
      break;
    default:
      return cudaErrorInvalidValue;
  }
  return cudaGetLastError();
}

}  // namespace cuda
}  // namespace dynst_fast
