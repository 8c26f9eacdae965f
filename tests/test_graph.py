"""CSRGraph: constructors (dense, PyG edge_index, scipy.sparse), the cached transpose,
state dicts, validation. The graph ops on it are tested in tests/ops/."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from graph_cases import assert_same_csr

from dynst_fast.graph import CSRGraph


@pytest.mark.parametrize("shape", [(1, 1), (5, 5), (4, 7), (7, 3)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_from_dense_round_trip(shape, dtype):
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(shape, generator=gen, dtype=dtype)
    a[a < 0.5] = 0
    g = CSRGraph.from_dense(a)
    assert g.shape == shape and g.weight.dtype == dtype
    assert g.num_edges == int((a != 0).sum())
    assert torch.equal(g.to_dense(), a)
    assert torch.equal(CSRGraph.from_dense(a.numpy()).to_dense(), a)


def test_from_dense_int_and_errors():
    g = CSRGraph.from_dense(torch.tensor([[0, 2], [1, 0]]))
    assert g.weight.dtype == torch.float32
    assert torch.equal(g.to_dense(), torch.tensor([[0.0, 2.0], [1.0, 0.0]]))
    with pytest.raises(ValueError, match="2-D"):
        CSRGraph.from_dense(torch.ones(3))
    with pytest.raises(ValueError, match="NaN or inf"):
        CSRGraph.from_dense(torch.tensor([[0.0, float("nan")], [1.0, 0.0]]))


def test_from_edge_index_pyg_convention():
    # source -> target: 0 -> 1 (w 1), 2 -> 1 (w 2), 1 -> 0 (w 3), 2 -> 2 (w 4), 0 -> 1 (w 5)
    ei = torch.tensor([[0, 2, 1, 2, 0], [1, 1, 0, 2, 1]])
    w = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    g = CSRGraph.from_edge_index(ei, 4, w)
    assert g.shape == (4, 4)
    assert torch.equal(g.rowptr, torch.tensor([0, 1, 4, 5, 5]))  # row = target
    assert torch.equal(g.col, torch.tensor([1, 0, 2, 0, 2]))  # col = source, order kept
    assert torch.equal(g.weight, torch.tensor([3.0, 1.0, 2.0, 5.0, 4.0]))
    dense = torch.zeros(4, 4)
    dense.index_put_((ei[1], ei[0]), w, accumulate=True)  # A[target, source]
    assert torch.equal(g.to_dense(), dense)
    unweighted = CSRGraph.from_edge_index(ei, 4)
    assert unweighted.weight.dtype == torch.float32
    assert torch.equal(unweighted.weight, torch.ones(5))
    empty = CSRGraph.from_edge_index(torch.zeros(2, 0, dtype=torch.int64), 3)
    assert empty.num_edges == 0 and torch.equal(empty.to_dense(), torch.zeros(3, 3))


def test_from_edge_index_errors():
    with pytest.raises(ValueError, match=r"\[2, E\]"):
        CSRGraph.from_edge_index(torch.zeros(3, 2, dtype=torch.int64), 3)
    with pytest.raises(TypeError, match="integer"):
        CSRGraph.from_edge_index(torch.zeros(2, 2), 3)
    with pytest.raises(ValueError, match="out of range"):
        CSRGraph.from_edge_index(torch.tensor([[0, 3], [1, 1]]), 3)
    with pytest.raises(ValueError, match="weight must have shape"):
        CSRGraph.from_edge_index(torch.tensor([[0, 1], [1, 1]]), 3, torch.ones(3))


def test_from_scipy():
    rng = np.random.default_rng(0)
    m = sp.random(6, 9, density=0.3, random_state=rng, format="coo", dtype=np.float64)
    g = CSRGraph.from_scipy(m)
    assert g.shape == (6, 9) and g.weight.dtype == torch.float64
    assert torch.equal(g.to_dense(), torch.from_numpy(m.toarray()))
    gi = CSRGraph.from_scipy(sp.csr_matrix(np.array([[0, 1], [2, 0]], dtype=np.int64)))
    assert gi.weight.dtype == torch.float32
    assert torch.equal(gi.to_dense(), torch.tensor([[0.0, 1.0], [2.0, 0.0]]))
    with pytest.raises(TypeError, match="scipy.sparse"):
        CSRGraph.from_scipy(np.eye(3))


@pytest.mark.parametrize("shape", [(5, 5), (3, 8)])
def test_transpose_cached_and_correct(shape):
    gen = torch.Generator().manual_seed(1)
    a = torch.randint(0, 3, shape, generator=gen).to(torch.float64)
    g = CSRGraph.from_dense(a)
    t = g.transpose()
    assert t is g.transpose()  # cached
    assert t.transpose() is g
    assert t.shape == (shape[1], shape[0])
    t.validate()
    assert torch.equal(t.to_dense(), a.T)


def test_state_dict_and_to():
    g = CSRGraph.from_dense(torch.tensor([[0.0, 2.0], [1.0, 3.0]]))
    h = CSRGraph.from_state_dict(g.state_dict())
    assert_same_csr(h, g)
    assert g.to(dtype=torch.float64).weight.dtype == torch.float64


def _raw(rowptr, col, weight=None, num_cols=3):
    w = torch.ones(len(col)) if weight is None else torch.as_tensor(weight, dtype=torch.float32)
    return CSRGraph(torch.tensor(rowptr), torch.tensor(col, dtype=torch.int64), w, num_cols)


def test_validate_errors():
    _raw([0, 1, 3, 3], [0, 1, 2])  # valid
    with pytest.raises(ValueError, match="not monotone"):
        _raw([0, 2, 1, 3], [0, 1, 2])
    with pytest.raises(ValueError, match="column index out of range"):
        _raw([0, 1, 3, 3], [0, 1, 3])
    with pytest.raises(ValueError, match="column index out of range"):
        _raw([0, 1, 3, 3], [0, -1, 2])
    with pytest.raises(ValueError, match=r"rowptr\[-1\] = 2 but there are 3 edges"):
        _raw([0, 1, 2, 2], [0, 1, 2])
    with pytest.raises(ValueError, match=r"rowptr\[0\] must be 0"):
        _raw([1, 1, 3, 3], [0, 1, 2])
    with pytest.raises(ValueError, match="weight has 2 entries but col has 3"):
        _raw([0, 1, 3, 3], [0, 1, 2], [1.0, 2.0])
    with pytest.raises(ValueError, match="finite"):
        _raw([0, 1, 3, 3], [0, 1, 2], [1.0, float("inf"), 2.0])
    g = _raw([0, 1, 3, 3], [0, 1, 2])
    g.col[0] = 7  # corrupt after construction: validate() catches it
    with pytest.raises(ValueError, match="out of range"):
        g.validate()
