"""The CUDA kernels of the graph ops (csrc/cuda) against dense computations and the
C++ CPU kernels. Skipped unless a GPU is present and the extension was built with
its CUDA kernels.

``DYNST_CUDA_TEST_DEVICE=cpu`` runs these same tests on CPU (where they exercise the
CPU kernels, and the PyTorch reference for float16/bfloat16): only to check the
tests themselves on a machine without a GPU.
"""

from __future__ import annotations

import os

import pytest
import torch
from test_gated_spmm import (
    GRAPHS,
    csr_from_edges,
    dense_from_edges,
    dense_gated,
    dense_grads,
    make_inputs,
    random_edges,
)

from dynst_fast import _extension, ops
from dynst_fast.graph import CSRGraph

DEVICE = torch.device(os.environ.get("DYNST_CUDA_TEST_DEVICE", "cuda"))
ON_CUDA = DEVICE.type == "cuda"
lib = ops._cpp_graph_ops()
pytestmark = pytest.mark.skipif(
    lib is None
    or (ON_CUDA and not (torch.cuda.is_available() and _extension.cuda_kernels_built())),
    reason="needs a GPU and dynst_fast._C built with its CUDA kernels",
)

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# F values cover: groups of 1..32 lanes, one or two vectors per lane, chunked rows, the
# vector path (F a multiple of 16 bytes) and the scalar one.
FEATURES = [1, 3, 8, 13, 64, 70, 160, 300, 1024]


def tol(dtype):
    t = {torch.float32: 1e-4, torch.float64: 1e-10, torch.float16: 2e-2, torch.bfloat16: 8e-2}
    return {"rtol": t[dtype], "atol": t[dtype]}


def to_dev(graph: CSRGraph) -> CSRGraph:
    return graph.to(DEVICE)


def kernel_dtype(dtype) -> bool:
    """Whether the kernel of DEVICE takes x of this dtype (else the reference runs)."""
    return ON_CUDA or dtype in (torch.float32, torch.float64)


# --------------------------------------------------------------------------- forward
@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("f", FEATURES)
def test_forward_dense(name, dtype, f):
    edges, r, s = GRAPHS[name]
    graph = to_dev(csr_from_edges(edges, r, s, torch.float32))
    a = dense_from_edges(edges, r, s)
    x, gate = make_inputs(s, 3, f, torch.float64, seed=f)
    xd, gd = x.to(DEVICE, dtype), gate.to(DEVICE, dtype)
    out = ops.gated_spmm(graph, xd, gd)
    assert out.shape == (3, r, f) and out.dtype == dtype and out.device == xd.device
    expect = dense_gated(a, xd.cpu(), gd.cpu())  # of the rounded inputs
    torch.testing.assert_close(out.cpu().double(), expect, **tol(dtype))
    if kernel_dtype(dtype):
        raw = lib.gated_spmm(graph.rowptr, graph.col, graph.weight, xd, gd, r)
        assert torch.equal(raw, out)


@pytest.mark.parametrize(("rows", "cols"), [(57, 23), (9, 300), (3000, 3000)])
@pytest.mark.parametrize(("b", "f"), [(1, 37), (4, 64), (2, 128)])
def test_forward_matches_cpu_kernel(rows, cols, b, f):
    edges = random_edges(rows, cols, 6 * rows, seed=rows + f)
    graph = csr_from_edges(edges, rows, cols, torch.float32)
    x, gate = make_inputs(cols, b, f, torch.float32, seed=b)
    expect = ops.gated_spmm(graph, x, gate)
    got = ops.gated_spmm(to_dev(graph), x.to(DEVICE), gate.to(DEVICE))
    torch.testing.assert_close(got.cpu(), expect, rtol=1e-5, atol=1e-5)


def test_large_graph_many_blocks():
    """10^5 rows, B = 2: many blocks and grid-stride iterations."""
    g = torch.Generator().manual_seed(0)
    n, e = 100_000, 800_000
    ei = torch.randint(0, n, (2, e), generator=g)
    graph = CSRGraph.from_edge_index(ei, n, torch.rand(e, generator=g))
    x = torch.randn(2, n, 16, generator=g)
    gate = torch.rand(n, generator=g)
    expect = ops.gated_spmm(graph, x, gate)
    got = ops.gated_spmm(to_dev(graph), x.to(DEVICE), gate.to(DEVICE))
    torch.testing.assert_close(got.cpu(), expect, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_strided_and_misaligned_x(dtype):
    """x read in place through its strides: transposed, sliced, expanded, offset."""
    edges, r, s = GRAPHS["tall"]
    graph = to_dev(csr_from_edges(edges, r, s))
    a = dense_from_edges(edges, r, s)
    gate = torch.rand(s, dtype=torch.float64).to(DEVICE, dtype)
    base = torch.randn(2, 40, s + 1, dtype=torch.float64).to(DEVICE, dtype)
    xs = {
        "transposed": base[:, :, :s].transpose(1, 2),  # [2, s, 40], F stride s + 1
        "sliced": base[:, :, :s].transpose(1, 2)[:, :, ::2],
        "expanded": base[:1, :, :s].transpose(1, 2).expand(3, s, 40),  # batch stride 0
        "offset": torch.randn(2 * s * 32 + 1, dtype=torch.float64)
        .to(DEVICE, dtype)[1:]
        .view(2, s, 32),  # 16-byte misaligned start
        "permuted": base.permute(0, 2, 1).contiguous().permute(0, 1, 2)[:, :s],
    }
    for name, x in xs.items():
        out = ops.gated_spmm(graph, x, gate)
        expect = dense_gated(a, x.cpu(), gate.cpu())
        torch.testing.assert_close(out.cpu().double(), expect, **tol(dtype), msg=name)


# -------------------------------------------------------------------------- backward
@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("f", [1, 13, 64, 70])
def test_grads_dense(name, dtype, f):
    edges, r, s = GRAPHS[name]
    graph = to_dev(csr_from_edges(edges, r, s, torch.float32))
    a = dense_from_edges(edges, r, s)
    x, gate = make_inputs(s, 2, f, torch.float64, seed=7)
    xd, gd = x.to(DEVICE, dtype), gate.to(DEVICE, dtype)
    grad_out = torch.randn(2, r, f, dtype=torch.float64).to(DEVICE, dtype)
    gx_exp, gg_exp = dense_grads(a, xd.cpu(), gd.cpu(), grad_out.cpu())
    xg, gg = xd.clone().requires_grad_(), gd.clone().requires_grad_()
    out = ops.gated_spmm(graph, xg, gg)
    if kernel_dtype(dtype):
        assert "gated_spmm_tr" in type(out.grad_fn).__name__
    out.backward(grad_out)
    assert xg.grad.dtype == dtype and gg.grad.dtype == dtype
    t = tol(dtype)
    torch.testing.assert_close(xg.grad.cpu().double(), gx_exp, **t)
    # grad_gate sums B * F products: scale the absolute tolerance with it
    torch.testing.assert_close(
        gg.grad.cpu().double(), gg_exp, rtol=t["rtol"], atol=t["atol"] * 2 * f
    )


def test_grads_match_cpu_kernel_and_strided_grad_out():
    edges = random_edges(500, 400, 4000, seed=3)
    graph = csr_from_edges(edges, 500, 400, torch.float32)
    x, gate = make_inputs(400, 3, 48, torch.float32, seed=3)
    expect = []
    for dev in (torch.device("cpu"), DEVICE):
        xg = x.to(dev).requires_grad_()
        gg = gate.to(dev).requires_grad_()
        gr = graph if dev.type == "cpu" else to_dev(graph)
        ops.gated_spmm(gr, xg, gg)[:, :, ::3].sum().backward()  # strided, expanded grad_out
        expect.append((xg.grad.cpu(), gg.grad.cpu()))
    torch.testing.assert_close(expect[1][0], expect[0][0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(expect[1][1], expect[0][1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["square", "tall", "wide", "n1_loop"])
def test_gradcheck(name):
    edges, r, s = GRAPHS[name]
    graph = to_dev(csr_from_edges(edges, r, s))
    x, gate = make_inputs(s, 2, 3, torch.float64, seed=11)
    x = x.to(DEVICE).requires_grad_()
    gate = gate.to(DEVICE).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, g: ops.gated_spmm(graph, a, g), (x, gate))
    raw = lambda a, g: lib.gated_spmm(graph.rowptr, graph.col, graph.weight, a, g, r)  # noqa: E731
    assert torch.autograd.gradcheck(raw, (x, gate))


def test_csr_transpose_matches_cpu():
    edges = random_edges(300, 200, 1500, seed=8)
    graph = csr_from_edges(edges, 300, 200, torch.float32)
    expect = lib.csr_transpose(graph.rowptr, graph.col, graph.weight, 200)
    g = to_dev(graph)
    got = lib.csr_transpose(g.rowptr, g.col, g.weight, 200)
    for u, v in zip(got, expect, strict=True):
        assert torch.equal(u.cpu(), v)  # stable: the same edge order


# ------------------------------------------------------ induce_subgraph / bipartite
def _same(a: CSRGraph, b: CSRGraph) -> None:
    assert a.shape == b.shape
    for u, v in ((a.rowptr, b.rowptr), (a.col, b.col), (a.weight, b.weight)):
        assert u.dtype == v.dtype and torch.equal(u.cpu(), v.cpu())


@pytest.mark.parametrize("n", [1, 9, 40, 3000])
@pytest.mark.parametrize("wdtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_induce_and_bipartite_match_cpu_exactly(n, wdtype):
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


def test_bipartite_rectangular_and_without_edges():
    edges, r, s = GRAPHS["wide"]
    graph = csr_from_edges(edges, r, s)
    index = torch.tensor([6, 0, 3])
    _same(ops.bipartite(to_dev(graph), index.to(DEVICE)), ops.bipartite(graph, index))
    empty = CSRGraph(torch.zeros(5, dtype=torch.int64), torch.zeros(0, dtype=torch.int64))
    sub = ops.induce_subgraph(to_dev(empty), torch.tensor([3, 1], device=DEVICE))
    assert sub.num_edges == 0 and sub.rowptr.tolist() == [0, 0, 0]


# ------------------------------------------------------------------------- bad input
def test_bad_graphs_and_index_are_refused():
    edges, r, s = GRAPHS["tall"]
    graph = to_dev(csr_from_edges(edges, r, s))
    rp, col, w = graph.rowptr, graph.col, graph.weight
    x, gate = (t.to(DEVICE) for t in make_inputs(s, 2, 4, torch.float64, seed=0))
    dev = lambda v: torch.tensor(v, device=DEVICE)  # noqa: E731
    op = lib.gated_spmm
    with pytest.raises(RuntimeError, match="non-decreasing"):
        op(dev([0, 2, 1, 3, 5, 6, 6]), col, w, x, gate, r)
    with pytest.raises(RuntimeError, match="out of range"):
        op(rp, dev([0, 3, 1, 0, 0, 2]), w, x, gate, r)
    with pytest.raises(RuntimeError, match="out of range"):
        op(rp, dev([0, -1, 1, 0, 0, 2]), w, x, gate, r)
    with pytest.raises(RuntimeError, match=r"rowptr\[-1\]"):
        op(dev([0, 2, 2, 3, 5, 5, 5]), col, w, x, gate, r)
    with pytest.raises(RuntimeError, match=r"rowptr\[0\]"):
        op(dev([1, 2, 2, 3, 5, 6, 6]), col, w, x, gate, r)
    with pytest.raises(RuntimeError, match="gate must have shape"):
        op(rp, col, w, x, gate[:-1], r)
    with pytest.raises(RuntimeError, match="rowptr must have 5 entries"):
        op(rp, col, w, x, gate, 4)
    with pytest.raises(ValueError, match="source nodes"):  # sizes that do not match x
        ops.gated_spmm(graph, x[:, :-1], gate[:-1])
    t = graph.transpose()
    with pytest.raises(RuntimeError, match="out of range"):
        lib.gated_spmm_backward(
            t.rowptr,
            dev([0, 1, 9, 2, 3, 4]),
            t.weight,
            x,
            gate,
            torch.ones(2, r, 4, dtype=x.dtype, device=DEVICE),
            True,
        )
    with pytest.raises(RuntimeError, match="out of range"):
        lib.csr_transpose(rp, col, w, 2)
    if ON_CUDA:
        with pytest.raises(RuntimeError, match="must be on"):
            op(rp.cpu(), col, w, x, gate, r)
    sq = to_dev(csr_from_edges(*GRAPHS["square"]))
    with pytest.raises(RuntimeError, match="duplicate"):
        lib.induce_subgraph(sq.rowptr, sq.col, sq.weight, dev([0, 2, 0]))
    with pytest.raises(RuntimeError, match="out of range"):
        lib.induce_subgraph(sq.rowptr, sq.col, sq.weight, dev([0, 5]))
    with pytest.raises(RuntimeError, match="out of range"):
        lib.bipartite(sq.rowptr, sq.col, sq.weight, dev([-1]), 5)
    with pytest.raises(RuntimeError, match="out of range"):
        lib.bipartite(sq.rowptr, dev([1, 0, 2, 2, 7, 4]), sq.weight, dev([0]), 5)
    with pytest.raises(RuntimeError, match="non-decreasing"):
        lib.bipartite(dev([0, 4, 2, 4, 5, 6]), sq.col, sq.weight, dev([0]), 5)


# ------------------------------------------------------------- opcheck and compile
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(dtype):
    edges = random_edges(30, 17, 80, seed=1)
    g = to_dev(csr_from_edges(edges, 30, 17, dtype))
    x, gate = (t.to(DEVICE) for t in make_inputs(17, 3, 20, dtype, seed=2))
    t = g.transpose()
    for rg in (False, True):
        xr, gr = x.clone().requires_grad_(rg), gate.clone().requires_grad_(rg)
        torch.library.opcheck(lib.gated_spmm.default, (g.rowptr, g.col, g.weight, xr, gr, 30))
        torch.library.opcheck(
            lib.gated_spmm_tr.default,
            (g.rowptr, g.col, g.weight, t.rowptr, t.col, t.weight, xr, gr, 30),
        )
    grad_out = torch.randn(3, 30, 20, dtype=dtype, device=DEVICE)
    for need in (True, False):
        torch.library.opcheck(
            lib.gated_spmm_backward.default, (t.rowptr, t.col, t.weight, x, gate, grad_out, need)
        )
    torch.library.opcheck(lib.csr_transpose.default, (g.rowptr, g.col, g.weight, 17))
    sq = to_dev(csr_from_edges(random_edges(20, 20, 60, seed=4), 20, 20, dtype))
    index = torch.tensor([5, 1, 17, 0], device=DEVICE)
    torch.library.opcheck(lib.induce_subgraph.default, (sq.rowptr, sq.col, sq.weight, index))
    torch.library.opcheck(lib.bipartite.default, (sq.rowptr, sq.col, sq.weight, index, 20))


def test_opcheck_half():
    if not ON_CUDA:
        pytest.skip("float16 x is CUDA-only")
    g = to_dev(csr_from_edges(random_edges(30, 17, 80, seed=1), 30, 17))
    x, gate = (t.to(DEVICE, torch.float16) for t in make_inputs(17, 3, 32, torch.float64, 2))
    torch.library.opcheck(lib.gated_spmm.default, (g.rowptr, g.col, g.weight, x, gate, 30))


def test_torch_compile_fullgraph():
    graph = to_dev(csr_from_edges(random_edges(20, 20, 70, seed=3), 20, 20, torch.float32))
    graph.transpose()

    def fn(x, gate):
        h = ops.gated_spmm(graph, torch.tanh(x), gate)
        return (h * h).sum(dim=(1, 2))

    x, gate = (t.to(DEVICE) for t in make_inputs(20, 2, 16, torch.float32, seed=3))
    compiled = torch.compile(fn, fullgraph=True)
    xc, gc = x.clone().requires_grad_(), gate.clone().requires_grad_()
    out = compiled(xc, gc)
    out.sum().backward()
    xe, ge = x.clone().requires_grad_(), gate.clone().requires_grad_()
    expect = fn(xe, ge)
    expect.sum().backward()
    torch.testing.assert_close(out, expect, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gc.grad, ge.grad, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- models
def test_gated_and_compact_stgcn_on_device_match_cpu():
    """The graph backbone and its compacted form run the device's graph kernels, in
    training (gradients) and in inference, and agree with the CPU kernels."""
    from dynst_fast.models.stgcn import GatedSTGCN

    edges = random_edges(16, 16, 60, seed=2)
    graph = csr_from_edges([(i, j, abs(w)) for i, j, w in edges], 16, 16, torch.float32)
    torch.manual_seed(0)
    model = GatedSTGCN(graph, t_in=6, t_out=2, hidden=8, readout=8, embed=4)
    x = torch.randn(3, 6, 16, 1)
    gate = torch.rand(16)
    gate[::4] = 0.0
    active = torch.nonzero(gate).flatten()

    def run(m, dev):
        m.zero_grad()
        g = gate.to(dev).requires_grad_()
        out = m(x.to(dev), g)
        out.square().sum().backward()
        with torch.no_grad():
            compact = m.compact(active.to(dev), gate.to(dev))(x[:, :, active].to(dev))
        grads = [p.grad.cpu().clone() for p in m.parameters()]
        return out.detach().cpu(), g.grad.cpu(), grads, compact.cpu()

    expect = run(model, torch.device("cpu"))
    got = run(model.to(DEVICE), DEVICE)
    torch.testing.assert_close(got[0], expect[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[1], expect[1], rtol=1e-4, atol=1e-5)
    for u, v in zip(got[2], expect[2], strict=True):
        torch.testing.assert_close(u, v, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[3], expect[3], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[3], got[0], rtol=1e-4, atol=1e-5)  # equivalence rule
