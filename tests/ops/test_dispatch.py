"""Which kernel runs each op: the extension's schemas and C++ kernels, the Python kernels
registered per dispatch key (Triton or fallbacks on CUDA), the DYNST_BACKEND test
override and its errors, and every op together under torch.compile (inductor)."""

from __future__ import annotations

import warnings

import pytest
import torch
from dynst_fast.kernels import triton_available
from harness import needs_cuda, needs_triton

from dynst_fast import _extension, ops
from dynst_fast.ops import _dispatch, reference

COMPACTION_OPS = ("compact", "compact_backward", "expand", "patchify_compact",
                  "patchify_compact_backward", "select_swap", "prune_lowest")  # fmt: skip
NEIGHBOUR_OPS = ("nearest_active", "neighbour_attention", "neighbour_attention_backward")
GRAPH_OPS = ("gated_spmm", "gated_spmm_tr", "gated_spmm_backward", "csr_transpose",
             "induce_subgraph", "bipartite")  # fmt: skip


def test_extension_loaded_with_every_schema_and_cpu_kernel():
    _extension.load_extension()
    for name in (*COMPACTION_OPS, *NEIGHBOUR_OPS, *GRAPH_OPS):
        qualified = f"dynst_fast::{name}"
        assert torch._C._dispatch_has_kernel_for_dispatch_key(qualified, "CPU"), name
        assert name in _dispatch.KERNELS, name
        assert torch._C._dispatch_has_kernel_for_dispatch_key(qualified, "CUDA"), name
    assert set(_dispatch.KERNELS) == {*COMPACTION_OPS, *NEIGHBOUR_OPS, *GRAPH_OPS}


def test_default_cuda_kernels():
    """CUDA tensors run the Triton kernels (the reference without triton) for the
    compaction and neighbour ops and the CUDA C++ kernels (the reference in a CPU-only
    build) for the graph ops."""
    for name in (*COMPACTION_OPS, *NEIGHBOUR_OPS):
        assert _dispatch.cuda_kernel(name) == ("triton" if triton_available() else "reference")
    for name in GRAPH_OPS:
        assert _dispatch.cuda_kernel(name) == (
            "c++" if _extension.cuda_kernels_built() else "reference"
        )
    assert _dispatch.cuda_kernel("compact", "reference") == "reference"
    assert _dispatch.cuda_kernel("gated_spmm", "cpu") == "refused"


def test_graph_ops_without_cuda_kernels_warn_once(monkeypatch):
    """A build without CUDA kernels runs the graph ops' reference on CUDA tensors and
    warns once, saying how to rebuild."""
    monkeypatch.setattr(_dispatch, "_warned_cuda_fallback", False)
    k = _dispatch.KERNELS["gated_spmm"]
    run = _dispatch._fallback("gated_spmm", k)
    g = torch.tensor([0, 1, 2]), torch.tensor([1, 0]), torch.ones(2)
    x, gate = torch.randn(1, 2, 3), torch.ones(2)
    with pytest.warns(RuntimeWarning, match="built without CUDA kernels.*DYNST_WITH_CUDA=1"):
        out = run(*g, x, gate, 2)
    torch.testing.assert_close(out, x.flip(1))
    with warnings.catch_warnings():  # warned once only
        warnings.simplefilter("error")
        run(*g, x, gate, 2)
    if torch.version.cuda is None:  # a CPU torch can never have built them
        assert not _extension.cuda_kernels_built()


def test_backend_selection(monkeypatch):
    monkeypatch.delenv("DYNST_BACKEND", raising=False)
    assert _dispatch.forced_backend() is None
    monkeypatch.setenv("DYNST_BACKEND", "Reference")
    assert _dispatch.forced_backend() == "reference"  # what importing dynst_fast.ops installs
    x, theta, idx = torch.randn(1, 3, 2), torch.randn(3), torch.tensor([1])
    with _dispatch.using("Reference"):
        assert _dispatch.backend() == "reference"
        torch.testing.assert_close(ops.compact(x, theta, idx), reference.compact(x, theta, idx))
    assert _dispatch.backend() is None
    monkeypatch.setenv("DYNST_BACKEND", "cuda-fast")
    with pytest.raises(ValueError, match="not one of triton, cpu, reference"):
        _dispatch.forced_backend()
    with pytest.raises(ValueError, match="not one of triton, cpu, reference"):
        _dispatch.set_backend("cuda-fast")


def test_a_backend_is_read_once_not_on_every_call(monkeypatch):
    """Changing DYNST_BACKEND after import changes nothing: op calls never read it."""
    _dispatch.set_backend(None)
    monkeypatch.setenv("DYNST_BACKEND", "reference")
    calls = []
    real = _dispatch.KERNELS["compact"]
    monkeypatch.setitem(
        _dispatch.KERNELS,
        "compact",
        _dispatch.Kernels(lambda *a: calls.append(1) or real.reference(*a), real.triton),
    )
    ops.compact(torch.randn(2, 5, 3), torch.randn(5), torch.tensor([4, 0]))
    assert calls == [] and _dispatch.backend() is None


def test_reference_override_replaces_the_cpu_kernel(monkeypatch):
    _dispatch.set_backend(None)
    calls = []
    real = _dispatch.KERNELS["compact"]
    monkeypatch.setitem(
        _dispatch.KERNELS,
        "compact",
        _dispatch.Kernels(lambda *a: calls.append(1) or real.reference(*a), real.triton),
    )
    _dispatch.set_backend("reference")
    x, theta, idx = torch.randn(2, 5, 3), torch.randn(5), torch.tensor([4, 0])
    ops.compact(x, theta, idx)
    assert calls == [1]
    _dispatch.set_backend(None)
    ops.compact(x, theta, idx)  # the C++ kernel again
    assert calls == [1]


def test_triton_backend_without_triton_is_a_clear_error(monkeypatch):
    _dispatch.set_backend(None)  # whatever an earlier test left installed: the defaults
    monkeypatch.setattr(_dispatch, "triton_available", lambda: False)
    with pytest.raises(RuntimeError, match="pip install triton"):
        _dispatch.set_backend("triton")
    assert _dispatch.cuda_kernel("compact") == "reference"


@needs_triton
def test_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("the kernels are compiled for the GPU here")
    from dynst_fast.kernels import compact

    monkeypatch.setattr(compact, "_gather_rows_kernel", object())
    with _dispatch.using("triton"), pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        ops.compact(torch.randn(1, 3, 2), torch.randn(3), torch.tensor([1]))


@needs_cuda
def test_cuda_defaults_bfloat16_and_device_errors(monkeypatch):
    _dispatch.set_backend(None)
    assert _dispatch.cuda_kernel("compact") == ("triton" if triton_available() else "reference")
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 50, 12, generator=g).cuda()
    theta = torch.randn(50, generator=g).cuda()
    idx = torch.randperm(50, generator=g)[:20].cuda()
    for dtype in (torch.bfloat16, torch.float16, torch.float32):
        xd, td = x.to(dtype), theta.to(dtype)
        torch.testing.assert_close(
            ops.compact(xd, td, idx), reference.compact(xd, td, idx), rtol=0, atol=0
        )
        xr, tr = xd.clone().requires_grad_(), td.clone().requires_grad_()
        ops.compact(xr, tr, idx).float().sum().backward()
        xe, te = xd.float().requires_grad_(), td.float().requires_grad_()
        reference.compact(xe, te, idx).sum().backward()
        torch.testing.assert_close(xr.grad.float(), xe.grad, rtol=1e-2, atol=1e-2)
        torch.testing.assert_close(tr.grad.float(), te.grad, rtol=2e-2, atol=5e-2)
        frames = torch.randn(2, 2, 3, 9, 10, generator=g).cuda().to(dtype)
        pt = torch.randn(20, generator=g).cuda().to(dtype)
        pidx = torch.tensor([19, 0, 7], device="cuda")
        torch.testing.assert_close(
            ops.patchify_compact(frames, pt, pidx, 2),
            reference.patchify_compact(frames, pt, pidx, 2),
            rtol=0,
            atol=0,
        )
        score = torch.randn(5000, generator=g).cuda().to(dtype)
        active = torch.rand(5000, generator=g).cuda() < 0.5
        drop, grow = ops.select_swap(score, active, 100)
        ref_drop, ref_grow = reference.select_swap(score, active, 100)
        assert torch.equal(drop, ref_drop) and torch.equal(grow, ref_grow)
    with _dispatch.using("cpu"), pytest.raises(ValueError, match="cannot run tensors on cuda"):
        ops.compact(x, theta, idx)


class TinyCompactModel(torch.nn.Module):
    """Uses every op: compact the active sensors, mix them, expand back, pick a swap."""

    def __init__(self, n: int, f: int) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(f, f)
        self.theta = torch.nn.Parameter(torch.linspace(0.5, 1.5, n))

    def forward(self, x, frames, index, patch_index, active):
        h = self.lin(ops.compact(x, self.theta, index))
        full = ops.expand(torch.tanh(h), index, x.shape[1], 0.0)
        pt = ops.patchify_compact(frames, self.theta[:6], patch_index, 2)
        drop, grow = ops.select_swap(full.detach().abs().sum(dim=(0, 2)), active, 2)
        pruned = ops.prune_lowest(self.theta.detach(), active, 1)
        return full.sum() + pt.sum(), drop, grow, pruned


def test_torch_compile_fullgraph_small_model(monkeypatch):
    _dispatch.set_backend(None)
    torch.manual_seed(0)
    model = TinyCompactModel(8, 4)
    x = torch.randn(3, 8, 4)
    frames = torch.randn(2, 1, 2, 3, 5)
    index = torch.tensor([6, 1, 3, 4])
    pindex = torch.tensor([5, 0])
    active = torch.tensor([True, False, True, True, False, False, True, True])
    compiled = torch.compile(model, fullgraph=True, backend="inductor")
    out, drop, grow, pruned = compiled(x, frames, index, pindex, active)
    out.backward()
    got = model.theta.grad.clone()
    model.zero_grad()
    exp, e_drop, e_grow, e_pruned = model(x, frames, index, pindex, active)
    exp.backward()
    torch.testing.assert_close(out, exp)
    torch.testing.assert_close(got, model.theta.grad)
    assert torch.equal(drop, e_drop) and torch.equal(grow, e_grow)
    assert torch.equal(pruned, e_pruned)
