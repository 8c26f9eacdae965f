"""Backbone contract: the gated form and the compacted form agree (equivalence rule)."""

from __future__ import annotations

import pytest
import torch
from conftest import random_graph
from graph_cases import DEVICE, csr_from_edges, needs_cuda_kernels, random_edges
from torch.utils.flop_counter import FlopCounterMode

from dynst_fast.models import GatedSTGCN, InputMasked, build_backbone
from dynst_fast.sensors import GraphSensors


def _model(n: int = 23, t_in: int = 12, t_out: int = 3, c: int = 2, seed: int = 0) -> GatedSTGCN:
    torch.manual_seed(seed)
    return GatedSTGCN(random_graph(n, seed=seed), t_in, t_out, c, hidden=16).eval()


def _gate(n: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=g)[:k]
    theta = torch.rand(n, generator=g) * 2 - 0.5
    return idx, theta


@pytest.mark.parametrize("k", [1, 2, 7, 22, 23])
@pytest.mark.parametrize("seed", [0, 1])
def test_compact_equals_gated(k: int, seed: int) -> None:
    n = 23
    model = _model(n, seed=seed)
    idx, theta = _gate(n, k, seed + 10)
    active = torch.zeros(n)
    active[idx] = 1
    x = torch.randn(3, 12, n, 2)
    with torch.no_grad():
        full = model(x, theta * active)
        comp = model.compact(idx, theta)(x[:, :, idx])
    assert comp.shape == (3, 3, n, 2)
    torch.testing.assert_close(comp, full, rtol=1e-5, atol=1e-5 * full.abs().max().item())


def test_switched_off_sensor_influences_nothing() -> None:
    n = 23
    model = _model(n)
    idx, theta = _gate(n, 9, 3)
    gate = torch.zeros(n)
    gate[idx] = theta[idx]
    x = torch.randn(2, 12, n, 2)
    off = [j for j in range(n) if j not in set(idx.tolist())]
    x2 = x.clone()
    x2[:, :, off] = torch.randn(2, 12, len(off), 2) * 100
    with torch.no_grad():
        torch.testing.assert_close(model(x, gate), model(x2, gate))


def test_inactive_gate_gradient_sees_own_data() -> None:
    """dL/dg_j for an inactive j is the gain of switching it on: it depends on x_j."""
    n = 23
    model = _model(n)
    gate = torch.ones(n)
    gate[5] = 0.0
    x = torch.randn(2, 12, n, 2)
    grads = []
    for scale in (1.0, 3.0):
        g = gate.clone().requires_grad_(True)
        x2 = x.clone()
        x2[:, :, 5] *= scale
        model(x2, g).square().mean().backward()
        grads.append(g.grad[5].item())
    assert grads[0] != 0.0
    assert grads[0] != pytest.approx(grads[1], rel=1e-3)


def test_compact_work_scales_with_k() -> None:
    n = 64
    model = _model(n, seed=2)
    x = torch.randn(4, 12, n, 2)

    def flops(k: int) -> int:
        idx = torch.arange(k)
        comp = model.compact(idx)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            comp(x[:, :, idx])
        return fc.get_total_flops()

    f = {k: flops(k) for k in (8, 16, 32, 64)}
    assert f[8] < f[16] < f[32] < f[64]
    # per-sensor work is constant: doubling K adds the same work each time (affine in K)
    assert (f[64] - f[32]) == pytest.approx(2 * (f[32] - f[16]), rel=0.05)
    # and most of the dense cost is per active sensor (the N-wide read-out is the rest)
    per_sensor = (f[64] - f[32]) / 32
    assert per_sensor * 64 > 0.5 * f[64]
    comp = model.compact(torch.arange(16))
    assert comp.subgraph.num_rows == 16 and comp.readout_graph.shape == (n, 16)


def test_compact_shares_parameters() -> None:
    model = _model()
    comp = model.compact(torch.tensor([1, 4, 9]))
    ids = {id(p) for p in model.parameters()}
    assert {id(p) for p in comp.parameters()} <= ids


def test_input_masked_equivalence() -> None:
    n = 23
    space = GraphSensors(random_graph(n))
    inner = build_backbone("stgcn", space, 12, 3, 2, {"hidden": 8}).eval()
    model = InputMasked(inner, space, 12, 3, 2)
    idx, theta = _gate(n, 10, 5)
    active = torch.zeros(n)
    active[idx] = 1
    x = torch.randn(2, 12, n, 2)
    with torch.no_grad():
        full = model(x, theta * active)
        comp = model.compact(idx, theta)(x[:, :, idx])
    torch.testing.assert_close(comp, full, rtol=1e-5, atol=1e-6)
    assert comp.abs().sum() > 0


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((2, 11, 23, 2), "x must have shape"),
        ((2, 12, 22, 2), "x must have shape"),
        ((12, 23, 2), "x must have shape"),
        ((2, 12, 23, 1), "x must have shape"),
    ],
)
def test_bad_shapes(shape: tuple[int, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _model()(torch.randn(*shape))


def test_bad_gate_and_index() -> None:
    model = _model()
    with pytest.raises(ValueError, match="gate must have shape"):
        model(torch.randn(1, 12, 23, 2), torch.ones(5))
    with pytest.raises(ValueError, match="duplicate"):
        model.compact(torch.tensor([1, 1, 2]))
    with pytest.raises(ValueError, match="out of range"):
        model.compact(torch.tensor([1, 40]))
    comp = model.compact(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="x must have shape"):
        comp(torch.randn(1, 12, 3, 2))


# --------------------------------------------------------------------------- on the GPU
@needs_cuda_kernels
def test_gated_and_compact_stgcn_on_device_match_cpu():
    """The graph backbone and its compacted form run the device's graph kernels, in
    training (gradients) and in inference, and agree with the CPU kernels."""
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


def test_compact_refuses_float_indices_and_names_a_bool_mask() -> None:
    model = GatedSTGCN(random_graph(10, seed=0), t_in=4, t_out=2, hidden=8)
    with pytest.raises(TypeError, match="int64 or int32, got torch.float32"):
        model.compact(torch.tensor([0.9, 2.5]))  # truncating would silently pick 0 and 2
    mask = torch.zeros(10, dtype=torch.bool)
    mask[[1, 4]] = True
    with pytest.raises(TypeError, match="bool mask: pass torch.nonzero\\(mask\\)"):
        model.compact(mask)
    assert model.compact([1, 4]).index.tolist() == [1, 4]
    assert model.compact(torch.tensor([4, 1], dtype=torch.int32)).index.dtype == torch.int64
