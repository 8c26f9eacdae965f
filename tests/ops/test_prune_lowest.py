"""``ops.prune_lowest``: against brute-force python sorting of magnitudes, the reference
on every backend, ``opcheck`` and ``torch.compile`` from one sample generator, and N > 2^20
through the Triton multi-block path. (Its argument errors are tested with select_swap's.)"""

from __future__ import annotations

import pytest
import torch
from dynst_fast.kernels import triton_available
from harness import (
    DEV,
    FAST,
    backend_fixture,
    check_compile,
    check_opcheck,
    check_values,
)
from hypothesis import given
from hypothesis import strategies as st

from dynst_fast import ops
from dynst_fast.ops import _dispatch, reference

backend = backend_fixture()


def samples(device: str, blocks: bool = True):
    """``(score, active, k[, movable])`` of ``ops.prune_lowest``: magnitude ties (-0.1 vs
    0.1), infinities, k = 0 and k = |active|, several blocks, float16 to float64, with and
    without a movable mask (kept sensors are not movable)."""
    g = torch.Generator().manual_seed(4)
    for dtype in (torch.float16, torch.float32, torch.float64):
        score = torch.tensor([-0.1, 0.5, -3.0, 0.1, 0.2, 0.0, float("inf"), -float("inf")])
        active = torch.tensor([True, True, True, True, True, False, True, True])
        for k in (0, 2, 7):
            yield score.to(device, dtype), active.to(device), k
        movable = torch.tensor([False, True, True, False, True, True, True, True])
        yield score.to(device, dtype), active.to(device), 3, movable.to(device)
        if not blocks:
            continue
        n = 2 * 4096 + 17
        score = (torch.randint(-50, 50, (n,), generator=g).to(dtype) / 8).to(device)
        active = (torch.rand(n, generator=g) < 0.4).to(device)
        yield score, active, 1000
        yield score, active, 1000, (torch.rand(n, generator=g) < 0.8).to(device)


def test_values(backend):
    check_values(ops.prune_lowest, reference.prune_lowest, samples(backend))


def test_opcheck(backend):
    # opcheck calls the op about ten times per sample: the small samples only
    check_opcheck(torch.ops.dynst_fast.prune_lowest.default, samples(backend, blocks=False))


def test_torch_compile(backend):
    check_compile(ops.prune_lowest, samples(backend))


# --------------------------------------------------------------------------- brute force
SCORES = st.sampled_from([0.0, 0.5, 1.0, 2.0, -1.0])


@st.composite
def selection_case(draw, scores=SCORES):
    n = draw(st.integers(1, 17))
    score = draw(st.lists(scores, min_size=n, max_size=n))
    active = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return score, active


def brute_prune_lowest(score: list[float], active: list[bool], k: int) -> list[bool]:
    act = [i for i in range(len(score)) if active[i]]
    gone = set(sorted(act, key=lambda i: (abs(score[i]), i))[:k])
    return [bool(active[i]) and i not in gone for i in range(len(score))]


@FAST
@given(selection_case(), st.data())
def test_prune_lowest_brute_force(case, data):
    score, active = case
    k = data.draw(st.integers(0, sum(active)))
    mask = torch.tensor(active)
    before = mask.clone()
    out = ops.prune_lowest(torch.tensor(score), mask, k)
    assert out.dtype == torch.bool
    assert out.tolist() == brute_prune_lowest(score, active, k)
    assert torch.equal(mask, before)  # input untouched
    assert int(out.sum()) == sum(active) - k


def test_prune_lowest_uses_magnitude_and_ties():
    score = torch.tensor([-0.1, 0.5, -3.0, 0.1, 0.2, 0.0])
    active = torch.tensor([True, True, True, True, True, False])
    out = ops.prune_lowest(score, active, 2)  # |-0.1| ties |0.1|: lower index first
    assert out.tolist() == [False, True, True, False, True, False]
    out = ops.prune_lowest(score, active, 1)
    assert out.tolist() == [False, True, True, True, True, False]
    out = ops.prune_lowest(score, active, 4)  # -3.0 is the largest magnitude
    assert out.tolist() == [False, False, True, False, False, False]


def test_prune_lowest_k_zero_identity_and_no_mutation():
    active = torch.tensor([True, False, True, True])
    before = active.clone()
    out = ops.prune_lowest(torch.rand(4), active, 0)
    assert torch.equal(out, active)
    ops.prune_lowest(torch.rand(4), active, 3)
    assert torch.equal(active, before)


def test_prune_lowest_infinite_score():
    out = ops.prune_lowest(torch.tensor([0.0, float("inf")]), torch.tensor([False, True]), 1)
    assert out.tolist() == [False, False]
    out = ops.prune_lowest(
        torch.tensor([1.0, -float("inf"), 0.0]), torch.tensor([True, True, False]), 2
    )
    assert out.tolist() == [False, False, False]


def test_prune_lowest_n1():
    out = ops.prune_lowest(torch.tensor([-2.0]), torch.tensor([True]), 1)
    assert out.tolist() == [False]
    out = ops.prune_lowest(torch.tensor([-2.0]), torch.tensor([True]), 0)
    assert out.tolist() == [True]
    out = ops.prune_lowest(torch.tensor([-2.0]), torch.tensor([False]), 0)
    assert out.tolist() == [False]


@pytest.fixture
def triton_dev() -> str:
    if not triton_available():
        pytest.skip("triton is not installed")
    with _dispatch.using("triton"):
        yield DEV


def test_prune_lowest_million_sensors(triton_dev):
    """N > 2^20 through the Triton multi-block path (the other backends are the reference)."""
    g = torch.Generator().manual_seed(6)
    n = 2**20 + 3
    score = torch.randint(-500, 500, (n,), generator=g).float().to(triton_dev)
    active = (torch.rand(n, generator=g) < 0.5).to(triton_dev)
    out = ops.prune_lowest(score, active, 4097)
    assert torch.equal(out, reference.prune_lowest(score, active, 4097))
