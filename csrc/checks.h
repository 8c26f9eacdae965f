// Argument checks shared by the torch-facing kernels of every device: the CPU kernels of
// csrc/cpu and the CUDA binding csrc/cuda/graph_ops_cuda.cpp (never a .cu file). One
// clear TORCH_CHECK message per problem; `device` is where every tensor must live.
#pragma once

#include <string>

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace dynst_fast {

inline const at::Device kCpu{at::kCPU};

// t is defined and on `device` (the CPU, or the device of the other arguments).
inline void check_device(const char* op, const std::string& name, const at::Tensor& t,
                         const at::Device& device) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is undefined");
  if (device.is_cpu()) {
    TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor, got device ",
                t.device());
  } else {
    TORCH_CHECK(t.device() == device, op, ": ", name, " must be on ", device,
                " (like the other arguments), got device ", t.device());
  }
}

inline void check_cpu(const char* op, const std::string& name, const at::Tensor& t) {
  check_device(op, name, t, kCpu);
}

inline void check_int64_vector(const char* op, const std::string& name, const at::Tensor& t,
                               const at::Device& device = kCpu) {
  check_device(op, name, t, device);
  TORCH_CHECK(t.scalar_type() == at::kLong, op, ": ", name, " must be int64, got ",
              t.scalar_type());
  TORCH_CHECK(t.dim() == 1, op, ": ", name, " must be 1-D, got shape ", t.sizes());
}

// ------------------------------------------------------------------ graphs (CSR)
// weight (prefix "t_" for a transposed CSR): floating, 1-D, one entry per edge of col.
inline void check_weight(const char* op, const std::string& p, const at::Tensor& weight,
                         const at::Tensor& col, const at::Device& device) {
  check_device(op, p + "weight", weight, device);
  TORCH_CHECK(at::isFloatingType(weight.scalar_type()), op, ": ", p,
              "weight must be a floating point tensor, got ", weight.scalar_type());
  TORCH_CHECK(weight.dim() == 1, op, ": ", p, "weight must be 1-D, got shape ", weight.sizes());
  TORCH_CHECK(weight.numel() == col.numel(), op, ": ", p, "weight has ", weight.numel(),
              " entries but ", p, "col has ", col.numel());
}

// rowptr / col int64 1-D, weight as above, rowptr of num_rows + 1 entries.
inline void check_csr_arrays(const char* op, const std::string& p, const at::Tensor& rowptr,
                             const at::Tensor& col, const at::Tensor& weight, int64_t num_rows,
                             const at::Device& device) {
  check_int64_vector(op, p + "rowptr", rowptr, device);
  check_int64_vector(op, p + "col", col, device);
  check_weight(op, p, weight, col, device);
  TORCH_CHECK(rowptr.numel() == num_rows + 1, op, ": ", p, "rowptr must have ", num_rows + 1,
              " entries (one per row + 1), got ", rowptr.numel());
}

// induce_subgraph / bipartite: a CSR and the int64 index of the nodes to keep.
inline void check_select_inputs(const char* op, const at::Tensor& rowptr, const at::Tensor& col,
                                const at::Tensor& weight, const at::Tensor& index,
                                const at::Device& device) {
  check_int64_vector(op, "rowptr", rowptr, device);
  check_int64_vector(op, "col", col, device);
  check_int64_vector(op, "index", index, device);
  check_weight(op, "", weight, col, device);
  TORCH_CHECK(rowptr.numel() >= 1, op,
              ": rowptr must have num_rows + 1 >= 1 entries, got an empty tensor");
}

// gated_spmm's x [B, S, F] (a dtype the device's kernels take: `check_dtype`) and its
// gate [S] of x's dtype, both on x's device (the CPU for the CPU kernels).
inline void check_x_gate(const char* op, const at::Tensor& x, const at::Tensor& gate,
                         const at::Device& device,
                         void (*check_dtype)(const char*, const at::Tensor&)) {
  check_device(op, "x", x, device);
  check_device(op, "gate", gate, device);
  TORCH_CHECK(x.dim() == 3, op, ": x must have shape [B, S, F] (3-D), got ", x.sizes());
  check_dtype(op, x);
  TORCH_CHECK(gate.scalar_type() == x.scalar_type(), op, ": gate must have x's dtype ",
              x.scalar_type(), ", got ", gate.scalar_type());
  TORCH_CHECK(gate.dim() == 1 && gate.size(0) == x.size(1), op, ": gate must have shape [",
              x.size(1), "] (one entry per source node of x), got ", gate.sizes());
}

// gated_spmm_backward's grad_out [B, R, F], of x's dtype and on its device.
inline void check_grad_out(const char* op, const at::Tensor& grad_out, const at::Tensor& x) {
  check_device(op, "grad_out", grad_out, x.device());
  const int64_t B = x.size(0);
  const int64_t F = x.size(2);
  TORCH_CHECK(grad_out.dim() == 3 && grad_out.size(0) == B && grad_out.size(2) == F, op,
              ": grad_out must have shape [", B, ", R, ", F, "], got ", grad_out.sizes());
  TORCH_CHECK(grad_out.scalar_type() == x.scalar_type(), op, ": grad_out must have x's dtype ",
              x.scalar_type(), ", got ", grad_out.scalar_type());
}

}  // namespace dynst_fast
