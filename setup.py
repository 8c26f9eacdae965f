"""Build script for the C++/CUDA extension ``dynst_fast._C``; metadata is in pyproject.toml.

Install against the torch already in the environment (never let pip pick one)::

    pip install --no-build-isolation -e .      # development
    pip install --no-build-isolation .         # regular install

CUDA sources (the kernels ``csrc/cuda/*.cu`` and their binding ``csrc/cuda/*.cpp``) are
compiled, and ``WITH_CUDA`` is defined, when the installed torch is a CUDA build
(``torch.version.cuda``) and nvcc is found (CUDA_HOME);
a GPU is not needed to build. ``DYNST_WITH_CUDA=0`` forces a CPU-only build,
``DYNST_WITH_CUDA=1`` fails loudly if CUDA cannot be used. ``MAX_JOBS`` (default 2) caps
parallel compile jobs; ninja is used when available.
"""

from __future__ import annotations

import os
import shutil
import sys
from glob import glob
from pathlib import Path

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import (
    CUDA_HOME,
    BuildExtension,
    CppExtension,
    CUDAExtension,
)

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("MAX_JOBS", "2")


def _ensure_ninja_on_path() -> None:
    """BuildExtension looks for ``ninja`` on PATH; the pip ``ninja`` wheel may not be on it."""
    if shutil.which("ninja"):
        return
    candidates = [os.path.dirname(sys.executable)]
    try:
        import ninja

        candidates.insert(0, ninja.BIN_DIR)
    except ImportError:
        pass
    for d in candidates:
        if os.path.isfile(os.path.join(d, "ninja")):
            os.environ["PATH"] = d + os.pathsep + os.environ.get("PATH", "")
            return


def _nvcc() -> str | None:
    if CUDA_HOME is None:
        return None
    nvcc = os.path.join(CUDA_HOME, "bin", "nvcc")
    return nvcc if os.path.isfile(nvcc) else None


def _use_cuda() -> bool:
    wanted = os.environ.get("DYNST_WITH_CUDA", "").strip().lower()
    if wanted in ("0", "false", "no", "off"):
        return False
    available = torch.version.cuda is not None and _nvcc() is not None
    if wanted in ("1", "true", "yes", "on") and not available:
        raise RuntimeError(
            "DYNST_WITH_CUDA=1 but CUDA cannot be used: "
            f"torch.version.cuda={torch.version.cuda!r}, CUDA_HOME={CUDA_HOME!r}"
        )
    return available


def _sources(pattern: str) -> list[str]:
    # Relative paths keep the build reproducible and the ninja file short.
    return sorted(os.path.relpath(p, ROOT) for p in glob(str(ROOT / pattern)))


def extensions() -> list:
    sources = _sources("csrc/ops.cpp") + _sources("csrc/cpu/*.cpp")
    define_macros = [("DYNST_PYTHON_MODULE", None)]
    # No -std here: the code is C++17, and BuildExtension adds the standard the installed
    # torch's headers need (C++20 for torch >= 2.10; they only warn under C++17 with gcc).
    extra_compile_args = {"cxx": ["-O3"]}
    extra_link_args: list[str] = []
    if sys.platform.startswith("linux"):
        # at::parallel_for is an OpenMP loop compiled into *our* object files: without
        # -fopenmp it silently runs on one thread (measured: ~2x slower gated_spmm).
        extra_compile_args["cxx"].append("-fopenmp")
        extra_link_args.append("-fopenmp")
    include_dirs = [str(ROOT / "csrc")]
    if _use_cuda():
        define_macros.append(("WITH_CUDA", None))
        extra_compile_args["nvcc"] = ["-O3"]
        return [
            CUDAExtension(
                "dynst_fast._C",
                # the raw kernels (*.cu) and their torch binding (*.cpp)
                sources + _sources("csrc/cuda/*.cu") + _sources("csrc/cuda/*.cpp"),
                include_dirs=include_dirs,
                define_macros=define_macros,
                extra_compile_args=extra_compile_args,
                extra_link_args=extra_link_args,
            )
        ]
    return [
        CppExtension(
            "dynst_fast._C",
            sources,
            include_dirs=include_dirs,
            define_macros=define_macros,
            extra_compile_args=extra_compile_args,
            extra_link_args=extra_link_args,
        )
    ]


def packages() -> tuple[list[str], dict[str, str]]:
    """``dynst_fast`` and its subpackages, plus the top-level ``kernels/`` as
    ``dynst_fast.kernels`` (no top-level ``kernels`` package is installed)."""
    pkgs = find_packages(where=str(ROOT), include=["dynst_fast", "dynst_fast.*"])
    kernel_pkgs = ["dynst_fast.kernels"] + [
        f"dynst_fast.kernels.{p}" for p in find_packages(where=str(ROOT / "kernels"))
    ]
    return pkgs + kernel_pkgs, {"dynst_fast.kernels": "kernels"}


_ensure_ninja_on_path()
_packages, _package_dir = packages()

setup(
    packages=_packages,
    package_dir=_package_dir,
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildExtension},
    zip_safe=False,
)
