"""Loads the compiled extension ``dynst_fast._C`` and exposes its ops.

The extension registers its schemas in the ``dynst_fast`` torch library
namespace (``torch.ops.dynst_fast.*``). It is built by ``pip install`` from
``csrc/``; if the build is missing, ``cpp_ops()`` returns ``None``, the ops fall
back to their PyTorch references, and ``extension_error()`` says why.
``cuda_kernels_built()`` says whether the build has the CUDA kernels of ``csrc/cuda``.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Any

import torch

_ERROR: str | None = None


@lru_cache(maxsize=1)
def cpp_ops() -> Any | None:
    """The ``torch.ops.dynst_fast`` namespace, or ``None`` if the extension is absent."""
    global _ERROR
    try:
        from . import _C  # noqa: F401  (registers torch.ops.dynst_fast.*)
    except ImportError as exc:
        _ERROR = (
            f"dynst_fast._C could not be imported ({exc}); reinstall with "
            "`pip install --no-build-isolation -e .` to build it. Falling back to PyTorch."
        )
        warnings.warn(_ERROR, RuntimeWarning, stacklevel=2)
        return None
    return torch.ops.dynst_fast


def extension_error() -> str | None:
    """Why the extension failed to load, or ``None`` if it loaded (or was not tried)."""
    cpp_ops()
    return _ERROR


def cuda_kernels_built() -> bool:
    """Whether the loaded extension was compiled with the CUDA kernels of ``csrc/cuda``.

    True only for a build against a CUDA torch with nvcc present (see setup.py); a GPU
    is not needed to answer.
    """
    if cpp_ops() is None:
        return False
    from . import _C

    return bool(getattr(_C, "WITH_CUDA", 0))
