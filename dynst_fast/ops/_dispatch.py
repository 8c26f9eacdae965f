"""Which kernel runs each op, per dispatch key: the one place that decides it.

Every op has one schema, in ``csrc/ops.cpp``, loaded with the extension ``dynst_fast._C``.
The extension registers the C++ kernels itself (``TORCH_LIBRARY_IMPL``): CPU for every
op, CUDA for the graph ops in CUDA builds. Each op file of this package declares its
Python kernels with :func:`declare` (its PyTorch reference, and its Triton kernel if it
has one), and :func:`install` registers, from Python, what the build does not provide:

* CUDA kernels of ops without a C++ CUDA kernel: the Triton kernel of
  ``dynst_fast.kernels`` when triton imports, else the reference (silently for ops that
  have a Triton kernel, as a torch without triton is a normal install; with a warning
  once for the graph ops, whose C++ CUDA kernels are missing only from a CPU-only build).

A backend is a test override of these registrations, set with :func:`set_backend` (or
:func:`using`, for a block), and read once from ``DYNST_BACKEND`` when ``dynst_fast.ops``
is imported: ``reference`` runs every op's reference on CPU and CUDA tensors, ``triton``
runs the Triton kernels (on CPU tensors through the interpreter, which needs
``TRITON_INTERPRET=1`` set before the kernel modules are imported), ``cpu`` keeps the
C++ CPU kernels and refuses CUDA tensors. Op calls never consult it: the dispatcher
routes them by the registrations alone.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from .._extension import load_extension
from ..kernels import triton_available

load_extension()  # the schemas and C++ kernels must exist before anything registers here

NAMESPACE = "dynst_fast"
BACKENDS = ("triton", "cpu", "reference")
ENV = "DYNST_BACKEND"


@dataclass(frozen=True)
class Kernels:
    """The Python kernels of one op, each with the op's schema signature."""

    reference: Callable
    triton: Callable | None = None
    cpp_cuda: bool = False  # whether the build registered a C++ CUDA kernel


KERNELS: dict[str, Kernels] = {}
_library: torch.library.Library | None = None
_current: str | None = None  # the installed backend (None: the defaults)
_warned_cuda_fallback = False


def declare(name: str, *, reference: Callable, triton: Callable | None = None) -> None:
    """Declare the Python kernels of ``dynst_fast::<name>`` (each op file does, on import;
    ``dynst_fast.ops`` then calls :func:`install`)."""
    has_cuda = torch._C._dispatch_has_kernel_for_dispatch_key(f"{NAMESPACE}::{name}", "CUDA")
    KERNELS[name] = Kernels(reference, triton, bool(has_cuda))


def _checked(name: str | None, what: str) -> str | None:
    name = (name or "").strip().lower()
    if not name:
        return None
    if name not in BACKENDS:
        raise ValueError(f"{what}={name!r} is not one of {', '.join(BACKENDS)}")
    return name


def forced_backend() -> str | None:
    """The backend named by ``$DYNST_BACKEND``, or None when it is unset or empty."""
    return _checked(os.environ.get(ENV), ENV)


def backend() -> str | None:
    """The backend installed now (None: the defaults)."""
    return _current


def set_backend(name: str | None) -> None:
    """Register the kernels of backend ``name`` (``triton``, ``cpu``, ``reference``; None
    or "" for the defaults) for every op, replacing the registrations before."""
    install(_checked(name, "backend"))


@contextmanager
def using(name: str | None) -> Iterator[None]:
    """Backend ``name`` inside the block, the backend before it after."""
    before = _current
    set_backend(name)
    try:
        yield
    finally:
        install(before)


def cuda_kernel(name: str, backend: str | None = None) -> str:
    """What runs ``name`` on CUDA tensors: ``"c++"``, ``"triton"``, ``"reference"`` or
    ``"refused"`` (``DYNST_BACKEND=cpu``)."""
    k = KERNELS[name]
    if backend == "reference":
        return "reference"
    if backend == "cpu":
        return "refused"
    if k.triton is not None and triton_available():
        return "triton"
    return "c++" if k.cpp_cuda else "reference"


def install(backend: str | None) -> None:
    """(Re)build every Python kernel registration for ``backend`` (None: the defaults)."""
    global _library, _current
    if backend == "triton" and not triton_available():
        raise RuntimeError(
            f"{ENV}=triton but triton cannot be imported: pip install triton "
            "(or unset DYNST_BACKEND to use the other backends)"
        )
    if _library is not None:  # torch < 2.13 refuses a second Python kernel for one key
        _library._destroy()
        _library, _current = None, None
    lib = torch.library.Library(NAMESPACE, "IMPL")
    with warnings.catch_warnings():  # overriding a C++ kernel warns; that is the point here
        warnings.simplefilter("ignore")
        for name, k in KERNELS.items():
            kind, cuda = cuda_kernel(name, backend), None
            if kind == "triton":
                cuda = k.triton
            elif kind == "refused":
                cuda = _refuse_cuda
            elif kind == "reference":
                plain = backend == "reference" or k.triton is not None
                cuda = k.reference if plain else _fallback(name, k)
            if cuda is not None:
                lib.impl(name, cuda, "CUDA")
            if backend == "reference":
                lib.impl(name, k.reference, "CPU")
            elif backend == "triton" and k.triton is not None:
                lib.impl(name, _interpreted(k.triton), "CPU")
    _library, _current = lib, backend


def _refuse_cuda(*args, **kwargs):
    raise ValueError(f"{ENV}=cpu cannot run tensors on cuda")


def _fallback(name: str, k: Kernels) -> Callable:
    """The reference as the CUDA kernel of a graph op the build has no CUDA kernel for."""

    def run(*args):
        global _warned_cuda_fallback
        if not _warned_cuda_fallback:
            _warned_cuda_fallback = True
            warnings.warn(
                f"{name}: dynst_fast._C was built without CUDA kernels, so the graph ops run "
                "their PyTorch reference on CUDA tensors. Rebuild against a CUDA torch with "
                "nvcc on PATH (DYNST_WITH_CUDA=1 pip install --no-build-isolation -e .) to "
                "use the kernels of csrc/cuda.",
                RuntimeWarning,
                stacklevel=2,
            )
        return k.reference(*args)

    return run


def _interpreted(fn: Callable) -> Callable:
    """A Triton kernel as a CPU kernel: it runs only under the Triton interpreter."""

    def run(*args):
        from triton.runtime.interpreter import InterpretedFunction

        from ..kernels import compact

        if not isinstance(compact._gather_rows_kernel, InterpretedFunction):
            raise RuntimeError(
                f"{ENV}=triton on CPU tensors runs the Triton interpreter: set "
                "TRITON_INTERPRET=1 before dynst_fast.kernels is first imported (e.g. in "
                "the shell that starts Python)"
            )
        return fn(*args)

    return run
