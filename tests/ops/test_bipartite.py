"""``ops.bipartite``: the C++ kernel against the reference exactly and against the dense
slice ``A[:, idx]``, square and rectangular graphs; ``opcheck`` and ``torch.compile`` from
one sample generator. (Its CUDA kernel and the errors it shares with induce_subgraph are
tested in test_induce_subgraph.py.)"""

from __future__ import annotations

import torch
from graph_cases import (
    GRAPHS,
    CSRGraph,
    check_bipartite,
    csr_from_edges,
    graphs,
    lib,
)
from harness import backend_fixture, check_compile, check_opcheck, check_values
from hypothesis import given, settings

from dynst_fast import ops
from dynst_fast.ops import reference

SETTINGS = settings(max_examples=60, deadline=None)
backend = backend_fixture(triton=False)


def samples(device: str):
    """``(graph, index)`` of ``ops.bipartite``: square with duplicates and an empty row, a
    rectangular (wide) graph, K = 1 and unsorted indices, a graph without edges."""
    g = CSRGraph(
        torch.tensor([0, 3, 3, 6, 7, 9]),
        torch.tensor([2, 0, 3, 4, 2, 2, 1, 0, 4]),
        torch.arange(1.0, 10.0, dtype=torch.float64),
    ).to(device)
    for index in ([4, 0, 2], [3]):
        yield g, torch.tensor(index, device=device)
    edges, r, s = GRAPHS["wide"]
    yield csr_from_edges(edges, r, s).to(device), torch.tensor([6, 0, 3], device=device)
    no_edges = torch.zeros(0, dtype=torch.int64)
    empty = CSRGraph(torch.zeros(4, dtype=torch.int64), no_edges, num_cols=5)
    yield empty.to(device), torch.tensor([4, 0], device=device)


def test_values(backend):
    check_values(ops.bipartite, reference.bipartite, samples(backend))


def test_opcheck(backend):
    check_opcheck(
        lib.bipartite.default,
        [(g.rowptr, g.col, g.weight, i, g.num_cols) for g, i in samples(backend)],
    )


def test_torch_compile(backend):
    def arrays(g, index):
        out = ops.bipartite(g, index)
        return out.rowptr, out.col, out.weight

    check_compile(arrays, samples(backend))


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
