// Small device helpers shared by the CUDA graph kernels (plain CUDA, no ATen).
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace dynst_fast {
namespace cuda {

constexpr int kThreads = 256;  // threads per block of every graph kernel
constexpr int kWarp = 32;
// Grids are capped at this many blocks; kernels loop (grid-stride) over the rest, so
// any int64 amount of work is covered.
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

// Blocks of kThreads for `items` work items of `per_block` items per block (>= 1).
inline unsigned int grid_for(int64_t items, int64_t per_block) {
  int64_t blocks = (items + per_block - 1) / per_block;
  if (blocks < 1) blocks = 1;
  if (blocks > kMaxBlocks) blocks = kMaxBlocks;
  return static_cast<unsigned int>(blocks);
}

__device__ __forceinline__ void flag_error(int* error, int bit) { atomicOr(error, bit); }

}  // namespace cuda
}  // namespace dynst_fast
