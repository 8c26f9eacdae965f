// CPU kernels of compact, expand and compact_backward (schemas in csrc/ops.cpp).
//
//   compact:          out[b, k, :] = x[b, index[k], :] * theta[index[k]]   (theta optional)
//   expand:           out[b, j, :] = y[b, inv[j], :] if j is in index, else fill
//   compact_backward: dx[b, j, :] = grad[b, inv[j], :] * theta[j] (0 if j is not in
//                     index) and dtheta[j] = sum_{b, f} x[b, j, f] * grad[b, inv[j], f]
//
// One pass each: the theta scale is fused into the copy (PyTorch's x[:, index] *
// theta[index, None] writes the gathered rows, then reads and writes them again), and
// the backward writes every dx row and every dtheta entry exactly once, from the task
// that owns sensor j (no atomics, no separate zero fill; deterministic). Work is split
// with at::parallel_for over (b, k) rows for the gathers and over sensors for the
// backward; the inner loop over F is a contiguous copy-and-scale the compiler
// vectorises. x and y may be strided along B and N; a feature axis that is not
// contiguous is made contiguous first.

#include <cstdint>
#include <tuple>
#include <vector>

#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>
#include <torch/library.h>

#include "../checks.h"
#include "dot.h"

namespace dynst_fast {
namespace {

// Elements copied by one parallel task, about.
constexpr int64_t kGrainElems = 16384;

int64_t grain_rows(int64_t row_elems) {
  return std::max<int64_t>(1, kGrainElems / std::max<int64_t>(1, row_elems));
}

at::Tensor feature_contiguous(const at::Tensor& t) {
  return t.stride(2) == 1 ? t : t.contiguous();
}

void check_rows(const char* op, const char* name, const at::Tensor& t) {
  check_cpu(op, name, t);
  TORCH_CHECK(t.dim() == 3, op, ": ", name, " must be 3-D [B, N, F], got shape ", t.sizes());
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, ": ", name,
              " must be floating point, got ", t.scalar_type());
}

// index values in [0, n): a cheap guard against memory errors (the Python op also checks
// that they are distinct).
std::vector<int64_t> checked_index(const char* op, const at::Tensor& index, int64_t n) {
  check_int64_vector(op, "index", index);
  const at::Tensor idx = index.contiguous();
  const int64_t* p = idx.data_ptr<int64_t>();
  std::vector<int64_t> out(p, p + idx.numel());
  for (int64_t v : out) {
    TORCH_CHECK(v >= 0 && v < n, op, ": index out of range: ", v, " not in [0, ", n, ")");
  }
  return out;
}

// inv[j] = position of j in index, or -1.
std::vector<int64_t> inverse(const char* op, const at::Tensor& index, int64_t n) {
  const std::vector<int64_t> idx = checked_index(op, index, n);
  std::vector<int64_t> inv(static_cast<size_t>(n), -1);
  for (size_t k = 0; k < idx.size(); ++k) {
    TORCH_CHECK(inv[idx[k]] < 0, op, ": index has duplicate entries (", idx[k], ")");
    inv[idx[k]] = static_cast<int64_t>(k);
  }
  return inv;
}

at::Tensor compact_cpu(const at::Tensor& x_in, const c10::optional<at::Tensor>& theta_in,
                       const at::Tensor& index) {
  const char* op = "dynst_fast::compact";
  check_rows(op, "x", x_in);
  const at::Tensor x = feature_contiguous(x_in);
  const int64_t B = x.size(0), N = x.size(1), F = x.size(2);
  const std::vector<int64_t> idx = checked_index(op, index, N);
  const int64_t K = static_cast<int64_t>(idx.size());
  at::Tensor theta;
  if (theta_in.has_value()) {
    theta = theta_in->contiguous();
    check_cpu(op, "theta", theta);
    TORCH_CHECK(theta.dim() == 1 && theta.size(0) == N && theta.scalar_type() == x.scalar_type(),
                op, ": theta must be [", N, "] of x's dtype, got ", theta.sizes(), " ",
                theta.scalar_type());
  }
  at::Tensor out = at::empty({B, K, F}, x.options());
  if (out.numel() == 0) return out;
  const int64_t sb = x.stride(0), sn = x.stride(1);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "compact_cpu", [&] {
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* tp = theta.defined() ? theta.data_ptr<scalar_t>() : nullptr;
    scalar_t* op_ = out.data_ptr<scalar_t>();
    at::parallel_for(0, B * K, grain_rows(F), [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const int64_t b = r / K, j = idx[r % K];
        const scalar_t* src = xp + b * sb + j * sn;
        scalar_t* dst = op_ + r * F;
        if (tp == nullptr) {
          std::copy(src, src + F, dst);
        } else {
          const scalar_t s = tp[j];
          for (int64_t f = 0; f < F; ++f) dst[f] = src[f] * s;
        }
      }
    });
  });
  return out;
}

at::Tensor expand_cpu(const at::Tensor& y_in, const at::Tensor& index, int64_t n, double fill) {
  const char* op = "dynst_fast::expand";
  check_rows(op, "y", y_in);
  TORCH_CHECK(n >= 0, op, ": n must be >= 0, got ", n);
  const at::Tensor y = feature_contiguous(y_in);
  const int64_t B = y.size(0), K = y.size(1), F = y.size(2);
  TORCH_CHECK(index.numel() == K, op, ": y has ", K, " rows but index has ", index.numel());
  const std::vector<int64_t> inv = inverse(op, index, n);
  at::Tensor out = at::empty({B, n, F}, y.options());
  if (out.numel() == 0) return out;
  const int64_t sb = y.stride(0), sk = y.stride(1);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, y.scalar_type(), "expand_cpu", [&] {
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t fv = static_cast<scalar_t>(fill);
    scalar_t* op_ = out.data_ptr<scalar_t>();
    at::parallel_for(0, B * n, grain_rows(F), [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        const int64_t b = r / n, k = inv[r % n];
        scalar_t* dst = op_ + r * F;
        if (k < 0) {
          std::fill(dst, dst + F, fv);
        } else {
          const scalar_t* src = yp + b * sb + k * sk;
          std::copy(src, src + F, dst);
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> compact_backward_cpu(const at::Tensor& grad_in,
                                                        const at::Tensor& x_in,
                                                        const at::Tensor& theta_in,
                                                        const at::Tensor& index,
                                                        bool need_theta_grad) {
  const char* op = "dynst_fast::compact_backward";
  check_rows(op, "grad", grad_in);
  check_rows(op, "x", x_in);
  const at::Tensor grad = feature_contiguous(grad_in);
  const at::Tensor x = feature_contiguous(x_in);
  const at::Tensor theta = theta_in.contiguous();
  const int64_t B = x.size(0), N = x.size(1), F = x.size(2), K = grad.size(1);
  TORCH_CHECK(grad.size(0) == B && grad.size(2) == F && grad.scalar_type() == x.scalar_type(),
              op, ": grad must be [", B, ", K, ", F, "] of x's dtype, got ", grad.sizes());
  TORCH_CHECK(theta.dim() == 1 && theta.size(0) == N && theta.scalar_type() == x.scalar_type(),
              op, ": theta must be [", N, "] of x's dtype");
  TORCH_CHECK(index.numel() == K, op, ": grad has ", K, " rows but index has ", index.numel());
  const std::vector<int64_t> inv = inverse(op, index, N);
  at::Tensor dx = at::empty({B, N, F}, x.options());
  at::Tensor dtheta = at::empty({need_theta_grad ? N : 0}, x.options());
  const int64_t xb = x.stride(0), xn = x.stride(1), gb = grad.stride(0), gk = grad.stride(1);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, x.scalar_type(), "compact_backward_cpu", [&] {
        using acc_t = at::acc_type<scalar_t, false>;
        const scalar_t* xp = x.data_ptr<scalar_t>();
        const scalar_t* gp = grad.data_ptr<scalar_t>();
        const scalar_t* tp = theta.data_ptr<scalar_t>();
        scalar_t* dxp = dx.data_ptr<scalar_t>();
        scalar_t* dtp = need_theta_grad ? dtheta.data_ptr<scalar_t>() : nullptr;
        at::parallel_for(0, N, grain_rows(B * F), [&](int64_t lo, int64_t hi) {
          for (int64_t j = lo; j < hi; ++j) {
            const int64_t k = inv[j];
            acc_t acc = 0;
            for (int64_t b = 0; b < B; ++b) {
              scalar_t* dst = dxp + (b * N + j) * F;
              if (k < 0) {
                std::fill(dst, dst + F, scalar_t(0));
                continue;
              }
              const scalar_t* g = gp + b * gb + k * gk;
              const scalar_t s = tp[j];
              for (int64_t f = 0; f < F; ++f) dst[f] = g[f] * s;
              if (dtp != nullptr) {
                const scalar_t* xr = xp + b * xb + j * xn;
                acc += static_cast<acc_t>(dot(xr, g, F));
              }
            }
            if (dtp != nullptr) dtp[j] = static_cast<scalar_t>(acc);
          }
        });
      });
  return {dx, dtheta};
}

}  // namespace

TORCH_LIBRARY_IMPL(dynst_fast, CPU, m) {
  m.impl("compact", &compact_cpu);
  m.impl("expand", &expand_cpu);
  m.impl("compact_backward", &compact_backward_cpu);
}

}  // namespace dynst_fast
