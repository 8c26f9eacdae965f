"""CSRGraph and the graph ops ``induce_subgraph`` / ``bipartite`` (C++ CPU kernels).

The C++ path is compared with the PyTorch reference exactly (rowptr, col and weight
arrays, so edge order is checked) and with the dense slices ``A[idx][:, idx]`` and
``A[:, idx]``. Edge weights are small integers so dense sums of duplicates are exact.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dynst_fast import _extension, ops
from dynst_fast.graph import CSRGraph
from dynst_fast.ops import reference

SETTINGS = settings(max_examples=60, deadline=None)


# ----------------------------------------------------------------- helpers
def csr_from_triplets(rows, cols, weights, num_rows, num_cols, dtype=torch.float32) -> CSRGraph:
    """CSR with the edges of each row in the order given (stable sort by row)."""
    rows = torch.as_tensor(rows, dtype=torch.int64).reshape(-1)
    cols = torch.as_tensor(cols, dtype=torch.int64).reshape(-1)
    w = torch.as_tensor(weights, dtype=dtype).reshape(-1)
    order = torch.sort(rows, stable=True).indices
    rowptr = torch.zeros(num_rows + 1, dtype=torch.int64)
    rowptr[1:] = torch.cumsum(torch.bincount(rows, minlength=num_rows), 0)
    return CSRGraph(rowptr, cols[order], w[order], num_cols=num_cols)


def assert_same_csr(a: CSRGraph, b: CSRGraph) -> None:
    assert a.shape == b.shape
    assert a.rowptr.dtype == a.col.dtype == torch.int64
    assert a.weight.dtype == b.weight.dtype
    assert torch.equal(a.rowptr, b.rowptr)
    assert torch.equal(a.col, b.col)
    assert torch.equal(a.weight, b.weight)


def check_induce(g: CSRGraph, index: torch.Tensor) -> CSRGraph:
    out = ops.induce_subgraph(g, index)
    out.validate()
    assert out.shape == (index.numel(), index.numel())
    assert_same_csr(out, reference.induce_subgraph(g, index.to(torch.int64)))
    dense = g.to_dense()
    idx = index.to(torch.int64)
    torch.testing.assert_close(out.to_dense(), dense[idx][:, idx], rtol=0, atol=0)
    return out


def check_bipartite(g: CSRGraph, index: torch.Tensor) -> CSRGraph:
    out = ops.bipartite(g, index)
    out.validate()
    assert out.shape == (g.num_rows, index.numel())
    assert_same_csr(out, reference.bipartite(g, index.to(torch.int64)))
    idx = index.to(torch.int64)
    torch.testing.assert_close(out.to_dense(), g.to_dense()[:, idx], rtol=0, atol=0)
    return out


@st.composite
def graphs(draw, square: bool = True):
    """Random CSR graphs with isolated nodes, self-loops, duplicate edges, empty rows,
    plus an unsorted index of K >= 1 distinct columns."""
    num_cols = draw(st.integers(1, 12))
    num_rows = num_cols if square else draw(st.integers(1, 12))
    edges = draw(
        st.lists(
            st.tuples(
                st.integers(0, num_rows - 1), st.integers(0, num_cols - 1), st.integers(1, 9)
            ),
            max_size=40,
        )
    )
    edges += draw(st.lists(st.sampled_from(edges), max_size=5)) if edges else []  # duplicates
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    rows = [e[0] for e in edges]
    cols = [e[1] for e in edges]
    ws = [float(e[2]) for e in edges]
    if square:  # exercise the PyG constructor too: row 0 = source, row 1 = target
        ei = torch.tensor([cols, rows], dtype=torch.int64).reshape(2, -1)
        g = CSRGraph.from_edge_index(ei, num_cols, torch.tensor(ws, dtype=dtype))
    else:
        g = csr_from_triplets(rows, cols, ws, num_rows, num_cols, dtype)
    perm = draw(st.permutations(range(num_cols)))
    k = draw(st.integers(1, num_cols))
    return g, torch.tensor(perm[:k], dtype=torch.int64)


# --------------------------------------------------------------- extension
def test_extension_loaded():
    assert _extension.cpp_ops() is not None, _extension.extension_error()


# ---------------------------------------------------------------- CSRGraph
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


# ------------------------------------------------------------ graph ops
def test_stable_edge_order_exact():
    # rows (targets): 0 <- 2, 0, 3 | 1 <- (none) | 2 <- 4, 2, 2 (duplicate) | 3 <- 1 | 4 <- 0, 4
    g = CSRGraph(
        torch.tensor([0, 3, 3, 6, 7, 9]),
        torch.tensor([2, 0, 3, 4, 2, 2, 1, 0, 4]),
        torch.arange(1.0, 10.0),
    )
    index = torch.tensor([4, 0, 2])  # unsorted: node 4 -> 0, 0 -> 1, 2 -> 2
    sub = check_induce(g, index)
    assert sub.rowptr.tolist() == [0, 2, 4, 7]
    assert sub.col.tolist() == [1, 0, 2, 1, 0, 2, 2]
    assert sub.weight.tolist() == [8.0, 9.0, 1.0, 2.0, 4.0, 5.0, 6.0]
    bip = check_bipartite(g, index)
    assert bip.rowptr.tolist() == [0, 2, 2, 5, 5, 7]
    assert bip.col.tolist() == [2, 1, 0, 2, 2, 1, 0]
    assert bip.weight.tolist() == [1.0, 2.0, 4.0, 5.0, 6.0, 8.0, 9.0]


@SETTINGS
@given(graphs(square=True))
def test_induce_subgraph_random(case):
    g, index = case
    check_induce(g, index)


@SETTINGS
@given(graphs(square=True))
def test_bipartite_random_square(case):
    g, index = case
    check_bipartite(g, index)


@SETTINGS
@given(graphs(square=False))
def test_bipartite_random_rectangular(case):
    g, index = case
    check_bipartite(g, index)


@pytest.mark.parametrize("self_loop", [True, False])
def test_single_node(self_loop):
    g = CSRGraph.from_dense(torch.tensor([[2.5 if self_loop else 0.0]], dtype=torch.float64))
    index = torch.tensor([0])
    sub = check_induce(g, index)
    bip = check_bipartite(g, index)
    assert sub.num_edges == bip.num_edges == int(self_loop)


def test_k_equals_n_and_k_one():
    gen = torch.Generator().manual_seed(2)
    a = torch.randint(0, 4, (9, 9), generator=gen).float()
    a[3] = 0  # empty row
    a[:, 5] = 0  # node 5 has no out-edges
    g = CSRGraph.from_dense(a)
    perm = torch.randperm(9, generator=gen)
    check_induce(g, perm)  # K = N, relabelled
    check_bipartite(g, perm)
    ident = check_induce(g, torch.arange(9))
    assert_same_csr(ident, g)  # identity index gives the graph back
    for i in range(9):  # K = 1
        check_induce(g, torch.tensor([i]))
        check_bipartite(g, torch.tensor([i]))


def test_graph_without_edges():
    g = CSRGraph(torch.zeros(6, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    sub = check_induce(g, torch.tensor([3, 1]))
    assert sub.num_edges == 0 and sub.rowptr.tolist() == [0, 0, 0]
    bip = check_bipartite(g, torch.tensor([3, 1]))
    assert bip.num_edges == 0 and bip.rowptr.tolist() == [0] * 6


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_weight_dtypes(dtype):
    gen = torch.Generator().manual_seed(3)
    a = (torch.randint(0, 3, (10, 10), generator=gen)).to(dtype)
    g = CSRGraph.from_dense(a)
    index = torch.tensor([7, 2, 9, 0])
    assert check_induce(g, index).weight.dtype == dtype
    assert check_bipartite(g, index).weight.dtype == dtype


def test_int32_index_and_large_graph():
    gen = torch.Generator().manual_seed(4)
    n, e = 3000, 30000  # enough rows for several parallel tasks
    ei = torch.randint(0, n, (2, e), generator=gen)
    g = CSRGraph.from_edge_index(ei, n, torch.randint(1, 9, (e,), generator=gen).float())
    index = torch.randperm(n, generator=gen)[:1100]
    check_bipartite(g, index)
    check_bipartite(g, index.to(torch.int32))
    sub = ops.induce_subgraph(g, index.to(torch.int32))
    torch.testing.assert_close(sub.to_dense(), g.to_dense()[index][:, index], rtol=0, atol=0)


def test_cpp_ops_match_reference_directly():
    lib = _extension.cpp_ops()
    assert lib is not None
    g = CSRGraph.from_dense(torch.tensor([[1.0, 0, 2], [0, 0, 3], [4, 5, 6]]))
    index = torch.tensor([2, 0])
    rp, col, w = lib.induce_subgraph(g.rowptr, g.col, g.weight, index)
    assert_same_csr(CSRGraph(rp, col, w, 2), reference.induce_subgraph(g, index))
    rp, col, w = lib.bipartite(g.rowptr, g.col, g.weight, index, 3)
    assert_same_csr(CSRGraph(rp, col, w, 2), reference.bipartite(g, index))


@pytest.mark.parametrize("op", [ops.induce_subgraph, ops.bipartite])
def test_bad_index(op):
    g = CSRGraph.from_dense(torch.eye(4))
    with pytest.raises(ValueError, match="duplicate"):
        op(g, torch.tensor([1, 2, 1]))
    with pytest.raises(ValueError, match="out of range"):
        op(g, torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="out of range"):
        op(g, torch.tensor([-1]))
    with pytest.raises(ValueError, match="empty"):
        op(g, torch.tensor([], dtype=torch.int64))
    with pytest.raises(ValueError, match="1-D"):
        op(g, torch.tensor([[0, 1]]))
    with pytest.raises(TypeError, match="int64 or int32"):
        op(g, torch.tensor([0.0, 1.0]))
    with pytest.raises(TypeError, match="CSRGraph"):
        op(torch.eye(4), torch.tensor([0]))


def test_induce_subgraph_needs_square_graph():
    g = CSRGraph.from_dense(torch.ones(2, 3))
    with pytest.raises(ValueError, match="square"):
        ops.induce_subgraph(g, torch.tensor([0, 1]))
    check_bipartite(g, torch.tensor([2, 0]))  # bipartite is fine with it


def test_cpp_ops_reject_bad_input():
    """The C++ kernels check their inputs themselves (called without the Python checks)."""
    lib = _extension.cpp_ops()
    assert lib is not None
    rp, col, w = torch.tensor([0, 1, 3, 3]), torch.tensor([1, 0, 2]), torch.ones(3)
    with pytest.raises(RuntimeError, match="duplicate"):
        lib.induce_subgraph(rp, col, w, torch.tensor([0, 0]))
    with pytest.raises(RuntimeError, match="out of range"):
        lib.induce_subgraph(rp, col, w, torch.tensor([3]))
    with pytest.raises(RuntimeError, match="out of range"):
        lib.bipartite(rp, col, w, torch.tensor([5]), 3)
    with pytest.raises(RuntimeError, match="int64"):
        lib.induce_subgraph(rp, col, w, torch.tensor([0], dtype=torch.int32))
    with pytest.raises(RuntimeError, match="int64"):
        lib.bipartite(rp.int(), col, w, torch.tensor([0]), 3)
    with pytest.raises(RuntimeError, match="floating point"):
        lib.induce_subgraph(rp, col, torch.ones(3, dtype=torch.int64), torch.tensor([0]))
    with pytest.raises(RuntimeError, match="1-D"):
        lib.induce_subgraph(rp, col, w, torch.tensor([[0]]))
    with pytest.raises(RuntimeError, match="weight has 2 entries"):
        lib.induce_subgraph(rp, col, torch.ones(2), torch.tensor([0]))
    with pytest.raises(RuntimeError, match="rowptr"):
        lib.induce_subgraph(torch.tensor([], dtype=torch.int64), col, w, torch.tensor([0]))
    with pytest.raises(RuntimeError, match=r"rowptr\[-1\]"):
        lib.induce_subgraph(torch.tensor([0, 1, 2]), col, w, torch.tensor([0]))
    with pytest.raises(RuntimeError, match="non-decreasing"):
        lib.induce_subgraph(torch.tensor([0, 3, 1, 3]), col, w, torch.tensor([0, 1]))
    with pytest.raises(RuntimeError, match=r"col\[2\] = 9"):
        lib.bipartite(rp, torch.tensor([1, 0, 9]), w, torch.tensor([0]), 3)


# ---------------------------------------------------- opcheck, compile, dispatch
def _opcheck_graph():
    g = CSRGraph(
        torch.tensor([0, 3, 3, 6, 7, 9]),
        torch.tensor([2, 0, 3, 4, 2, 2, 1, 0, 4]),
        torch.arange(1.0, 10.0, dtype=torch.float64),
    )
    return g, torch.tensor([4, 0, 2])


def test_opcheck_induce_subgraph_and_bipartite():
    """Fake kernels (data-dependent edge counts) agree with the C++ CPU kernels."""
    lib = ops._cpp_graph_ops()
    g, index = _opcheck_graph()
    torch.library.opcheck(lib.induce_subgraph.default, (g.rowptr, g.col, g.weight, index))
    torch.library.opcheck(lib.bipartite.default, (g.rowptr, g.col, g.weight, index, 5))
    empty = torch.tensor([], dtype=torch.int64)  # a graph without edges
    torch.library.opcheck(
        lib.bipartite.default, (torch.zeros(4, dtype=torch.int64), empty, empty.double(), index, 5)
    )


def test_induce_subgraph_under_torch_compile():
    lib = ops._cpp_graph_ops()
    g, index = _opcheck_graph()

    def fn(rowptr, col, weight, idx):
        rp, c, w = lib.induce_subgraph(rowptr, col, weight, idx)
        rb, cb, wb = lib.bipartite(rowptr, col, weight, idx, 5)
        return rp * 2, c + 1, w.sum() + wb.sum(), rb, cb

    got = torch.compile(fn, fullgraph=True)(g.rowptr, g.col, g.weight, index)
    for u, v in zip(got, fn(g.rowptr, g.col, g.weight, index), strict=True):
        assert torch.equal(u, v)


def test_cuda_dispatch_choice(monkeypatch):
    """CUDA tensors go to the CUDA kernels only when the build has them; otherwise the
    ops fall back to the PyTorch reference and warn once, saying how to rebuild."""
    ops._cpp_graph_ops()
    cuda = torch.device("cuda")
    assert ops._has_graph_kernel(torch.device("cpu"), "op")
    assert not ops._has_graph_kernel(torch.device("meta"), "op")
    monkeypatch.setattr(ops, "_GRAPH_OPS_CUDA", True)
    assert ops._has_graph_kernel(cuda, "op")
    monkeypatch.setattr(ops, "_GRAPH_OPS_CUDA", False)
    monkeypatch.setattr(ops, "_WARNED_NO_CUDA_KERNELS", False)
    with pytest.warns(RuntimeWarning, match="built without CUDA kernels.*DYNST_WITH_CUDA=1"):
        assert not ops._has_graph_kernel(cuda, "gated_spmm")
    with warnings.catch_warnings():  # warned once only
        warnings.simplefilter("error")
        assert not ops._has_graph_kernel(cuda, "gated_spmm")
    if torch.version.cuda is None:  # a CPU torch can never have built them
        assert not _extension.cuda_kernels_built()
