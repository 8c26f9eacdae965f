"""The compaction and selection backends (Triton, C++ CPU, composition) against the reference.

Triton kernels run on the GPU when there is one, else under ``TRITON_INTERPRET=1``
(set in conftest.py before any kernel module is imported). Grids are kept small: the
interpreter runs programs one by one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dynst_fast.kernels import triton_available
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dynst_fast import ops
from dynst_fast.ops import _backend, _custom_ops, reference

DEV = "cuda" if torch.cuda.is_available() else "cpu"
# The backend fixture only sets an env var, which is the same for every generated input.
SMALL = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
needs_triton = pytest.mark.skipif(not triton_available(), reason="triton is not installed")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

# Backends that can run here: Triton on this machine's device, and the two CPU ones.
BACKENDS = [
    pytest.param(("triton", DEV), marks=needs_triton, id=f"triton-{DEV}"),
    pytest.param(("cpu", "cpu"), id="cpu"),
    pytest.param(("reference", "cpu"), id="reference"),
]


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch) -> str:
    """Forces a backend through DYNST_BACKEND; yields the device its tensors live on."""
    name, device = request.param
    monkeypatch.setenv("DYNST_BACKEND", name)
    return device


@pytest.fixture
def triton_dev(monkeypatch) -> str:
    if not triton_available():
        pytest.skip("triton is not installed")
    monkeypatch.setenv("DYNST_BACKEND", "triton")
    return DEV


def _t(a, device, dtype=torch.float64, requires_grad=False) -> torch.Tensor:
    return torch.tensor(a, dtype=dtype, device=device, requires_grad=requires_grad)


# --------------------------------------------------------------------------- compact / expand
@st.composite
def rows_case(draw):
    b = draw(st.integers(1, 3))
    n = draw(st.integers(1, 40))
    f = draw(st.integers(1, 9))
    index = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    return b, n, f, index, draw(st.integers(0, 2**31 - 1))


@SMALL
@given(case=rows_case(), fill=st.sampled_from([0.0, -1.5]))
def test_compact_expand_and_grads_match_reference(backend, case, fill):
    b, n, f, index, seed = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, f, generator=g, dtype=torch.float64).to(backend)
    theta = torch.randn(n, generator=g, dtype=torch.float64).to(backend)
    idx = torch.tensor(index, device=backend)
    out = ops.compact(x, theta, idx)
    torch.testing.assert_close(out, reference.compact(x, theta, idx), rtol=0, atol=0)
    y = torch.randn(b, len(index), f, generator=g, dtype=torch.float64).to(backend)
    torch.testing.assert_close(
        ops.expand(y, idx, n, fill), reference.expand(y, idx, n, fill), rtol=0, atol=0
    )
    xr, tr = x.clone().requires_grad_(), theta.clone().requires_grad_()
    ops.compact(xr, tr, idx).backward(y)
    xe, te = x.clone().requires_grad_(), theta.clone().requires_grad_()
    reference.compact(xe, te, idx).backward(y)
    torch.testing.assert_close(xr.grad, xe.grad, rtol=0, atol=0)
    torch.testing.assert_close(tr.grad, te.grad, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("n", "index", "f"),
    [
        (1, [0], 1),
        (9, [4], 3),
        (9, [8, 0, 3, 7, 1, 2, 6, 5, 4], 5),
        (300, list(range(0, 300, 7)), 1),
    ],
    ids=["N=1", "K=1", "K=N-unsorted", "odd-many-rows"],
)
def test_compact_edge_cases(backend, n, index, f):
    g = torch.Generator().manual_seed(n + f)
    x = torch.randn(2, n, f, generator=g, dtype=torch.float64).to(backend)
    theta = torch.randn(n, generator=g, dtype=torch.float64).to(backend)
    idx = torch.tensor(index, device=backend)
    torch.testing.assert_close(ops.compact(x, theta, idx), reference.compact(x, theta, idx))
    back = ops.expand(ops.compact(x, theta, idx), idx, n, 0.25)
    torch.testing.assert_close(
        back, reference.expand(reference.compact(x, theta, idx), idx, n, 0.25)
    )


def test_compact_non_contiguous_and_float16(backend):
    g = torch.Generator().manual_seed(1)
    base = torch.randn(3, 7, 22, generator=g).to(backend)
    x = base.transpose(1, 2)[:, 1::2]  # [3, 11, 7], strided in every dim
    theta = torch.randn(11, generator=g).to(backend)
    idx = torch.tensor([10, 3, 0, 6], device=backend)
    torch.testing.assert_close(ops.compact(x, theta, idx), reference.compact(x, theta, idx))
    y = torch.randn(3, 7, 4, generator=g).to(backend).transpose(1, 2)
    torch.testing.assert_close(ops.expand(y, idx, 11, 2.0), reference.expand(y, idx, 11, 2.0))
    xh, th = x.half(), theta.half()
    out = ops.compact(xh, th, idx)
    assert out.dtype == torch.float16
    torch.testing.assert_close(out, reference.compact(xh, th, idx), rtol=0, atol=0)
    xr, tr = xh.clone().requires_grad_(), th.clone().requires_grad_()
    dy = torch.randn(3, 4, 7, generator=g).to(backend).half()
    ops.compact(xr, tr, idx).backward(dy)
    xe, te = xh.float().requires_grad_(), th.float().requires_grad_()
    reference.compact(xe, te, idx).backward(dy.float())
    torch.testing.assert_close(xr.grad.float(), xe.grad, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(tr.grad.float(), te.grad, rtol=2e-3, atol=2e-3)


def test_compact_expand_gradcheck(backend):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(2, 6, 3, generator=g, dtype=torch.float64).to(backend).requires_grad_()
    theta = torch.randn(6, generator=g, dtype=torch.float64).to(backend).requires_grad_()
    for index in ([4, 1, 5], [2, 0, 5, 3, 1, 4]):
        idx = torch.tensor(index, device=backend)
        assert torch.autograd.gradcheck(lambda a, t, i=idx: ops.compact(a, t, i), (x, theta))
    y = torch.randn(2, 3, 5, generator=g, dtype=torch.float64).to(backend).requires_grad_()
    idx = torch.tensor([6, 0, 2], device=backend)
    assert torch.autograd.gradcheck(lambda a: ops.expand(a, idx, 7, 0.5), (y,))
    assert torch.autograd.gradgradcheck(lambda a: ops.expand(a, idx, 7, 0.5), (y,))


def test_compact_theta_only_grad(backend):
    """Only theta requires grad (DynST's mask phase): dtheta is still reduced."""
    x = torch.randn(2, 5, 3, dtype=torch.float64).to(backend)
    theta = torch.randn(5, dtype=torch.float64).to(backend).requires_grad_()
    idx = torch.tensor([3, 0], device=backend)
    ops.compact(x, theta, idx).sum().backward()
    expect = torch.zeros(5, dtype=torch.float64, device=backend)
    expect[idx] = x[:, idx].sum(dim=(0, 2))
    torch.testing.assert_close(theta.grad, expect)


# --------------------------------------------------------------------------- patchify_compact
@pytest.mark.parametrize(("h", "w", "p"), [(5, 7, 2), (33, 49, 4), (4, 6, 1), (6, 6, 3)])
def test_patchify_compact_matches_reference(backend, h, w, p):
    g = torch.Generator().manual_seed(h * w + p)
    frames = torch.randn(2, 2, 3, w, h, generator=g, dtype=torch.float64).transpose(3, 4)
    frames = frames.to(backend)  # [2, 2, 3, h, w], non-contiguous
    n = -(-h // p) * -(-w // p)
    theta = torch.randn(n, generator=g, dtype=torch.float64).to(backend)
    for index in ([n - 1], list(range(n)), torch.randperm(n, generator=g)[: max(1, n // 3)]):
        idx = torch.as_tensor(index, device=backend)
        out = ops.patchify_compact(frames, theta, idx, p)
        torch.testing.assert_close(out, reference.patchify_compact(frames, theta, idx, p))
        dy = torch.randn(out.shape, generator=g, dtype=torch.float64).to(backend)
        fr, tr = frames.clone().requires_grad_(), theta.clone().requires_grad_()
        ops.patchify_compact(fr, tr, idx, p).backward(dy)
        fe, te = frames.clone().requires_grad_(), theta.clone().requires_grad_()
        reference.patchify_compact(fe, te, idx, p).backward(dy)
        torch.testing.assert_close(fr.grad, fe.grad, rtol=0, atol=0)
        torch.testing.assert_close(tr.grad, te.grad)


def test_patchify_compact_gradcheck_and_float16(backend):
    g = torch.Generator().manual_seed(9)
    frames = torch.randn(1, 2, 1, 3, 5, generator=g, dtype=torch.float64).to(backend)
    theta = torch.randn(6, generator=g, dtype=torch.float64).to(backend)
    idx = torch.tensor([5, 0, 2], device=backend)
    assert torch.autograd.gradcheck(
        lambda f, t: ops.patchify_compact(f, t, idx, 2),
        (frames.requires_grad_(), theta.requires_grad_()),
    )
    fh, th = frames.detach().half(), theta.detach().half()
    out = ops.patchify_compact(fh, th, idx, 2)
    torch.testing.assert_close(out, reference.patchify_compact(fh, th, idx, 2), rtol=0, atol=0)


# --------------------------------------------------------------------------- selection
def brute_pick(score: list[float], eligible: list[bool], k: int, sign: float) -> list[int]:
    ids = [i for i in range(len(score)) if eligible[i]]
    return sorted(ids, key=lambda i: (sign * score[i], i))[:k]


VALUES = st.sampled_from([0.0, -0.0, 0.5, 1.0, -1.0, 2.0, float("inf"), -float("inf")])


@SMALL
@given(
    score=st.lists(VALUES, min_size=1, max_size=40),
    data=st.data(),
    dtype=st.sampled_from([torch.float16, torch.float32, torch.float64]),
)
def test_select_swap_and_prune_match_brute_force(backend, score, data, dtype):
    n = len(score)
    active = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    n_act = sum(active)
    k = data.draw(st.integers(0, min(n_act, n - n_act)))
    s = torch.tensor(score, dtype=dtype, device=backend)
    a = torch.tensor(active, device=backend)
    drop, grow = ops.select_swap(s, a, k)
    assert drop.tolist() == brute_pick(score, active, k, 1.0)
    assert grow.tolist() == brute_pick(score, [not v for v in active], k, -1.0)
    kp = data.draw(st.integers(0, n_act))
    gone = set(brute_pick([abs(v) for v in score], active, kp, 1.0))
    expect = [bool(active[i]) and i not in gone for i in range(n)]
    assert ops.prune_lowest(s, a, kp).tolist() == expect


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_selection_many_blocks_with_ties(backend, dtype):
    """More than one block (4096) of scores with many ties, every k regime."""
    g = torch.Generator().manual_seed(5)
    n = 3 * 4096 + 17
    score = torch.randint(-50, 50, (n,), generator=g).to(dtype).to(backend) / 8
    active = (torch.rand(n, generator=g) < 0.4).to(backend)
    n_act = int(active.sum())
    for k in (1, 333, min(n_act, n - n_act)):
        drop, grow = ops.select_swap(score, active, k)
        ref_drop, ref_grow = reference.select_swap(score, active, k)
        assert torch.equal(drop, ref_drop) and torch.equal(grow, ref_grow)
    k = n_act  # prune everything
    assert not ops.prune_lowest(score, active, k).any()
    torch.testing.assert_close(
        ops.prune_lowest(score, active, 1000), reference.prune_lowest(score, active, 1000)
    )


def test_prune_lowest_million_sensors(triton_dev):
    """N > 2^20 through the Triton multi-block path (the other backends are the reference)."""
    g = torch.Generator().manual_seed(6)
    n = 2**20 + 3
    score = torch.randint(-500, 500, (n,), generator=g).float().to(triton_dev)
    active = (torch.rand(n, generator=g) < 0.5).to(triton_dev)
    out = ops.prune_lowest(score, active, 4097)
    assert torch.equal(out, reference.prune_lowest(score, active, 4097))


def test_selection_edge_cases(backend):
    d = backend
    for a in (True, False):
        drop, grow = ops.select_swap(torch.tensor([0.3], device=d), torch.tensor([a], device=d), 0)
        assert drop.shape == (0,) and grow.shape == (0,) and drop.dtype == torch.int64
    assert ops.prune_lowest(
        torch.tensor([-2.0], device=d), torch.tensor([True], device=d), 1
    ).tolist() == [False]
    score = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 0.0], device=d)
    active = torch.tensor([True, True, True, False, False, False, True], device=d)
    drop, grow = ops.select_swap(score, active, 3)
    assert drop.tolist() == [1, 2, 6] and grow.tolist() == [4, 5, 3]
    # an infinite score must never let an ineligible sensor in
    drop, grow = ops.select_swap(
        torch.tensor([0.0, float("inf")], device=d), torch.tensor([False, True], device=d), 1
    )
    assert drop.tolist() == [1] and grow.tolist() == [0]


def test_selection_rejects_nan():
    score = torch.tensor([0.1, float("nan"), 0.3])
    active = torch.tensor([True, False, True])
    with pytest.raises(ValueError, match="NaN"):
        ops.select_swap(score, active, 1)
    with pytest.raises(ValueError, match="NaN"):
        ops.prune_lowest(score, active, 1)


# --------------------------------------------------------------------------- registration
def _opcheck_cases(device: str):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(2, 7, 5, generator=g, dtype=torch.float64).to(device)
    theta = torch.randn(7, generator=g, dtype=torch.float64).to(device)
    idx = torch.tensor([6, 1, 3], device=device)
    grad = torch.randn(2, 3, 5, generator=g, dtype=torch.float64).to(device)
    frames = torch.randn(2, 2, 1, 5, 3, generator=g, dtype=torch.float64).to(device)
    ptheta = torch.randn(6, generator=g, dtype=torch.float64).to(device)
    pidx = torch.tensor([5, 0, 2], device=device)
    pgrad = torch.randn(2, 3, 8, generator=g, dtype=torch.float64).to(device)
    score = torch.randn(9, generator=g).to(device)
    active = torch.tensor([True, False] * 4 + [True], device=device)
    req = lambda t: t.clone().requires_grad_()  # noqa: E731
    return [
        (_custom_ops.compact, (req(x), req(theta), idx)),
        (_custom_ops.compact, (req(x), None, idx)),
        (_custom_ops.compact, (x, theta, idx)),
        (_custom_ops.compact_backward, (grad, x, theta, idx, True)),
        (_custom_ops.compact_backward, (grad, x, theta, idx, False)),
        (_custom_ops.expand, (req(grad), idx, 7, -1.0)),
        (_custom_ops.patchify_compact, (req(frames), req(ptheta), pidx, 2)),
        (_custom_ops.patchify_compact_backward, (pgrad, frames, ptheta, pidx, 2, True)),
        (_custom_ops.patchify_compact_backward, (pgrad, frames, ptheta, pidx, 2, False)),
        (_custom_ops.select_swap, (score, active, 4)),
        (_custom_ops.prune_lowest, (score, active, 3)),
    ]


def test_opcheck_every_op(backend):
    for op, args in _opcheck_cases(backend):
        torch.library.opcheck(op, args)


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
    monkeypatch.delenv("DYNST_BACKEND", raising=False)
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


# --------------------------------------------------------------------------- dispatch
def test_backend_selection(monkeypatch):
    monkeypatch.delenv("DYNST_BACKEND", raising=False)
    assert _backend.backend_for(torch.device("cpu")) == "cpu"
    monkeypatch.setenv("DYNST_BACKEND", "Reference")
    assert _backend.backend_for(torch.device("cpu")) == "reference"
    monkeypatch.setenv("DYNST_BACKEND", "cuda-fast")
    with pytest.raises(ValueError, match="not one of triton, cpu, reference"):
        ops.compact(torch.randn(1, 3, 2), torch.randn(3), torch.tensor([1]))


def test_triton_backend_without_triton_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_backend, "triton_available", lambda: False)
    monkeypatch.setenv("DYNST_BACKEND", "triton")
    with pytest.raises(RuntimeError, match="pip install triton"):
        ops.compact(torch.randn(1, 3, 2), torch.randn(3), torch.tensor([1]))
    monkeypatch.delenv("DYNST_BACKEND")
    assert _backend.backend_for(torch.device("cuda")) == "reference"


@needs_triton
def test_triton_on_cpu_without_interpreter_is_a_clear_error(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("the kernels are compiled for the GPU here")
    kernels = _backend.triton_kernels()
    monkeypatch.setattr(kernels.compact, "_gather_rows_kernel", object())
    monkeypatch.setenv("DYNST_BACKEND", "triton")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        ops.compact(torch.randn(1, 3, 2), torch.randn(3), torch.tensor([1]))


@needs_cuda
def test_cuda_defaults_bfloat16_and_device_errors(monkeypatch):
    monkeypatch.delenv("DYNST_BACKEND", raising=False)
    assert _backend.backend_for(torch.device("cuda")) == (
        "triton" if triton_available() else "reference"
    )
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
    monkeypatch.setenv("DYNST_BACKEND", "cpu")
    with pytest.raises(ValueError, match="cannot run tensors on cuda"):
        ops.compact(x, theta, idx)


def test_bad_arguments_device_and_dtype():
    x, theta, idx = torch.randn(2, 5, 3), torch.randn(5), torch.tensor([0, 2])
    with pytest.raises(TypeError, match="index must be int64"):
        ops.compact(x, theta, idx.float())
    with pytest.raises(TypeError, match="theta must be floating point"):
        ops.compact(x, torch.arange(5), idx)
    with pytest.raises(TypeError, match="score must be floating point"):
        ops.select_swap(torch.arange(5), torch.ones(5, dtype=torch.bool), 0)
    with pytest.raises(TypeError, match="theta must be floating point"):
        ops.patchify_compact(torch.randn(1, 1, 1, 4, 4), torch.arange(4), torch.tensor([0]), 2)
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match="one device"):
            ops.expand(torch.randn(1, 2, 3, device="cuda"), torch.tensor([0, 1]), 4)
    else:
        meta = torch.randn(2, 5, 3, device="meta")
        with pytest.raises(ValueError, match="one device"):
            ops.compact(meta, theta, idx)


def test_kernel_results_are_numpy_exact_for_fp32(backend):
    """fp32 compaction is a copy times theta: bit-exact against numpy."""
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 10, 6, generator=g).to(backend)
    theta = torch.randn(10, generator=g).to(backend)
    idx = [9, 2, 4]
    out = ops.compact(x, theta, torch.tensor(idx, device=backend)).cpu().numpy()
    xn, tn = x.cpu().numpy(), theta.cpu().numpy()
    np.testing.assert_array_equal(out, xn[:, idx] * tn[idx][None, :, None])


def test_triton_batch_split_over_few_programs(triton_dev, monkeypatch):
    """More batch rows than programs along grid axis 1 (the CUDA limit is 65535): the
    kernels loop over their share of the batch and dtheta adds the shares' partial sums."""
    kernels = _backend.triton_kernels()
    monkeypatch.setattr(kernels.compact, "MAX_GRID_Y", 2)
    monkeypatch.setattr(kernels.patchify, "MAX_GRID_Y", 2)
    g = torch.Generator().manual_seed(13)
    x = torch.randn(5, 9, 3, generator=g, dtype=torch.float64).to(triton_dev)
    theta = torch.randn(9, generator=g, dtype=torch.float64).to(triton_dev)
    idx = torch.tensor([8, 2, 5], device=triton_dev)
    xr, tr = x.clone().requires_grad_(), theta.clone().requires_grad_()
    out = ops.compact(xr, tr, idx)
    dy = torch.randn(out.shape, generator=g, dtype=torch.float64).to(triton_dev)
    out.backward(dy)
    xe, te = x.clone().requires_grad_(), theta.clone().requires_grad_()
    expect = reference.compact(xe, te, idx)
    expect.backward(dy)
    torch.testing.assert_close(out, expect, rtol=0, atol=0)
    torch.testing.assert_close(xr.grad, xe.grad, rtol=0, atol=0)
    torch.testing.assert_close(tr.grad, te.grad)
    frames = torch.randn(5, 1, 2, 5, 4, generator=g, dtype=torch.float64).to(triton_dev)
    pt = torch.randn(6, generator=g, dtype=torch.float64).to(triton_dev)
    pidx = torch.tensor([5, 1], device=triton_dev)
    fr, ptr = frames.clone().requires_grad_(), pt.clone().requires_grad_()
    got = ops.patchify_compact(fr, ptr, pidx, 2)
    got.sum().backward()
    fe, pte = frames.clone().requires_grad_(), pt.clone().requires_grad_()
    exp = reference.patchify_compact(fe, pte, pidx, 2)
    exp.sum().backward()
    torch.testing.assert_close(got, exp, rtol=0, atol=0)
    torch.testing.assert_close(fr.grad, fe.grad, rtol=0, atol=0)
    torch.testing.assert_close(ptr.grad, pte.grad)
