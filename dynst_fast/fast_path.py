"""The inference fast path: a model prepared once for repeated calls on inputs of one shape.

At batch 1 a forward pass is a hundred small op calls, and each eager call costs
microseconds of dispatch and Python around little work, so the sensors a compacted model
saves are drowned in overhead. The fast path removes what does not depend on the input:

* the argument checks run once, on the example, not on every call (the compacted
  graphs were validated when the model was compacted);
* the model is compiled by inductor for the example's shapes, with its weights as
  constants (``freezing``: folded and pre-packed), so the elementwise ops between the
  matrix products become a few generated kernels;
* backend ``"aoti"`` (the default) compiles ahead of time with ``torch.export`` and
  AOTInductor into a shared library that is called without Python in between and
  without guard checks; ``"compile"`` uses ``torch.compile`` (C++ wrapper), which keeps
  a guard check per call; ``"eager"`` keeps the eager kernels (inference mode only).

The same treatment applies to any module, dense or compacted, so ``dynst bench``
compares the two on equal terms. A call with another shape, dtype or device than the
example's is refused with one clear error instead of a silent recompilation. Compiling
takes seconds to a minute per model and shape; do it once.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

BACKENDS = ("aoti", "compile", "eager")


class FastPath:
    """``module`` compiled for inputs shaped like ``example`` (a tuple of tensors).

    ``fast(*inputs)`` returns what ``module(*inputs)`` returns (one tensor), within the
    float rounding of fused kernels. ``backend``: one of ``BACKENDS`` (see the module).
    The module's parameters must not change afterwards: they are compiled in.
    """

    def __init__(
        self, module: nn.Module, example: tuple[Tensor, ...], *, backend: str = "aoti"
    ) -> None:
        if backend not in BACKENDS:
            choices = ", ".join(BACKENDS)
            raise ValueError(f"FastPath: backend must be one of {choices}, got {backend!r}")
        if not isinstance(example, tuple) or not all(isinstance(t, Tensor) for t in example):
            raise TypeError("FastPath: example must be a tuple of tensors")
        self.backend = backend
        self.signature = _signature(example)
        module = module.eval()
        with torch.inference_mode():
            module(*example)  # the checks, once: a bad example fails here, eagerly
        self._dir: tempfile.TemporaryDirectory | None = None
        self._fn: Callable = module
        if backend == "compile":
            self._fn = torch.compile(
                module,
                fullgraph=True,
                dynamic=False,
                options={"freezing": True, "cpp_wrapper": True},
            )
            with torch.inference_mode():
                self._fn(*example)  # compile now, not on the first real call
        elif backend == "aoti":
            self._dir = tempfile.TemporaryDirectory(prefix="dynst_fast_path_")
            with torch.inference_mode():
                program = torch.export.export(module, example)
            package = torch._inductor.aoti_compile_and_package(
                program,
                package_path=str(Path(self._dir.name) / "model.pt2"),
                inductor_configs={"freezing": True},
            )
            self._fn = torch._inductor.aoti_load_package(package)

    def __call__(self, *inputs: Tensor) -> Tensor:
        sig = _signature(inputs)
        if sig != self.signature:
            raise ValueError(
                f"FastPath: compiled for inputs {_describe(self.signature)}, called with "
                f"{_describe(sig)}; build one FastPath per input shape"
            )
        with torch.inference_mode():
            return self._fn(*inputs)


def _signature(inputs) -> tuple:
    return tuple(
        (tuple(t.shape), t.dtype, t.device) if isinstance(t, Tensor) else type(t) for t in inputs
    )


def _describe(sig) -> str:
    return ", ".join(
        f"{list(s[0])} {str(s[1]).replace('torch.', '')} on {s[2]}"
        if isinstance(s, tuple)
        else s.__name__
        for s in sig
    )
