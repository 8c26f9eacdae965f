"""``ops.compact``: against python loops, the reference on every backend, gradients,
``opcheck`` and ``torch.compile`` (one sample generator feeds the four checks), and its
argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from dynst_fast.kernels import triton_available
from harness import (
    DEV,
    FAST,
    SMALL,
    backend_fixture,
    check_compile,
    check_grads,
    check_opcheck,
    check_values,
)
from hypothesis import given
from hypothesis import strategies as st

from dynst_fast import ops
from dynst_fast.ops import _dispatch, reference

backend = backend_fixture()


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def loop_compact(x: np.ndarray, theta: np.ndarray, index: list[int]) -> np.ndarray:
    b, _, f = x.shape
    out = np.zeros((b, len(index), f), dtype=np.float64)
    for bi in range(b):
        for k, i in enumerate(index):
            for fi in range(f):
                out[bi, k, fi] = float(x[bi, i, fi]) * float(theta[i])
    return out


def loop_expand(y: np.ndarray, index: list[int], n: int, fill: float) -> np.ndarray:
    b, _, f = y.shape
    out = np.full((b, n, f), fill, dtype=np.float64)
    for bi in range(b):
        for k, i in enumerate(index):
            for fi in range(f):
                out[bi, i, fi] = float(y[bi, k, fi])
    return out


# --------------------------------------------------------------------------- samples
def samples(device: str, dtypes=(torch.float64, torch.float32)):
    """``(x, theta, index)`` of ``ops.compact``: N = 1, K = 1, K = N unsorted, strided x,
    an odd F, many rows."""
    g = torch.Generator().manual_seed(0)
    for dtype in dtypes:
        for b, n, f, index in [
            (2, 1, 1, [0]),
            (2, 9, 3, [4]),
            (3, 9, 5, [8, 0, 3, 7, 1, 2, 6, 5, 4]),
            (1, 300, 1, list(range(0, 300, 7))),
        ]:
            x = torch.randn(b, n, f, generator=g, dtype=dtype).to(device)
            theta = torch.randn(n, generator=g, dtype=dtype).to(device)
            yield x, theta, torch.tensor(index, device=device)
        base = torch.randn(3, 7, 22, generator=g, dtype=dtype).to(device)
        x = base.transpose(1, 2)[:, 1::2]  # [3, 11, 7], strided in every dim
        yield (
            x,
            torch.randn(11, generator=g, dtype=dtype).to(device),
            torch.tensor([10, 3, 0, 6], device=device),
        )


def schema_samples(device: str):
    """Arguments of ``dynst_fast::compact`` (theta given, or None) and of
    ``compact_backward``, from :func:`samples`."""
    for x, theta, index in samples(device, dtypes=(torch.float64,)):
        yield x.clone().requires_grad_(), theta.clone().requires_grad_(), index
        yield x.clone().requires_grad_(), None, index
        yield x, theta, index


def backward_samples(device: str):
    for x, theta, index in samples(device, dtypes=(torch.float64,)):
        grad = torch.randn(x.shape[0], index.numel(), x.shape[2], dtype=x.dtype, device=device)
        yield grad, x, theta, index, True
        yield grad, x, theta, index, False


def test_values(backend):
    check_values(ops.compact, reference.compact, samples(backend))


def test_gradients(backend):
    check_grads(ops.compact, reference.compact, samples(backend), diff=(0, 1))


def test_opcheck(backend):
    check_opcheck(torch.ops.dynst_fast.compact.default, schema_samples(backend))
    check_opcheck(torch.ops.dynst_fast.compact_backward.default, backward_samples(backend))


def test_torch_compile(backend):
    check_compile(ops.compact, samples(backend))


# --------------------------------------------------------------------------- against loops
@st.composite
def compact_case(draw):
    b = draw(st.integers(1, 3))
    n = draw(st.integers(1, 17))
    f = draw(st.integers(1, 7))
    index = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    seed = draw(st.integers(0, 2**31 - 1))
    return b, n, f, index, seed


@FAST
@given(compact_case())
def test_compact_matches_loops(case):
    b, n, f, index, seed = case
    rng = _rng(seed)
    x = rng.standard_normal((b, n, f))
    theta = rng.standard_normal(n)
    out = ops.compact(torch.tensor(x), torch.tensor(theta), torch.tensor(index))
    assert out.shape == (b, len(index), f)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), loop_compact(x, theta, index), rtol=1e-12, atol=0)


@pytest.mark.parametrize(
    ("n", "index"),
    [
        (1, [0]),  # N = 1
        (9, [4]),  # K = 1
        (9, list(range(9))),  # K = N, sorted
        (9, [8, 0, 3, 7, 1, 2, 6, 5, 4]),  # K = N, unsorted
        (9, [7, 2, 5]),  # unsorted
    ],
)
@pytest.mark.parametrize("f", [1, 5])  # odd F
def test_compact_expand_edge_cases(n, index, f):
    rng = _rng(n * 31 + f)
    x = rng.standard_normal((2, n, f))
    theta = rng.standard_normal(n)
    idx = torch.tensor(index)
    out = ops.compact(torch.tensor(x), torch.tensor(theta), idx)
    np.testing.assert_allclose(out.numpy(), loop_compact(x, theta, index), rtol=1e-12)
    back = ops.expand(out, idx, n, 0.25)
    np.testing.assert_allclose(
        back.numpy(), loop_expand(loop_compact(x, theta, index), index, n, 0.25), rtol=1e-12
    )
    # int32 index gives the same result
    out32 = ops.compact(torch.tensor(x), torch.tensor(theta), idx.to(torch.int32))
    torch.testing.assert_close(out32, out, rtol=0, atol=0)


def test_compact_non_contiguous_x():
    rng = _rng(3)
    base = torch.tensor(rng.standard_normal((2, 5, 11)))  # [B, F, N]
    x = base.transpose(1, 2)  # [B, N=11, F=5], non-contiguous
    assert not x.is_contiguous()
    theta = torch.tensor(rng.standard_normal(11))
    index = [10, 3, 0, 6]
    out = ops.compact(x, theta, torch.tensor(index))
    np.testing.assert_allclose(out.numpy(), loop_compact(x.numpy(), theta.numpy(), index))

    big = torch.tensor(rng.standard_normal((3, 22, 9)))
    xs = big[::2, 1::2, 2:7]  # [2, 11, 5] strided slice
    assert not xs.is_contiguous()
    out = ops.compact(xs, theta, torch.tensor(index))
    np.testing.assert_allclose(out.numpy(), loop_compact(xs.numpy(), theta.numpy(), index))


def test_compact_expand_float16():
    rng = _rng(5)
    x32 = torch.tensor(rng.standard_normal((3, 13, 7)), dtype=torch.float32)
    th32 = torch.tensor(rng.standard_normal(13), dtype=torch.float32)
    index = [12, 0, 5, 6, 2]
    out = ops.compact(x32.half(), th32.half(), torch.tensor(index))
    assert out.dtype == torch.float16
    expect = loop_compact(x32.half().float().numpy(), th32.half().float().numpy(), index)
    np.testing.assert_allclose(out.float().numpy(), expect, rtol=2e-3, atol=2e-3)

    y = out
    back = ops.expand(y, torch.tensor(index), 13, 1.5)
    assert back.dtype == torch.float16
    np.testing.assert_allclose(
        back.float().numpy(), loop_expand(y.float().numpy(), index, 13, 1.5), rtol=0, atol=0
    )


def test_compact_gradcheck():
    rng = _rng(6)
    x = torch.tensor(rng.standard_normal((2, 6, 3)), requires_grad=True)
    theta = torch.tensor(rng.standard_normal(6), requires_grad=True)
    index = torch.tensor([4, 1, 5])
    assert torch.autograd.gradcheck(lambda a, t: ops.compact(a, t, index), (x, theta))
    # K = N, unsorted, theta gradient sums over batch and features
    index = torch.tensor([2, 0, 5, 3, 1, 4])
    assert torch.autograd.gradcheck(lambda a, t: ops.compact(a, t, index), (x, theta))


def test_compact_grad_values():
    """Analytic gradients: d/dx = theta on kept rows (0 elsewhere), d/dtheta = sum x."""
    rng = _rng(7)
    x = torch.tensor(rng.standard_normal((2, 5, 3)), requires_grad=True)
    theta = torch.tensor(rng.standard_normal(5), requires_grad=True)
    index = [3, 0]
    ops.compact(x, theta, torch.tensor(index)).sum().backward()
    gx = np.zeros((2, 5, 3))
    gt = np.zeros(5)
    for i in index:
        gx[:, i, :] = theta[i].item()
        gt[i] = x[:, i, :].sum().item()
    np.testing.assert_allclose(x.grad.numpy(), gx, rtol=1e-12)
    np.testing.assert_allclose(theta.grad.numpy(), gt, rtol=1e-12)


# --------------------------------------------------------------------------- backends
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


def test_kernel_results_are_numpy_exact_for_fp32(backend):
    """fp32 compaction is a copy times theta: bit-exact against numpy."""
    g = torch.Generator().manual_seed(12)
    x = torch.randn(2, 10, 6, generator=g).to(backend)
    theta = torch.randn(10, generator=g).to(backend)
    idx = [9, 2, 4]
    out = ops.compact(x, theta, torch.tensor(idx, device=backend)).cpu().numpy()
    xn, tn = x.cpu().numpy(), theta.cpu().numpy()
    np.testing.assert_array_equal(out, xn[:, idx] * tn[idx][None, :, None])


@pytest.fixture
def triton_dev() -> str:
    if not triton_available():
        pytest.skip("triton is not installed")
    with _dispatch.using("triton"):
        yield DEV


def test_triton_batch_split_over_few_programs(triton_dev, monkeypatch):
    """More batch rows than programs along grid axis 1 (the CUDA limit is 65535): the
    kernels loop over their share of the batch and dtheta adds the shares' partial sums."""
    from dynst_fast.kernels import compact, patchify

    monkeypatch.setattr(compact, "MAX_GRID_Y", 2)
    monkeypatch.setattr(patchify, "MAX_GRID_Y", 2)
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


# --------------------------------------------------------------------------- bad arguments
def _xti(n=5):
    return torch.randn(2, n, 3), torch.randn(n), torch.tensor([0, 2])


def test_compact_bad_arguments():
    x, theta, _ = _xti()
    with pytest.raises(ValueError, match="out of range: 5"):
        ops.compact(x, theta, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="out of range: -1"):
        ops.compact(x, theta, torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match="duplicate"):
        ops.compact(x, theta, torch.tensor([1, 3, 1]))
    with pytest.raises(ValueError, match="empty"):
        ops.compact(x, theta, torch.zeros(0, dtype=torch.int64))
    with pytest.raises(TypeError, match="index must be int64"):
        ops.compact(x, theta, torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match=r"index must have shape \[K\]"):
        ops.compact(x, theta, torch.tensor([[0, 2]]))
    with pytest.raises(ValueError, match=r"x must have shape \[B, N, F\]"):
        ops.compact(x[0], theta, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="x must have shape"):
        ops.compact(x[None], theta, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="theta must have shape"):
        ops.compact(x, torch.randn(4), torch.tensor([0, 2]))
    with pytest.raises(TypeError, match="x must be floating point"):
        ops.compact(x.long(), theta, torch.tensor([0, 2]))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        ops.compact(x.numpy(), theta, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="only 5 sensors"):
        ops.compact(x, theta, torch.arange(6))


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


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device (CUDA)")
def test_device_mismatch():
    x, theta, index = _xti()
    with pytest.raises(ValueError, match="one device"):
        ops.compact(x.cuda(), theta, index)
    with pytest.raises(ValueError, match="one device"):
        ops.select_swap(theta.cuda(), torch.ones(5, dtype=torch.bool), 0)
