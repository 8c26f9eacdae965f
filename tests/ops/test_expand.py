"""``ops.expand``: against python loops, the reference on every backend, gradients (and
double backward), ``opcheck`` and ``torch.compile`` from one sample generator, and its
argument errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from harness import (
    FAST,
    backend_fixture,
    check_compile,
    check_grads,
    check_opcheck,
    check_values,
)
from hypothesis import given
from hypothesis import strategies as st

from dynst_fast import ops
from dynst_fast.ops import reference

backend = backend_fixture()


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def loop_expand(y: np.ndarray, index: list[int], n: int, fill: float) -> np.ndarray:
    b, _, f = y.shape
    out = np.full((b, n, f), fill, dtype=np.float64)
    for bi in range(b):
        for k, i in enumerate(index):
            for fi in range(f):
                out[bi, i, fi] = float(y[bi, k, fi])
    return out


def samples(device: str, dtypes=(torch.float64, torch.float32)):
    """``(y, index, n, fill)`` of ``ops.expand``: K = N = 1, K = 1, K = N unsorted, a
    strided y, a non-zero fill."""
    g = torch.Generator().manual_seed(1)
    for dtype in dtypes:
        for b, n, f, index, fill in [
            (2, 1, 1, [0], 0.0),
            (2, 9, 3, [4], -1.5),
            (3, 9, 5, [8, 0, 3, 7, 1, 2, 6, 5, 4], 0.25),
            (1, 300, 2, list(range(0, 300, 7)), 0.0),
        ]:
            y = torch.randn(b, len(index), f, generator=g, dtype=dtype).to(device)
            yield y, torch.tensor(index, device=device), n, fill
        y = torch.randn(3, 7, 4, generator=g, dtype=dtype).to(device).transpose(1, 2)
        yield y, torch.tensor([10, 3, 0, 6], device=device), 11, 2.0


def schema_samples(device: str):
    for y, index, n, fill in samples(device, dtypes=(torch.float64,)):
        yield y.clone().requires_grad_(), index, n, fill
        yield y, index, n, fill


def test_values(backend):
    check_values(ops.expand, reference.expand, samples(backend))


def test_gradients(backend):
    check_grads(ops.expand, reference.expand, samples(backend), diff=(0,))


def test_opcheck(backend):
    check_opcheck(torch.ops.dynst_fast.expand.default, schema_samples(backend))


def test_torch_compile(backend):
    check_compile(ops.expand, samples(backend))


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
@given(compact_case(), st.sampled_from([0.0, -1.5, 3.0]))
def test_expand_matches_loops(case, fill):
    b, n, f, index, seed = case
    y = _rng(seed).standard_normal((b, len(index), f))
    out = ops.expand(torch.tensor(y), torch.tensor(index), n, fill)
    assert out.shape == (b, n, f)
    np.testing.assert_array_equal(out.numpy(), loop_expand(y, index, n, fill))


def test_expand_non_contiguous_y():
    rng = _rng(4)
    y = torch.tensor(rng.standard_normal((2, 3, 4))).transpose(1, 2)  # [2, 4, 3]
    index = [5, 1, 2, 0]
    out = ops.expand(y, torch.tensor(index), 7, -2.0)
    np.testing.assert_array_equal(out.numpy(), loop_expand(y.numpy(), index, 7, -2.0))


def test_expand_gradcheck():
    rng = _rng(8)
    y = torch.tensor(rng.standard_normal((2, 3, 5)), requires_grad=True)
    index = torch.tensor([6, 0, 2])
    assert torch.autograd.gradcheck(lambda a: ops.expand(a, index, 7, 0.5), (y,))


def test_expand_bad_arguments():
    y = torch.randn(2, 2, 3)
    with pytest.raises(ValueError, match="out of range"):
        ops.expand(y, torch.tensor([0, 4]), 4)
    with pytest.raises(ValueError, match="duplicate"):
        ops.expand(y, torch.tensor([1, 1]), 4)
    with pytest.raises(ValueError, match="index has 3 entries"):
        ops.expand(y, torch.tensor([0, 1, 2]), 4)
    with pytest.raises(ValueError, match="n must be a positive int"):
        ops.expand(y, torch.tensor([0, 1]), 0)
    with pytest.raises(ValueError, match="y must have shape"):
        ops.expand(y[0], torch.tensor([0, 1]), 4)
    with pytest.raises(TypeError, match="index must be int64"):
        ops.expand(y, torch.tensor([0.0, 1.0]), 4)
