"""``dynst_fast.plot``: the spectral layout of graphs without coordinates, dense and
sparse (large graphs never build the N x N Laplacian)."""

from __future__ import annotations

import numpy as np
import pytest

from dynst_fast import plot
from dynst_fast.data import synthetic_sensor_network
from dynst_fast.graph import CSRGraph


def _projector(v: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(v)
    return q @ q.T


@pytest.mark.parametrize("n", [30, 120])
def test_sparse_layout_spans_the_dense_eigenmap(monkeypatch, n):
    graph = synthetic_sensor_network(num_sensors=n, num_planted=4, num_steps=50).adjacency
    dense = plot._spectral(graph)
    monkeypatch.setattr(plot, "DENSE_LAYOUT_MAX", 0)
    sparse = plot._spectral(graph)
    assert sparse.shape == (n, 2)
    np.testing.assert_allclose(_projector(sparse), _projector(dense), atol=1e-6)


def test_large_graph_layout_never_densifies(monkeypatch):
    graph = synthetic_sensor_network(num_sensors=3000, num_planted=30, num_steps=50).adjacency

    def refuse(self):
        raise AssertionError("to_dense called on a large graph")

    monkeypatch.setattr(CSRGraph, "to_dense", refuse)
    pos, _, _ = plot.layout(graph, None)
    assert pos.shape == (3000, 2) and np.isfinite(pos).all()
