#!/usr/bin/env bash
# Builds csrc/ against libtorch with CMake, runs the C++ tests with ctest, and
# compile-checks every csrc/cuda/*.cu with nvcc (skipped when there are none).
#
# Usage: .ci/cmake_check.sh   (PYTHON=... picks the interpreter whose torch is used)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-python}"
BUILD_DIR="${BUILD_DIR:-build/cmake}"

TORCH_PREFIX="$("$PYTHON" -c 'import torch;print(torch.utils.cmake_prefix_path)')"

echo "== cmake configure ($BUILD_DIR, torch at $TORCH_PREFIX)"
cmake -S . -B "$BUILD_DIR" -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -G Ninja
echo "== cmake build"
cmake --build "$BUILD_DIR" -j2
echo "== ctest"
(cd "$BUILD_DIR" && ctest --output-on-failure)

shopt -s nullglob
cuda_sources=(csrc/cuda/*.cu)
if ((${#cuda_sources[@]} == 0)); then
  echo "== nvcc: no csrc/cuda/*.cu, skipped"
  exit 0
fi

NVCC="${NVCC:-$(command -v nvcc || true)}"
for candidate in /usr/local/bin/nvcc /usr/local/cuda/bin/nvcc; do
  [[ -n "$NVCC" ]] && break
  [[ -x "$candidate" ]] && NVCC="$candidate"
done
if [[ -z "$NVCC" ]]; then
  echo "== nvcc: not found but csrc/cuda/*.cu exist" >&2
  exit 1
fi

# The include paths and common nvcc flags setup.py's CUDAExtension would use.
NVCC_FLAGS="$("$PYTHON" -c 'from torch.utils.cpp_extension import COMMON_NVCC_FLAGS, include_paths
print(" ".join(["-I" + p for p in include_paths()] + COMMON_NVCC_FLAGS))')"
CXX_STD="$("$PYTHON" -c 'import torch
v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
print("c++20" if v >= (2, 10) else "c++17")')"
for src in "${cuda_sources[@]}"; do
  echo "== nvcc -c $src"
  # shellcheck disable=SC2086  # NVCC_FLAGS is a list of flags
  "$NVCC" -c -o /dev/null -std="$CXX_STD" -DWITH_CUDA -Icsrc $NVCC_FLAGS "$src"
done
echo "== nvcc: ${#cuda_sources[@]} file(s) compiled"
