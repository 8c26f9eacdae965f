"""``ops.patchify_compact``: against python loops over the padded patch grid, the
reference on every backend (values and both gradients), ``opcheck`` and ``torch.compile``
from one sample generator, and its argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from harness import (
    backend_fixture,
    check_compile,
    check_grads,
    check_opcheck,
    check_values,
)

from dynst_fast import ops
from dynst_fast.ops import reference

backend = backend_fixture()


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def loop_patchify(frames: np.ndarray, p: int) -> np.ndarray:
    """Patches row-major over the (bottom/right zero-padded) grid, features (t, c, dy, dx)."""
    b, t, c, h, w = frames.shape
    gh, gw = (h + p - 1) // p, (w + p - 1) // p
    out = np.zeros((b, gh * gw, t * c * p * p), dtype=np.float64)
    for bi in range(b):
        for gy in range(gh):
            for gx in range(gw):
                feats = []
                for ti in range(t):
                    for ci in range(c):
                        for dy in range(p):
                            for dx in range(p):
                                yy, xx = gy * p + dy, gx * p + dx
                                inside = yy < h and xx < w
                                feats.append(float(frames[bi, ti, ci, yy, xx]) if inside else 0.0)
                out[bi, gy * gw + gx] = feats
    return out


def samples(device: str, dtypes=(torch.float64, torch.float32), tiny: bool = True):
    """``(frames, theta, index, p)`` of ``ops.patchify_compact``: padding on both sides,
    p = 1, K = 1, K = N, an unsorted subset, strided frames. The first is the smallest:
    ``gradcheck`` takes one op call per input element, slow under the Triton interpreter."""
    g = torch.Generator().manual_seed(2)
    for dtype in dtypes:
        for h, w, p in [(2, 3, 1)] * tiny + [(5, 7, 2), (4, 6, 1), (6, 6, 3)]:
            frames = torch.randn(2, 2, 3, w, h, generator=g, dtype=dtype).transpose(3, 4)
            n = -(-h // p) * -(-w // p)
            theta = torch.randn(n, generator=g, dtype=dtype).to(device)
            for index in (
                [n - 1],
                list(range(n)),
                torch.randperm(n, generator=g)[: max(1, n // 3)],
            ):
                yield frames.to(device), theta, torch.as_tensor(index, device=device), p


def schema_samples(device: str):
    for frames, theta, index, p in samples(device, dtypes=(torch.float64,), tiny=False):
        yield frames.clone().requires_grad_(), theta.clone().requires_grad_(), index, p


def backward_samples(device: str):
    for frames, theta, index, p in samples(device, dtypes=(torch.float64,), tiny=False):
        b, t, c = frames.shape[:3]
        grad = torch.randn(b, index.numel(), t * c * p * p, dtype=frames.dtype, device=device)
        yield grad, frames, theta, index, p, True
        yield grad, frames, theta, index, p, False


def test_values(backend):
    check_values(ops.patchify_compact, reference.patchify_compact, samples(backend))


def test_gradients(backend):
    check_grads(ops.patchify_compact, reference.patchify_compact, samples(backend), diff=(0, 1))


def test_opcheck(backend):
    check_opcheck(torch.ops.dynst_fast.patchify_compact.default, schema_samples(backend))
    check_opcheck(torch.ops.dynst_fast.patchify_compact_backward.default, backward_samples(backend))


def test_torch_compile(backend):
    check_compile(ops.patchify_compact, samples(backend))


# --------------------------------------------------------------------------- against loops
@pytest.mark.parametrize(
    ("h", "w", "p", "t", "c"),
    [(33, 49, 4, 2, 1), (5, 7, 2, 2, 3), (4, 6, 1, 1, 2), (6, 6, 3, 3, 1)],
)
def test_patchify_compact_matches_loops(h, w, p, t, c):
    rng = _rng(h * w + p)
    frames = rng.standard_normal((2, t, c, h, w))
    n = ((h + p - 1) // p) * ((w + p - 1) // p)
    theta = rng.standard_normal(n)
    patches = loop_patchify(frames, p)
    ft, tt = torch.tensor(frames), torch.tensor(theta)
    index_sets = [
        [int(rng.integers(n))],  # K = 1
        list(range(n)),  # K = N
        [int(i) for i in rng.permutation(n)[: max(1, n // 3)]],  # unsorted subset
    ]
    for index in index_sets:
        out = ops.patchify_compact(ft, tt, torch.tensor(index), p)
        assert out.shape == (2, len(index), t * c * p * p)
        expect = np.stack([patches[:, i] * theta[i] for i in index], axis=1)
        np.testing.assert_allclose(out.numpy(), expect, rtol=1e-12, atol=0)


def test_patchify_compact_padding_is_zero():
    # 3x3 with p = 2: the last patch holds one real pixel and three padded zeros.
    frames = torch.arange(1.0, 10.0, dtype=torch.float64).reshape(1, 1, 1, 3, 3)
    out = ops.patchify_compact(frames, torch.ones(4, dtype=torch.float64), torch.arange(4), 2)
    expect = [[1, 2, 4, 5], [3, 0, 6, 0], [7, 8, 0, 0], [9, 0, 0, 0]]
    np.testing.assert_array_equal(out[0].numpy(), np.array(expect, dtype=np.float64))


def test_patchify_compact_gradcheck():
    rng = _rng(9)
    frames = torch.tensor(rng.standard_normal((1, 2, 1, 3, 5)), requires_grad=True)
    theta = torch.tensor(rng.standard_normal(6), requires_grad=True)  # 2x3 patches, p = 2
    index = torch.tensor([5, 0, 2])
    assert torch.autograd.gradcheck(
        lambda f, t: ops.patchify_compact(f, t, index, 2), (frames, theta)
    )


# --------------------------------------------------------------------------- backends
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


# --------------------------------------------------------------------------- bad arguments
def test_patchify_compact_bad_arguments():
    frames = torch.randn(1, 2, 1, 5, 7)
    theta, index = torch.randn(12), torch.tensor([0, 3])  # 3x4 patches for p = 2
    assert ops.patchify_compact(frames, theta, index, 2).shape == (1, 2, 8)
    with pytest.raises(ValueError, match="patch size p must be a positive int"):
        ops.patchify_compact(frames, theta, index, 0)
    with pytest.raises(ValueError, match="patch size p must be a positive int"):
        ops.patchify_compact(frames, theta, index, -1)
    with pytest.raises(ValueError, match="smaller than the patch size 6"):
        ops.patchify_compact(frames, torch.randn(2), torch.tensor([0]), 6)
    with pytest.raises(ValueError, match="theta must have one entry per patch"):
        ops.patchify_compact(frames, torch.randn(11), index, 2)
    with pytest.raises(ValueError, match="frames must have shape"):
        ops.patchify_compact(frames[0], theta, index, 2)
    with pytest.raises(ValueError, match="out of range: 12"):
        ops.patchify_compact(frames, theta, torch.tensor([12]), 2)
    with pytest.raises(ValueError, match="empty"):
        ops.patchify_compact(frames, theta, torch.zeros(0, dtype=torch.int64), 2)
