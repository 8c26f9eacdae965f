"""``ops.gated_spmm`` (and its schema ops ``gated_spmm_tr``, ``gated_spmm_backward``,
``csr_transpose``): the C++ CPU kernel, the CUDA kernel and the reference against dense
computations ``out = (A * gate) @ x``, gradients, ``opcheck`` and ``torch.compile`` from
one sample generator, the models' use of the kernels, and argument errors.

Expected values are built from dense matrices assembled edge by edge (duplicates add
up), never from ``dynst_fast.ops.reference``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from graph_cases import (
    DEVICE,
    DTYPES,
    GRAPHS,
    ON_CUDA,
    CSRGraph,
    csr_from_edges,
    dense_from_edges,
    dense_gated,
    dense_grads,
    dev_tol,
    kernel_dtype,
    lib,
    make_inputs,
    needs_cuda_kernels,
    random_edges,
    raw_op,
    to_dev,
    tol,
)
from harness import backend_fixture, check_compile, check_grads, check_opcheck, check_values
from hypothesis import given, settings
from hypothesis import strategies as st

from dynst_fast import ops
from dynst_fast.ops import _dispatch, reference

FAST = settings(max_examples=40, deadline=None)
backend = backend_fixture(triton=False)


# --------------------------------------------------------------------------- samples
def samples(device: str):
    """``(graph, x, gate)`` of ``ops.gated_spmm``: every hand-built graph (square, tall,
    wide, single node, no edges) and a random one, float64 and float32, gates with zeros."""
    for name, f, dtype in [(n, 5, torch.float64) for n in sorted(GRAPHS)] + [
        ("tall", 3, torch.float32)
    ]:
        edges, r, s = GRAPHS[name]
        g = csr_from_edges(edges, r, s, dtype).to(device)
        x, gate = make_inputs(s, 2, f, dtype, seed=f)
        yield g, x.to(device), gate.to(device)
    g = csr_from_edges(random_edges(30, 17, 80, seed=1), 30, 17, torch.float32).to(device)
    x, gate = make_inputs(17, 3, 20, torch.float32, seed=2)
    yield g, x.to(device), gate.to(device)


def schema_samples(device: str):
    """Arguments of ``gated_spmm``, ``gated_spmm_tr``, from :func:`samples`."""
    for g, x, gate in samples(device):
        t = g.transpose()
        for rg in (False, True):
            xr, gr = x.clone().requires_grad_(rg), gate.clone().requires_grad_(rg)
            yield "gated_spmm", (g.rowptr, g.col, g.weight, xr, gr, g.num_rows)
            yield "gated_spmm_tr", (g.rowptr, g.col, g.weight, t.rowptr, t.col, t.weight, xr, gr,
                                    g.num_rows)  # fmt: skip
        grad_out = torch.randn(x.shape[0], g.num_rows, x.shape[2], dtype=x.dtype, device=device)
        for need in (True, False):
            yield "gated_spmm_backward", (t.rowptr, t.col, t.weight, x, gate, grad_out, need)
        yield "csr_transpose", (g.rowptr, g.col, g.weight, g.num_cols)


def test_values(backend):
    check_values(ops.gated_spmm, reference.gated_spmm, samples(backend), exact=False)


def test_gradients(backend):
    check_grads(ops.gated_spmm, reference.gated_spmm, samples(backend), diff=(1, 2))


def test_opcheck(backend):
    for name, args in schema_samples(backend):
        check_opcheck(getattr(lib, name).default, [args])


def test_torch_compile(backend):
    check_compile(ops.gated_spmm, samples(backend))


# --------------------------------------------------------------------------- forward
# Against dense products assembled edge by edge: the raw C++ op and the public op.
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


@st.composite
def graph_case(draw):
    """A small graph with duplicate edges (they add up) and negative weights, a batch,
    features and a seed."""
    r = draw(st.integers(1, 9))
    s = draw(st.integers(1, 9))
    edges = draw(
        st.lists(
            st.tuples(
                st.integers(0, r - 1),
                st.integers(0, s - 1),
                st.sampled_from([1.0, -0.5, 2.0, 0.25]),
            ),
            max_size=25,
        )
    )
    b = draw(st.integers(1, 3))
    f = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    return edges, r, s, b, f, seed


@FAST
@given(graph_case())
def test_forward_hypothesis_graphs(case):
    """The public op on small random graphs, gates that are 0, negative or fractional."""
    edges, r, s, b, f, seed = case
    rng = np.random.default_rng(seed)
    x = torch.tensor(rng.standard_normal((b, s, f)))
    gate = torch.tensor(rng.choice([0.0, 1.0, -0.5, 0.3], size=s))
    out = ops.gated_spmm(csr_from_edges(edges, r, s), x, gate)
    expect = dense_gated(dense_from_edges(edges, r, s), x, gate)
    torch.testing.assert_close(out, expect, rtol=1e-10, atol=1e-12)


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


# --------------------------------------------------------------------------- gradients
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


# --------------------------------------------------------------------------- what models run
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
    with _dispatch.using("reference"):  # forces the PyTorch reference
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


@pytest.mark.parametrize("cached", [True, False])
def test_torch_compile_fullgraph_with_backward(cached):
    """Inductor, forward and backward, with and without the cached transpose (the
    harness's check_compile covers the forward on every backend)."""
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


# --------------------------------------------------------------------------- argument errors
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


def test_gated_spmm_bad_arguments():
    edges, r, s = GRAPHS["tall"]
    g = csr_from_edges(edges, r, s)
    x, gate = torch.randn(2, s, 4, dtype=torch.float64), torch.randn(s, dtype=torch.float64)
    with pytest.raises(ValueError, match="gate must have shape"):
        ops.gated_spmm(g, x, gate[:-1])
    with pytest.raises(ValueError, match=f"x has {r} nodes but the graph has {s} source nodes"):
        ops.gated_spmm(g, torch.randn(2, r, 4, dtype=torch.float64), gate)
    with pytest.raises(ValueError, match="x must have shape"):
        ops.gated_spmm(g, x[0], gate)
    with pytest.raises(TypeError, match="expected a CSRGraph, a torch_geometric Data"):
        ops.gated_spmm(g.to_dense(), x, gate)
    with pytest.raises(TypeError, match="gate must be floating point"):
        ops.gated_spmm(g, x, torch.ones(s, dtype=torch.int64))


# --------------------------------------------------------------------------- the CUDA kernel
CUDA_FEATURES = [1, 3, 8, 13, 64, 70, 160, 300, 1024]


@needs_cuda_kernels
@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("f", CUDA_FEATURES)
def test_cuda_forward_dense(name, dtype, f):
    edges, r, s = GRAPHS[name]
    graph = to_dev(csr_from_edges(edges, r, s, torch.float32))
    a = dense_from_edges(edges, r, s)
    x, gate = make_inputs(s, 3, f, torch.float64, seed=f)
    xd, gd = x.to(DEVICE, dtype), gate.to(DEVICE, dtype)
    out = ops.gated_spmm(graph, xd, gd)
    assert out.shape == (3, r, f) and out.dtype == dtype and out.device == xd.device
    expect = dense_gated(a, xd.cpu(), gd.cpu())  # of the rounded inputs
    torch.testing.assert_close(out.cpu().double(), expect, **dev_tol(dtype))
    if kernel_dtype(dtype):
        raw = lib.gated_spmm(graph.rowptr, graph.col, graph.weight, xd, gd, r)
        assert torch.equal(raw, out)


@needs_cuda_kernels
@pytest.mark.parametrize(("rows", "cols"), [(57, 23), (9, 300), (3000, 3000)])
@pytest.mark.parametrize(("b", "f"), [(1, 37), (4, 64), (2, 128)])
def test_cuda_forward_matches_cpu_kernel(rows, cols, b, f):
    edges = random_edges(rows, cols, 6 * rows, seed=rows + f)
    graph = csr_from_edges(edges, rows, cols, torch.float32)
    x, gate = make_inputs(cols, b, f, torch.float32, seed=b)
    expect = ops.gated_spmm(graph, x, gate)
    got = ops.gated_spmm(to_dev(graph), x.to(DEVICE), gate.to(DEVICE))
    torch.testing.assert_close(got.cpu(), expect, rtol=1e-5, atol=1e-5)


@needs_cuda_kernels
def test_cuda_large_graph_many_blocks():
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


@needs_cuda_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_strided_and_misaligned_x(dtype):
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
        torch.testing.assert_close(out.cpu().double(), expect, **dev_tol(dtype), msg=name)


@needs_cuda_kernels
@pytest.mark.parametrize("name", sorted(GRAPHS))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("f", [1, 13, 64, 70])
def test_cuda_grads_dense(name, dtype, f):
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
    t = dev_tol(dtype)
    torch.testing.assert_close(xg.grad.cpu().double(), gx_exp, **t)
    # grad_gate sums B * F products: scale the absolute tolerance with it
    torch.testing.assert_close(
        gg.grad.cpu().double(), gg_exp, rtol=t["rtol"], atol=t["atol"] * 2 * f
    )


@needs_cuda_kernels
def test_cuda_grads_match_cpu_kernel_and_strided_grad_out():
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


@needs_cuda_kernels
@pytest.mark.parametrize("name", ["square", "tall", "wide", "n1_loop"])
def test_cuda_gradcheck(name):
    edges, r, s = GRAPHS[name]
    graph = to_dev(csr_from_edges(edges, r, s))
    x, gate = make_inputs(s, 2, 3, torch.float64, seed=11)
    x = x.to(DEVICE).requires_grad_()
    gate = gate.to(DEVICE).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, g: ops.gated_spmm(graph, a, g), (x, gate))
    raw = lambda a, g: lib.gated_spmm(graph.rowptr, graph.col, graph.weight, a, g, r)  # noqa: E731
    assert torch.autograd.gradcheck(raw, (x, gate))


@needs_cuda_kernels
def test_cuda_csr_transpose_matches_cpu():
    edges = random_edges(300, 200, 1500, seed=8)
    graph = csr_from_edges(edges, 300, 200, torch.float32)
    expect = lib.csr_transpose(graph.rowptr, graph.col, graph.weight, 200)
    g = to_dev(graph)
    got = lib.csr_transpose(g.rowptr, g.col, g.weight, 200)
    for u, v in zip(got, expect, strict=True):
        assert torch.equal(u.cpu(), v)  # stable: the same edge order


@needs_cuda_kernels
def test_cuda_bad_graphs_and_index_are_refused():
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


@needs_cuda_kernels
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_opcheck(dtype):
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


@needs_cuda_kernels
def test_cuda_opcheck_half():
    if not ON_CUDA:
        pytest.skip("float16 x is CUDA-only")
    g = to_dev(csr_from_edges(random_edges(30, 17, 80, seed=1), 30, 17))
    x, gate = (t.to(DEVICE, torch.float16) for t in make_inputs(17, 3, 32, torch.float64, 2))
    torch.library.opcheck(lib.gated_spmm.default, (g.rowptr, g.col, g.weight, x, gate, 30))


@needs_cuda_kernels
def test_cuda_torch_compile_fullgraph():
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
