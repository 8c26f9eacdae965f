"""The C++ CPU kernel of ``gated_spmm`` (forward, backward, fake and autograd
registrations) against dense computations: ``out = (A * gate) @ x`` per batch.

Expected values are built from dense matrices assembled edge by edge (duplicates
add up), never from ``dynst_fast.ops.reference``.
"""

from __future__ import annotations

import pytest
import torch

from dynst_fast import ops
from dynst_fast.graph import CSRGraph

lib = ops._cpp_graph_ops()
pytestmark = pytest.mark.skipif(lib is None, reason="dynst_fast._C is not built")

# (target row, source col, weight) edges, rows, cols
GRAPHS = {
    # isolated node 3, self-loops (0, 4), duplicate edge (1 <- 2 twice), empty rows 3
    "square": (
        [(0, 1, 0.5), (0, 0, 2.0), (1, 2, 1.0), (1, 2, -0.25), (2, 0, 1.5), (4, 4, 3.0)],
        5,
        5,
    ),
    # R > S: 6 targets, 3 sources, rows 1 and 5 empty, duplicate (3 <- 0)
    "tall": (
        [(0, 0, 1.0), (0, 2, 0.5), (2, 1, -1.0), (3, 0, 2.0), (3, 0, 2.0), (4, 2, 0.75)],
        6,
        3,
    ),
    # R < S: 2 targets, 7 sources, sources 1, 2, 4, 5 unused
    "wide": ([(1, 6, 1.0), (0, 3, 2.0), (1, 0, 0.5), (0, 6, -1.0)], 2, 7),
    "n1_loop": ([(0, 0, 2.0)], 1, 1),
    "n1_empty": ([], 1, 1),
    "no_edges": ([], 3, 4),
}


def csr_from_edges(edges, rows: int, cols: int, dtype=torch.float64) -> CSRGraph:
    """CSR by hand from (target, source, weight) triples; duplicates kept, order stable."""
    edges = sorted(edges, key=lambda e: e[0])
    counts = [0] * (rows + 1)
    for r, _, _ in edges:
        counts[r + 1] += 1
    for r in range(rows):
        counts[r + 1] += counts[r]
    return CSRGraph(
        torch.tensor(counts, dtype=torch.int64),
        torch.tensor([e[1] for e in edges], dtype=torch.int64),
        torch.tensor([e[2] for e in edges], dtype=dtype),
        num_cols=cols,
    )


def dense_from_edges(edges, rows: int, cols: int) -> torch.Tensor:
    a = torch.zeros(rows, cols, dtype=torch.float64)
    for r, c, w in edges:
        a[r, c] += w
    return a


def random_edges(rows: int, cols: int, num_edges: int, seed: int):
    """Random edges with self-loops, duplicates, isolated nodes and empty rows."""
    g = torch.Generator().manual_seed(seed)
    r = torch.randint(0, max(1, rows - 2), (num_edges,), generator=g)  # last rows empty
    c = torch.randint(0, max(1, cols - 1), (num_edges,), generator=g)  # last col unused
    w = torch.randn(num_edges, generator=g, dtype=torch.float64)
    edges = list(zip(r.tolist(), c.tolist(), w.tolist(), strict=True))
    edges += edges[: num_edges // 10]  # duplicates
    edges += [(i, i, 1.5) for i in range(0, min(rows, cols), 3)]  # self-loops
    return edges


def dense_gated(a: torch.Tensor, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """``out[b] = (A * gate) @ x[b]`` in float64."""
    return torch.einsum("rs,bsf->brf", a * gate.to(torch.float64), x.to(torch.float64))


def dense_grads(a, x, gate, grad_out):
    """(grad_x, grad_gate) of ``sum(dense_gated(a, x, gate) * grad_out)``, float64."""
    x64 = x.detach().to(torch.float64).requires_grad_()
    g64 = gate.detach().to(torch.float64).requires_grad_()
    dense_gated(a, x64, g64).backward(grad_out.to(torch.float64))
    return x64.grad, g64.grad


def make_inputs(s: int, b: int, f: int, dtype, seed: int, zero_gates: bool = True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, s, f, generator=g, dtype=torch.float64).to(dtype)
    gate = torch.randn(s, generator=g, dtype=torch.float64).to(dtype)
    if zero_gates:
        gate[::3] = 0.0  # a gate with zeros
    return x, gate


def tol(dtype):
    t = 1e-4 if dtype == torch.float32 else 1e-10
    return {"rtol": t, "atol": t}


def raw_op(graph: CSRGraph, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    return lib.gated_spmm(graph.rowptr, graph.col, graph.weight, x, gate, graph.num_rows)


# --------------------------------------------------------------------------- forward
# F values cover every code path: full tiles of 8 vectors, 2- and 1-vector tiles and
# the scalar tail, for float32 (8 lanes with AVX2, 4 with SSE) and float64.
FEATURES = [1, 3, 8, 13, 64, 70, 160]


@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("f", FEATURES)
def test_forward_dense(name, dtype, f):
    edges, r, s = GRAPHS[name]
    graph = csr_from_edges(edges, r, s, dtype)
    a = dense_from_edges(edges, r, s)
    x, gate = make_inputs(s, 3, f, dtype, seed=f)
    expect = dense_gated(a, x, gate)
    for out in (raw_op(graph, x, gate), ops.gated_spmm(graph, x, gate)):
        assert out.shape == (3, r, f) and out.dtype == dtype
        torch.testing.assert_close(out.to(torch.float64), expect, **tol(dtype))


@pytest.mark.parametrize(("rows", "cols"), [(40, 40), (57, 23), (9, 300), (2000, 2000)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_random_graphs(rows, cols, dtype):
    edges = random_edges(rows, cols, 5 * rows, seed=rows + cols)
    graph = csr_from_edges(edges, rows, cols, dtype)
    a = dense_from_edges(edges, rows, cols)
    for b, f in [(1, 37), (4, 64)]:  # B = 1 and a batch; several parallel tasks for 2000
        x, gate = make_inputs(cols, b, f, dtype, seed=b)
        torch.testing.assert_close(
            raw_op(graph, x, gate).to(torch.float64), dense_gated(a, x, gate), **tol(dtype)
        )


def test_forward_non_contiguous_x_and_mixed_weight_dtype():
    edges, r, s = GRAPHS["tall"]
    a = dense_from_edges(edges, r, s)
    base = torch.randn(2, 20, s, dtype=torch.float32)
    x = base.transpose(1, 2)  # [2, s, 20], non-contiguous
    assert not x.is_contiguous()
    gate = torch.rand(s)
    expect = dense_gated(a, x, gate)
    for wdtype in (torch.float64, torch.float32, torch.float16):  # weight cast to x's dtype
        w_edges = [(i, j, float(torch.tensor(w).to(wdtype))) for i, j, w in edges]
        graph = csr_from_edges(edges, r, s, wdtype)
        out = ops.gated_spmm(graph, x, gate)
        assert out.dtype == torch.float32
        torch.testing.assert_close(
            out.to(torch.float64),
            dense_gated(dense_from_edges(w_edges, r, s), x, gate),
            rtol=1e-5,
            atol=1e-5,
        )
    out = raw_op(csr_from_edges(edges, r, s), x, gate)  # float64 weights, float32 x
    torch.testing.assert_close(out.double(), expect, rtol=1e-5, atol=1e-5)


def test_float64_gate_with_float32_x_is_cast():
    edges, r, s = GRAPHS["square"]
    graph = csr_from_edges(edges, r, s, torch.float32)
    x, gate = make_inputs(s, 2, 9, torch.float32, seed=1)
    out = ops.gated_spmm(graph, x, gate.double())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, raw_op(graph, x, gate), rtol=0, atol=0)


# -------------------------------------------------------------------------- backward
@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("f", [1, 13, 70])
def test_grads_dense(name, dtype, f):
    edges, r, s = GRAPHS[name]
    graph = csr_from_edges(edges, r, s, dtype)
    a = dense_from_edges(edges, r, s)
    x, gate = make_inputs(s, 2, f, dtype, seed=7)
    grad_out = torch.randn(2, r, f, dtype=dtype)
    gx_exp, gg_exp = dense_grads(a, x, gate, grad_out)
    for fn in (ops.gated_spmm, raw_op):  # cached transpose / csr_transpose in the backward
        xg, gg = x.clone().requires_grad_(), gate.clone().requires_grad_()
        fn(graph, xg, gg).backward(grad_out)
        assert xg.grad.dtype == dtype and gg.grad.dtype == dtype
        torch.testing.assert_close(xg.grad.to(torch.float64), gx_exp, **tol(dtype))
        torch.testing.assert_close(gg.grad.to(torch.float64), gg_exp, **tol(dtype))


@pytest.mark.parametrize(("rows", "cols"), [(57, 23), (9, 300), (1500, 1500)])
def test_grads_random_graphs(rows, cols):
    edges = random_edges(rows, cols, 6 * rows, seed=rows)
    graph = csr_from_edges(edges, rows, cols, torch.float32)
    a = dense_from_edges(edges, rows, cols)
    for b, f in [(1, 33), (3, 64)]:
        x, gate = make_inputs(cols, b, f, torch.float32, seed=f)
        xg, gg = x.clone().requires_grad_(), gate.clone().requires_grad_()
        grad_out = torch.randn(b, rows, f)
        ops.gated_spmm(graph, xg, gg).backward(grad_out)
        gx_exp, gg_exp = dense_grads(a, x, gate, grad_out)
        torch.testing.assert_close(xg.grad.double(), gx_exp, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(gg.grad.double(), gg_exp, rtol=1e-4, atol=1e-3)


def test_grads_one_input_and_non_contiguous_grad_out():
    edges, r, s = GRAPHS["wide"]
    graph = csr_from_edges(edges, r, s)
    a = dense_from_edges(edges, r, s)
    x, gate = make_inputs(s, 3, 5, torch.float64, seed=3)
    # only x: gate gets no grad; sum() sends an expanded (stride 0) grad_out
    xg = x.clone().requires_grad_()
    ops.gated_spmm(graph, xg, gate).sum().backward()
    torch.testing.assert_close(xg.grad, dense_grads(a, x, gate, torch.ones(3, r, 5))[0])
    # only gate, through a strided slice of the output
    gg = gate.clone().requires_grad_()
    ops.gated_spmm(graph, x, gg)[:, :, ::2].sum().backward()
    grad_out = torch.zeros(3, r, 5, dtype=torch.float64)
    grad_out[:, :, ::2] = 1.0
    torch.testing.assert_close(gg.grad, dense_grads(a, x, gate, grad_out)[1])


@pytest.mark.parametrize("name", ["square", "tall", "wide", "n1_loop"])
def test_gradcheck(name):
    edges, r, s = GRAPHS[name]
    graph = csr_from_edges(edges, r, s)
    x, gate = make_inputs(s, 2, 3, torch.float64, seed=11)
    x.requires_grad_()
    gate.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, g: ops.gated_spmm(graph, a, g), (x, gate))
    assert torch.autograd.gradcheck(lambda a, g: raw_op(graph, a, g), (x, gate))


def test_transpose_is_cached_and_matches_csr_transpose():
    edges = random_edges(30, 20, 90, seed=5)
    graph = csr_from_edges(edges, 30, 20)
    x, gate = make_inputs(20, 2, 4, torch.float64, seed=5)
    with torch.no_grad():
        ops.gated_spmm(graph, x.requires_grad_(), gate)
    assert graph._transpose is None  # no transpose for a no-grad call
    ops.gated_spmm(graph, x, gate)
    t = graph._transpose
    assert t is not None
    ops.gated_spmm(graph, x, gate).sum().backward()
    assert graph._transpose is t
    got = lib.csr_transpose(graph.rowptr, graph.col, graph.weight, graph.num_cols)
    for u, v in zip(got, (t.rowptr, t.col, t.weight), strict=True):
        assert torch.equal(u, v)


def test_public_op_runs_the_cpp_kernel():
    """What the model calls: with x.requires_grad, ops.gated_spmm is the C++ op (bitwise
    its result, the reference's summation order differs) and its autograd node."""
    edges = random_edges(50, 50, 400, seed=9)
    graph = csr_from_edges(edges, 50, 50, torch.float32)
    x, gate = make_inputs(50, 3, 24, torch.float32, seed=9)
    x.requires_grad_()
    gate.requires_grad_()
    out = ops.gated_spmm(graph, x, gate)
    assert "dynst_fast_gated_spmm_tr" in type(out.grad_fn).__name__
    with torch.no_grad():
        assert torch.equal(out, raw_op(graph, x, gate))
        ref = ops.reference.gated_spmm(graph, x, gate)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    xr, gr = x.detach().clone().requires_grad_(), gate.detach().clone().requires_grad_()
    ops.reference.gated_spmm(graph, xr, gr).sum().backward()
    out.sum().backward()
    torch.testing.assert_close(x.grad, xr.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gate.grad, gr.grad, rtol=1e-4, atol=1e-4)


def test_model_uses_the_cpp_kernel(monkeypatch):
    """GatedSTGCN gives the same outputs and gradients with the C++ op and the reference."""
    from dynst_fast.models.stgcn import GatedSTGCN

    edges = random_edges(12, 12, 40, seed=2)
    graph = csr_from_edges([(i, j, abs(w)) for i, j, w in edges], 12, 12, torch.float32)
    torch.manual_seed(0)
    model = GatedSTGCN(graph, t_in=6, t_out=2, hidden=8, readout=8, embed=4)
    x = torch.randn(3, 6, 12, 1)
    calls = []
    real = lib.gated_spmm_tr

    def counting(*args):
        calls.append(1)
        return real(*args)

    gate0 = torch.rand(12)
    gate0[::4] = 0.0

    def run():
        gate = gate0.clone().requires_grad_()
        model.zero_grad()
        torch.manual_seed(1)
        out = model(x, gate)
        out.square().sum().backward()
        return out.detach(), gate.grad, [p.grad.clone() for p in model.parameters()]

    monkeypatch.setattr(lib, "gated_spmm_tr", counting, raising=False)
    got = run()
    assert calls, "the model did not call the C++ gated_spmm"
    monkeypatch.setattr(ops, "_GRAPH_OPS", None)  # forces the PyTorch reference
    expect = run()
    torch.testing.assert_close(got[0], expect[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got[1], expect[1], rtol=1e-4, atol=1e-5)
    for g, e in zip(got[2], expect[2], strict=True):
        torch.testing.assert_close(g, e, rtol=1e-4, atol=1e-5)


def test_compact_model_uses_the_cpp_kernels(monkeypatch):
    """CompactSTGCN builds its graphs with the C++ induce_subgraph / bipartite and runs
    inference through the C++ gated_spmm; it matches the gated model (equivalence rule)."""
    from dynst_fast.models.stgcn import GatedSTGCN

    edges = random_edges(14, 14, 50, seed=6)
    graph = csr_from_edges([(i, j, abs(w)) for i, j, w in edges], 14, 14, torch.float32)
    torch.manual_seed(0)
    model = GatedSTGCN(graph, t_in=6, t_out=2, hidden=8, readout=8, embed=4).eval()
    theta = torch.rand(14) + 0.5
    active = torch.tensor([0, 3, 4, 7, 9, 13])
    gate = torch.zeros(14)
    gate[active] = theta[active]
    x = torch.randn(2, 6, 14, 1)
    calls: dict[str, int] = {}
    for name in ("induce_subgraph", "bipartite", "gated_spmm"):
        real = getattr(lib, name)

        def counting(*args, real=real, name=name):
            calls[name] = calls.get(name, 0) + 1
            return real(*args)

        monkeypatch.setattr(lib, name, counting, raising=False)
    compact = model.compact(active, theta)
    with torch.no_grad():
        got = compact(x[:, :, active])
        expect = model(x, gate)
    assert calls.get("induce_subgraph") == 1 and calls.get("bipartite") == 1
    assert calls.get("gated_spmm", 0) >= 3  # degrees, node streams, read-out (+ the gated model)
    torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------- fallback to reference
def test_other_dtypes_and_weight_grad_use_the_reference():
    edges, r, s = GRAPHS["square"]
    a = dense_from_edges(edges, r, s)
    x, gate = make_inputs(s, 2, 6, torch.float64, seed=4)
    graph = csr_from_edges(edges, r, s, torch.float32)
    for dtype in (torch.float16, torch.bfloat16):
        out = ops.gated_spmm(graph, x.to(dtype), gate.to(dtype))
        assert out.dtype == dtype
        torch.testing.assert_close(out.double(), dense_gated(a, x, gate), rtol=0.05, atol=0.05)
    # edge weights that require grad: the C++ op has no weight gradient -> reference
    w = graph.weight.double().requires_grad_()
    ops.gated_spmm(graph.with_weight(w), x, gate).sum().backward()
    assert w.grad is not None and w.grad.shape == w.shape
    with pytest.raises(NotImplementedError, match="edge weights"):
        raw_op(graph.with_weight(w), x, gate).sum().backward()


# ------------------------------------------------------------------------- bad input
def test_cpp_argument_errors():
    edges, r, s = GRAPHS["tall"]
    g = csr_from_edges(edges, r, s)
    rp, col, w = g.rowptr, g.col, g.weight
    x, gate = make_inputs(s, 2, 4, torch.float64, seed=0)
    op = lib.gated_spmm
    with pytest.raises(RuntimeError, match=r"x must have shape \[B, S, F\]"):
        op(rp, col, w, x[0], gate, r)
    with pytest.raises(RuntimeError, match="x must be float32 or float64"):
        op(rp, col, w, x.half(), gate.half(), r)
    with pytest.raises(RuntimeError, match="gate must have x's dtype"):
        op(rp, col, w, x, gate.float(), r)
    with pytest.raises(RuntimeError, match="gate must have shape"):
        op(rp, col, w, x, gate[:-1], r)
    with pytest.raises(RuntimeError, match="rowptr must have 5 entries"):
        op(rp, col, w, x, gate, 4)
    with pytest.raises(RuntimeError, match="num_rows must be >= 0"):
        op(rp, col, w, x, gate, -1)
    with pytest.raises(RuntimeError, match="rowptr must be int64"):
        op(rp.int(), col, w, x, gate, r)
    with pytest.raises(RuntimeError, match="weight has 5 entries"):
        op(rp, col, w[:-1], x, gate, r)
    with pytest.raises(RuntimeError, match=r"col\[1\] = 3 is out of range \[0, 3\)"):
        op(rp, torch.tensor([0, 3, 1, 0, 0, 2]), w, x, gate, r)
    with pytest.raises(RuntimeError, match="non-decreasing"):
        op(torch.tensor([0, 2, 1, 3, 5, 6, 6]), col, w, x, gate, r)
    with pytest.raises(RuntimeError, match="non-decreasing"):  # negative, never read
        op(torch.tensor([0, 6, -3, 6, 6, 6, 6]), col, w, x, gate, r)
    with pytest.raises(RuntimeError, match=r"rowptr\[-1\] = 5"):
        op(torch.tensor([0, 2, 2, 3, 5, 5, 5]), col, w, x, gate, r)
    t = g.transpose()
    with pytest.raises(RuntimeError, match="the transpose has 5 edges"):
        lib.gated_spmm_tr(rp, col, w, t.rowptr, t.col[:-1], t.weight[:-1], x, gate, r)
    with pytest.raises(RuntimeError, match="grad_out must have shape"):
        lib.gated_spmm_backward(t.rowptr, t.col, t.weight, x, gate, torch.ones(2, r, 3), True)
    with pytest.raises(RuntimeError, match="num_cols must be >= 0"):
        lib.csr_transpose(rp, col, w, -1)
    with pytest.raises(RuntimeError, match="out of range"):
        lib.csr_transpose(rp, col, w, 2)


# ------------------------------------------------------------- opcheck and compile
def _samples():
    out = []
    for name, f, dtype in [("square", 5, torch.float64), ("tall", 3, torch.float32)]:
        edges, r, s = GRAPHS[name]
        g = csr_from_edges(edges, r, s, dtype)
        x, gate = make_inputs(s, 2, f, dtype, seed=f)
        out.append((g, x, gate))
    edges = random_edges(30, 17, 80, seed=1)
    g = csr_from_edges(edges, 30, 17, torch.float32)
    out.append((g, *make_inputs(17, 3, 20, torch.float32, seed=2)))
    return out


@pytest.mark.parametrize("requires_grad", [False, True])
def test_opcheck(requires_grad):
    for g, x, gate in _samples():
        x = x.clone().requires_grad_(requires_grad)
        gate = gate.clone().requires_grad_(requires_grad)
        t = g.transpose()
        torch.library.opcheck(
            lib.gated_spmm.default, (g.rowptr, g.col, g.weight, x, gate, g.num_rows)
        )
        torch.library.opcheck(
            lib.gated_spmm_tr.default,
            (g.rowptr, g.col, g.weight, t.rowptr, t.col, t.weight, x, gate, g.num_rows),
        )
        if not requires_grad:
            grad_out = torch.randn(x.shape[0], g.num_rows, x.shape[2], dtype=x.dtype)
            for need in (True, False):
                torch.library.opcheck(
                    lib.gated_spmm_backward.default,
                    (t.rowptr, t.col, t.weight, x, gate, grad_out, need),
                )
            torch.library.opcheck(
                lib.csr_transpose.default, (g.rowptr, g.col, g.weight, g.num_cols)
            )


@pytest.mark.parametrize("cached", [True, False])
def test_torch_compile_fullgraph(cached):
    edges = random_edges(20, 20, 70, seed=3)
    graph = csr_from_edges(edges, 20, 20, torch.float32)
    if cached:
        graph.transpose()

    def fn(x, gate):
        h = ops.gated_spmm(graph, torch.tanh(x), gate)
        return (h * h).sum(dim=(1, 2))

    x, gate = make_inputs(20, 2, 16, torch.float32, seed=3)
    compiled = torch.compile(fn, fullgraph=True, backend="inductor")
    xc, gc = x.clone().requires_grad_(), gate.clone().requires_grad_()
    out = compiled(xc, gc)
    out.sum().backward()
    xe, ge = x.clone().requires_grad_(), gate.clone().requires_grad_()
    expect = fn(xe, ge)
    expect.sum().backward()
    torch.testing.assert_close(out, expect, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(xc.grad, xe.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gc.grad, ge.grad, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the no-grad variant compiles too
        torch.testing.assert_close(compiled(x, gate), fn(x, gate), rtol=1e-5, atol=1e-5)
