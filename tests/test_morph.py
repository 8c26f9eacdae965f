"""Stream morph: [B, T, N, C] <-> [B, N, T*C] with features ordered (t, c), and images
[B, T, C, H, W] <-> patches [B, N, T*C*p*p] with padding recorded and undone."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dynst_fast.morph import (
    PatchGrid,
    gate_to_pixels,
    graph_to_stream,
    image_to_stream,
    stream_to_graph,
    stream_to_image,
)
from dynst_fast.ops import reference
from dynst_fast.sensors import select_sensors

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


# --------------------------------------------------------------------------- images
image_shapes = st.tuples(
    st.integers(1, 2),  # B
    st.integers(1, 3),  # T
    st.integers(1, 2),  # C
    st.integers(1, 11),  # H
    st.integers(1, 11),  # W
    st.integers(1, 5),  # p
).filter(lambda s: s[3] >= s[5] and s[4] >= s[5])


@settings(max_examples=40, deadline=None)
@given(image_shapes)
def test_image_round_trip_with_padding(shape):
    b, t, c, h, w, p = shape
    x = torch.randn(b, t, c, h, w)
    s, grid = image_to_stream(x, p)
    assert (grid.pad_h, grid.pad_w) == (-h % p, -w % p)
    assert s.shape == (b, grid.rows * grid.cols, t * c * p * p)
    assert torch.equal(s, reference.patchify(x, p))
    back = stream_to_image(s, grid, t, c)
    assert back.shape == x.shape
    assert torch.equal(back, x)


def test_image_layout_and_padding_cells():
    # one frame 5 x 7, p = 3: padded to 6 x 9, 2 x 3 patches; x[0, 0, 0, y, x] = 10 y + x
    h, w, p = 5, 7, 3
    x = (10 * torch.arange(h)[:, None] + torch.arange(w)[None, :]).float()[None, None, None]
    s, grid = image_to_stream(x, p)
    assert (grid.rows, grid.cols, grid.pad_h, grid.pad_w) == (2, 3, 1, 2)
    assert s[0, 1].tolist() == [3, 4, 5, 13, 14, 15, 23, 24, 25]  # patch r0c1, (dy, dx)
    assert s[0, 5].tolist() == [36, 0, 0, 46, 0, 0, 0, 0, 0]  # r1c2: mostly padding
    assert grid.patch_ids()[5] == "r1c2"
    assert grid.patch_of_pixel()[4, 6] == 5
    assert grid.valid_fraction()[5] == pytest.approx(2 / 9)
    # the padding is cropped off the way back, whatever the model wrote into it
    s2 = s.clone()
    s2[0, 5, 1] = 1e6
    assert torch.equal(stream_to_image(s2, grid, 1, 1), x)
    gp = gate_to_pixels(torch.arange(6.0), grid)
    assert gp.shape == (h, w) and gp[4, 6] == 5 and gp[0, 0] == 0


def test_image_morph_gradient_and_non_contiguous():
    base = torch.randn(2, 6, 7, 1, 3, dtype=torch.float64)  # [B, W, H, C, T]
    x = base.permute(0, 4, 3, 2, 1).requires_grad_(True)  # [B, T=3, C=1, H=7, W=6]
    s, grid = image_to_stream(x, 4)
    wgt = torch.randn_like(s)
    (s * wgt).sum().backward()
    assert torch.equal(x.grad, stream_to_image(wgt, grid, 3, 1))


@pytest.mark.parametrize(
    ("shape", "p", "match"),
    [
        ((1, 2, 1, 3, 8), 4, "frame size 3x8 is smaller than the patch size 4"),
        ((1, 2, 1, 8, 2), 3, "frame size 8x2 is smaller"),
        ((1, 2, 1, 8, 8), 0, "patch size p must be a positive int"),
        ((1, 2, 1, 8, 8), -2, "patch size p must be a positive int"),
        ((2, 1, 8, 8), 2, r"expected \[B, T, C, H, W\]"),
    ],
)
def test_image_bad_input(shape, p, match):
    with pytest.raises(ValueError, match=match):
        image_to_stream(torch.randn(*shape), p)


def test_stream_to_image_bad_shape():
    grid = PatchGrid(5, 7, 3)
    with pytest.raises(ValueError, match="stream_to_image"):
        stream_to_image(torch.randn(1, 5, 9), grid, 1, 1)
    with pytest.raises(ValueError, match="stream_to_image"):
        stream_to_image(torch.randn(1, 6, 10), grid, 1, 1)
    with pytest.raises(ValueError, match="one entry per patch"):
        gate_to_pixels(torch.ones(5), grid)


def test_select_sensors_is_the_sensor_gather():
    x = torch.randn(2, 3, 7, 2)
    for index in ([6, 0, 3], [4], list(range(7))):
        idx = torch.tensor(index)
        assert torch.equal(select_sensors(x, idx), x[:, :, idx])
    with pytest.raises(ValueError, match="duplicate"):
        select_sensors(x, torch.tensor([1, 1]))
    with pytest.raises(ValueError, match=r"select_sensors: expected \[B, T, N, C\]"):
        select_sensors(x[0], torch.tensor([1]))
