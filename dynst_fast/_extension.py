"""Loads the compiled extension ``dynst_fast._C``: the op schemas and the C++ kernels.

``pip install --no-build-isolation -e .`` builds it from ``csrc/``. Loading it registers
every schema of ``csrc/ops.cpp`` in the ``dynst_fast`` torch library namespace
(``torch.ops.dynst_fast.*``) with the C++ CPU kernels (and, in CUDA builds, the CUDA
kernels of the graph ops). The ops cannot run without it, so a missing or broken build
is one clear ``ImportError`` that says how to rebuild.
"""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=1)
def load_extension() -> None:
    """Import ``dynst_fast._C`` (once), or raise an ``ImportError`` naming the fix."""
    import torch  # noqa: F401  (loads libtorch, which _C links against)

    try:
        from . import _C  # noqa: F401  (registers torch.ops.dynst_fast.*)
    except ImportError as exc:
        raise ImportError(
            f"dynst_fast._C could not be imported ({exc}): the C++ extension is not built "
            "for this torch. Rebuild it with `pip install --no-build-isolation -e .` (see "
            "DEVELOPERS.md)."
        ) from exc


def cuda_kernels_built() -> bool:
    """Whether the extension was compiled with the CUDA kernels of ``csrc/cuda``.

    True only for a build against a CUDA torch with nvcc present (see setup.py); a GPU
    is not needed to answer.
    """
    load_extension()
    from . import _C

    return bool(getattr(_C, "WITH_CUDA", 0))
