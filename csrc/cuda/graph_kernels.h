// Launchers of the CUDA graph kernels (csrc/cuda/*.cu), on raw device pointers.
//
// This header is plain C++ plus the CUDA runtime API, so that the .cu files that
// implement it never include ATen/torch headers and compile with `nvcc -c` on a
// machine whose torch has no CUDA. The torch-facing binding that checks tensors,
// allocates outputs and calls these is csrc/cuda/graph_ops_cuda.cpp.
//
// CSR convention as on CPU (dynst_fast/graph.py): row i is the target, column j the
// source; rowptr int64 [R + 1], col int64 [E]. All sizes and offsets are int64.
// Every launcher enqueues on `stream`, returns the launch error (cudaSuccess if
// nothing had to run) and never synchronises.
#pragma once

#include <cstdint>

#include <cuda_runtime_api.h>

namespace dynst_fast {
namespace cuda {

// Element type of x / gate / outputs. Accumulation is float32 for float32, float16
// and bfloat16, float64 for float64; edge weights are passed in that accumulation type.
enum class Dtype : int { kFloat32 = 0, kFloat64 = 1, kFloat16 = 2, kBFloat16 = 3 };

// Bits that kernels OR into an int32 device flag when they meet invalid input. The
// kernels stay in bounds whatever the input (a bad row is read as empty, a bad column
// as a zero message); the binding reads the flag and raises the matching error.
enum ErrorBit : int {
  kRowptrFirst = 1,      // rowptr[0] != 0
  kRowptrLast = 2,       // rowptr[R] != E
  kRowptrOrder = 4,      // a row [rowptr[r], rowptr[r + 1]) is not inside [0, E] in order
  kColRange = 8,         // a column outside [0, num_cols)
  kIndexRange = 16,      // an entry of index outside [0, n)
  kIndexDuplicate = 32,  // a value twice in index
};

// Strides (in elements) of a [B, rows, F] tensor.
struct Strides3 {
  int64_t b;
  int64_t n;
  int64_t f;
};

// One gather pass over the rows of a CSR, for each batch b and row r:
//   acc[b, r, :] = sum_{p in row r} coef(p) * src[b, col[p], :]
// Forward (A, coef = weight[p] * gate[col[p]]):   out = acc            (out = y)
// Backward (A^T, coef = weight[p]):               out = gate[r] * acc  (out = grad_x),
//                                                 dots[b, r] = <x[b, r, :], acc>
struct PassArgs {
  const int64_t* rowptr;  // [num_rows + 1]
  const int64_t* col;     // [num_edges]
  const void* weight;     // [num_edges], accumulation dtype
  const void* gate;       // forward: [num_cols]; backward: [num_rows]; element dtype
  const void* src;        // [batch, num_cols, features], strides src_stride
  Strides3 src_stride;
  const void* x;          // backward only: [batch, num_rows, features], strides x_stride
  Strides3 x_stride;
  void* out;              // contiguous [batch, num_rows, features]
  void* dots;             // backward only, may be null: [batch, num_rows], accumulation dtype
  int64_t batch;
  int64_t num_rows;
  int64_t num_cols;
  int64_t features;
  int64_t num_edges;
  int* error;  // device int32 flag (ErrorBit)
};

cudaError_t launch_gated_spmm_forward(const PassArgs& args, Dtype dtype, cudaStream_t stream);
cudaError_t launch_gated_spmm_backward(const PassArgs& args, Dtype dtype, cudaStream_t stream);

// Validates a whole CSR (endpoints, every row, every column) into *error.
cudaError_t launch_check_csr(const int64_t* rowptr, const int64_t* col, int64_t num_rows,
                             int64_t num_cols, int64_t num_edges, int* error,
                             cudaStream_t stream);

// map[index[k]] = k for k < num_index; map must hold -1 in all num_cols entries before.
// Flags kIndexRange and kIndexDuplicate.
cudaError_t launch_relabel_map(const int64_t* index, int64_t num_index, int64_t num_cols,
                               int64_t* map, int* error, cudaStream_t stream);

// counts[r] = number of edges p of input row row_of[r] (r itself when row_of is null)
// with map[col[p]] >= 0, for r < num_out_rows. Validates what it reads (endpoints of
// rowptr, the rows it visits, their columns) into *error.
cudaError_t launch_count_kept(const int64_t* rowptr, const int64_t* col, const int64_t* map,
                              const int64_t* row_of, int64_t num_out_rows, int64_t num_in_rows,
                              int64_t num_cols, int64_t num_edges, int64_t* counts, int* error,
                              cudaStream_t stream);

// Copies the kept edges of every output row to out_col[out_rowptr[r]...] (relabelled
// through map) and out_weight, in their input order. weight_bytes is the size of one
// weight element (2, 4 or 8); the weights are copied bit for bit. Expects the input that
// launch_count_kept accepted without errors and out_rowptr = [0, cumsum(counts)].
cudaError_t launch_copy_kept(const int64_t* rowptr, const int64_t* col, const void* weight,
                             int weight_bytes, const int64_t* map, const int64_t* row_of,
                             int64_t num_out_rows, int64_t num_in_rows, int64_t num_cols,
                             int64_t num_edges, const int64_t* out_rowptr, int64_t* out_col,
                             void* out_weight, cudaStream_t stream);

}  // namespace cuda
}  // namespace dynst_fast
