// CUDA kernels of gated_spmm and its backward (launchers declared in graph_kernels.h).
//
//   forward  out[b, i] = sum_{p in row i of A}   w[p] * gate[col[p]] * x[b, col[p]]
//   backward y[b, j]   = sum_{p in row j of A^T} w[p] * grad_out[b, col[p]]
//            grad_x[b, j] = gate[j] * y[b, j],  dots[b, j] = <x[b, j], y[b, j]>
//
// Both are the same gather pass over the rows of a CSR, so every output row is
// written by exactly one group of lanes: no atomics (the host sums dots over b).
//
// Work split. A task is one (batch b, CSR row r) pair, t = b * num_rows + r: the batch
// is folded next to the rows (the output is read as a [B * R, F] matrix), which keeps
// small graphs with a batch busy. A task is handled by a group of G lanes of one warp
// (G a power of two <= 32, the smallest that covers F with one vector per lane), with
// the features across the lanes: lane l owns features f0 + (u * G + l) * V + [0, V)
// for u < U, where V is the vector width (16 bytes when x is aligned and contiguous in
// F, else 1) and U = 2 for wide rows. Rows longer than G * V * U features are done in
// chunks. Inside a chunk the group loads G edges at once (lane l loads edge p0 + l:
// column, and coefficient w * gate in the accumulation type) and broadcasts them with
// width-G shuffles, so every lane streams its slice of x[b, col] for each edge.
// Accumulation is float32 (float64 for float64 data).
//
// x, grad_out and x (backward) may have any strides: the batch and node strides are
// int64 and added per task/edge, so permuted or sliced inputs are read in place.
// The kernels validate what they read (row ranges, columns) into an error flag and
// stay in bounds whatever the input.

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "common.cuh"
#include "graph_kernels.h"

namespace dynst_fast {
namespace cuda {
namespace {

template <typename T>
struct AccOf {
  using type = float;
};
template <>
struct AccOf<double> {
  using type = double;
};

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }

__device__ __forceinline__ void from_acc(float v, float* p) { *p = v; }
__device__ __forceinline__ void from_acc(double v, double* p) { *p = v; }
__device__ __forceinline__ void from_acc(float v, __half* p) { *p = __float2half_rn(v); }
__device__ __forceinline__ void from_acc(float v, __nv_bfloat16* p) {
  *p = __float2bfloat16_rn(v);
}

// V consecutive elements moved as one aligned load/store.
template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

// v[q] = row[f + q] (V > 1: one vector load, stride 1 and alignment checked by the
// host) or row[f * stride] (V == 1).
template <typename T, int V, typename Acc>
__device__ __forceinline__ void load_acc(const T* row, int64_t f, int64_t stride, Acc (&v)[V]) {
  if (V == 1) {
    v[0] = to_acc(row[f * stride]);
  } else {
    const Pack<T, V> pk = *reinterpret_cast<const Pack<T, V>*>(row + f);
#pragma unroll
    for (int q = 0; q < V; ++q) v[q] = to_acc(pk.v[q]);
  }
}

template <typename T, int V, typename Acc>
__device__ __forceinline__ void store_acc(T* dst, const Acc (&v)[V]) {
  Pack<T, V> pk;
#pragma unroll
  for (int q = 0; q < V; ++q) from_acc(v[q], &pk.v[q]);
  *reinterpret_cast<Pack<T, V>*>(dst) = pk;
}

template <typename T, int V, int U, bool kForward>
__global__ void __launch_bounds__(kThreads)
    gated_pass_kernel(const PassArgs a, const int group) {
  using Acc = typename AccOf<T>::type;
  const int lane = static_cast<int>(threadIdx.x) & (kWarp - 1);
  const int glane = lane & (group - 1);  // lane inside the group
  const unsigned gmask =
      group == kWarp ? 0xffffffffu : ((1u << group) - 1u) << (lane & ~(group - 1));
  const int64_t groups_per_block = kThreads / group;
  const int64_t total = a.batch * a.num_rows;
  const int64_t F = a.features;
  const int64_t chunk = static_cast<int64_t>(group) * V * U;

  const int64_t* __restrict__ rowptr = a.rowptr;
  const int64_t* __restrict__ col = a.col;
  const Acc* __restrict__ weight = static_cast<const Acc*>(a.weight);
  const T* __restrict__ gate = static_cast<const T*>(a.gate);
  const T* __restrict__ src = static_cast<const T*>(a.src);
  const T* __restrict__ xs = static_cast<const T*>(a.x);
  T* __restrict__ out = static_cast<T*>(a.out);
  Acc* __restrict__ dots = static_cast<Acc*>(a.dots);

  if (blockIdx.x == 0 && threadIdx.x == 0) {
    if (rowptr[0] != 0) flag_error(a.error, kRowptrFirst);
    if (rowptr[a.num_rows] != a.num_edges) flag_error(a.error, kRowptrLast);
  }

  for (int64_t t = static_cast<int64_t>(blockIdx.x) * groups_per_block + threadIdx.x / group;
       t < total; t += static_cast<int64_t>(gridDim.x) * groups_per_block) {
    const int64_t b = t / a.num_rows;
    const int64_t r = t - b * a.num_rows;
    int64_t s = rowptr[r];
    int64_t e = rowptr[r + 1];
    if (!(0 <= s && s <= e && e <= a.num_edges)) {
      if (glane == 0) flag_error(a.error, kRowptrOrder);
      s = e = 0;
    }
    const T* src_b = src + b * a.src_stride.b;
    Acc dot = Acc(0);

    for (int64_t f0 = 0; f0 < F; f0 += chunk) {
      Acc acc[U][V];
#pragma unroll
      for (int u = 0; u < U; ++u) {
#pragma unroll
        for (int q = 0; q < V; ++q) acc[u][q] = Acc(0);
      }
      for (int64_t p0 = s; p0 < e; p0 += group) {
        // Lane glane loads edge p0 + glane; a bad column becomes a zero message.
        const int64_t p = p0 + glane;
        int64_t j = 0;
        Acc c = Acc(0);
        if (p < e) {
          const int64_t jj = col[p];
          if (jj >= 0 && jj < a.num_cols) {
            j = jj;
            c = kForward ? weight[p] * to_acc(gate[jj]) : weight[p];
          } else {
            flag_error(a.error, kColRange);
          }
        }
        const int n = static_cast<int>(e - p0 < group ? e - p0 : group);
        for (int k = 0; k < n; ++k) {
          const int64_t jk = __shfl_sync(gmask, j, k, group);
          const Acc ck = __shfl_sync(gmask, c, k, group);
          const T* row = src_b + jk * a.src_stride.n;
#pragma unroll
          for (int u = 0; u < U; ++u) {
            const int64_t f = f0 + (static_cast<int64_t>(u) * group + glane) * V;
            if (f < F) {
              Acc v[V];
              load_acc<T, V>(row, f, a.src_stride.f, v);
#pragma unroll
              for (int q = 0; q < V; ++q) acc[u][q] += ck * v[q];
            }
          }
        }
      }
      T* out_row = out + t * F;
      if (kForward) {
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int64_t f = f0 + (static_cast<int64_t>(u) * group + glane) * V;
          if (f < F) store_acc<T, V>(out_row + f, acc[u]);
        }
      } else {
        const Acc g = to_acc(gate[r]);
        const T* x_row = xs + b * a.x_stride.b + r * a.x_stride.n;
#pragma unroll
        for (int u = 0; u < U; ++u) {
          const int64_t f = f0 + (static_cast<int64_t>(u) * group + glane) * V;
          if (f < F) {
            Acc xv[V];
            load_acc<T, V>(x_row, f, a.x_stride.f, xv);
            Acc gv[V];
#pragma unroll
            for (int q = 0; q < V; ++q) {
              dot += xv[q] * acc[u][q];
              gv[q] = g * acc[u][q];
            }
            store_acc<T, V>(out_row + f, gv);
          }
        }
      }
    }
    if (!kForward && dots != nullptr) {
      for (int off = group / 2; off > 0; off /= 2) dot += __shfl_xor_sync(gmask, dot, off, group);
      if (glane == 0) dots[t] = dot;
    }
  }
}

// Vector width (elements) usable for every strided array of the pass: 16 bytes when the
// features are contiguous, F is a multiple of it and every row start is 16-byte
// aligned, else 1.
template <typename T>
int vector_width(const PassArgs& a, bool backward) {
  constexpr int kV = 16 / static_cast<int>(sizeof(T));
  auto ok = [&](const void* p, const Strides3& s) {
    return reinterpret_cast<uintptr_t>(p) % 16 == 0 && s.f == 1 && s.b % kV == 0 &&
           s.n % kV == 0;
  };
  if (a.features % kV != 0 || reinterpret_cast<uintptr_t>(a.out) % 16 != 0) return 1;
  if (!ok(a.src, a.src_stride)) return 1;
  if (backward && !ok(a.x, a.x_stride)) return 1;
  return kV;
}

template <typename T, bool kForward>
cudaError_t launch_typed(const PassArgs& a, cudaStream_t stream) {
  const int64_t total = a.batch * a.num_rows;
  if (total == 0 || a.features == 0) return cudaSuccess;
  constexpr int kV = 16 / static_cast<int>(sizeof(T));
  const int vec = vector_width<T>(a, !kForward);
  const int64_t lanes = (a.features + vec - 1) / vec;  // lanes that one vector each covers
  int group = 1;
  while (group < kWarp && group < lanes) group *= 2;
  const bool wide = lanes >= 2 * kWarp;
  const unsigned int grid = grid_for(total, kThreads / group);
  if (vec == kV) {
    if (wide) {
      gated_pass_kernel<T, kV, 2, kForward><<<grid, kThreads, 0, stream>>>(a, group);
    } else {
      gated_pass_kernel<T, kV, 1, kForward><<<grid, kThreads, 0, stream>>>(a, group);
    }
  } else {
    if (wide) {
      gated_pass_kernel<T, 1, 2, kForward><<<grid, kThreads, 0, stream>>>(a, group);
    } else {
      gated_pass_kernel<T, 1, 1, kForward><<<grid, kThreads, 0, stream>>>(a, group);
    }
  }
  return cudaGetLastError();
}

template <bool kForward>
cudaError_t launch_pass(const PassArgs& a, Dtype dtype, cudaStream_t stream) {
  switch (dtype) {
    case Dtype::kFloat32:
      return launch_typed<float, kForward>(a, stream);
    case Dtype::kFloat64:
      return launch_typed<double, kForward>(a, stream);
    case Dtype::kFloat16:
      return launch_typed<__half, kForward>(a, stream);
    case Dtype::kBFloat16:
      return launch_typed<__nv_bfloat16, kForward>(a, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t launch_gated_spmm_forward(const PassArgs& args, Dtype dtype, cudaStream_t stream) {
  return launch_pass<true>(args, dtype, stream);
}

cudaError_t launch_gated_spmm_backward(const PassArgs& args, Dtype dtype, cudaStream_t stream) {
  return launch_pass<false>(args, dtype, stream);
}

}  // namespace cuda
}  // namespace dynst_fast
