// CUDA implementations of the graph ops declared in csrc/ops.cpp: the torch-facing side
// (argument checks, output allocation, streams, error reporting) of the raw-pointer
// kernels in csrc/cuda/*.cu. Compiled only in CUDA builds (setup.py / CMakeLists.txt
// define WITH_CUDA), where it registers TORCH_LIBRARY_IMPL(dynst_fast, CUDA).
//
// Semantics mirror the CPU kernels (csrc/cpu/): same schemas, same checks, same
// results up to summation order. Differences, all by design:
// * gated_spmm also takes float16 and bfloat16 x (accumulated in float32); edge weights
//   are used in the accumulation type (float32, float64 for float64 x).
// * The kernels validate the CSR while they read it and set bits of a device error flag;
//   the op reads the flag back (one device-to-host copy, which synchronises the stream)
//   and raises the same kind of error as on CPU, without the offending value. While the
//   stream is being captured into a CUDA graph the read-back is skipped (a capture cannot
//   synchronise); the kernels stay in bounds on any input, so a bad graph then gives
//   wrong numbers instead of an error.
// * csr_transpose is built from ATen ops (a stable sort of the columns).

#include <cstdint>
#include <string>
#include <tuple>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../checks.h"
#include "graph_kernels.h"

namespace dynst_fast {
namespace {

namespace dc = dynst_fast::cuda;

// ------------------------------------------------------------------ argument checks
dc::Dtype kernel_dtype(const char* op, const at::Tensor& x) {
  switch (x.scalar_type()) {
    case at::kFloat:
      return dc::Dtype::kFloat32;
    case at::kDouble:
      return dc::Dtype::kFloat64;
    case at::kHalf:
      return dc::Dtype::kFloat16;
    case at::kBFloat16:
      return dc::Dtype::kBFloat16;
    default:
      break;
  }
  TORCH_CHECK(false, op, ": x must be float32, float64, float16 or bfloat16 on CUDA, got ",
              x.scalar_type());
}

at::ScalarType acc_type(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

void check_cuda_dtype(const char* op, const at::Tensor& x) { kernel_dtype(op, x); }

void check_x_gate(const char* op, const at::Tensor& x, const at::Tensor& gate) {
  TORCH_CHECK(x.defined() && gate.defined(), op, ": x and gate must be defined");
  TORCH_CHECK(x.is_cuda(), op, ": x must be a CUDA tensor, got device ", x.device());
  dynst_fast::check_x_gate(op, x, gate, x.device(), &check_cuda_dtype);
}

// Strides of a [B, N, F] tensor, 0 for dimensions of size 1 (never stepped over), so
// that the kernels' alignment test only sees strides that matter.
dc::Strides3 strides_of(const at::Tensor& t) {
  auto s = [&](int64_t d) { return t.size(d) == 1 ? int64_t{0} : t.stride(d); };
  return dc::Strides3{s(0), s(1), s(2)};
}

// ------------------------------------------------------------------ error read-back
bool stream_is_capturing(cudaStream_t stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  C10_CUDA_CHECK(cudaStreamIsCapturing(stream, &status));
  return status != cudaStreamCaptureStatusNone;
}

// Raises the error that the flag's bits name (prefix "t_" for a transposed CSR).
void raise_errors(const char* op, const char* prefix, const at::Tensor& error,
                  int64_t num_cols, int64_t num_edges, int64_t index_range,
                  cudaStream_t stream) {
  if (stream_is_capturing(stream)) return;
  const int bits = error.item<int>();  // synchronises the stream
  TORCH_CHECK(!(bits & dc::kIndexRange), op, ": index has entries out of range [0, ",
              index_range, ")");
  TORCH_CHECK(!(bits & dc::kIndexDuplicate), op, ": index has duplicate entries");
  TORCH_CHECK(!(bits & dc::kRowptrFirst), op, ": ", prefix, "rowptr[0] must be 0");
  TORCH_CHECK(!(bits & dc::kRowptrLast), op, ": ", prefix, "rowptr[-1] must equal the ",
              num_edges, " edges of ", prefix, "col");
  TORCH_CHECK(!(bits & dc::kRowptrOrder), op, ": ", prefix,
              "rowptr is not a valid row pointer (rowptr must be non-decreasing, within [0, ",
              num_edges, "])");
  TORCH_CHECK(!(bits & dc::kColRange), op, ": ", prefix, "col has entries out of range [0, ",
              num_cols, ")");
}

at::Tensor new_error_flag(const at::Tensor& like) {
  return at::zeros({1}, like.options().dtype(at::kInt));
}

// ---------------------------------------------------------------------- gated_spmm
at::Tensor gated_spmm_cuda(const at::Tensor& rowptr, const at::Tensor& col,
                           const at::Tensor& weight, const at::Tensor& x, const at::Tensor& gate,
                           int64_t num_rows) {
  const char* op = "dynst_fast::gated_spmm";
  TORCH_CHECK(num_rows >= 0, op, ": num_rows must be >= 0, got ", num_rows);
  check_x_gate(op, x, gate);
  check_csr_arrays(op, "", rowptr, col, weight, num_rows, x.device());
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor rp = rowptr.contiguous();
  const at::Tensor cl = col.contiguous();
  const at::Tensor w = weight.to(acc_type(x)).contiguous();
  const at::Tensor gc = gate.contiguous();
  const int64_t B = x.size(0);
  const int64_t S = x.size(1);
  const int64_t F = x.size(2);
  at::Tensor out = at::empty({B, num_rows, F}, x.options());
  at::Tensor error = new_error_flag(x);
  if (out.numel() == 0) {
    C10_CUDA_CHECK(dc::launch_check_csr(rp.const_data_ptr<int64_t>(),
                                        cl.const_data_ptr<int64_t>(), num_rows, S, cl.numel(),
                                        error.mutable_data_ptr<int>(), stream));
  } else {
    dc::PassArgs a{};
    a.rowptr = rp.const_data_ptr<int64_t>();
    a.col = cl.const_data_ptr<int64_t>();
    a.weight = w.const_data_ptr();
    a.gate = gc.const_data_ptr();
    a.src = x.const_data_ptr();
    a.src_stride = strides_of(x);
    a.out = out.mutable_data_ptr();
    a.batch = B;
    a.num_rows = num_rows;
    a.num_cols = S;
    a.features = F;
    a.num_edges = cl.numel();
    a.error = error.mutable_data_ptr<int>();
    C10_CUDA_CHECK(dc::launch_gated_spmm_forward(a, kernel_dtype(op, x), stream));
  }
  raise_errors(op, "", error, S, cl.numel(), 0, stream);
  return out;
}

at::Tensor gated_spmm_tr_cuda(const at::Tensor& rowptr, const at::Tensor& col,
                              const at::Tensor& weight, const at::Tensor& t_rowptr,
                              const at::Tensor& t_col, const at::Tensor& t_weight,
                              const at::Tensor& x, const at::Tensor& gate, int64_t num_rows) {
  const char* op = "dynst_fast::gated_spmm_tr";
  // The transpose is only read by the backward; check its shape here so that a wrong
  // one fails at the call, not in the backward.
  check_x_gate(op, x, gate);
  check_csr_arrays(op, "t_", t_rowptr, t_col, t_weight, x.size(1), x.device());
  TORCH_CHECK(t_col.numel() == col.numel(), op, ": the transpose has ", t_col.numel(),
              " edges but the graph has ", col.numel());
  return gated_spmm_cuda(rowptr, col, weight, x, gate, num_rows);
}

std::tuple<at::Tensor, at::Tensor> gated_spmm_backward_cuda(
    const at::Tensor& t_rowptr, const at::Tensor& t_col, const at::Tensor& t_weight,
    const at::Tensor& x, const at::Tensor& gate, const at::Tensor& grad_out,
    bool need_gate_grad) {
  const char* op = "dynst_fast::gated_spmm_backward";
  check_x_gate(op, x, gate);
  const int64_t B = x.size(0);
  const int64_t S = x.size(1);
  const int64_t F = x.size(2);
  check_csr_arrays(op, "t_", t_rowptr, t_col, t_weight, S, x.device());
  check_grad_out(op, grad_out, x);
  const int64_t R = grad_out.size(1);
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor trp = t_rowptr.contiguous();
  const at::Tensor tcl = t_col.contiguous();
  const at::Tensor tw = t_weight.to(acc_type(x)).contiguous();
  const at::Tensor gc = gate.contiguous();
  at::Tensor grad_x = at::empty({B, S, F}, x.options());
  // Per-(b, j) partial sums of grad_gate, summed over b below (no atomics).
  at::Tensor dots =
      need_gate_grad ? at::zeros({B, S}, x.options().dtype(acc_type(x))) : at::Tensor();
  at::Tensor error = new_error_flag(x);
  if (grad_x.numel() == 0) {
    C10_CUDA_CHECK(dc::launch_check_csr(trp.const_data_ptr<int64_t>(),
                                        tcl.const_data_ptr<int64_t>(), S, R, tcl.numel(),
                                        error.mutable_data_ptr<int>(), stream));
  } else {
    dc::PassArgs a{};
    a.rowptr = trp.const_data_ptr<int64_t>();
    a.col = tcl.const_data_ptr<int64_t>();
    a.weight = tw.const_data_ptr();
    a.gate = gc.const_data_ptr();
    a.src = grad_out.const_data_ptr();
    a.src_stride = strides_of(grad_out);
    a.x = x.const_data_ptr();
    a.x_stride = strides_of(x);
    a.out = grad_x.mutable_data_ptr();
    a.dots = need_gate_grad ? dots.mutable_data_ptr() : nullptr;
    a.batch = B;
    a.num_rows = S;
    a.num_cols = R;
    a.features = F;
    a.num_edges = tcl.numel();
    a.error = error.mutable_data_ptr<int>();
    C10_CUDA_CHECK(dc::launch_gated_spmm_backward(a, kernel_dtype(op, x), stream));
  }
  raise_errors(op, "t_", error, R, tcl.numel(), 0, stream);
  at::Tensor grad_gate = need_gate_grad ? dots.sum(0).to(gate.scalar_type())
                                        : at::zeros({S}, gate.options());
  return {grad_x, grad_gate};
}

// ------------------------------------------------------------------- csr_transpose
std::tuple<at::Tensor, at::Tensor, at::Tensor> csr_transpose_cuda(const at::Tensor& rowptr,
                                                                  const at::Tensor& col,
                                                                  const at::Tensor& weight,
                                                                  int64_t num_cols) {
  const char* op = "dynst_fast::csr_transpose";
  TORCH_CHECK(num_cols >= 0, op, ": num_cols must be >= 0, got ", num_cols);
  TORCH_CHECK(rowptr.defined() && rowptr.is_cuda() && rowptr.numel() >= 1, op,
              ": rowptr must be a CUDA tensor with num_rows + 1 >= 1 entries");
  const int64_t num_rows = rowptr.numel() - 1;
  check_csr_arrays(op, "", rowptr, col, weight, num_rows, rowptr.device());
  const c10::cuda::CUDAGuard guard(rowptr.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor rp = rowptr.contiguous();
  const at::Tensor cl = col.contiguous();
  const int64_t num_edges = cl.numel();
  at::Tensor error = new_error_flag(rp);
  C10_CUDA_CHECK(dc::launch_check_csr(rp.const_data_ptr<int64_t>(), cl.const_data_ptr<int64_t>(),
                                      num_rows, num_cols, num_edges,
                                      error.mutable_data_ptr<int>(), stream));
  raise_errors(op, "", error, num_cols, num_edges, 0, stream);
  // A stable sort by column keeps every transposed row ordered by source row, with
  // duplicates in their input order, exactly as the CPU counting sort does.
  const at::Tensor rows = at::repeat_interleave(rp.slice(0, 1) - rp.slice(0, 0, num_rows),
                                                num_edges);
  const at::Tensor order = std::get<1>(at::sort(cl, /*stable=*/true, /*dim=*/0,
                                                /*descending=*/false));
  at::Tensor t_rowptr = at::zeros({num_cols + 1}, rp.options());
  if (num_edges > 0) {
    t_rowptr.slice(0, 1).copy_(at::bincount(cl, {}, num_cols).cumsum(0));
  }
  return {t_rowptr, rows.index_select(0, order), weight.contiguous().index_select(0, order)};
}

// ------------------------------------------------------ induce_subgraph / bipartite
void check_select_inputs(const char* op, const at::Tensor& rowptr, const at::Tensor& col,
                         const at::Tensor& weight, const at::Tensor& index) {
  TORCH_CHECK(index.defined() && index.is_cuda(), op, ": index must be a CUDA tensor");
  dynst_fast::check_select_inputs(op, rowptr, col, weight, index, index.device());
}

// Keeps the columns in index of the rows row_of (index itself for induce_subgraph, all
// rows for bipartite): relabel map, kept-edge counts, prefix sum, stable copy.
std::tuple<at::Tensor, at::Tensor, at::Tensor> select_columns(
    const char* op, const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight,
    const at::Tensor& index, int64_t num_cols, bool induce) {
  const c10::cuda::CUDAGuard guard(index.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor rp = rowptr.contiguous();
  const at::Tensor cl = col.contiguous();
  const at::Tensor w = weight.contiguous();
  const at::Tensor idx = index.contiguous();
  const int64_t num_in_rows = rp.numel() - 1;
  const int64_t num_edges = cl.numel();
  const int64_t k = idx.numel();
  const int64_t num_out_rows = induce ? k : num_in_rows;
  const int64_t* row_of = induce ? idx.const_data_ptr<int64_t>() : nullptr;

  at::Tensor map = at::full({num_cols}, -1, rp.options());
  at::Tensor error = new_error_flag(rp);
  int* err = error.mutable_data_ptr<int>();
  C10_CUDA_CHECK(dc::launch_relabel_map(idx.const_data_ptr<int64_t>(), k, num_cols,
                                        map.mutable_data_ptr<int64_t>(), err, stream));
  at::Tensor counts = at::empty({num_out_rows}, rp.options());
  C10_CUDA_CHECK(dc::launch_count_kept(rp.const_data_ptr<int64_t>(), cl.const_data_ptr<int64_t>(),
                                       map.const_data_ptr<int64_t>(), row_of, num_out_rows,
                                       num_in_rows, num_cols, num_edges,
                                       counts.mutable_data_ptr<int64_t>(), err, stream));
  at::Tensor out_rowptr = at::zeros({num_out_rows + 1}, rp.options());
  if (num_out_rows > 0) out_rowptr.slice(0, 1).copy_(counts.cumsum(0));
  raise_errors(op, "", error, num_cols, num_edges, num_cols, stream);
  const int64_t kept = out_rowptr[num_out_rows].item<int64_t>();  // output size: a sync
  at::Tensor out_col = at::empty({kept}, cl.options());
  at::Tensor out_weight = at::empty({kept}, w.options());
  C10_CUDA_CHECK(dc::launch_copy_kept(
      rp.const_data_ptr<int64_t>(), cl.const_data_ptr<int64_t>(), w.const_data_ptr(),
      static_cast<int>(w.element_size()), map.const_data_ptr<int64_t>(), row_of, num_out_rows,
      num_in_rows, num_cols, num_edges, out_rowptr.const_data_ptr<int64_t>(),
      out_col.mutable_data_ptr<int64_t>(), out_weight.mutable_data_ptr(), stream));
  return {out_rowptr, out_col, out_weight};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> induce_subgraph_cuda(
    const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight,
    const at::Tensor& index) {
  const char* op = "dynst_fast::induce_subgraph";
  check_select_inputs(op, rowptr, col, weight, index);
  return select_columns(op, rowptr, col, weight, index, rowptr.numel() - 1, /*induce=*/true);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> bipartite_cuda(
    const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& weight,
    const at::Tensor& index, int64_t num_cols) {
  const char* op = "dynst_fast::bipartite";
  check_select_inputs(op, rowptr, col, weight, index);
  TORCH_CHECK(num_cols >= 0, op, ": num_cols must be >= 0, got ", num_cols);
  return select_columns(op, rowptr, col, weight, index, num_cols, /*induce=*/false);
}

}  // namespace

TORCH_LIBRARY_IMPL(dynst_fast, CUDA, m) {
  m.impl("induce_subgraph", &induce_subgraph_cuda);
  m.impl("bipartite", &bipartite_cuda);
  m.impl("gated_spmm", &gated_spmm_cuda);
  m.impl("gated_spmm_tr", &gated_spmm_tr_cuda);
  m.impl("gated_spmm_backward", &gated_spmm_backward_cuda);
  m.impl("csr_transpose", &csr_transpose_cuda);
}

}  // namespace dynst_fast
