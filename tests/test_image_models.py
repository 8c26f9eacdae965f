"""Image backbones: the gated ViT and its compacted form (equivalence rule, work that
scales with K), and the SimVP-style CNN through InputMasked."""

from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from dynst_fast.models import GatedViT, InputMasked, SimVP, build_backbone
from dynst_fast.morph import PatchGrid
from dynst_fast.sensors import PatchSensors

H, W, P, T_IN, T_OUT, C = 11, 13, 3, 4, 3, 2  # padded to 12 x 15: 4 x 5 = 20 patches
N = 20


def _vit(seed: int = 0, **kw) -> GatedViT:
    torch.manual_seed(seed)
    opts = {"dim": 16, "depth": 2, "heads": 2, "decoder_dim": 8, "decoder_heads": 2, **kw}
    model = GatedViT(PatchGrid(H, W, P), T_IN, T_OUT, C, **opts).eval()
    with torch.no_grad():  # a trained-looking mask token, not the zero init
        model.decoder.mask_token.normal_()
    return model


def _active(k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(N, generator=g)[:k]
    theta = torch.rand(N, generator=g) * 2 - 0.5  # includes negative scores
    a = torch.zeros(N)
    a[idx] = 1.0
    return idx, theta, a


@pytest.mark.parametrize("k", [1, 2, 9, 19, 20])
@pytest.mark.parametrize("seed", [0, 1])
def test_vit_compact_equals_gated(k: int, seed: int) -> None:
    model = _vit(seed)
    assert model.num_sensors == N
    idx, theta, a = _active(k, seed + 10)
    x = torch.randn(3, T_IN, C, H, W)
    with torch.no_grad():
        full = model(x, theta * a)
        comp = model.compact(idx, theta)
        out = comp(comp.gather_input(x))
    assert out.shape == (3, T_OUT, C, H, W)
    torch.testing.assert_close(out, full, rtol=1e-5, atol=1e-5 * full.abs().max().item())


def test_vit_all_on_gate_equals_no_gate() -> None:
    model = _vit()
    x = torch.randn(2, T_IN, C, H, W)
    with torch.no_grad():
        torch.testing.assert_close(model(x, torch.ones(N)), model(x), rtol=1e-5, atol=1e-6)


def test_vit_switched_off_patch_influences_nothing() -> None:
    model = _vit()
    idx, theta, a = _active(7, 3)
    x = torch.randn(2, T_IN, C, H, W)
    grid = model.grid
    off = a[grid.patch_of_pixel()] == 0  # [H, W] cells of switched-off patches
    x2 = x.clone()
    x2[..., off] = torch.randn_like(x2[..., off]) * 100
    with torch.no_grad():
        torch.testing.assert_close(model(x, theta * a), model(x2, theta * a))


def test_vit_inactive_gate_gradient_sees_own_data() -> None:
    model = _vit()
    gate = torch.ones(N)
    gate[5] = 0.0
    r, c = divmod(5, model.grid.cols)
    x = torch.randn(2, T_IN, C, H, W)
    grads = []
    for scale in (1.0, 3.0):
        g = gate.clone().requires_grad_(True)
        x2 = x.clone()
        x2[..., r * P : (r + 1) * P, c * P : (c + 1) * P] *= scale
        model(x2, g).square().mean().backward()
        grads.append(g.grad[5].item())
    assert grads[0] != 0.0
    assert grads[0] != pytest.approx(grads[1], rel=1e-3)


def test_vit_compact_encoder_work_scales_with_k() -> None:
    model = _vit(depth=4, dim=32)
    x = torch.randn(2, T_IN, C, H, W)

    def flops(k: int) -> int:
        comp = model.compact(torch.arange(k))
        xa = comp.gather_input(x)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            comp(xa)
        return fc.get_total_flops()

    f = {k: flops(k) for k in (5, 10, 20)}
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        model(x, torch.ones(N))
    assert f[5] < f[10] < f[20] == pytest.approx(fc.get_total_flops(), rel=0.02)
    assert f[10] < 0.65 * f[20]  # encoder-heavy: half the patches, well under 2/3 the work


def test_vit_compact_shares_parameters_and_trains() -> None:
    model = _vit()
    comp = model.compact(torch.tensor([1, 4, 9]))
    assert {id(p) for p in comp.parameters()} <= {id(p) for p in model.parameters()}
    x = torch.randn(2, T_IN, C, H, W)
    comp(comp.gather_input(x)).sum().backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None


def test_vit_bad_input() -> None:
    model = _vit()
    with pytest.raises(ValueError, match=r"the model has 2 channel\(s\), the data 1"):
        model(torch.randn(1, T_IN, 1, H, W))
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(1, T_IN, C, H + 1, W))
    with pytest.raises(ValueError, match="x must have shape"):
        model(torch.randn(T_IN, C, H, W))
    with pytest.raises(ValueError, match="gate must have shape"):
        model(torch.randn(1, T_IN, C, H, W), torch.ones(N - 1))
    with pytest.raises(ValueError, match="duplicate"):
        model.compact(torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="out of range"):
        model.compact(torch.tensor([0, N]))
    comp = model.compact(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="active patches"):
        comp(torch.randn(1, 3, T_IN * C * P * P))
    with pytest.raises(ValueError, match="smaller than the patch size"):
        GatedViT(PatchGrid(2, 8, 3), T_IN, T_OUT)
    with pytest.raises(ValueError, match="patch size p must be a positive int"):
        GatedViT(PatchGrid(8, 8, 0), T_IN, T_OUT)


def test_simvp_through_input_masked() -> None:
    grid = PatchGrid(H, W, P)
    torch.manual_seed(0)
    options = {"hidden": 4, "translator": 8}
    model = build_backbone("simvp", PatchSensors(grid), T_IN, T_OUT, C, options).eval()
    assert isinstance(model, InputMasked) and isinstance(model.model, SimVP)
    assert model.gives_speedup is False
    idx, theta, a = _active(8, 2)
    x = torch.randn(2, T_IN, C, H, W)
    with torch.no_grad():
        full = model(x, theta * a)
        comp = model.compact(idx, theta)
        out = comp(comp.gather_input(x))
    assert out.shape == (2, T_OUT, C, H, W)
    torch.testing.assert_close(out, full, rtol=1e-5, atol=1e-5)
    assert comp.gives_speedup is False
    # the gate multiplies every cell of its patch
    x2 = x.clone()
    off = a[grid.patch_of_pixel()] == 0
    x2[..., off] += 5.0
    with torch.no_grad():
        torch.testing.assert_close(model(x2, theta * a), full)
    with pytest.raises(ValueError, match=r"x must have shape \[B, T, 2, 11, 13\]"):
        model(torch.randn(1, T_IN, 1, H, W))
