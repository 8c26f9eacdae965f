"""Graphs and helpers shared by the graph-op tests: hand-built CSR graphs with self-loops,
duplicate edges, empty rows and isolated nodes, dense matrices assembled edge by edge
(never from ``dynst_fast.ops.reference``), random graphs, and the device the CUDA tests
run on.

``DYNST_CUDA_TEST_DEVICE=cpu`` runs the CUDA tests on CPU (where they exercise the CPU
kernels, and the PyTorch reference for float16/bfloat16): only to check the tests
themselves on a machine without a GPU.
"""

from __future__ import annotations

import os

import pytest
import torch
from hypothesis import strategies as st

from dynst_fast import _extension, ops
from dynst_fast.graph import CSRGraph
from dynst_fast.ops import reference

lib = torch.ops.dynst_fast

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


# ------------------------------------------------------------------ the CUDA tests' device
DEVICE = torch.device(os.environ.get("DYNST_CUDA_TEST_DEVICE", "cuda"))
ON_CUDA = DEVICE.type == "cuda"
needs_cuda_kernels = pytest.mark.skipif(
    ON_CUDA and not (torch.cuda.is_available() and _extension.cuda_kernels_built()),
    reason="needs a GPU and dynst_fast._C built with its CUDA kernels",
)
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


def dev_tol(dtype):
    t = {torch.float32: 1e-4, torch.float64: 1e-10, torch.float16: 2e-2, torch.bfloat16: 8e-2}
    return {"rtol": t[dtype], "atol": t[dtype]}


def to_dev(graph: CSRGraph) -> CSRGraph:
    return graph.to(DEVICE)


def kernel_dtype(dtype) -> bool:
    """Whether the kernel of DEVICE takes x of this dtype (else the reference runs)."""
    return ON_CUDA or dtype in (torch.float32, torch.float64)
