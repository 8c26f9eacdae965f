"""Public ops of ``dynst_fast.ops`` against independent plain computations.

Every expected value here is built without ``dynst_fast.ops.reference``: python
loops over numpy arrays, dense matrices assembled edge by edge, and brute-force
python sorting for the selection ops.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from dynst_fast import ops
from dynst_fast.graph import CSRGraph

FAST = settings(max_examples=40, deadline=None)


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# --------------------------------------------------------------------------- plain helpers
def loop_compact(x: np.ndarray, theta: np.ndarray, index: list[int]) -> np.ndarray:
    b, _, f = x.shape
    out = np.zeros((b, len(index), f), dtype=np.float64)
    for bi in range(b):
        for k, i in enumerate(index):
            for fi in range(f):
                out[bi, k, fi] = float(x[bi, i, fi]) * float(theta[i])
    return out


def loop_expand(y: np.ndarray, index: list[int], n: int, fill: float) -> np.ndarray:
    b, _, f = y.shape
    out = np.full((b, n, f), fill, dtype=np.float64)
    for bi in range(b):
        for k, i in enumerate(index):
            for fi in range(f):
                out[bi, i, fi] = float(y[bi, k, fi])
    return out


def loop_patchify(frames: np.ndarray, p: int) -> np.ndarray:
    """Patches row-major over the (bottom/right zero-padded) grid, features (t, c, dy, dx)."""
    b, t, c, h, w = frames.shape
    gh, gw = (h + p - 1) // p, (w + p - 1) // p
    out = np.zeros((b, gh * gw, t * c * p * p), dtype=np.float64)
    for bi in range(b):
        for gy in range(gh):
            for gx in range(gw):
                feats = []
                for ti in range(t):
                    for ci in range(c):
                        for dy in range(p):
                            for dx in range(p):
                                yy, xx = gy * p + dy, gx * p + dx
                                inside = yy < h and xx < w
                                feats.append(float(frames[bi, ti, ci, yy, xx]) if inside else 0.0)
                out[bi, gy * gw + gx] = feats
    return out


def brute_select_swap(score: list[float], active: list[bool], k: int):
    act = [i for i in range(len(score)) if active[i]]
    ina = [i for i in range(len(score)) if not active[i]]
    drop = sorted(act, key=lambda i: (score[i], i))[:k]
    grow = sorted(ina, key=lambda i: (-score[i], i))[:k]
    return drop, grow


def brute_prune_lowest(score: list[float], active: list[bool], k: int) -> list[bool]:
    act = [i for i in range(len(score)) if active[i]]
    gone = set(sorted(act, key=lambda i: (abs(score[i]), i))[:k])
    return [bool(active[i]) and i not in gone for i in range(len(score))]


def csr_from_edges(edges: list[tuple[int, int, float]], rows: int, cols: int) -> CSRGraph:
    """CSR built by hand from (target row, source col, weight); duplicates kept."""
    edges = sorted(edges, key=lambda e: e[0])  # python sort is stable
    rowptr = [0] * (rows + 1)
    for r, _, _ in edges:
        rowptr[r + 1] += 1
    for r in range(rows):
        rowptr[r + 1] += rowptr[r]
    col = torch.tensor([e[1] for e in edges], dtype=torch.int64)
    w = torch.tensor([e[2] for e in edges], dtype=torch.float64)
    return CSRGraph(torch.tensor(rowptr, dtype=torch.int64), col, w, num_cols=cols)


def dense_from_edges(edges: list[tuple[int, int, float]], rows: int, cols: int) -> np.ndarray:
    a = np.zeros((rows, cols), dtype=np.float64)
    for r, c, w in edges:
        a[r, c] += w
    return a


def dense_gated(a: np.ndarray, x: np.ndarray, gate: np.ndarray) -> np.ndarray:
    return np.stack([a @ (gate[:, None] * x[b]) for b in range(x.shape[0])])


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


# --------------------------------------------------------------------------- compact / expand
@st.composite
def compact_case(draw):
    b = draw(st.integers(1, 3))
    n = draw(st.integers(1, 17))
    f = draw(st.integers(1, 7))
    index = draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n, unique=True))
    seed = draw(st.integers(0, 2**31 - 1))
    return b, n, f, index, seed


@FAST
@given(compact_case())
def test_compact_matches_loops(case):
    b, n, f, index, seed = case
    rng = _rng(seed)
    x = rng.standard_normal((b, n, f))
    theta = rng.standard_normal(n)
    out = ops.compact(torch.tensor(x), torch.tensor(theta), torch.tensor(index))
    assert out.shape == (b, len(index), f)
    assert out.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), loop_compact(x, theta, index), rtol=1e-12, atol=0)


@FAST
@given(compact_case(), st.sampled_from([0.0, -1.5, 3.0]))
def test_expand_matches_loops(case, fill):
    b, n, f, index, seed = case
    y = _rng(seed).standard_normal((b, len(index), f))
    out = ops.expand(torch.tensor(y), torch.tensor(index), n, fill)
    assert out.shape == (b, n, f)
    np.testing.assert_array_equal(out.numpy(), loop_expand(y, index, n, fill))


@pytest.mark.parametrize(
    ("n", "index"),
    [
        (1, [0]),  # N = 1
        (9, [4]),  # K = 1
        (9, list(range(9))),  # K = N, sorted
        (9, [8, 0, 3, 7, 1, 2, 6, 5, 4]),  # K = N, unsorted
        (9, [7, 2, 5]),  # unsorted
    ],
)
@pytest.mark.parametrize("f", [1, 5])  # odd F
def test_compact_expand_edge_cases(n, index, f):
    rng = _rng(n * 31 + f)
    x = rng.standard_normal((2, n, f))
    theta = rng.standard_normal(n)
    idx = torch.tensor(index)
    out = ops.compact(torch.tensor(x), torch.tensor(theta), idx)
    np.testing.assert_allclose(out.numpy(), loop_compact(x, theta, index), rtol=1e-12)
    back = ops.expand(out, idx, n, 0.25)
    np.testing.assert_allclose(
        back.numpy(), loop_expand(loop_compact(x, theta, index), index, n, 0.25), rtol=1e-12
    )
    # int32 index gives the same result
    out32 = ops.compact(torch.tensor(x), torch.tensor(theta), idx.to(torch.int32))
    torch.testing.assert_close(out32, out, rtol=0, atol=0)


def test_compact_non_contiguous_x():
    rng = _rng(3)
    base = torch.tensor(rng.standard_normal((2, 5, 11)))  # [B, F, N]
    x = base.transpose(1, 2)  # [B, N=11, F=5], non-contiguous
    assert not x.is_contiguous()
    theta = torch.tensor(rng.standard_normal(11))
    index = [10, 3, 0, 6]
    out = ops.compact(x, theta, torch.tensor(index))
    np.testing.assert_allclose(out.numpy(), loop_compact(x.numpy(), theta.numpy(), index))

    big = torch.tensor(rng.standard_normal((3, 22, 9)))
    xs = big[::2, 1::2, 2:7]  # [2, 11, 5] strided slice
    assert not xs.is_contiguous()
    out = ops.compact(xs, theta, torch.tensor(index))
    np.testing.assert_allclose(out.numpy(), loop_compact(xs.numpy(), theta.numpy(), index))


def test_expand_non_contiguous_y():
    rng = _rng(4)
    y = torch.tensor(rng.standard_normal((2, 3, 4))).transpose(1, 2)  # [2, 4, 3]
    index = [5, 1, 2, 0]
    out = ops.expand(y, torch.tensor(index), 7, -2.0)
    np.testing.assert_array_equal(out.numpy(), loop_expand(y.numpy(), index, 7, -2.0))


def test_compact_expand_float16():
    rng = _rng(5)
    x32 = torch.tensor(rng.standard_normal((3, 13, 7)), dtype=torch.float32)
    th32 = torch.tensor(rng.standard_normal(13), dtype=torch.float32)
    index = [12, 0, 5, 6, 2]
    out = ops.compact(x32.half(), th32.half(), torch.tensor(index))
    assert out.dtype == torch.float16
    expect = loop_compact(x32.half().float().numpy(), th32.half().float().numpy(), index)
    np.testing.assert_allclose(out.float().numpy(), expect, rtol=2e-3, atol=2e-3)

    y = out
    back = ops.expand(y, torch.tensor(index), 13, 1.5)
    assert back.dtype == torch.float16
    np.testing.assert_allclose(
        back.float().numpy(), loop_expand(y.float().numpy(), index, 13, 1.5), rtol=0, atol=0
    )


def test_compact_gradcheck():
    rng = _rng(6)
    x = torch.tensor(rng.standard_normal((2, 6, 3)), requires_grad=True)
    theta = torch.tensor(rng.standard_normal(6), requires_grad=True)
    index = torch.tensor([4, 1, 5])
    assert torch.autograd.gradcheck(lambda a, t: ops.compact(a, t, index), (x, theta))
    # K = N, unsorted, theta gradient sums over batch and features
    index = torch.tensor([2, 0, 5, 3, 1, 4])
    assert torch.autograd.gradcheck(lambda a, t: ops.compact(a, t, index), (x, theta))


def test_compact_grad_values():
    """Analytic gradients: d/dx = theta on kept rows (0 elsewhere), d/dtheta = sum x."""
    rng = _rng(7)
    x = torch.tensor(rng.standard_normal((2, 5, 3)), requires_grad=True)
    theta = torch.tensor(rng.standard_normal(5), requires_grad=True)
    index = [3, 0]
    ops.compact(x, theta, torch.tensor(index)).sum().backward()
    gx = np.zeros((2, 5, 3))
    gt = np.zeros(5)
    for i in index:
        gx[:, i, :] = theta[i].item()
        gt[i] = x[:, i, :].sum().item()
    np.testing.assert_allclose(x.grad.numpy(), gx, rtol=1e-12)
    np.testing.assert_allclose(theta.grad.numpy(), gt, rtol=1e-12)


def test_expand_gradcheck():
    rng = _rng(8)
    y = torch.tensor(rng.standard_normal((2, 3, 5)), requires_grad=True)
    index = torch.tensor([6, 0, 2])
    assert torch.autograd.gradcheck(lambda a: ops.expand(a, index, 7, 0.5), (y,))


# --------------------------------------------------------------------------- patchify_compact
@pytest.mark.parametrize(
    ("h", "w", "p", "t", "c"),
    [(33, 49, 4, 2, 1), (5, 7, 2, 2, 3), (4, 6, 1, 1, 2), (6, 6, 3, 3, 1)],
)
def test_patchify_compact_matches_loops(h, w, p, t, c):
    rng = _rng(h * w + p)
    frames = rng.standard_normal((2, t, c, h, w))
    n = ((h + p - 1) // p) * ((w + p - 1) // p)
    theta = rng.standard_normal(n)
    patches = loop_patchify(frames, p)
    ft, tt = torch.tensor(frames), torch.tensor(theta)
    index_sets = [
        [int(rng.integers(n))],  # K = 1
        list(range(n)),  # K = N
        [int(i) for i in rng.permutation(n)[: max(1, n // 3)]],  # unsorted subset
    ]
    for index in index_sets:
        out = ops.patchify_compact(ft, tt, torch.tensor(index), p)
        assert out.shape == (2, len(index), t * c * p * p)
        expect = np.stack([patches[:, i] * theta[i] for i in index], axis=1)
        np.testing.assert_allclose(out.numpy(), expect, rtol=1e-12, atol=0)


def test_patchify_compact_padding_is_zero():
    # 3x3 with p = 2: the last patch holds one real pixel and three padded zeros.
    frames = torch.arange(1.0, 10.0, dtype=torch.float64).reshape(1, 1, 1, 3, 3)
    out = ops.patchify_compact(frames, torch.ones(4, dtype=torch.float64), torch.arange(4), 2)
    expect = [[1, 2, 4, 5], [3, 0, 6, 0], [7, 8, 0, 0], [9, 0, 0, 0]]
    np.testing.assert_array_equal(out[0].numpy(), np.array(expect, dtype=np.float64))


def test_patchify_compact_gradcheck():
    rng = _rng(9)
    frames = torch.tensor(rng.standard_normal((1, 2, 1, 3, 5)), requires_grad=True)
    theta = torch.tensor(rng.standard_normal(6), requires_grad=True)  # 2x3 patches, p = 2
    index = torch.tensor([5, 0, 2])
    assert torch.autograd.gradcheck(
        lambda f, t: ops.patchify_compact(f, t, index, 2), (frames, theta)
    )


# --------------------------------------------------------------------------- select_swap
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


# --------------------------------------------------------------------------- prune_lowest
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


# --------------------------------------------------------------------------- gated_spmm
GRAPHS = {
    # square: isolated node 3, self-loops, duplicate edge (1 <- 2 twice), empty rows
    "square": (
        [(0, 1, 0.5), (0, 0, 2.0), (1, 2, 1.0), (1, 2, -0.25), (2, 0, 1.5), (4, 4, 3.0)],
        5,
        5,
    ),
    # bipartite-shaped: 6 targets, 3 sources, rows 1 and 5 empty
    "rect": (
        [(0, 0, 1.0), (0, 2, 0.5), (2, 1, -1.0), (3, 0, 2.0), (3, 0, 2.0), (4, 2, 0.75)],
        6,
        3,
    ),
    # wide: 2 targets, 7 sources
    "wide": ([(1, 6, 1.0), (0, 3, 2.0), (1, 0, 0.5), (0, 6, -1.0)], 2, 7),
    "n1_loop": ([(0, 0, 2.0)], 1, 1),
    "n1_empty": ([], 1, 1),
    "no_edges": ([], 3, 4),
}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_gated_spmm_dense(name):
    edges, r, s = GRAPHS[name]
    g = csr_from_edges(edges, r, s)
    a = dense_from_edges(edges, r, s)
    rng = _rng(len(name))
    x = rng.standard_normal((3, s, 4))
    gate = rng.standard_normal(s)
    gate[::2] = 0.0  # gate with zeros
    out = ops.gated_spmm(g, torch.tensor(x), torch.tensor(gate))
    assert out.shape == (3, r, 4)
    np.testing.assert_allclose(out.numpy(), dense_gated(a, x, gate), rtol=1e-12, atol=1e-12)


@st.composite
def graph_case(draw):
    r = draw(st.integers(1, 9))
    s = draw(st.integers(1, 9))
    edges = draw(
        st.lists(
            st.tuples(
                st.integers(0, r - 1),
                st.integers(0, s - 1),
                st.sampled_from([1.0, -0.5, 2.0, 0.25]),
            ),
            max_size=25,
        )
    )
    b = draw(st.integers(1, 3))
    f = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    return edges, r, s, b, f, seed


@FAST
@given(graph_case())
def test_gated_spmm_random_graphs(case):
    edges, r, s, b, f, seed = case
    rng = _rng(seed)
    x = rng.standard_normal((b, s, f))
    gate = rng.choice([0.0, 1.0, -0.5, 0.3], size=s)
    out = ops.gated_spmm(csr_from_edges(edges, r, s), torch.tensor(x), torch.tensor(gate))
    expect = dense_gated(dense_from_edges(edges, r, s), x, gate)
    np.testing.assert_allclose(out.numpy(), expect, rtol=1e-10, atol=1e-12)


def test_gated_spmm_float32_graph_float32_x():
    edges, r, s = GRAPHS["square"]
    g = csr_from_edges(edges, r, s).to(dtype=torch.float32)
    rng = _rng(11)
    x = rng.standard_normal((2, s, 3)).astype(np.float32)
    gate = rng.standard_normal(s).astype(np.float32)
    out = ops.gated_spmm(g, torch.tensor(x), torch.tensor(gate))
    assert out.dtype == torch.float32
    expect = dense_gated(dense_from_edges(edges, r, s), x.astype(np.float64), gate)
    np.testing.assert_allclose(out.numpy(), expect, rtol=1e-5, atol=1e-5)


def test_gated_spmm_non_contiguous_x():
    edges, r, s = GRAPHS["rect"]
    rng = _rng(12)
    base = torch.tensor(rng.standard_normal((2, 4, s)))
    x = base.transpose(1, 2)  # [2, s, 4]
    assert not x.is_contiguous()
    gate = torch.tensor(rng.standard_normal(s))
    out = ops.gated_spmm(csr_from_edges(edges, r, s), x, gate)
    expect = dense_gated(dense_from_edges(edges, r, s), x.numpy(), gate.numpy())
    np.testing.assert_allclose(out.numpy(), expect, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["square", "rect", "wide"])
def test_gated_spmm_gradcheck(name):
    edges, r, s = GRAPHS[name]
    g = csr_from_edges(edges, r, s)
    rng = _rng(13)
    x = torch.tensor(rng.standard_normal((2, s, 3)), requires_grad=True)
    gate = torch.tensor(rng.standard_normal(s), requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, q: ops.gated_spmm(g, a, q), (x, gate))


# --------------------------------------------------------------------------- bad arguments
def _xti(n=5):
    return torch.randn(2, n, 3), torch.randn(n), torch.tensor([0, 2])


def test_compact_bad_arguments():
    x, theta, _ = _xti()
    with pytest.raises(ValueError, match="out of range: 5"):
        ops.compact(x, theta, torch.tensor([0, 5]))
    with pytest.raises(ValueError, match="out of range: -1"):
        ops.compact(x, theta, torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match="duplicate"):
        ops.compact(x, theta, torch.tensor([1, 3, 1]))
    with pytest.raises(ValueError, match="empty"):
        ops.compact(x, theta, torch.zeros(0, dtype=torch.int64))
    with pytest.raises(TypeError, match="index must be int64"):
        ops.compact(x, theta, torch.tensor([0.0, 2.0]))
    with pytest.raises(ValueError, match=r"index must have shape \[K\]"):
        ops.compact(x, theta, torch.tensor([[0, 2]]))
    with pytest.raises(ValueError, match=r"x must have shape \[B, N, F\]"):
        ops.compact(x[0], theta, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="x must have shape"):
        ops.compact(x[None], theta, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="theta must have shape"):
        ops.compact(x, torch.randn(4), torch.tensor([0, 2]))
    with pytest.raises(TypeError, match="x must be floating point"):
        ops.compact(x.long(), theta, torch.tensor([0, 2]))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        ops.compact(x.numpy(), theta, torch.tensor([0, 2]))
    with pytest.raises(ValueError, match="only 5 sensors"):
        ops.compact(x, theta, torch.arange(6))


def test_expand_bad_arguments():
    y = torch.randn(2, 2, 3)
    with pytest.raises(ValueError, match="out of range"):
        ops.expand(y, torch.tensor([0, 4]), 4)
    with pytest.raises(ValueError, match="duplicate"):
        ops.expand(y, torch.tensor([1, 1]), 4)
    with pytest.raises(ValueError, match="index has 3 entries"):
        ops.expand(y, torch.tensor([0, 1, 2]), 4)
    with pytest.raises(ValueError, match="n must be a positive int"):
        ops.expand(y, torch.tensor([0, 1]), 0)
    with pytest.raises(ValueError, match="y must have shape"):
        ops.expand(y[0], torch.tensor([0, 1]), 4)
    with pytest.raises(TypeError, match="index must be int64"):
        ops.expand(y, torch.tensor([0.0, 1.0]), 4)


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


def test_gated_spmm_bad_arguments():
    edges, r, s = GRAPHS["rect"]
    g = csr_from_edges(edges, r, s)
    x, gate = torch.randn(2, s, 4, dtype=torch.float64), torch.randn(s, dtype=torch.float64)
    with pytest.raises(ValueError, match="gate must have shape"):
        ops.gated_spmm(g, x, gate[:-1])
    with pytest.raises(ValueError, match=f"x has {r} nodes but the graph has {s} source nodes"):
        ops.gated_spmm(g, torch.randn(2, r, 4, dtype=torch.float64), gate)
    with pytest.raises(ValueError, match="x must have shape"):
        ops.gated_spmm(g, x[0], gate)
    with pytest.raises(TypeError, match="graph must be a CSRGraph"):
        ops.gated_spmm(g.to_dense(), x, gate)
    with pytest.raises(TypeError, match="gate must be floating point"):
        ops.gated_spmm(g, x, torch.ones(s, dtype=torch.int64))


def test_patchify_compact_bad_arguments():
    frames = torch.randn(1, 2, 1, 5, 7)
    theta, index = torch.randn(12), torch.tensor([0, 3])  # 3x4 patches for p = 2
    assert ops.patchify_compact(frames, theta, index, 2).shape == (1, 2, 8)
    with pytest.raises(ValueError, match="patch size p must be a positive int"):
        ops.patchify_compact(frames, theta, index, 0)
    with pytest.raises(ValueError, match="patch size p must be a positive int"):
        ops.patchify_compact(frames, theta, index, -1)
    with pytest.raises(ValueError, match="smaller than the patch size 6"):
        ops.patchify_compact(frames, torch.randn(2), torch.tensor([0]), 6)
    with pytest.raises(ValueError, match="theta must have one entry per patch"):
        ops.patchify_compact(frames, torch.randn(11), index, 2)
    with pytest.raises(ValueError, match="frames must have shape"):
        ops.patchify_compact(frames[0], theta, index, 2)
    with pytest.raises(ValueError, match="out of range: 12"):
        ops.patchify_compact(frames, theta, torch.tensor([12]), 2)
    with pytest.raises(ValueError, match="empty"):
        ops.patchify_compact(frames, theta, torch.zeros(0, dtype=torch.int64), 2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a second device (CUDA)")
def test_device_mismatch():
    x, theta, index = _xti()
    with pytest.raises(ValueError, match="one device"):
        ops.compact(x.cuda(), theta, index)
    with pytest.raises(ValueError, match="one device"):
        ops.select_swap(theta.cuda(), torch.ones(5, dtype=torch.bool), 0)
