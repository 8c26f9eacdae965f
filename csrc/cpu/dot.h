// Dot product with independent partial sums, for the theta-gradient reductions.
#pragma once

#include <cstdint>

#include <ATen/OpMathType.h>

namespace dynst_fast {

// sum_i a[i] * b[i] in at::opmath_type (float for float / half / bfloat16, double for
// double). Eight independent partial sums break the add latency chain and let the
// compiler vectorise without -ffast-math; the result does not depend on threads.
template <typename scalar_t>
inline at::opmath_type<scalar_t> dot(const scalar_t* a, const scalar_t* b, int64_t n) {
  using acc_t = at::opmath_type<scalar_t>;
  acc_t part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; ++l) {
      part[l] += static_cast<acc_t>(a[i + l]) * static_cast<acc_t>(b[i + l]);
    }
  }
  for (; i < n; ++i) part[i & 7] += static_cast<acc_t>(a[i]) * static_cast<acc_t>(b[i]);
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

}  // namespace dynst_fast
