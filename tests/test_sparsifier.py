"""Schedule and sparsifier: swap exactness, sparsity on schedule, exact resume."""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import random_graph

from dynst_fast.models import GatedSTGCN
from dynst_fast.schedule import SCHEMES, Schedule
from dynst_fast.sparsifier import Sparsifier


def _schedule(scheme: str = "dynst", n: int = 40, s: float = 0.5, **kw) -> Schedule:
    base = dict(warmup_steps=3, rounds=5, network_steps=4, mask_steps=2, swap_fraction=0.1)
    base.update(kw)
    return Schedule(scheme, n, s, **base)


def _fake_backward(sp: Sparsifier, grad: torch.Tensor) -> None:
    gate = sp.gate()
    (gate * grad).sum().backward()


def test_swap_drops_lowest_active_and_regrows_highest_inactive() -> None:
    n = 30
    sp = Sparsifier(_schedule("fixed", n, 0.5, swap_fraction=0.2))
    active = sp.active.clone()
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(n, generator=g) for _ in range(3)]
    for gr in grads:  # what step() accumulates between two round ends
        sp.grad_sum += gr.abs().double()
        sp.grad_steps += 1
    mean = torch.stack([gr.abs() for gr in grads]).double().mean(0)
    k = 3
    drop, grow = sp.swap(k)
    act_idx = torch.nonzero(active).reshape(-1)
    ina_idx = torch.nonzero(~active).reshape(-1)
    expect_drop = act_idx[torch.argsort(mean[act_idx], stable=True)[:k]]
    expect_grow = ina_idx[torch.argsort(-mean[ina_idx], stable=True)[:k]]
    assert drop.tolist() == expect_drop.tolist()
    assert grow.tolist() == expect_grow.tolist()
    assert sp.num_active == int(active.sum())
    assert not sp.active[drop].any() and sp.active[grow].all()
    assert sp.grad_steps == 0 and float(sp.grad_sum.abs().sum()) == 0.0


def test_round_end_swap_uses_mean_abs_gradient_since_last_swap() -> None:
    n = 20
    sched = _schedule(
        "fixed", n, 0.5, warmup_steps=0, rounds=2, network_steps=2, mask_steps=1, swap_fraction=0.2
    )
    sp = Sparsifier(sched, l1=0.0)
    score = torch.linspace(-1, 1, n)  # |score| is smallest in the middle
    before = sp.active.clone()
    for _ in range(sched.round_steps):
        _fake_backward(sp, score)
        sp.step()
    rec = sp.history[-1]
    act_idx = torch.nonzero(before).reshape(-1)
    ina_idx = torch.nonzero(~before).reshape(-1)
    k = sched.swap_count(int(before.sum()))
    s = score.abs().double()
    assert rec["dropped"] == act_idx[torch.argsort(s[act_idx], stable=True)[:k]].tolist()
    assert rec["regrown"] == ina_idx[torch.argsort(-s[ina_idx], stable=True)[:k]].tolist()


@pytest.mark.parametrize("prune_by", ["theta", "taylor"])
def test_round_end_prunes_the_lowest_theta_or_taylor_score(prune_by: str) -> None:
    """One iterative round (no swap) on 10 sensors: theta falls with the index (set by
    hand), the gate gradient rises with it; ``theta`` prunes the last sensors, ``taylor``
    (|theta| x mean |dL/dg|) the ones where the product is lowest."""
    n = 10
    sched = _schedule("iterative", n, 0.3, warmup_steps=0, rounds=1, network_steps=0, mask_steps=2)
    sp = Sparsifier(sched, theta_lr=1e-12, l1=0.0, prune_by=prune_by)
    theta = torch.linspace(1.0, 0.5, n)
    with torch.no_grad():
        sp.theta.copy_(theta)
    grad = torch.tensor([0.01, 1, 1, 1, 1, 1, 1, 1, 1, 0.02])
    for _ in range(sched.round_steps):
        _fake_backward(sp, grad)
        sp.step()
    assert sp.history[-1]["pruned"] == 3
    score = theta if prune_by == "theta" else theta * grad
    expect = torch.argsort(score, stable=True)[:3]
    assert sorted(torch.nonzero(~sp.active).flatten().tolist()) == sorted(expect.tolist())
    assert Sparsifier.from_state_dict(sp.state_dict()).prune_by == prune_by


@pytest.mark.parametrize("scheme", [s for s in SCHEMES])
def test_sparsity_follows_schedule_exactly(scheme: str) -> None:
    sched = _schedule(scheme, 37, 0.6 if scheme != "dense" else 0.0)
    order = torch.randperm(37) if sched.scheme.needs_order else None  # qr, greedy, mask
    sp = Sparsifier(sched, seed=3, order=order)
    g = torch.Generator().manual_seed(1)
    total = sched.rounds_end + 5 if sched.uses_rounds else 10
    for step in range(total):
        assert sp.num_active == sched.active_count(step), (scheme, step)
        assert sp.step_count == step
        _fake_backward(sp, torch.randn(37, generator=g))
        sp.step()
    assert sp.num_active == sched.target_active()
    if scheme in ("dynst", "iterative"):
        counts = [sched.active_after_round(r) for r in range(sched.rounds + 1)]
        assert counts == sorted(counts, reverse=True) and len(set(counts)) == sched.rounds + 1


def test_schedule_round_targets() -> None:
    sched = Schedule("iterative", 100, 0.4, rounds=10, network_steps=3, mask_steps=1)
    assert [sched.active_after_round(r) for r in range(11)] == list(range(100, 59, -4))
    one = Schedule("one-shot", 100, 0.4, warmup_steps=10, network_steps=3, mask_steps=2)
    assert one.num_rounds == 1 and one.active_count(14) == 100 and one.active_count(15) == 60


@pytest.mark.parametrize("s", [-0.1, 1.0, 1.5])
def test_sparsity_outside_unit_interval(s: float) -> None:
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        Schedule("dynst", 10, s)


def test_bad_scheme_and_misuse() -> None:
    with pytest.raises(ValueError, match="unknown scheme"):
        Schedule("rigl", 10, 0.5)
    sp = Sparsifier(_schedule())
    with pytest.raises(RuntimeError, match="call gate"):
        sp.step()
    sp.gate()
    with pytest.raises(RuntimeError, match="no gradient"):
        sp.step()


def _train(model, sp, opt, batches, steps):
    for i in range(steps):
        x, y = batches[i % len(batches)]
        loss = (model(x, sp.gate()) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        if sp.trains_network:
            opt.step()
        sp.step()


def test_resume_from_state_dict_is_bit_identical() -> None:
    n = 16
    torch.manual_seed(0)
    model = GatedSTGCN(random_graph(n, seed=4), 6, 2, 1, hidden=8, blocks=1)
    sched = Schedule(
        "dynst", n, 0.5, warmup_steps=2, rounds=4, network_steps=3, mask_steps=2, swap_fraction=0.15
    )
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(4, 6, n, 1, generator=g), torch.randn(4, 2, n, 1, generator=g))
        for _ in range(5)
    ]
    total, half = sched.rounds_end + 3, 11  # half lands inside round 2's mask phase
    sp = Sparsifier(sched, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    _train(model, sp, opt, batches, half)
    assert sp.phase == "mask"
    saved = (
        copy.deepcopy(model.state_dict()),
        copy.deepcopy(opt.state_dict()),
        copy.deepcopy(sp.state_dict()),
    )
    _train(model, sp, opt, batches[half % 5 :] + batches[: half % 5], total - half)

    torch.manual_seed(123)  # a different global RNG state must not matter
    model2 = GatedSTGCN(random_graph(n, seed=4), 6, 2, 1, hidden=8, blocks=1)
    model2.load_state_dict(saved[0])
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-2)
    opt2.load_state_dict(saved[1])
    sp2 = Sparsifier.from_state_dict(saved[2])
    _train(model2, sp2, opt2, batches[half % 5 :] + batches[: half % 5], total - half)
    assert torch.equal(sp.theta, sp2.theta)
    assert torch.equal(sp.active, sp2.active)
    assert sp.history == sp2.history
    for (k, a), (_, b) in zip(model.state_dict().items(), model2.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert any("dropped" in h for h in sp.history)


def test_load_state_dict_rejects_other_schedule() -> None:
    sp = Sparsifier(_schedule())
    other = Sparsifier(_schedule(s=0.3))
    with pytest.raises(ValueError, match="schedule differs"):
        other.load_state_dict(sp.state_dict())
