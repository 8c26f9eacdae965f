"""Which backend runs the compaction and selection ops: ``triton``, ``cpu`` or ``reference``.

By default a CUDA tensor runs the Triton kernels (``dynst_fast.kernels``; the PyTorch
composition if triton is not installed), a CPU tensor the ``cpu`` backend (the C++
kernels of ``csrc/cpu`` where they beat the PyTorch composition, else the composition),
anything else the reference. ``DYNST_BACKEND=triton|cpu|reference`` forces one, for
tests and comparisons; it is read on every call. ``triton`` on CPU tensors means the
Triton interpreter, which needs ``TRITON_INTERPRET=1`` set before ``dynst_fast.kernels``'
kernel modules are first imported.
"""

from __future__ import annotations

import os
from types import ModuleType

import torch

from ..kernels import triton_available

BACKENDS = ("triton", "cpu", "reference")
ENV = "DYNST_BACKEND"


def forced_backend() -> str | None:
    """The backend named by ``$DYNST_BACKEND``, or None when it is unset or empty."""
    name = os.environ.get(ENV, "").strip().lower()
    if not name:
        return None
    if name not in BACKENDS:
        raise ValueError(f"{ENV}={name!r} is not one of {', '.join(BACKENDS)}")
    return name


def backend_for(device: torch.device) -> str:
    """The backend an op on a tensor of ``device`` runs: ``triton``, ``cpu`` or ``reference``."""
    name = forced_backend()
    if name is None:
        if device.type == "cuda":
            return "triton" if triton_available() else "reference"
        return "cpu" if device.type == "cpu" else "reference"
    if name == "cpu" and device.type != "cpu":
        raise ValueError(f"{ENV}=cpu cannot run tensors on {device}")
    if name == "triton":
        if not triton_available():
            raise RuntimeError(
                f"{ENV}=triton but triton cannot be imported: pip install triton "
                "(or unset DYNST_BACKEND to use the other backends)"
            )
        if device.type == "cpu":
            _require_interpreter()
        elif device.type != "cuda":
            raise ValueError(f"{ENV}=triton cannot run tensors on {device}")
    return name


def triton_kernels() -> ModuleType:
    """``dynst_fast.kernels`` with its kernel families imported."""
    from .. import kernels
    from ..kernels import compact, patchify, select  # noqa: F401

    return kernels


def _require_interpreter() -> None:
    from triton.runtime.interpreter import InterpretedFunction

    kernels = triton_kernels()
    if not isinstance(kernels.compact._gather_rows_kernel, InterpretedFunction):
        raise RuntimeError(
            f"{ENV}=triton on CPU tensors runs the Triton interpreter: set TRITON_INTERPRET=1 "
            "before dynst_fast.kernels is first imported (e.g. in the shell that starts Python)"
        )
