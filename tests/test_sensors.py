"""Sensor spaces: the one place that knows graph nodes from image patches. Gathering the
active input, the stream morph, the gate broadcast, state round trips, layout checks,
metrics, sidecars and serving wrappers, for both kinds."""

from __future__ import annotations

import pytest
import torch
from conftest import random_graph

from dynst_fast import ops
from dynst_fast.morph import PatchGrid
from dynst_fast.ops import reference
from dynst_fast.sensors import GraphSensors, PatchSensors, space_from_state


def _graph(n: int = 9) -> GraphSensors:
    return GraphSensors(random_graph(n, seed=2), [f"s{i}" for i in range(n)])


def _patches() -> PatchSensors:
    return PatchSensors(PatchGrid(5, 7, 2))  # padded to 6 x 8: 3 x 4 = 12 patches


def test_graph_space_gathers_morphs_and_gates() -> None:
    space = _graph()
    x = torch.randn(2, 4, 9, 3)
    idx = torch.tensor([7, 0, 3])
    assert torch.equal(space.gather(x, idx), x[:, :, idx])
    s = space.to_stream(x)
    assert s.shape == (2, 9, 12) and torch.equal(space.from_stream(s, 4, 3), x)
    stream, t = space.active_stream(x[:, :, idx], 3)
    assert t == 4 and torch.equal(stream, space.to_stream(x)[:, idx])
    gate = torch.rand(9)
    assert torch.equal(space.gate_input(x, gate), x * gate[None, None, :, None])
    assert torch.equal(space.cells(x), x) and torch.equal(space.from_cells(x, x), x)
    with pytest.raises(ValueError, match=r"M: x must have shape \[B, 4, 9, 3\]"):
        space.check_input(x[:, :3], "M", 4, 3)
    with pytest.raises(ValueError, match=r"M: x must have shape \[B, T, 3, C\]"):
        space.check_active_input(x, 3, "M", None, None)


def test_patch_space_gathers_morphs_and_gates() -> None:
    space = _patches()
    assert space.ids[5] == "r1c1" and space.num_sensors == 12
    x = torch.randn(2, 3, 2, 5, 7)
    idx = torch.tensor([11, 0, 6])
    want = reference.patchify_compact(x, torch.ones(12), idx, 2)
    assert torch.equal(space.gather(x, idx), want)
    s = space.to_stream(x)
    assert s.shape == (2, 12, 3 * 2 * 4) and torch.equal(space.from_stream(s, 3, 2), x)
    stream, t = space.active_stream(want, 2)
    assert t == 3 and torch.equal(stream, want)
    gate = torch.rand(12)
    gated = space.gate_input(x, gate)
    assert torch.allclose(space.to_stream(gated), s * gate[None, :, None])  # padding is 0
    cells = space.cells(x)
    assert cells.shape == (2, 3, 35, 2) and torch.equal(space.from_cells(cells, x), x)
    with pytest.raises(ValueError, match=r"the model has 2 channel\(s\), the data 1"):
        space.check_input(x[:, :, :1], "M", 3, 2)
    with pytest.raises(ValueError, match=r"M: expected the active patches \[B, 3, 24\]"):
        space.check_active_input(want[:, :, :-1], 3, "M", 3, 2)


def test_spaces_round_trip_their_state_and_check_layouts() -> None:
    g, p = _graph(), _patches()
    g2, p2 = space_from_state(g.state()), space_from_state(p.state())
    assert isinstance(g2, GraphSensors) and g2.ids == g.ids
    assert torch.equal(g2.graph.to_dense(), g.graph.to_dense())
    assert isinstance(p2, PatchSensors) and p2.grid == p.grid
    g.check_matches(g2)
    p.check_matches(p2)
    with pytest.raises(ValueError, match="model for graph data but the data is grid data"):
        g.check_matches(p)
    with pytest.raises(ValueError, match="has 9 graph sensors; the data does not match"):
        g.check_matches(_graph(8))
    with pytest.raises(
        ValueError, match="frames are 6x7 but the checkpoint's model was trained on 5x7"
    ):
        p.check_matches(PatchSensors(PatchGrid(6, 7, 2)))
    with pytest.raises(ValueError, match="unknown sensor space 'mesh'"):
        space_from_state({"kind": "mesh"})


def test_layout_fields_sidecars_and_planted_sparsity() -> None:
    g, p = _graph(), _patches()
    assert g.metrics_fields() == {} and g.notes({}) == []
    assert p.metrics_fields()["grid"] == {"height": 5, "width": 7, "patch": 2, "rows": 3,
                                          "cols": 4, "pad_bottom": 1, "pad_right": 1}  # fmt: skip
    assert "padded with 1 row(s)" in p.notes({"data_range": 2.0})[0]
    idx = torch.tensor([1, 4])
    assert g.sidecar(idx, 12, 3, 1)["input"]["shape"] == ["batch", 12, 2, 1]
    side = p.sidecar(idx, 4, 2, 1)
    assert side["kind"] == "image" and side["input"]["shape"] == ["batch", 2, 4, 1, 2, 2]
    assert side["output"]["shape"] == ["batch", 2, 1, 5, 7] and side["grid"]["rows"] == 3
    assert g.planted_sparsity is None
    planted = GraphSensors(random_graph(10), planted=[1, 2])
    assert planted.planted_sparsity == pytest.approx(0.8)


@pytest.mark.parametrize("make", [_graph, _patches])
def test_serving_wrappers_fold_the_normalisation_in(make) -> None:
    """The served module, on original units, equals normalise -> model -> denormalise."""
    space = make()
    torch.manual_seed(0)
    full = torch.randn(3, 4, 9, 2) if space.kind == "graph" else torch.randn(3, 4, 2, 5, 7)
    stat_shape = (9, 2) if space.kind == "graph" else (2, 5, 7)
    mean, std = torch.randn(stat_shape), torch.rand(stat_shape) + 0.5
    idx = torch.tensor([6, 2])

    class Model(torch.nn.Module):  # any model of the active input: a fixed function of it
        def forward(self, xa):
            return xa.sum() * torch.ones_like(mean)[None, None] + xa.mean()

    served = space.serving_module(Model(), idx, mean, std)
    raw = full * std + mean
    got = served(space.serving_input(raw, idx))
    norm_active = space.gather(full, idx)
    want = Model()(norm_active) * std + mean
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


def test_select_sensors_is_the_compact_op() -> None:
    from dynst_fast.sensors import select_sensors

    x = torch.randn(2, 3, 6, 2)
    idx = torch.tensor([5, 1])
    torch.testing.assert_close(
        select_sensors(x, idx),
        ops.compact(x.reshape(6, 6, 2), torch.ones(6), idx).reshape(2, 3, 2, 2),
    )


def test_kept_cells_mark_the_values_of_the_kept_sensors() -> None:
    patches = PatchSensors(PatchGrid(5, 6, 4))  # padded to 8 x 8: 2 x 2 patches
    kept = patches.kept_cells(torch.tensor([1, 2]), (1, 5, 6))
    expect = torch.zeros(1, 5, 6, dtype=torch.bool)
    expect[0, :4, 4:] = True  # patch 1: rows 0-3, columns 4-5 (6, 7 are padding)
    expect[0, 4:, :4] = True  # patch 2: row 4 (5-7 are padding), columns 0-3
    assert torch.equal(kept, expect)
    graph = GraphSensors(random_graph(6))
    kept = graph.kept_cells(torch.tensor([0, 4]), (6, 2))
    assert kept[:, 0].tolist() == [True, False, False, False, True, False]
    assert torch.equal(kept[:, 0], kept[:, 1])
