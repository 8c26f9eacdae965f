// CPU kernels of the neighbour ops (schemas in csrc/ops.cpp): nearest_active, which picks
// each target's first m active candidates, and neighbour_attention (+ its backward),
// attention of every target over its m gathered neighbours in one pass.
//
// neighbour_attention, for target i of batch b and its neighbours j < m with
// valid[i, j]:  s_j = scale * <q[b, i], k[b, index[i, j]]> + bias[b or 0, i, j],
// u_j = gate[index[i, j]] * exp(s_j - max_j s_j),  out[b, i] = sum_j u_j v[b, index[i, j]]
// / sum_j u_j, and 0 where the sum of u is 0 (no valid neighbour, or every gate 0);
// such rows get no gradient either.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <tuple>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <ATen/ops/zeros_like.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "../checks.h"

namespace dynst_fast {
namespace {

// ------------------------------------------------------------------ nearest_active
std::tuple<at::Tensor, at::Tensor> nearest_active_cpu(const at::Tensor& candidates,
                                                      const at::Tensor& active, int64_t m) {
  const char* op = "dynst_fast::nearest_active";
  check_cpu(op, "candidates", candidates);
  check_cpu(op, "active", active);
  TORCH_CHECK(candidates.scalar_type() == at::kLong && candidates.dim() == 2, op,
              ": candidates must be int64 [N, L], got ", candidates.scalar_type(), " of shape ",
              candidates.sizes());
  TORCH_CHECK(active.scalar_type() == at::kBool && active.dim() == 1, op,
              ": active must be a bool [S] mask, got ", active.scalar_type(), " of shape ",
              active.sizes());
  TORCH_CHECK(m >= 0, op, ": m must be >= 0, got ", m);
  const at::Tensor cand = candidates.contiguous();
  const at::Tensor act = active.contiguous();
  const int64_t n = cand.size(0);
  const int64_t len = cand.size(1);
  const int64_t s = act.size(0);
  at::Tensor index = at::zeros({n, m}, cand.options());
  at::Tensor valid = at::zeros({n, m}, act.options());
  const int64_t* cp = cand.const_data_ptr<int64_t>();
  const bool* ap = act.const_data_ptr<bool>();
  int64_t* ip = index.mutable_data_ptr<int64_t>();
  bool* vp = valid.mutable_data_ptr<bool>();
  std::atomic<int64_t> bad{-2};  // a candidate outside [-1, S), or -2
  at::parallel_for(0, n, 256, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
      int64_t taken = 0;
      for (int64_t p = 0; p < len && taken < m; ++p) {
        const int64_t c = cp[i * len + p];
        if (c < -1 || c >= s) {
          bad.store(c);
          break;
        }
        if (c >= 0 && ap[c]) {
          ip[i * m + taken] = c;
          vp[i * m + taken] = true;
          ++taken;
        }
      }
    }
  });
  TORCH_CHECK(bad.load() == -2, op, ": candidates holds ", bad.load(),
              ", outside [-1, ", s, ") (-1 pads a short row)");
  return {index, valid};
}

// ------------------------------------------------------------------ neighbour_attention
void check_float_dtype(const char* op, const at::Tensor& q) {
  TORCH_CHECK(q.scalar_type() == at::kFloat || q.scalar_type() == at::kDouble, op,
              ": q must be float32 or float64 on the CPU, got ", q.scalar_type());
}

// Shapes, dtypes and devices of the attention's arguments; returns (B, N, S, D, E, m).
std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int64_t> check_attention(
    const char* op, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& index, const at::Tensor& valid, const at::Tensor& bias,
    const at::Tensor& gate) {
  check_cpu(op, "q", q);
  check_cpu(op, "k", k);
  check_cpu(op, "v", v);
  check_cpu(op, "index", index);
  check_cpu(op, "valid", valid);
  check_cpu(op, "bias", bias);
  check_cpu(op, "gate", gate);
  check_float_dtype(op, q);
  TORCH_CHECK(q.dim() == 3 && k.dim() == 3 && v.dim() == 3, op,
              ": q, k and v must be [B, N, D], [B, S, D] and [B, S, E]");
  const int64_t b = q.size(0), n = q.size(1), d = q.size(2);
  const int64_t s = k.size(1), e = v.size(2);
  TORCH_CHECK(k.size(0) == b && k.size(2) == d, op, ": k must be [", b, ", S, ", d, "], got ",
              k.sizes());
  TORCH_CHECK(v.size(0) == b && v.size(1) == s, op, ": v must be [", b, ", ", s, ", E], got ",
              v.sizes());
  const auto same_dtype = [&](const char* name, const at::Tensor& t) {
    TORCH_CHECK(t.scalar_type() == q.scalar_type(), op, ": ", name, " must have q's dtype ",
                q.scalar_type(), ", got ", t.scalar_type());
  };
  same_dtype("k", k);
  same_dtype("v", v);
  same_dtype("bias", bias);
  same_dtype("gate", gate);
  TORCH_CHECK(index.scalar_type() == at::kLong && index.dim() == 2 && index.size(0) == n, op,
              ": index must be int64 [", n, ", m], got ", index.scalar_type(), " of shape ",
              index.sizes());
  const int64_t m = index.size(1);
  TORCH_CHECK(valid.scalar_type() == at::kBool && valid.sizes() == index.sizes(), op,
              ": valid must be a bool mask shaped like index, got ", valid.scalar_type(),
              " of shape ", valid.sizes());
  TORCH_CHECK(bias.dim() == 3 && (bias.size(0) == b || bias.size(0) == 1) &&
                  bias.size(1) == n && bias.size(2) == m,
              op, ": bias must be [", b, " or 1, ", n, ", ", m, "], got ", bias.sizes());
  TORCH_CHECK(gate.dim() == 1 && gate.size(0) == s, op, ": gate must be [", s, "], got ",
              gate.sizes());
  return {b, n, s, d, e, m};
}

// The valid neighbours of every target are in [0, S).
void check_index_values(const char* op, const at::Tensor& index, const at::Tensor& valid,
                        int64_t s) {
  const int64_t* ip = index.const_data_ptr<int64_t>();
  const bool* vp = valid.const_data_ptr<bool>();
  for (int64_t p = 0; p < index.numel(); ++p) {
    TORCH_CHECK(!vp[p] || (ip[p] >= 0 && ip[p] < s), op, ": index holds ", ip[p],
                " at a valid entry, outside [0, ", s, ")");
  }
}

template <typename T>
T dot(const T* a, const T* b, int64_t n) {
  T acc = 0;
  for (int64_t x = 0; x < n; ++x) acc += a[x] * b[x];
  return acc;
}

// Scores of target (b, i): s[j] for valid j, and their max (-inf if none is valid).
template <typename T>
T scores_of(const T* q, const T* kb, const int64_t* idx, const bool* ok, const T* bias_row,
            double scale, int64_t m, int64_t d, T* s) {
  T mx = -std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < m; ++j) {
    if (!ok[j]) continue;
    s[j] = static_cast<T>(scale) * dot(q, kb + idx[j] * d, d) + bias_row[j];
    mx = std::max(mx, s[j]);
  }
  return mx;
}

template <typename T>
void attention_forward(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       const at::Tensor& index, const at::Tensor& valid, const at::Tensor& bias,
                       const at::Tensor& gate, double scale, at::Tensor& out) {
  const int64_t b_count = q.size(0), n = q.size(1), d = q.size(2);
  const int64_t s = k.size(1), e = v.size(2), m = index.size(1);
  const bool bias_batched = bias.size(0) == b_count && b_count > 1;
  const T* qp = q.const_data_ptr<T>();
  const T* kp = k.const_data_ptr<T>();
  const T* vp = v.const_data_ptr<T>();
  const T* bp = bias.const_data_ptr<T>();
  const T* gp = gate.const_data_ptr<T>();
  const int64_t* ip = index.const_data_ptr<int64_t>();
  const bool* okp = valid.const_data_ptr<bool>();
  T* op = out.mutable_data_ptr<T>();
  at::parallel_for(0, b_count * n, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, m * (d + e))),
                   [&](int64_t lo, int64_t hi) {
                     std::vector<T> sc(std::max<int64_t>(m, 1));
                     for (int64_t bi = lo; bi < hi; ++bi) {
                       const int64_t b = bi / n, i = bi % n;
                       const int64_t* idx = ip + i * m;
                       const bool* ok = okp + i * m;
                       const T* bias_row = bp + ((bias_batched ? b : 0) * n + i) * m;
                       const T* kb = kp + b * s * d;
                       const T* vb = vp + b * s * e;
                       T* o = op + bi * e;
                       std::fill(o, o + e, T(0));
                       const T mx = scores_of(qp + bi * d, kb, idx, ok, bias_row, scale, m, d,
                                              sc.data());
                       T z = 0;
                       for (int64_t j = 0; j < m; ++j) {
                         if (!ok[j]) continue;
                         const T u = gp[idx[j]] * std::exp(sc[j] - mx);
                         if (u == T(0)) continue;
                         z += u;
                         const T* row = vb + idx[j] * e;
                         for (int64_t x = 0; x < e; ++x) o[x] += u * row[x];
                       }
                       if (z != T(0)) {
                         for (int64_t x = 0; x < e; ++x) o[x] /= z;
                       } else {
                         std::fill(o, o + e, T(0));
                       }
                     }
                   });
}

at::Tensor neighbour_attention_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                   const at::Tensor& index, const at::Tensor& valid,
                                   const at::Tensor& bias, const at::Tensor& gate,
                                   double scale) {
  const char* op = "dynst_fast::neighbour_attention";
  const auto [b, n, s, d, e, m] = check_attention(op, q, k, v, index, valid, bias, gate);
  const at::Tensor ic = index.contiguous(), vc = valid.contiguous();
  check_index_values(op, ic, vc, s);
  at::Tensor out = at::empty({b, n, e}, q.options());
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "neighbour_attention_cpu", [&] {
    attention_forward<scalar_t>(q.contiguous(), k.contiguous(), v.contiguous(), ic, vc,
                                bias.contiguous(), gate.contiguous(), scale, out);
  });
  return out;
}

// Backward: per target, the weights w_j = u_j / Z and ds_j = w_j (<go, v_j> - <go, out>);
// dq and dbias are per target (a parallel loop); dk, dv (per batch) and dgate (over all)
// are scattered to the neighbours, per batch in parallel then summed for dgate.
template <typename T>
void attention_backward(const at::Tensor& go, const at::Tensor& q, const at::Tensor& k,
                        const at::Tensor& v, const at::Tensor& index, const at::Tensor& valid,
                        const at::Tensor& bias, const at::Tensor& gate, double scale,
                        at::Tensor& dq, at::Tensor& dk, at::Tensor& dv, at::Tensor& dbias,
                        at::Tensor& dgate) {
  const int64_t b_count = q.size(0), n = q.size(1), d = q.size(2);
  const int64_t s = k.size(1), e = v.size(2), m = index.size(1);
  const bool bias_batched = bias.size(0) == b_count && b_count > 1;
  const T* gop = go.const_data_ptr<T>();
  const T* qp = q.const_data_ptr<T>();
  const T* kp = k.const_data_ptr<T>();
  const T* vp = v.const_data_ptr<T>();
  const T* bp = bias.const_data_ptr<T>();
  const T* gp = gate.const_data_ptr<T>();
  const int64_t* ip = index.const_data_ptr<int64_t>();
  const bool* okp = valid.const_data_ptr<bool>();
  T* dqp = dq.mutable_data_ptr<T>();
  T* dkp = dk.mutable_data_ptr<T>();
  T* dvp = dv.mutable_data_ptr<T>();
  // per batch: dgate partial sums and the bias gradient of an unbatched bias
  std::vector<T> dgate_b(b_count * s, T(0));
  std::vector<T> dbias_b(bias_batched ? 0 : b_count * n * m, T(0));
  T* dbp = dbias.mutable_data_ptr<T>();
  at::parallel_for(0, b_count, 1, [&](int64_t lo, int64_t hi) {
    std::vector<T> sc(std::max<int64_t>(m, 1)), w(std::max<int64_t>(m, 1)),
        eg(std::max<int64_t>(m, 1)), o(std::max<int64_t>(e, 1));
    for (int64_t b = lo; b < hi; ++b) {
      const T* kb = kp + b * s * d;
      const T* vb = vp + b * s * e;
      T* dkb = dkp + b * s * d;
      T* dvb = dvp + b * s * e;
      T* dg = dgate_b.data() + b * s;
      for (int64_t i = 0; i < n; ++i) {
        const int64_t bi = b * n + i;
        const int64_t* idx = ip + i * m;
        const bool* ok = okp + i * m;
        const T* bias_row = bp + ((bias_batched ? b : 0) * n + i) * m;
        T* dbias_row = bias_batched ? dbp + (b * n + i) * m : dbias_b.data() + (b * n + i) * m;
        const T* qi = qp + bi * d;
        const T* goi = gop + bi * e;
        T* dqi = dqp + bi * d;
        const T mx = scores_of(qi, kb, idx, ok, bias_row, scale, m, d, sc.data());
        T z = 0;
        std::fill(o.begin(), o.end(), T(0));
        for (int64_t j = 0; j < m; ++j) {
          w[j] = eg[j] = T(0);
          if (!ok[j]) continue;
          eg[j] = std::exp(sc[j] - mx);
          w[j] = gp[idx[j]] * eg[j];
          z += w[j];
        }
        if (z == T(0)) continue;  // no neighbour: out is 0, and so is every gradient
        for (int64_t j = 0; j < m; ++j) {
          if (w[j] == T(0)) continue;
          w[j] /= z;
          const T* row = vb + idx[j] * e;
          for (int64_t x = 0; x < e; ++x) o[x] += w[j] * row[x];
        }
        const T c = dot(goi, o.data(), e);
        for (int64_t j = 0; j < m; ++j) {
          if (!ok[j]) continue;
          const T a = dot(goi, vb + idx[j] * e, e);
          const T ds = w[j] * (a - c);
          dbias_row[j] = ds;
          dg[idx[j]] += eg[j] * (a - c) / z;
          if (w[j] == T(0)) continue;
          const T* kj = kb + idx[j] * d;
          T* dkj = dkb + idx[j] * d;
          T* dvj = dvb + idx[j] * e;
          const T f = static_cast<T>(scale) * ds;
          for (int64_t x = 0; x < d; ++x) {
            dqi[x] += f * kj[x];
            dkj[x] += f * qi[x];
          }
          for (int64_t x = 0; x < e; ++x) dvj[x] += w[j] * goi[x];
        }
      }
    }
  });
  T* dgp = dgate.mutable_data_ptr<T>();
  for (int64_t b = 0; b < b_count; ++b) {
    for (int64_t j = 0; j < s; ++j) dgp[j] += dgate_b[b * s + j];
  }
  if (!bias_batched) {
    for (int64_t b = 0; b < b_count; ++b) {
      for (int64_t p = 0; p < n * m; ++p) dbp[p] += dbias_b[b * n * m + p];
    }
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
neighbour_attention_backward_cpu(const at::Tensor& grad_out, const at::Tensor& q,
                                 const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& index, const at::Tensor& valid,
                                 const at::Tensor& bias, const at::Tensor& gate, double scale) {
  const char* op = "dynst_fast::neighbour_attention_backward";
  const auto [b, n, s, d, e, m] = check_attention(op, q, k, v, index, valid, bias, gate);
  check_cpu(op, "grad_out", grad_out);
  TORCH_CHECK(grad_out.sizes() == at::IntArrayRef({b, n, e}) &&
                  grad_out.scalar_type() == q.scalar_type(),
              op, ": grad_out must be [", b, ", ", n, ", ", e, "] of q's dtype, got ",
              grad_out.sizes());
  const at::Tensor ic = index.contiguous(), vc = valid.contiguous();
  check_index_values(op, ic, vc, s);
  at::Tensor dq = at::zeros_like(q, at::MemoryFormat::Contiguous);
  at::Tensor dk = at::zeros_like(k, at::MemoryFormat::Contiguous);
  at::Tensor dv = at::zeros_like(v, at::MemoryFormat::Contiguous);
  at::Tensor dbias = at::zeros_like(bias, at::MemoryFormat::Contiguous);
  at::Tensor dgate = at::zeros_like(gate, at::MemoryFormat::Contiguous);
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "neighbour_attention_backward_cpu", [&] {
    attention_backward<scalar_t>(grad_out.contiguous(), q.contiguous(), k.contiguous(),
                                 v.contiguous(), ic, vc, bias.contiguous(), gate.contiguous(),
                                 scale, dq, dk, dv, dbias, dgate);
  });
  return {dq, dk, dv, dbias, dgate};
}

}  // namespace

TORCH_LIBRARY_IMPL(dynst_fast, CPU, m) {
  m.impl("nearest_active", &nearest_active_cpu);
  m.impl("neighbour_attention", &neighbour_attention_cpu);
  m.impl("neighbour_attention_backward", &neighbour_attention_backward_cpu);
}

}  // namespace dynst_fast
