"""Stream morph: [B, T, N, C] <-> [B, N, T*C] with features ordered (t, c)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dynst_fast.morph import graph_to_stream, select_sensors, stream_to_graph

shapes = st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 7), st.integers(1, 4))


@settings(max_examples=30, deadline=None)
@given(shapes)
def test_layout_and_round_trip(shape):
    b, t, n, c = shape
    x = torch.randn(b, t, n, c)
    s = graph_to_stream(x)
    assert s.shape == (b, n, t * c)
    for bi in range(b):
        for ti in range(t):
            for ni in range(n):
                for ci in range(c):
                    assert s[bi, ni, ti * c + ci] == x[bi, ti, ni, ci]
    back = stream_to_graph(s, t, c)
    assert back.shape == (b, t, n, c)
    assert torch.equal(back, x)
    assert torch.equal(graph_to_stream(stream_to_graph(s, t, c)), s)


def test_explicit_layout():
    # x[0, t, n, c] = 100 t + 10 n + c
    t, n, c = 2, 3, 2
    x = torch.tensor(
        [[[[100.0 * ti + 10 * ni + ci for ci in range(c)] for ni in range(n)] for ti in range(t)]]
    )
    s = graph_to_stream(x)
    assert s[0, 1].tolist() == [10.0, 11.0, 110.0, 111.0]


def test_non_contiguous_input():
    base = torch.randn(2, 3, 5, 4)  # [B, C, N, T]
    x = base.permute(0, 3, 2, 1)  # [B, T=4, N=5, C=3]
    assert not x.is_contiguous()
    s = graph_to_stream(x)
    assert torch.equal(s, graph_to_stream(x.contiguous()))
    assert torch.equal(stream_to_graph(s, 4, 3), x)


def test_gradient_flows_through():
    x = torch.randn(2, 3, 4, 2, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 4, 6, dtype=torch.float64)
    (graph_to_stream(x) * w).sum().backward()
    assert torch.equal(x.grad, stream_to_graph(w, 3, 2))


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"graph_to_stream: expected \[B, T, N, C\]"):
        graph_to_stream(torch.randn(2, 3, 4))
    with pytest.raises(ValueError, match="graph_to_stream"):
        graph_to_stream(torch.randn(1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"stream_to_graph: expected \[B, N, 3\*2\]"):
        stream_to_graph(torch.randn(2, 4, 5), 3, 2)
    with pytest.raises(ValueError, match="stream_to_graph"):
        stream_to_graph(torch.randn(2, 3, 4, 2), 3, 2)
    with pytest.raises(ValueError, match="stream_to_graph"):
        stream_to_graph(torch.randn(4, 6), 3, 2)


def test_select_sensors_is_the_sensor_gather():
    x = torch.randn(2, 3, 7, 2)
    for index in ([6, 0, 3], [4], list(range(7))):
        idx = torch.tensor(index)
        assert torch.equal(select_sensors(x, idx), x[:, :, idx])
    with pytest.raises(ValueError, match="duplicate"):
        select_sensors(x, torch.tensor([1, 1]))
    with pytest.raises(ValueError, match=r"select_sensors: expected \[B, T, N, C\]"):
        select_sensors(x[0], torch.tensor([1]))
