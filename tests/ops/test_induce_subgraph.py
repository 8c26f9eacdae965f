"""``ops.induce_subgraph``: the C++ kernels (CPU, CUDA) against the reference exactly
(rowptr, col and weight arrays, so edge order is checked) and against the dense slice
``A[idx][:, idx]``; ``opcheck`` and ``torch.compile`` from one sample generator; errors.
Edge weights are small integers so dense sums of duplicates are exact."""

from __future__ import annotations

import pytest
import torch
from graph_cases import (
    DEVICE,
    GRAPHS,
    CSRGraph,
    assert_same_csr,
    check_bipartite,
    check_induce,
    csr_from_edges,
    graphs,
    lib,
    needs_cuda_kernels,
    random_edges,
    to_dev,
)
from harness import backend_fixture, check_compile, check_opcheck, check_values
from hypothesis import given, settings

from dynst_fast import ops
from dynst_fast.ops import reference

SETTINGS = settings(max_examples=60, deadline=None)
backend = backend_fixture(triton=False)


def samples(device: str):
    """``(graph, index)`` of ``ops.induce_subgraph``: self-loops, duplicate edges, an empty
    row, K = 1, K = N, unsorted indices, a graph without edges."""
    g = CSRGraph(
        torch.tensor([0, 3, 3, 6, 7, 9]),
        torch.tensor([2, 0, 3, 4, 2, 2, 1, 0, 4]),
        torch.arange(1.0, 10.0, dtype=torch.float64),
    ).to(device)
    for index in ([4, 0, 2], [3], [4, 3, 2, 1, 0]):
        yield g, torch.tensor(index, device=device)
    empty = CSRGraph(torch.zeros(6, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    yield empty.to(device), torch.tensor([3, 1], device=device)


def test_values(backend):
    check_values(ops.induce_subgraph, reference.induce_subgraph, samples(backend))


def test_opcheck(backend):
    check_opcheck(
        lib.induce_subgraph.default,
        [(g.rowptr, g.col, g.weight, i) for g, i in samples(backend)],
    )


def test_torch_compile(backend):
    def arrays(g, index):
        out = ops.induce_subgraph(g, index)
        return out.rowptr, out.col, out.weight

    check_compile(arrays, samples(backend))


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


def _opcheck_graph():
    g = CSRGraph(
        torch.tensor([0, 3, 3, 6, 7, 9]),
        torch.tensor([2, 0, 3, 4, 2, 2, 1, 0, 4]),
        torch.arange(1.0, 10.0, dtype=torch.float64),
    )
    return g, torch.tensor([4, 0, 2])


def test_opcheck_induce_subgraph_and_bipartite():
    """Fake kernels (data-dependent edge counts) agree with the C++ CPU kernels."""
    g, index = _opcheck_graph()
    torch.library.opcheck(lib.induce_subgraph.default, (g.rowptr, g.col, g.weight, index))
    torch.library.opcheck(lib.bipartite.default, (g.rowptr, g.col, g.weight, index, 5))
    empty = torch.tensor([], dtype=torch.int64)  # a graph without edges
    torch.library.opcheck(
        lib.bipartite.default, (torch.zeros(4, dtype=torch.int64), empty, empty.double(), index, 5)
    )


def test_induce_subgraph_under_torch_compile():
    g, index = _opcheck_graph()

    def fn(rowptr, col, weight, idx):
        rp, c, w = lib.induce_subgraph(rowptr, col, weight, idx)
        rb, cb, wb = lib.bipartite(rowptr, col, weight, idx, 5)
        return rp * 2, c + 1, w.sum() + wb.sum(), rb, cb

    got = torch.compile(fn, fullgraph=True)(g.rowptr, g.col, g.weight, index)
    for u, v in zip(got, fn(g.rowptr, g.col, g.weight, index), strict=True):
        assert torch.equal(u, v)


# --------------------------------------------------------------------------- the CUDA kernels
def _same(a: CSRGraph, b: CSRGraph) -> None:
    assert a.shape == b.shape
    for u, v in ((a.rowptr, b.rowptr), (a.col, b.col), (a.weight, b.weight)):
        assert u.dtype == v.dtype and torch.equal(u.cpu(), v.cpu())


@needs_cuda_kernels
@pytest.mark.parametrize("n", [1, 9, 40, 3000])
@pytest.mark.parametrize("wdtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cuda_induce_and_bipartite_match_cpu_exactly(n, wdtype):
    edges = random_edges(n, n, 8 * n, seed=n)
    graph = csr_from_edges(edges, n, n, torch.float64).to(dtype=wdtype)
    g = torch.Generator().manual_seed(n)
    for k in sorted({1, max(1, n // 3), n}):
        index = torch.randperm(n, generator=g)[:k]
        dev_graph, dev_index = to_dev(graph), index.to(DEVICE)
        sub = ops.induce_subgraph(dev_graph, dev_index)
        bip = ops.bipartite(dev_graph, dev_index)
        assert sub.device == dev_index.device and bip.device == dev_index.device
        _same(sub, ops.induce_subgraph(graph, index))
        _same(bip, ops.bipartite(graph, index))
        dense = graph.to_dense()
        torch.testing.assert_close(sub.to_dense().cpu(), dense[index][:, index], rtol=0, atol=0)
        torch.testing.assert_close(bip.to_dense().cpu(), dense[:, index], rtol=0, atol=0)


@needs_cuda_kernels
def test_cuda_bipartite_rectangular_and_without_edges():
    edges, r, s = GRAPHS["wide"]
    graph = csr_from_edges(edges, r, s)
    index = torch.tensor([6, 0, 3])
    _same(ops.bipartite(to_dev(graph), index.to(DEVICE)), ops.bipartite(graph, index))
    empty = CSRGraph(torch.zeros(5, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    sub = ops.induce_subgraph(to_dev(empty), torch.tensor([3, 1], device=DEVICE))
    assert sub.num_edges == 0 and sub.rowptr.tolist() == [0, 0, 0]
