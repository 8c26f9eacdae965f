// CPU kernels of select_swap and prune_lowest (schemas in csrc/ops.cpp), both built on
// one masked bottom-k selection:
//
//   masked_smallest(score [N], eligible [N] bool, k, mode) -> int64 [k]
//
// (eligible: the active (or inactive) entries, and of those only the movable ones when
// the keep / forbid constraints give a movable mask: the constraints are enforced here)
//
// the indices of the k eligible entries of smallest key, ordered by (key, index), where
// key = score (mode 0), -score (mode 1) or |score| (mode 2); -0.0 == +0.0. Ties go to
// the lower index.
//
// One pass collects the eligible entries as keys: fp16/bf16/fp32 scores become one
// uint64 each (order-preserving bits of the float32 value << 32 | index), fp64 scores
// (key, index) pairs. std::nth_element puts the k smallest first in O(N), and only
// those k are sorted: O(N + k log k), against the O(N log N) of sorting all scores
// (RigL-style) or the eligible ones. NaN scores are rejected by dynst_fast.ops first.

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <optional>
#include <tuple>
#include <utility>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include "../checks.h"

namespace dynst_fast {
namespace {

using KeyIndex = std::pair<double, int64_t>;  // lexicographic order = (key, index)

// What is ranked: the score, its negation (largest first) or its magnitude.
enum Mode : int64_t { kSmallest = 0, kLargest = 1, kSmallestAbs = 2 };

template <typename T>
T apply_mode(T v, int64_t mode) {
  if (mode == kLargest) v = -v;
  if (mode == kSmallestAbs) v = std::fabs(v);
  return v + T(0);  // + 0 folds -0.0 onto +0.0
}

// Unsigned int whose order is the order of the (non-NaN) float v.
uint32_t ordered_bits(float v) {
  uint32_t u;
  std::memcpy(&u, &v, sizeof(u));
  const uint32_t neg = 0u - (u >> 31);  // all ones for negative v
  return u ^ (neg | 0x80000000u);
}

void check_k(const char* op, int64_t k, size_t eligible) {
  TORCH_CHECK(k <= static_cast<int64_t>(eligible), op, ": k = ", k,
              " is larger than the number of eligible entries, ", eligible);
}

// float64 scores: (key, index) pairs compared lexicographically.
at::Tensor pick_wide(const char* op, const double* s, const bool* e, int64_t n, int64_t k,
                     int64_t mode) {
  std::vector<KeyIndex> pairs;
  pairs.reserve(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    if (e[i]) pairs.emplace_back(apply_mode(s[i], mode), i);
  }
  check_k(op, k, pairs.size());
  const auto mid = pairs.begin() + k;
  if (k < static_cast<int64_t>(pairs.size())) std::nth_element(pairs.begin(), mid, pairs.end());
  std::sort(pairs.begin(), mid);
  at::Tensor out = at::empty({k}, at::kLong);
  int64_t* o = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < k; ++i) o[i] = pairs[i].second;
  return out;
}

at::Tensor masked_smallest(const char* op, const at::Tensor& score_in,
                           const at::Tensor& eligible_in, int64_t k, int64_t mode) {
  check_cpu(op, "score", score_in);
  check_cpu(op, "eligible", eligible_in);
  TORCH_CHECK(score_in.dim() == 1 && at::isFloatingType(score_in.scalar_type()), op,
              ": score must be a 1-D floating point tensor, got ", score_in.sizes(), " ",
              score_in.scalar_type());
  TORCH_CHECK(eligible_in.scalar_type() == at::kBool && eligible_in.sizes() == score_in.sizes(),
              op, ": eligible must be a bool tensor shaped like score");
  const at::Tensor score = score_in.contiguous();
  const at::Tensor eligible = eligible_in.contiguous();
  const int64_t n = score.numel();
  TORCH_CHECK(n < (int64_t(1) << 32), op, ": at most 2^32 - 1 scores, got ", n);
  TORCH_CHECK(k >= 0, op, ": k must be >= 0, got ", k);
  if (score.scalar_type() == at::kDouble) {
    return pick_wide(op, score.data_ptr<double>(), eligible.data_ptr<bool>(), n, k, mode);
  }
  // 32-bit and narrower scores: pack (order-preserving key of the float value, index) in
  // one uint64, so that selection compares plain integers.
  const bool* e = eligible.data_ptr<bool>();
  std::vector<uint64_t> keys(static_cast<size_t>(n));
  size_t count = 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, score.scalar_type(), "masked_smallest", [&] {
        const scalar_t* s = score.data_ptr<scalar_t>();
        for (int64_t i = 0; i < n; ++i) {  // branch-free: the mask is often random
          const float v = apply_mode(static_cast<float>(s[i]), mode);
          keys[count] = (static_cast<uint64_t>(ordered_bits(v)) << 32) | static_cast<uint64_t>(i);
          count += e[i] ? 1 : 0;
        }
      });
  keys.resize(count);
  check_k(op, k, keys.size());
  const auto mid = keys.begin() + k;
  if (k < static_cast<int64_t>(keys.size())) std::nth_element(keys.begin(), mid, keys.end());
  std::sort(keys.begin(), mid);
  at::Tensor out = at::empty({k}, score.options().dtype(at::kLong));
  int64_t* o = out.data_ptr<int64_t>();
  for (int64_t i = 0; i < k; ++i) o[i] = static_cast<int64_t>(keys[i] & 0xFFFFFFFFu);
  return out;
}

// The entries a selection may pick: ``base`` itself, or ``base & movable``.
at::Tensor restrict_to(const char* op, const at::Tensor& base,
                       const std::optional<at::Tensor>& movable) {
  if (!movable.has_value()) return base;
  check_cpu(op, "movable", *movable);
  TORCH_CHECK(movable->scalar_type() == at::kBool && movable->sizes() == base.sizes(), op,
              ": movable must be a bool tensor shaped like active");
  return base.logical_and(*movable);
}

std::tuple<at::Tensor, at::Tensor> select_swap_cpu(const at::Tensor& score,
                                                    const at::Tensor& active, int64_t k,
                                                    const std::optional<at::Tensor>& movable) {
  const char* op = "dynst_fast::select_swap";
  check_cpu(op, "active", active);
  TORCH_CHECK(active.scalar_type() == at::kBool, op, ": active must be a bool tensor");
  return {masked_smallest(op, score, restrict_to(op, active, movable), k, kSmallest),
          masked_smallest(op, score, restrict_to(op, active.logical_not(), movable), k,
                          kLargest)};
}

at::Tensor prune_lowest_cpu(const at::Tensor& score, const at::Tensor& active, int64_t k,
                            const std::optional<at::Tensor>& movable) {
  const char* op = "dynst_fast::prune_lowest";
  check_cpu(op, "active", active);
  TORCH_CHECK(active.scalar_type() == at::kBool, op, ": active must be a bool tensor");
  at::Tensor drop = masked_smallest(op, score, restrict_to(op, active, movable), k, kSmallestAbs);
  at::Tensor out = active.clone(at::MemoryFormat::Contiguous);
  bool* o = out.data_ptr<bool>();
  const int64_t* d = drop.data_ptr<int64_t>();
  for (int64_t i = 0; i < drop.numel(); ++i) o[d[i]] = false;
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(dynst_fast, CPU, m) {
  m.impl("select_swap", &select_swap_cpu);
  m.impl("prune_lowest", &prune_lowest_cpu);
}

}  // namespace dynst_fast
