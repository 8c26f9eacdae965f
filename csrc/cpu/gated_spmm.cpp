// CPU kernels for gated_spmm, its backward and csr_transpose (schemas in csrc/ops.cpp).
//
//   out[b, i] = sum_{e in row i} weight[e] * gate[col[e]] * x[b, col[e]]      (forward)
//   y[b, j]   = sum_{e in row j of A^T} t_weight[e] * grad_out[b, t_col[e]]
//   grad_x[b, j] = gate[j] * y[b, j],  grad_gate[j] = sum_{b, f} x[b, j, f] * y[b, j, f]
//
// Both passes are gathers over the rows of a CSR (A for the forward, A^T for the
// backward), so every output row is written by exactly one task: no atomics. The
// work is split with at::parallel_for over (batch, row) pairs, which keeps the
// threads busy both for B = 1 (rows) and for small graphs with a batch (this needs
// the extension compiled with OpenMP, -fopenmp: without it at::parallel_for runs
// serially). An output row is built tile by tile (8 SIMD vectors = 64 floats / 32
// doubles, then narrower ones, then a scalar tail): the tile's accumulators stay in
// registers while the row's edges stream coef * x[b, j, tile] into them, and the
// tile is stored once. The edge's coefficient weight * gate[j] is computed once per
// edge and tile, in x's dtype. The backward fuses the grad_gate dot product and the
// gate scaling into the same tile, while y is still in registers.
//
// The hot loops are compiled for AVX2 + FMA and for the baseline ISA, picked at run time
// (__builtin_cpu_supports, x86-64 with GCC/Clang), since an extension is otherwise built
// for the baseline ISA (SSE2) only; -DDYNST_NO_AVX2 turns that off. An AVX-512 variant
// was measured and dropped: no consistent gain on the AMD EPYC it was tried on.
//
// The CSR is validated on every call: one branch-free, vectorised scan (rowptr
// non-decreasing, columns in range), and a second, row-by-row scan only to word the
// error when the first one fails.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>
#include <tuple>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "../checks.h"

// x86-64: the hot loops are also compiled for AVX2 + FMA and picked at run time, since an
// extension is otherwise built for the baseline ISA (SSE2) only. -DDYNST_NO_AVX2 drops it.
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(DYNST_NO_AVX2)
#define DYNST_AVX2_PATH 1
#endif

// The helpers of the hot loops must be inlined into each ISA's entry point (an
// out-of-line copy would only exist for the baseline ISA).
#if defined(__GNUC__) || defined(__clang__)
#define DYNST_INLINE inline __attribute__((always_inline))
#else
#define DYNST_INLINE inline
#endif

#if defined(__GNUC__) || defined(__clang__)
#define DYNST_PREFETCH(address) __builtin_prefetch(address)
#else
#define DYNST_PREFETCH(address) ((void)(address))
#endif

namespace dynst_fast {
namespace {

// Multiply-adds handled by one parallel task, about.
constexpr int64_t kGrainWork = 32768;
// Software prefetch distance, in edges, of the gathered source rows. Measured on one
// thread (thread CPU time, RGG of degree 12): forward F = 64 at N = 1e5 16 -> 10-12 ms,
// at N = 1e4 0.40 -> 0.34 ms; F = 16 at N = 1e6 146 -> 133 ms; F = 16 at N = 1e4
// (rows in L2 anyway) 0.16 -> 0.17 ms.
constexpr int64_t kPrefetchEdges = 16;

// ------------------------------------------------------------------ argument checks

// Branch-free scan of rows [r_lo, r_hi) and edges [e_lo, e_hi) (so that it vectorises):
// true if rowptr does not decrease there and every column is in [0, num_cols).
DYNST_INLINE bool csr_ok_impl(const int64_t* __restrict rp, int64_t r_lo, int64_t r_hi,
                              const int64_t* __restrict cp, int64_t e_lo, int64_t e_hi,
                              int64_t num_cols) {
  uint64_t bad = 0;
  for (int64_t r = r_lo; r < r_hi; ++r) bad |= static_cast<uint64_t>(rp[r] > rp[r + 1]);
  const uint64_t n = static_cast<uint64_t>(num_cols);  // negative columns wrap above n
  for (int64_t p = e_lo; p < e_hi; ++p) bad |= static_cast<uint64_t>(cp[p]) >= n;
  return bad == 0;
}

bool csr_ok_baseline(const int64_t* rp, int64_t r_lo, int64_t r_hi, const int64_t* cp,
                     int64_t e_lo, int64_t e_hi, int64_t num_cols) {
  return csr_ok_impl(rp, r_lo, r_hi, cp, e_lo, e_hi, num_cols);
}

#ifdef DYNST_AVX2_PATH
__attribute__((target("avx2"))) bool csr_ok_avx2(const int64_t* rp, int64_t r_lo, int64_t r_hi,
                                                 const int64_t* cp, int64_t e_lo, int64_t e_hi,
                                                 int64_t num_cols) {
  return csr_ok_impl(rp, r_lo, r_hi, cp, e_lo, e_hi, num_cols);
}
#endif

// Checks that a contiguous CSR is valid: rowptr starts at 0, is non-decreasing and ends
// at E, and every column is in [0, num_cols). A fast vectorised scan (split across
// threads) decides; only a CSR that fails it is scanned again, row by row, to name the
// first problem in the error (the check used to cost as much as the forward itself).
void check_csr_values(const char* op, const char* prefix, const at::Tensor& rowptr,
                      const at::Tensor& col, int64_t num_cols) {
  const int64_t num_rows = rowptr.numel() - 1;
  const int64_t num_edges = col.numel();
  const int64_t* rp = rowptr.const_data_ptr<int64_t>();
  const int64_t* cp = col.const_data_ptr<int64_t>();
  TORCH_CHECK(rp[0] == 0, op, ": ", prefix, "rowptr[0] must be 0, got ", rp[0]);
  TORCH_CHECK(rp[num_rows] == num_edges, op, ": ", prefix, "rowptr[-1] = ", rp[num_rows],
              " but ", prefix, "col has ", num_edges, " edges");
  auto scan = &csr_ok_baseline;
#ifdef DYNST_AVX2_PATH
  if (__builtin_cpu_supports("avx2")) scan = &csr_ok_avx2;
#endif
  // Task k scans rows and edges in the same fraction [k / T, (k + 1) / T) of each.
  constexpr int64_t kChunks = 1024;
  const int64_t work = num_rows + num_edges;
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(kChunks, work / 65536));
  std::atomic<bool> ok{true};
  at::parallel_for(0, chunks, 1, [&](int64_t lo, int64_t hi) {
    const int64_t r_lo = num_rows * lo / chunks;
    const int64_t r_hi = num_rows * hi / chunks;
    const int64_t e_lo = num_edges * lo / chunks;
    const int64_t e_hi = num_edges * hi / chunks;
    if (!scan(rp, r_lo, r_hi, cp, e_lo, e_hi, num_cols)) ok.store(false);
  });
  if (ok.load()) return;
  for (int64_t r = 0; r < num_rows; ++r) {
    const int64_t s = rp[r];
    const int64_t t = rp[r + 1];
    TORCH_CHECK(s >= 0 && s <= t && t <= num_edges, op, ": ", prefix,
                "rowptr is not a valid row pointer: row ", r, " spans [", s, ", ", t, ") with ",
                num_edges, " edges (rowptr must be non-decreasing)");
    for (int64_t p = s; p < t; ++p) {
      TORCH_CHECK(cp[p] >= 0 && cp[p] < num_cols, op, ": ", prefix, "col[", p, "] = ", cp[p],
                  " is out of range [0, ", num_cols, ")");
    }
  }
  TORCH_CHECK(false, op, ": ", prefix, "rowptr / col are not a valid CSR");
}

// The CPU kernels take float32 and float64 (the op runs its reference for the others).
void check_cpu_dtype(const char* op, const at::Tensor& x) {
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
              ": x must be float32 or float64, got ", x.scalar_type());
}

void check_x_gate(const char* op, const at::Tensor& x, const at::Tensor& gate) {
  dynst_fast::check_x_gate(op, x, gate, kCpu, &check_cpu_dtype);
}

// (Batch, row) pairs per parallel task for rows of about avg_degree edges of F features.
int64_t pair_grain(int64_t num_edges, int64_t num_rows, int64_t features) {
  const int64_t avg = num_edges / std::max<int64_t>(1, num_rows) + 1;
  return std::max<int64_t>(1, kGrainWork / (avg * std::max<int64_t>(1, features)));
}

// ------------------------------------------------------------------------- kernels
#if defined(__GNUC__) && !defined(__clang__)
// The vector helpers below return AVX vectors; they are always inlined into the AVX2
// entry points, so no call crosses an ABI boundary with them.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

// Vec<T, kBytes>: a SIMD vector of kBytes bytes of T (GCC/Clang vector extension, for
// unaligned loads and stores): 16 bytes for the baseline (SSE2, NEON), 32 for AVX2.
// A plain scalar for other compilers.
#if defined(__GNUC__) || defined(__clang__)
template <typename T, int kBytes>
struct Vec;
template <>
struct Vec<float, 16> {
  typedef float type __attribute__((vector_size(16), aligned(4), may_alias));
  static constexpr int64_t kLanes = 4;
};
template <>
struct Vec<float, 32> {
  typedef float type __attribute__((vector_size(32), aligned(4), may_alias));
  static constexpr int64_t kLanes = 8;
};
template <>
struct Vec<double, 16> {
  typedef double type __attribute__((vector_size(16), aligned(8), may_alias));
  static constexpr int64_t kLanes = 2;
};
template <>
struct Vec<double, 32> {
  typedef double type __attribute__((vector_size(32), aligned(8), may_alias));
  static constexpr int64_t kLanes = 4;
};
#else
template <typename T, int kBytes>
struct Vec {
  using type = T;
  static constexpr int64_t kLanes = 1;
};
#endif

template <typename VT, typename T>
DYNST_INLINE typename VT::type load(const T* p) {
  return *reinterpret_cast<const typename VT::type*>(p);
}
template <typename VT, typename T>
DYNST_INLINE void store(T* p, typename VT::type v) {
  *reinterpret_cast<typename VT::type*>(p) = v;
}
template <typename VT>
DYNST_INLINE double lane_sum(typename VT::type v) {
#if defined(__GNUC__) || defined(__clang__)
  double s = 0.0;
  for (int64_t l = 0; l < VT::kLanes; ++l) s += static_cast<double>(v[l]);
  return s;
#else
  return static_cast<double>(v);
#endif
}

// One tile of kV vectors (columns [f0, f0 + kV * lanes)) of one output row, with the
// accumulators in registers across the row's edges [s, e):
//   acc = sum_p coef(p) * src[cols[p], f0:...],
//   coef(p) = w[p] * gate[cols[p]] (kGated, forward) or w[p] (backward).
// Forward: out = acc. Backward: dot += acc * x_row (lane-wise), out = g * acc.
// pf_end is the length of cols: the prefetch of the row kPrefetchEdges edges ahead stays
// below it.
template <typename T, typename VT, int64_t kV, bool kGated>
DYNST_INLINE void tile(const int64_t* __restrict cols, const T* __restrict w,
                       const T* __restrict gate, int64_t s, int64_t e,
                       const T* __restrict src, int64_t F, int64_t f0,
                       const T* __restrict x_row, T g, typename VT::type& dot,
                       T* __restrict out, int64_t pf_end) {
  using V = typename VT::type;
  constexpr int64_t L = VT::kLanes;
  V acc[kV];
  for (int64_t k = 0; k < kV; ++k) acc[k] = V{};
  constexpr int64_t kLines = (kV * L * static_cast<int64_t>(sizeof(T)) + 63) / 64;
  for (int64_t p = s; p < e; ++p) {
    if (p + kPrefetchEdges < pf_end) {
      // The tile of the source row kPrefetchEdges edges ahead (maybe in a later row, whose
      // columns are not checked yet: integer address arithmetic, and a prefetch never
      // faults).
      const uintptr_t ahead = reinterpret_cast<uintptr_t>(src) +
                              static_cast<uintptr_t>(cols[p + kPrefetchEdges] * F + f0) *
                                  sizeof(T);
      for (int64_t q = 0; q < kLines; ++q) {
        DYNST_PREFETCH(reinterpret_cast<const void*>(ahead + 64 * q));
      }
    }
    const int64_t j = cols[p];
    const T c = kGated ? w[p] * gate[j] : w[p];
    const T* __restrict r = src + j * F + f0;
    for (int64_t k = 0; k < kV; ++k) acc[k] += c * load<VT>(r + k * L);
  }
  if (kGated) {
    for (int64_t k = 0; k < kV; ++k) store<VT>(out + f0 + k * L, acc[k]);
  } else {
    for (int64_t k = 0; k < kV; ++k) {
      dot += acc[k] * load<VT>(x_row + f0 + k * L);
      store<VT>(out + f0 + k * L, g * acc[k]);
    }
  }
}

// One output row (all F columns): tiles of 8, then 2, then 1 vector, then a scalar tail.
// Returns sum_f x_row[f] * acc[f] (backward only; 0 in the forward).
template <typename T, typename VT, bool kGated>
DYNST_INLINE double row(const int64_t* __restrict cols, const T* __restrict w,
                        const T* __restrict gate, int64_t s, int64_t e,
                        const T* __restrict src, int64_t F, const T* __restrict x_row, T g,
                        T* __restrict out, int64_t pf_end) {
  constexpr int64_t L = VT::kLanes;
  typename VT::type dot{};
  int64_t f = 0;
  for (; f + 8 * L <= F; f += 8 * L) {
    tile<T, VT, 8, kGated>(cols, w, gate, s, e, src, F, f, x_row, g, dot, out, pf_end);
  }
  for (; f + 2 * L <= F; f += 2 * L) {
    tile<T, VT, 2, kGated>(cols, w, gate, s, e, src, F, f, x_row, g, dot, out, pf_end);
  }
  for (; f + L <= F; f += L) {
    tile<T, VT, 1, kGated>(cols, w, gate, s, e, src, F, f, x_row, g, dot, out, pf_end);
  }
  double tail_dot = 0.0;
  for (; f < F; ++f) {
    T acc = T(0);
    for (int64_t p = s; p < e; ++p) {
      const int64_t j = cols[p];
      acc += (kGated ? w[p] * gate[j] : w[p]) * src[j * F + f];
    }
    if (kGated) {
      out[f] = acc;
    } else {
      tail_dot += static_cast<double>(x_row[f]) * static_cast<double>(acc);
      out[f] = g * acc;
    }
  }
  return kGated ? 0.0 : lane_sum<VT>(dot) + tail_dot;
}

// Raw arguments of one pass. Forward: CSR of A (rp, cp, w in x's dtype), gate, src = x
// [B, S, F], out [B, R, F]; pairs t = b * R + i. Backward: CSR of A^T (rp, cp, w), gate,
// src = grad_out [B, R, F], x [B, S, F], out = grad_x [B, S, F], dot [B, S] or null;
// pairs t = b * S + j.
template <typename T>
struct PassArgs {
  const int64_t* rp;
  const int64_t* cp;
  const T* w;
  const T* gate;
  const T* src;
  const T* x;
  T* out;
  double* dot;
  int64_t src_rows;  // rows of one batch of src
  int64_t out_rows;  // rows of one batch of out
  int64_t F;
  int64_t num_edges;
};

// The pairs t in [begin, end) of a forward (kForward) or backward pass.
template <typename T, typename VT, bool kForward>
DYNST_INLINE void pass_impl(const PassArgs<T>& a, int64_t begin, int64_t end) {
  const int64_t* __restrict rp = a.rp;
  const int64_t F = a.F;
  // t = b * out_rows + i, stepped without a division per row.
  int64_t b = begin / a.out_rows;
  int64_t i = begin - b * a.out_rows;
  for (int64_t t = begin; t < end; ++t, ++i) {
    if (i == a.out_rows) {
      i = 0;
      ++b;
    }
    const T* src = a.src + b * a.src_rows * F;
    if (kForward) {
      row<T, VT, true>(a.cp, a.w, a.gate, rp[i], rp[i + 1], src, F, nullptr, T(0),
                       a.out + t * F, a.num_edges);
    } else {
      const double d = row<T, VT, false>(a.cp, a.w, nullptr, rp[i], rp[i + 1], src, F,
                                         a.x + t * F, a.gate[i], a.out + t * F, a.num_edges);
      if (a.dot != nullptr) a.dot[t] = d;
    }
  }
}

template <typename T, bool kForward>
void pass_baseline(const PassArgs<T>& a, int64_t begin, int64_t end) {
  pass_impl<T, Vec<T, 16>, kForward>(a, begin, end);
}

#ifdef DYNST_AVX2_PATH
template <typename T, bool kForward>
__attribute__((target("avx2,fma"))) void pass_avx2(const PassArgs<T>& a, int64_t begin,
                                                   int64_t end) {
  pass_impl<T, Vec<T, 32>, kForward>(a, begin, end);
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return has;
}

#endif

// One pass over the pairs [0, B * out_rows), split across threads.
template <typename T, bool kForward>
void run_pass(const PassArgs<T>& a, int64_t batch, int64_t num_edges) {
  auto fn = &pass_baseline<T, kForward>;
#ifdef DYNST_AVX2_PATH
  if (cpu_has_avx2()) fn = &pass_avx2<T, kForward>;
#endif
  at::parallel_for(0, batch * a.out_rows, pair_grain(num_edges, a.out_rows, a.F),
                   [&](int64_t begin, int64_t end) { fn(a, begin, end); });
}

}  // namespace

// --------------------------------------------------------------------------- ops
at::Tensor gated_spmm_cpu(const at::Tensor& rowptr, const at::Tensor& col,
                          const at::Tensor& weight, const at::Tensor& x, const at::Tensor& gate,
                          int64_t num_rows) {
  const char* op = "dynst_fast::gated_spmm";
  TORCH_CHECK(num_rows >= 0, op, ": num_rows must be >= 0, got ", num_rows);
  check_csr_arrays(op, "", rowptr, col, weight, num_rows, kCpu);
  check_x_gate(op, x, gate);
  const at::Tensor rp = rowptr.contiguous();
  const at::Tensor cl = col.contiguous();
  const int64_t B = x.size(0);
  const int64_t S = x.size(1);
  const int64_t F = x.size(2);
  const int64_t R = num_rows;
  check_csr_values(op, "", rp, cl, S);
  // One cast of the weights to x's dtype (no copy when they already match).
  const at::Tensor w = weight.to(x.scalar_type()).contiguous();
  const at::Tensor xc = x.contiguous();
  const at::Tensor gc = gate.contiguous();
  at::Tensor out = at::empty({B, R, F}, x.options());
  if (out.numel() == 0) return out;

  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dynst_fast_gated_spmm", [&] {
    PassArgs<scalar_t> a{};
    a.rp = rp.const_data_ptr<int64_t>();
    a.cp = cl.const_data_ptr<int64_t>();
    a.w = w.const_data_ptr<scalar_t>();
    a.gate = gc.const_data_ptr<scalar_t>();
    a.src = xc.const_data_ptr<scalar_t>();
    a.out = out.mutable_data_ptr<scalar_t>();
    a.src_rows = S;
    a.out_rows = R;
    a.F = F;
    a.num_edges = cl.numel();
    run_pass<scalar_t, /*kForward=*/true>(a, B, cl.numel());
  });
  return out;
}

at::Tensor gated_spmm_tr_cpu(const at::Tensor& rowptr, const at::Tensor& col,
                             const at::Tensor& weight, const at::Tensor& t_rowptr,
                             const at::Tensor& t_col, const at::Tensor& t_weight,
                             const at::Tensor& x, const at::Tensor& gate, int64_t num_rows) {
  const char* op = "dynst_fast::gated_spmm_tr";
  // The transpose is only read by the backward; check its shape here so that a wrong
  // one fails at the call, not in the backward.
  check_x_gate(op, x, gate);
  check_csr_arrays(op, "t_", t_rowptr, t_col, t_weight, x.size(1), kCpu);
  TORCH_CHECK(t_col.numel() == col.numel(), op, ": the transpose has ", t_col.numel(),
              " edges but the graph has ", col.numel());
  return gated_spmm_cpu(rowptr, col, weight, x, gate, num_rows);
}

std::tuple<at::Tensor, at::Tensor> gated_spmm_backward_cpu(
    const at::Tensor& t_rowptr, const at::Tensor& t_col, const at::Tensor& t_weight,
    const at::Tensor& x, const at::Tensor& gate, const at::Tensor& grad_out,
    bool need_gate_grad) {
  const char* op = "dynst_fast::gated_spmm_backward";
  check_x_gate(op, x, gate);
  const int64_t B = x.size(0);
  const int64_t S = x.size(1);
  const int64_t F = x.size(2);
  check_csr_arrays(op, "t_", t_rowptr, t_col, t_weight, S, kCpu);
  check_grad_out(op, grad_out, x);
  const int64_t R = grad_out.size(1);
  const at::Tensor trp = t_rowptr.contiguous();
  const at::Tensor tcl = t_col.contiguous();
  check_csr_values(op, "t_", trp, tcl, R);
  const at::Tensor tw = t_weight.to(x.scalar_type()).contiguous();
  const at::Tensor xc = x.contiguous();
  const at::Tensor gc = gate.contiguous();
  const at::Tensor dc = grad_out.contiguous();
  at::Tensor grad_x = at::empty({B, S, F}, x.options());
  // Per-(b, j) partial sums of grad_gate, reduced over b in double below.
  at::Tensor dots = need_gate_grad ? at::zeros({B, S}, x.options().dtype(at::kDouble))
                                   : at::Tensor();
  if (grad_x.numel() != 0) {
    AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "dynst_fast_gated_spmm_backward", [&] {
      PassArgs<scalar_t> a{};
      a.rp = trp.const_data_ptr<int64_t>();
      a.cp = tcl.const_data_ptr<int64_t>();
      a.w = tw.const_data_ptr<scalar_t>();
      a.gate = gc.const_data_ptr<scalar_t>();
      a.src = dc.const_data_ptr<scalar_t>();
      a.x = xc.const_data_ptr<scalar_t>();
      a.out = grad_x.mutable_data_ptr<scalar_t>();
      a.dot = need_gate_grad ? dots.mutable_data_ptr<double>() : nullptr;
      a.src_rows = R;
      a.out_rows = S;
      a.F = F;
      a.num_edges = tcl.numel();
      run_pass<scalar_t, /*kForward=*/false>(a, B, tcl.numel());
    });
  }
  at::Tensor grad_gate = need_gate_grad ? dots.sum(0).to(gate.scalar_type())
                                        : at::zeros({S}, gate.options());
  return {grad_x, grad_gate};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> csr_transpose_cpu(const at::Tensor& rowptr,
                                                                 const at::Tensor& col,
                                                                 const at::Tensor& weight,
                                                                 int64_t num_cols) {
  const char* op = "dynst_fast::csr_transpose";
  TORCH_CHECK(num_cols >= 0, op, ": num_cols must be >= 0, got ", num_cols);
  TORCH_CHECK(rowptr.defined() && rowptr.numel() >= 1, op,
              ": rowptr must have num_rows + 1 >= 1 entries");
  const int64_t num_rows = rowptr.numel() - 1;
  check_csr_arrays(op, "", rowptr, col, weight, num_rows, kCpu);
  const at::Tensor rp = rowptr.contiguous();
  const at::Tensor cl = col.contiguous();
  const at::Tensor w = weight.contiguous();
  check_csr_values(op, "", rp, cl, num_cols);
  const int64_t num_edges = cl.numel();
  at::Tensor t_rowptr = at::zeros({num_cols + 1}, rp.options());
  at::Tensor t_col = at::empty({num_edges}, cl.options());
  at::Tensor t_weight = at::empty({num_edges}, w.options());
  const int64_t* rpp = rp.const_data_ptr<int64_t>();
  const int64_t* cpp = cl.const_data_ptr<int64_t>();
  int64_t* trp = t_rowptr.mutable_data_ptr<int64_t>();
  int64_t* tcp = t_col.mutable_data_ptr<int64_t>();
  // Counting sort by column; walking the edges in row order keeps every transposed
  // row sorted by source row, with duplicates in their input order (stable).
  for (int64_t e = 0; e < num_edges; ++e) ++trp[cpp[e] + 1];
  for (int64_t c = 0; c < num_cols; ++c) trp[c + 1] += trp[c];
  std::vector<int64_t> next(trp, trp + num_cols);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, w.scalar_type(),
                                  "dynst_fast_csr_transpose", [&] {
                                    const scalar_t* wp = w.const_data_ptr<scalar_t>();
                                    scalar_t* twp = t_weight.mutable_data_ptr<scalar_t>();
                                    for (int64_t r = 0; r < num_rows; ++r) {
                                      for (int64_t e = rpp[r]; e < rpp[r + 1]; ++e) {
                                        const int64_t o = next[cpp[e]]++;
                                        tcp[o] = r;
                                        twp[o] = wp[e];
                                      }
                                    }
                                  });
  return {t_rowptr, t_col, t_weight};
}

TORCH_LIBRARY_IMPL(dynst_fast, CPU, m) {
  m.impl("gated_spmm", &gated_spmm_cpu);
  m.impl("gated_spmm_tr", &gated_spmm_tr_cpu);
  m.impl("gated_spmm_backward", &gated_spmm_backward_cpu);
  m.impl("csr_transpose", &csr_transpose_cpu);
}

}  // namespace dynst_fast
