#!/usr/bin/env bash
# Builds csrc/ against libtorch with CMake, runs the C++ tests with ctest, and
# compile-checks the CUDA sources even where torch has no CUDA: every csrc/cuda/*.cu with
# `nvcc -c` (plain CUDA, no ATen headers), for sm_80 and sm_90, and every torch binding
# csrc/cuda/*.cpp with `$CXX -fsyntax-only` against torch's headers and the CUDA toolkit's
# (skipped when there are no CUDA sources). See DEVELOPERS.md.
#
# Usage: .ci/cmake_check.sh   (PYTHON=... picks the interpreter whose torch is used;
#                             NVCC_ARCH_FLAGS=... overrides the target architectures)
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
NVCC_ARCH_FLAGS="${NVCC_ARCH_FLAGS:--gencode=arch=compute_80,code=sm_80 -gencode=arch=compute_90,code=sm_90}"
CXX_STD="$("$PYTHON" -c 'import torch
v = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
print("c++20" if v >= (2, 10) else "c++17")')"
for src in "${cuda_sources[@]}"; do
  echo "== nvcc -c $src"
  # shellcheck disable=SC2086  # the flag variables are lists of flags
  "$NVCC" -c -o /dev/null -std="$CXX_STD" -DWITH_CUDA -Icsrc $NVCC_ARCH_FLAGS $NVCC_FLAGS "$src"
done
echo "== nvcc: ${#cuda_sources[@]} file(s) compiled"

# The bindings include c10/cuda headers. A CPU-only torch ships them but not the one
# header its CUDA build generates (c10/cuda/impl/cuda_cmake_macros.h): an empty stand-in
# is enough for a syntax check.
binding_sources=(csrc/cuda/*.cpp)
if ((${#binding_sources[@]} == 0)); then
  exit 0
fi
# The toolkit's root as nvcc itself sees it (nvcc may be a wrapper script elsewhere).
CUDA_TOP="$("$NVCC" --dryrun -c -x cu /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -n1)"
CUDA_INCLUDE="${CUDA_INCLUDE:-$CUDA_TOP/include}"
STUB_DIR="$BUILD_DIR/cuda_stub_include"
mkdir -p "$STUB_DIR/c10/cuda/impl"
if ! "$PYTHON" -c 'import torch, sys; sys.exit(torch.version.cuda is None)'; then
  echo "#pragma once" >"$STUB_DIR/c10/cuda/impl/cuda_cmake_macros.h"
fi
TORCH_INCLUDES="$("$PYTHON" -c 'from torch.utils.cpp_extension import include_paths
print(" ".join("-isystem" + p for p in include_paths()))')"
CXX="${CXX:-c++}"
for src in "${binding_sources[@]}"; do
  echo "== $CXX -fsyntax-only $src"
  # shellcheck disable=SC2086  # TORCH_INCLUDES is a list of flags
  "$CXX" -fsyntax-only -std="$CXX_STD" -Wall -Wextra -Werror -DWITH_CUDA -Icsrc \
    $TORCH_INCLUDES -isystem "$STUB_DIR" -isystem "$CUDA_INCLUDE" "$src"
done
echo "== bindings: ${#binding_sources[@]} file(s) checked"
