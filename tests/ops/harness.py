"""What the op test files share: the backends an op runs on here, and the four checks
(value, gradient, ``opcheck``, ``torch.compile``) that each op's one sample-input
generator feeds.

A backend is a kernel family forced with ``_dispatch.set_backend`` (``triton``: the Triton
kernels, on CPU tensors through the interpreter that conftest.py switches on; ``cpu``:
the C++ CPU kernels; ``reference``: the plain PyTorch compositions) or, on a GPU, the
default CUDA kernels. Every check compares with ``dynst_fast.ops.reference`` on the
same inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pytest
import torch
from dynst_fast.kernels import triton_available
from hypothesis import HealthCheck, settings

from dynst_fast.ops import _dispatch

DEV = "cuda" if torch.cuda.is_available() else "cpu"
needs_triton = pytest.mark.skipif(not triton_available(), reason="triton is not installed")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
FAST = settings(max_examples=40, deadline=None)
# The backend fixture only registers kernels, which hold for every generated input.
SMALL = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def backends(triton: bool = True) -> list:
    """``(backend or None, device)`` params for the ops' backend fixture."""
    out = [
        pytest.param(("cpu", "cpu"), id="cpu"),
        pytest.param(("reference", "cpu"), id="reference"),
        pytest.param((None, "cuda"), marks=needs_cuda, id="cuda-default"),
    ]
    if triton:
        out.insert(0, pytest.param(("triton", DEV), marks=needs_triton, id=f"triton-{DEV}"))
    return out


def backend_fixture(triton: bool = True):
    """A ``backend`` fixture for one op's tests: forces the backend and yields the device
    its tensors live on."""

    @pytest.fixture(params=backends(triton))
    def backend(request) -> str:
        name, device = request.param
        with _dispatch.using(name):
            yield device

    return backend


def _close(got, want, exact: bool) -> None:
    if isinstance(want, (tuple, list)):
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            _close(g, w, exact)
        return
    if hasattr(want, "rowptr"):  # a CSRGraph: compare its arrays exactly
        for name in ("rowptr", "col", "weight"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name
        return
    if exact or not want.is_floating_point():
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    else:
        torch.testing.assert_close(got, want)


def check_values(
    fn: Callable, ref: Callable, samples: Iterable[Sequence], exact: bool = True
) -> None:
    """``fn(*args)`` equals ``ref(*args)`` for every sample (bit-exact unless not ``exact``)."""
    n = 0
    for args in samples:
        _close(fn(*args), ref(*args), exact)
        n += 1
    assert n > 0


def _grad_args(args: Sequence) -> tuple[list, list[int]]:
    """float64 copies of the floating tensors that may carry a gradient, marked."""
    out, where = [], []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor) and a.dtype == torch.float64:
            out.append(a.detach().clone().requires_grad_())
            where.append(i)
        else:
            out.append(a)
    return out, where


def check_grads(
    fn: Callable,
    ref: Callable,
    samples: Iterable[Sequence],
    diff: Sequence[int],
    gradcheck_limit: int = 1,
) -> None:
    """Gradients of ``fn`` in the argument positions ``diff`` (float64 samples) match those
    of ``ref`` for the same upstream gradient, and pass ``gradcheck`` on the first
    ``gradcheck_limit`` samples (numerical Jacobians cost an op call per input element:
    far too many under the Triton interpreter for every sample)."""
    n = 0
    for args in samples:
        if any(
            not isinstance(args[i], torch.Tensor) or args[i].dtype != torch.float64 for i in diff
        ):
            continue

        def call(*tensors, f=fn, args=args):
            full = list(args)
            for i, t in zip(diff, tensors, strict=True):
                full[i] = t
            return f(*full)

        inputs = [args[i].detach().clone().requires_grad_() for i in diff]
        if n < gradcheck_limit:
            assert torch.autograd.gradcheck(call, inputs)
        out = call(*inputs)
        g = torch.randn(out.shape, dtype=out.dtype, device=out.device)
        got = torch.autograd.grad(out, inputs, g)
        ref_inputs = [t.detach().clone().requires_grad_() for t in inputs]
        want = torch.autograd.grad(call(*ref_inputs, f=ref), ref_inputs, g)
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b)
        n += 1
    assert n > 0


def check_opcheck(op, schema_samples: Iterable[Sequence]) -> None:
    """``torch.library.opcheck`` (schema, fake kernel, autograd registration, AOT
    dispatch) on every sample of the op's schema arguments."""
    n = 0
    for args in schema_samples:
        torch.library.opcheck(op, tuple(args))
        n += 1
    assert n > 0


def check_compile(fn: Callable, samples: Iterable[Sequence], limit: int = 2) -> None:
    """``torch.compile(fn, fullgraph=True)`` (AOT autograd, eager kernels) gives ``fn``'s
    values and gradients on the first ``limit`` samples."""
    torch._dynamo.reset()
    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager", dynamic=False)
    for n, args in enumerate(samples):
        if n >= limit:
            break
        g_args, where = _grad_args(args)
        got = compiled(*g_args)
        e_args, _ = _grad_args(args)
        want = fn(*e_args)
        _close(got, want, exact=False)
        if where and isinstance(want, torch.Tensor) and want.requires_grad:
            got.sum().backward()
            want.sum().backward()
            for i in where:
                torch.testing.assert_close(g_args[i].grad, e_args[i].grad)
