"""``ops.select_swap``: against brute-force python sorting (ties, infinities, -0.0, N = 1,
every k), the reference on every backend, ``opcheck`` and ``torch.compile`` from one
sample generator, and its argument errors (with those of ``prune_lowest``, which shares
the checks)."""

from __future__ import annotations

import pytest
import torch
from harness import (
    FAST,
    SMALL,
    backend_fixture,
    check_compile,
    check_opcheck,
    check_values,
)
from hypothesis import given
from hypothesis import strategies as st

from dynst_fast import ops
from dynst_fast.ops import reference

backend = backend_fixture()


def samples(device: str, blocks: bool = True):
    """``(score, active, k[, movable])`` of ``ops.select_swap``: ties, +-0.0 and
    infinities, k = 0, k = |active| = |inactive|, several blocks of the Triton select,
    float16 to float64, with and without a movable mask (keep / forbid constraints)."""
    g = torch.Generator().manual_seed(3)
    for dtype in (torch.float16, torch.float32, torch.float64):
        score = torch.tensor([1.0, 0.0, -0.0, 1.0, 2.0, 2.0, 0.0, float("inf"), -float("inf")])
        active = torch.tensor([True, True, True, False, False, False, True, True, False])
        for k in (0, 2, 4):
            yield score.to(device, dtype), active.to(device), k
        # the lowest active (1, 2) and the highest inactive (4, 5) are not movable
        movable = torch.tensor([True, False, False, True, False, False, True, True, True])
        yield score.to(device, dtype), active.to(device), 2, movable.to(device)
        if not blocks:
            continue
        n = 2 * 4096 + 17
        score = (torch.randint(-50, 50, (n,), generator=g).to(dtype) / 8).to(device)
        active = (torch.rand(n, generator=g) < 0.4).to(device)
        yield score, active, 333
        yield score, active, 333, (torch.rand(n, generator=g) < 0.7).to(device)


def test_values(backend):
    check_values(ops.select_swap, reference.select_swap, samples(backend))


def test_opcheck(backend):
    # opcheck calls the op about ten times per sample: the small samples only
    check_opcheck(torch.ops.dynst_fast.select_swap.default, samples(backend, blocks=False))


def test_torch_compile(backend):
    check_compile(ops.select_swap, samples(backend))


# --------------------------------------------------------------------------- brute force
def brute_select_swap(score: list[float], active: list[bool], k: int):
    act = [i for i in range(len(score)) if active[i]]
    ina = [i for i in range(len(score)) if not active[i]]
    drop = sorted(act, key=lambda i: (score[i], i))[:k]
    grow = sorted(ina, key=lambda i: (-score[i], i))[:k]
    return drop, grow


SCORES = st.sampled_from([0.0, 0.5, 1.0, 2.0, -1.0])


@st.composite
def selection_case(draw, scores=SCORES):
    n = draw(st.integers(1, 17))
    score = draw(st.lists(scores, min_size=n, max_size=n))
    active = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return score, active


@FAST
@given(selection_case(), st.data())
def test_select_swap_brute_force(case, data):
    score, active = case
    n_act = sum(active)
    k = data.draw(st.integers(0, min(n_act, len(score) - n_act)))
    drop, grow = ops.select_swap(torch.tensor(score), torch.tensor(active), k)
    assert drop.dtype == torch.int64 and grow.dtype == torch.int64
    exp_drop, exp_grow = brute_select_swap(score, active, k)
    assert drop.tolist() == exp_drop
    assert grow.tolist() == exp_grow


def test_select_swap_explicit_ties():
    score = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 0.0])
    active = torch.tensor([True, True, True, False, False, False, True])
    drop, grow = ops.select_swap(score, active, 2)
    assert drop.tolist() == [1, 2]
    assert grow.tolist() == [4, 5]
    drop, grow = ops.select_swap(score, active, 3)  # k = |inactive|
    assert drop.tolist() == [1, 2, 6]
    assert grow.tolist() == [4, 5, 3]


def test_select_swap_limits():
    score = torch.tensor([3.0, 1.0, 2.0, 5.0, 4.0])
    active = torch.tensor([True, True, False, False, False])
    drop, grow = ops.select_swap(score, active, 2)  # k = |active|
    assert drop.tolist() == [1, 0]
    assert grow.tolist() == [3, 4]
    with pytest.raises(ValueError, match="larger than the 2 active"):
        ops.select_swap(score, active, 3)
    drop, grow = ops.select_swap(score, ~active, 2)  # k = |inactive|
    assert drop.tolist() == [2, 4]
    assert grow.tolist() == [0, 1]
    with pytest.raises(ValueError, match="larger than the 2 inactive"):
        ops.select_swap(score, ~active, 3)


def test_select_swap_k_zero():
    drop, grow = ops.select_swap(torch.rand(6), torch.tensor([True, False] * 3), 0)
    assert drop.shape == (0,) and grow.shape == (0,)
    assert drop.dtype == torch.int64 and grow.dtype == torch.int64


def test_select_swap_infinite_scores():
    """A +inf active (or -inf inactive) score must not let an ineligible sensor slip in."""
    drop, grow = ops.select_swap(torch.tensor([0.0, float("inf")]), torch.tensor([False, True]), 1)
    assert drop.tolist() == [1]
    assert grow.tolist() == [0]
    drop, grow = ops.select_swap(torch.tensor([5.0, -float("inf")]), torch.tensor([True, False]), 1)
    assert drop.tolist() == [0]
    assert grow.tolist() == [1]


@FAST
@given(selection_case(st.sampled_from([0.0, 1.0, -2.0, float("inf"), -float("inf")])), st.data())
def test_select_swap_brute_force_with_inf(case, data):
    score, active = case
    n_act = sum(active)
    k = data.draw(st.integers(0, min(n_act, len(score) - n_act)))
    drop, grow = ops.select_swap(torch.tensor(score), torch.tensor(active), k)
    assert (drop.tolist(), grow.tolist()) == brute_select_swap(score, active, k)


def test_select_swap_n1():
    for a in (True, False):
        drop, grow = ops.select_swap(torch.tensor([0.3]), torch.tensor([a]), 0)
        assert drop.tolist() == [] and grow.tolist() == []
    with pytest.raises(ValueError, match="larger than"):
        ops.select_swap(torch.tensor([0.3]), torch.tensor([True]), 1)


def test_select_swap_float16_score():
    score = torch.tensor([0.5, 0.25, 0.25, 1.0], dtype=torch.float16)
    drop, grow = ops.select_swap(score, torch.tensor([True, True, False, False]), 1)
    assert drop.tolist() == [1] and grow.tolist() == [3]


# --------------------------------------------------------------------------- backends
def brute_pick(score: list[float], eligible: list[bool], k: int, sign: float) -> list[int]:
    ids = [i for i in range(len(score)) if eligible[i]]
    return sorted(ids, key=lambda i: (sign * score[i], i))[:k]


VALUES = st.sampled_from([0.0, -0.0, 0.5, 1.0, -1.0, 2.0, float("inf"), -float("inf")])


@SMALL
@given(
    score=st.lists(VALUES, min_size=1, max_size=40),
    data=st.data(),
    dtype=st.sampled_from([torch.float16, torch.float32, torch.float64]),
    with_mask=st.booleans(),
)
def test_select_swap_and_prune_match_brute_force(backend, score, data, dtype, with_mask):
    """With a movable mask the kernels pick among movable sensors only: an unmovable one
    is never dropped, grown or pruned, whatever its score (no mask: every one movable)."""
    n = len(score)
    active = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    movable = (
        data.draw(st.lists(st.booleans(), min_size=n, max_size=n)) if with_mask else [True] * n
    )
    drop_pool = [a and m for a, m in zip(active, movable, strict=True)]
    grow_pool = [(not a) and m for a, m in zip(active, movable, strict=True)]
    k = data.draw(st.integers(0, min(sum(drop_pool), sum(grow_pool))))
    s = torch.tensor(score, dtype=dtype, device=backend)
    a = torch.tensor(active, device=backend)
    mv = torch.tensor(movable, device=backend) if with_mask else None
    drop, grow = ops.select_swap(s, a, k, mv)
    assert drop.tolist() == brute_pick(score, drop_pool, k, 1.0)
    assert grow.tolist() == brute_pick(score, grow_pool, k, -1.0)
    kp = data.draw(st.integers(0, sum(drop_pool)))
    gone = set(brute_pick([abs(v) for v in score], drop_pool, kp, 1.0))
    expect = [bool(active[i]) and i not in gone for i in range(n)]
    assert ops.prune_lowest(s, a, kp, mv).tolist() == expect


def test_movable_mask_limits_and_errors():
    score = torch.tensor([0.0, 1.0, 2.0, 3.0])
    active = torch.tensor([True, True, False, False])
    movable = torch.tensor([False, True, True, False])
    drop, grow = ops.select_swap(score, active, 1, movable)
    assert drop.tolist() == [1] and grow.tolist() == [2]  # not 0 (kept) nor 3 (forbidden)
    assert ops.prune_lowest(score, active, 1, movable).tolist() == [True, False, False, False]
    with pytest.raises(ValueError, match="larger than the 1 movable active"):
        ops.select_swap(score, active, 2, movable)
    with pytest.raises(ValueError, match="larger than the 1 movable active"):
        ops.prune_lowest(score, active, 2, movable)
    with pytest.raises(TypeError, match="movable must be a bool"):
        ops.select_swap(score, active, 1, movable.float())
    with pytest.raises(ValueError, match="movable must have shape"):
        ops.prune_lowest(score, active, 1, movable[:3])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_selection_many_blocks_with_ties(backend, dtype):
    """More than one block (4096) of scores with many ties, every k regime."""
    g = torch.Generator().manual_seed(5)
    n = 3 * 4096 + 17
    score = torch.randint(-50, 50, (n,), generator=g).to(dtype).to(backend) / 8
    active = (torch.rand(n, generator=g) < 0.4).to(backend)
    n_act = int(active.sum())
    for k in (1, 333, min(n_act, n - n_act)):
        drop, grow = ops.select_swap(score, active, k)
        ref_drop, ref_grow = reference.select_swap(score, active, k)
        assert torch.equal(drop, ref_drop) and torch.equal(grow, ref_grow)
    k = n_act  # prune everything
    assert not ops.prune_lowest(score, active, k).any()
    torch.testing.assert_close(
        ops.prune_lowest(score, active, 1000), reference.prune_lowest(score, active, 1000)
    )


def test_selection_edge_cases(backend):
    d = backend
    for a in (True, False):
        drop, grow = ops.select_swap(torch.tensor([0.3], device=d), torch.tensor([a], device=d), 0)
        assert drop.shape == (0,) and grow.shape == (0,) and drop.dtype == torch.int64
    assert ops.prune_lowest(
        torch.tensor([-2.0], device=d), torch.tensor([True], device=d), 1
    ).tolist() == [False]
    score = torch.tensor([1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 0.0], device=d)
    active = torch.tensor([True, True, True, False, False, False, True], device=d)
    drop, grow = ops.select_swap(score, active, 3)
    assert drop.tolist() == [1, 2, 6] and grow.tolist() == [4, 5, 3]
    # an infinite score must never let an ineligible sensor in
    drop, grow = ops.select_swap(
        torch.tensor([0.0, float("inf")], device=d), torch.tensor([False, True], device=d), 1
    )
    assert drop.tolist() == [1] and grow.tolist() == [0]


def test_selection_rejects_nan():
    score = torch.tensor([0.1, float("nan"), 0.3])
    active = torch.tensor([True, False, True])
    with pytest.raises(ValueError, match="NaN"):
        ops.select_swap(score, active, 1)
    with pytest.raises(ValueError, match="NaN"):
        ops.prune_lowest(score, active, 1)


# --------------------------------------------------------------------------- bad arguments
def test_select_swap_prune_bad_arguments():
    score = torch.tensor([0.1, 0.2, 0.3, 0.4])
    active = torch.tensor([True, True, True, False])
    with pytest.raises(ValueError, match="k = 2 is larger than the 1 inactive"):
        ops.select_swap(score, active, 2)
    with pytest.raises(ValueError, match="k must be >= 0"):
        ops.select_swap(score, active, -1)
    with pytest.raises(TypeError, match="active must be a bool"):
        ops.select_swap(score, active.long(), 1)
    with pytest.raises(ValueError, match="active must have shape"):
        ops.select_swap(score, active[:3], 1)
    with pytest.raises(TypeError, match="k must be an int"):
        ops.select_swap(score, active, 1.0)
    with pytest.raises(ValueError, match="score must have shape"):
        ops.select_swap(score[None], active, 1)

    with pytest.raises(ValueError, match="k = 4 is larger than the 3 active"):
        ops.prune_lowest(score, active, 4)
    with pytest.raises(ValueError, match="k must be >= 0"):
        ops.prune_lowest(score, active, -2)
    with pytest.raises(TypeError, match="active must be a bool"):
        ops.prune_lowest(score, active.float(), 1)
    with pytest.raises(TypeError, match="score must be floating point"):
        ops.prune_lowest(torch.tensor([1, 2, 3, 4]), active, 1)
