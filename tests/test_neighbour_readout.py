"""The read-out by attention over the nearest active sensors (``nn.NeighbourReadout``, the
STGCN's ``attention`` option) and the candidate lists the sensor spaces give it: the
equivalence rule for several active sets (with failed sensors too), a switched-off
sensor's gate gradient, and lists built in O(N L) memory."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import random_graph

from dynst_fast.models import GatedSTGCN
from dynst_fast.nn import NeighbourReadout
from dynst_fast.sensors import GraphSensors, PatchSensors
from dynst_fast.sensors.nearness import nearest_by_coords, nearest_on_graph

N = 30


def _model(seed: int = 0, **options) -> GatedSTGCN:
    g = torch.Generator().manual_seed(seed)
    coords = torch.rand(N, 2, generator=g).numpy() * 10
    space = GraphSensors(random_graph(N, seed=seed), coords=coords, geographic=False)
    torch.manual_seed(seed)
    opts = dict(hidden=8, readout=8, embed=4, attention=True, neighbours=3, heads=2,
                candidates=10)  # fmt: skip
    return GatedSTGCN(space, 6, 2, 1, **{**opts, **options}).eval()


@pytest.mark.parametrize("near", ["geo", "graph"])
@pytest.mark.parametrize("keep", [25, 12, 4, 1])
def test_compacted_equals_gated(near, keep):
    """For every active set, the compacted model equals the gated one; at 4 and 1 active
    sensors many sensors have no active one in their list (the "no neighbour" slot)."""
    model = _model(near=near)
    g = torch.Generator().manual_seed(keep)
    index = torch.randperm(N, generator=g)[:keep].sort().values
    theta = torch.rand(N, generator=g) + 0.5
    gate = torch.zeros(N)
    gate[index] = theta[index]
    x = torch.randn(3, 6, N, 1, generator=g)
    compact = model.compact(index, theta)
    with torch.no_grad():
        torch.testing.assert_close(compact(x[:, :, index]), model(x, gate), rtol=1e-5, atol=1e-5)
        alive = torch.ones(keep)
        alive[0] = 0.0  # a failed sensor: as a gate of 0 in the gated model
        dead = gate.clone()
        dead[index[0]] = 0.0
        if keep > 1:
            torch.testing.assert_close(compact(x[:, :, index], alive), model(x, dead),
                                       rtol=1e-5, atol=1e-5)  # fmt: skip


def test_a_switched_off_sensor_has_a_gate_gradient():
    """A switched-off sensor nearer to some sensor than its m-th active neighbour gets a
    gate gradient through the attention (the gain of switching it on), not zero."""
    model = _model()
    readout = model.neighbour
    g = torch.Generator().manual_seed(1)
    r = torch.randn(2, N, 8, generator=g)
    gate = (torch.rand(N, generator=g) < 0.5).float()
    gate = gate.requires_grad_()
    out = readout(torch.randn(1, N, 4, generator=g), r, gate)
    out.square().sum().backward()
    off = torch.nonzero(gate.detach() == 0).flatten()
    assert off.numel() and bool((gate.grad[off].abs() > 1e-6).any())


def test_the_compacted_readout_costs_m_not_the_list():
    model = _model(candidates=12)
    index = torch.arange(0, N, 2)
    compact = model.compact(index)
    assert compact.neighbour.local.shape == (N, 3)  # m per sensor, not L or K
    assert int(compact.neighbour.local.max()) < index.numel()


def test_readout_arguments():
    cand = torch.tensor([[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="multiple of"):
        NeighbourReadout(cand, torch.zeros(2, 2), 2, 2, width=5, heads=2)
    with pytest.raises(ValueError, match="both be"):
        NeighbourReadout(cand, torch.zeros(2, 3), 2, 2, width=4, heads=2)


def test_candidate_lists():
    pts = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [1.0, 0.0]])
    idx, dist = nearest_by_coords(pts, 3)
    assert idx[0].tolist() == [0, 1, 3]  # a tie at distance 1: the lower number first
    np.testing.assert_allclose(dist[0], [0, 1, 1])
    chain = random_graph(1)  # a single node: itself only
    idx, _ = nearest_on_graph(chain, 4)
    assert idx.tolist() == [[0]]
    from dynst_fast.graph import CSRGraph

    path = CSRGraph.from_edge_index(torch.tensor([[0, 1, 2], [1, 2, 3]]), 5)  # 4 is alone
    idx, dist = nearest_on_graph(path, 3)
    assert idx[0].tolist() == [0, 1, 2] and dist[0].tolist() == [0, 1, 2]
    assert idx[4].tolist() == [4, -1, -1] and np.isinf(dist[4, 1])  # unreachable: padding
    grid = PatchSensors(__import__("dynst_fast").morph.PatchGrid(8, 12, 4))  # 2 x 3 patches
    idx, dist = grid.candidates(4)
    assert idx[0].tolist() == [0, 1, 3, 4] and dist[0, 3] == pytest.approx(2**0.5)
    with pytest.raises(ValueError, match="not one of"):
        grid.candidates(4, "geo")


CHILD = """
import json, resource, sys
from dynst_fast.data import synthetic_sensor_network
ds = synthetic_sensor_network(num_sensors=16384, num_planted=10, num_steps=60)
space = ds.sensor_space(4)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
grew = {}
for by in ("graph", "geo"):
    idx, dist = space.candidates(32, by)
    assert idx.shape == (16384, 32) and (idx[:, 0] == range(16384)).all()
    grew[by] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
print(json.dumps(grew))
"""


@pytest.mark.slow
def test_candidate_lists_at_16384_sensors_take_n_l_memory():
    r = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                       timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    grew_kb = json.loads(r.stdout.strip().splitlines()[-1])
    n_by_n_kb = 16384 * 16384 // 1024  # one N x N byte mask: 256 MiB
    assert all(kb < n_by_n_kb / 4 for kb in grew_kb.values()), grew_kb


def test_every_sensor_on_needs_no_search():
    """``model(x)`` (no gate: the dense model) reads each sensor's first m listed
    neighbours directly, and equals the gated model with every gate 1."""
    model = _model(candidates=12)
    x = torch.randn(2, 6, N, 1, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x, torch.ones(N)), rtol=1e-5, atol=1e-5)
