"""Triton kernels live here, one module per kernel family; importable as ``dynst_fast.kernels``."""

from __future__ import annotations


def triton_available() -> bool:
    """Whether ``triton`` can be imported in this environment."""
    try:
        import triton  # noqa: F401
    except Exception:
        return False
    return True
