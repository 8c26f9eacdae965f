// CPU kernels for patchify_compact and its backward (schemas in csrc/ops.cpp).
//
// Patches are numbered row-major over the gh x gw grid of p x p patches of an H x W
// frame zero-padded at the bottom/right; a patch's features are ordered (t, c, dy, dx).
//
//   patchify_compact:  out[b, k, (t, c, dy, dx)] = frames[b, t, c, y, x] * theta[j]
//                          for j = index[k], y = (j / gw) p + dy, x = (j % gw) p + dx
//                          (0 where (y, x) is padding)
//   patchify_compact_backward: dframes (grad * theta on the active patches, 0 on the
//                          others; every pixel written once) and dtheta[j] =
//                          sum_{b, f} patch_j[b, f] * grad[b, k, f], in the same pass.
//
// Only the active patches are read (the composition pads, permutes every patch into a
// [B, N, D] copy, then gathers and scales). Each run of p pixels of a patch row is one
// contiguous copy-and-scale. Forward tasks are (b, k) rows; backward tasks own patches
// j, so no two tasks write the same pixel or dtheta entry (no atomics, deterministic).

#include <algorithm>
#include <cstdint>
#include <tuple>
#include <vector>

#include <ATen/AccumulateType.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "../checks.h"
#include "dot.h"

namespace dynst_fast {
namespace {

struct Geometry {
  int64_t B, T, C, H, W, p, gh, gw, N, D;
};

Geometry check_frames(const char* op, const at::Tensor& frames, int64_t p) {
  check_cpu(op, "frames", frames);
  TORCH_CHECK(frames.dim() == 5, op, ": frames must be [B, T, C, H, W], got ", frames.sizes());
  TORCH_CHECK(at::isFloatingType(frames.scalar_type()), op, ": frames must be floating point");
  TORCH_CHECK(p >= 1, op, ": p must be >= 1, got ", p);
  Geometry g{frames.size(0), frames.size(1), frames.size(2), frames.size(3), frames.size(4), p,
             0, 0, 0, 0};
  g.gh = (g.H + p - 1) / p;
  g.gw = (g.W + p - 1) / p;
  g.N = g.gh * g.gw;
  g.D = g.T * g.C * p * p;
  return g;
}

void check_theta(const char* op, const at::Tensor& theta, const at::Tensor& frames, int64_t n) {
  check_cpu(op, "theta", theta);
  TORCH_CHECK(theta.dim() == 1 && theta.size(0) == n && theta.scalar_type() == frames.scalar_type(),
              op, ": theta must be [", n, "] of frames' dtype, got ", theta.sizes(), " ",
              theta.scalar_type());
}

std::vector<int64_t> index_values(const char* op, const at::Tensor& index, int64_t n) {
  check_int64_vector(op, "index", index);
  const at::Tensor idx = index.contiguous();
  const int64_t* p = idx.data_ptr<int64_t>();
  std::vector<int64_t> out(p, p + idx.numel());
  for (int64_t v : out) {
    TORCH_CHECK(v >= 0 && v < n, op, ": index out of range: ", v, " not in [0, ", n, ")");
  }
  return out;
}

at::Tensor w_contiguous(const at::Tensor& t) { return t.stride(4) == 1 ? t : t.contiguous(); }

at::Tensor patchify_compact_cpu(const at::Tensor& frames_in, const at::Tensor& theta_in,
                                const at::Tensor& index, int64_t p) {
  const char* op = "dynst_fast::patchify_compact";
  const Geometry g = check_frames(op, frames_in, p);
  const at::Tensor frames = w_contiguous(frames_in);
  const at::Tensor theta = theta_in.contiguous();
  check_theta(op, theta, frames, g.N);
  const std::vector<int64_t> idx = index_values(op, index, g.N);
  const int64_t K = static_cast<int64_t>(idx.size());
  at::Tensor out = at::empty({g.B, K, g.D}, frames.options());
  if (out.numel() == 0) return out;
  const int64_t sb = frames.stride(0), st = frames.stride(1), sc = frames.stride(2),
                sh = frames.stride(3);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, frames.scalar_type(), "patchify_compact_cpu", [&] {
        const scalar_t* fp = frames.data_ptr<scalar_t>();
        const scalar_t* tp = theta.data_ptr<scalar_t>();
        scalar_t* op_ = out.data_ptr<scalar_t>();
        const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, g.D));
        at::parallel_for(0, g.B * K, grain, [&](int64_t lo, int64_t hi) {
          for (int64_t r = lo; r < hi; ++r) {
            const int64_t b = r / K, j = idx[r % K];
            const int64_t y0 = (j / g.gw) * p, x0 = (j % g.gw) * p;
            const int64_t nx = std::min(p, g.W - x0);  // real pixels per patch row
            const scalar_t s = tp[j];
            scalar_t* dst = op_ + r * g.D;
            for (int64_t t = 0; t < g.T; ++t) {
              for (int64_t c = 0; c < g.C; ++c) {
                const scalar_t* plane = fp + b * sb + t * st + c * sc;
                for (int64_t dy = 0; dy < p; ++dy, dst += p) {
                  const int64_t y = y0 + dy;
                  int64_t dx = 0;
                  if (y < g.H) {
                    const scalar_t* src = plane + y * sh + x0;
                    for (; dx < nx; ++dx) dst[dx] = src[dx] * s;
                  }
                  for (; dx < p; ++dx) dst[dx] = scalar_t(0);
                }
              }
            }
          }
        });
      });
  return out;
}

std::tuple<at::Tensor, at::Tensor> patchify_compact_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& frames_in, const at::Tensor& theta_in,
    const at::Tensor& index, int64_t p, bool need_theta_grad) {
  const char* op = "dynst_fast::patchify_compact_backward";
  const Geometry g = check_frames(op, frames_in, p);
  const at::Tensor frames = w_contiguous(frames_in);
  const at::Tensor theta = theta_in.contiguous();
  const at::Tensor grad = grad_in.contiguous();
  check_theta(op, theta, frames, g.N);
  const std::vector<int64_t> idx = index_values(op, index, g.N);
  const int64_t K = static_cast<int64_t>(idx.size());
  check_cpu(op, "grad", grad);
  TORCH_CHECK(grad.dim() == 3 && grad.size(0) == g.B && grad.size(1) == K &&
                  grad.size(2) == g.D && grad.scalar_type() == frames.scalar_type(),
              op, ": grad must be [", g.B, ", ", K, ", ", g.D, "] of frames' dtype, got ",
              grad.sizes());
  std::vector<int64_t> inv(static_cast<size_t>(g.N), -1);
  for (int64_t k = 0; k < K; ++k) {
    TORCH_CHECK(inv[idx[k]] < 0, op, ": index has duplicate entries (", idx[k], ")");
    inv[idx[k]] = k;
  }
  at::Tensor dframes = at::empty({g.B, g.T, g.C, g.H, g.W}, frames.options());
  at::Tensor dtheta = at::empty({need_theta_grad ? g.N : 0}, frames.options());
  const int64_t sb = frames.stride(0), st = frames.stride(1), sc = frames.stride(2),
                sh = frames.stride(3);
  const int64_t ob = dframes.stride(0), ot = dframes.stride(1), oc = dframes.stride(2);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, frames.scalar_type(), "patchify_compact_backward_cpu", [&] {
        using acc_t = at::acc_type<scalar_t, false>;
        const scalar_t* fp = frames.data_ptr<scalar_t>();
        const scalar_t* tp = theta.data_ptr<scalar_t>();
        const scalar_t* gp = grad.data_ptr<scalar_t>();
        scalar_t* dp = dframes.data_ptr<scalar_t>();
        scalar_t* dtp = need_theta_grad ? dtheta.data_ptr<scalar_t>() : nullptr;
        const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, g.B * g.D));
        at::parallel_for(0, g.N, grain, [&](int64_t lo, int64_t hi) {
          for (int64_t j = lo; j < hi; ++j) {
            const int64_t k = inv[j];
            const int64_t y0 = (j / g.gw) * p, x0 = (j % g.gw) * p;
            const int64_t nx = std::min(p, g.W - x0), ny = std::min(p, g.H - y0);
            const scalar_t s = k >= 0 ? tp[j] : scalar_t(0);
            acc_t acc = 0;
            for (int64_t b = 0; b < g.B; ++b) {
              const scalar_t* gr = k >= 0 ? gp + (b * K + k) * g.D : nullptr;
              for (int64_t t = 0; t < g.T; ++t) {
                for (int64_t c = 0; c < g.C; ++c) {
                  const int64_t f0 = (t * g.C + c) * p * p;
                  for (int64_t dy = 0; dy < ny; ++dy) {
                    scalar_t* dst = dp + b * ob + t * ot + c * oc + (y0 + dy) * g.W + x0;
                    if (gr == nullptr) {
                      std::fill(dst, dst + nx, scalar_t(0));
                      continue;
                    }
                    const scalar_t* gd = gr + f0 + dy * p;
                    for (int64_t dx = 0; dx < nx; ++dx) dst[dx] = gd[dx] * s;
                    if (dtp != nullptr) {
                      const scalar_t* src = fp + b * sb + t * st + c * sc + (y0 + dy) * sh + x0;
                      acc += static_cast<acc_t>(dot(src, gd, nx));
                    }
                  }
                }
              }
            }
            if (dtp != nullptr) dtp[j] = static_cast<scalar_t>(acc);
          }
        });
      });
  return {dframes, dtheta};
}

}  // namespace

TORCH_LIBRARY_IMPL(dynst_fast, CPU, m) {
  m.impl("patchify_compact", &patchify_compact_cpu);
  m.impl("patchify_compact_backward", &patchify_compact_backward_cpu);
}

}  // namespace dynst_fast
