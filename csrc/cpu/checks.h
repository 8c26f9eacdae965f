// Argument checks shared by the CPU kernels: one clear TORCH_CHECK message per problem.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace dynst_fast {

inline void check_cpu(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.defined(), op, ": ", name, " is undefined");
  TORCH_CHECK(t.device().is_cpu(), op, ": ", name, " must be a CPU tensor, got device ",
              t.device());
}

inline void check_int64_vector(const char* op, const char* name, const at::Tensor& t) {
  check_cpu(op, name, t);
  TORCH_CHECK(t.scalar_type() == at::kLong, op, ": ", name, " must be int64, got ",
              t.scalar_type());
  TORCH_CHECK(t.dim() == 1, op, ": ", name, " must be 1-D, got shape ", t.sizes());
}

}  // namespace dynst_fast
