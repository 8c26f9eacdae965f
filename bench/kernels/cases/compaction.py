"""The compaction and selection ops' cases: compact, expand, patchify_compact, select_swap,
prune_lowest."""

from __future__ import annotations

from collections.abc import Callable

import torch

from dynst_fast import ops
from dynst_fast.ops import reference

from .base import SPARSITY, Case, Fn, active_index


# ---------------------------------------------------------------- compact, expand
def compact_cases(
    b: int, n: int, f: int, device: str, s: float = SPARSITY
) -> tuple[Case, Case, Case]:
    """``compact`` against ``x[:, idx] * theta[idx, None]`` (``torch``) and a composition
    that starts from the mask (``nz+isel``: nonzero, index_select, in-place mul);
    ``expand`` against ``new_full`` + ``index_copy``; and ``compact`` forward + backward
    (x and theta requiring grad) against ``torch`` under autograd."""
    lib = torch.ops.dynst_fast
    idx = active_index(n, s, device, n + f + b)
    k = idx.numel()
    x, theta = torch.randn(b, n, f, device=device), torch.randn(n, device=device)
    y = torch.randn(b, k, f, device=device)
    mask = torch.zeros(n, dtype=torch.bool, device=device)
    mask[idx] = True
    assert torch.equal(lib.compact(x, theta, idx), reference.compact(x, theta, idx))
    assert torch.equal(lib.expand(y, idx, n, 0.0), reference.expand(y, idx, n, 0.0))

    def nz_isel():
        i = mask.nonzero().squeeze(1)
        return x.index_select(1, i).mul_(theta.index_select(0, i)[None, :, None])

    assert torch.equal(nz_isel(), reference.compact(x, theta, idx))
    xg, tg = x.clone().requires_grad_(), theta.clone().requires_grad_()

    def backward(fn: Callable) -> Fn:
        def step():
            xg.grad = tg.grad = None
            fn(xg, tg, idx).backward(y)

        return step

    info = {"B": b, "N": n, "F": f, "s": s, "K": k, "x_MB": round(b * n * f * 4 / 1e6, 1)}
    return (
        Case(
            "compact",
            f"compact B={b} N={n} F={f} s={s}",
            {
                "op": lambda: lib.compact(x, theta, idx),
                "torch": lambda: reference.compact(x, theta, idx),
                "nz+isel": nz_isel,
            },
            {**info, "bytes": 2 * b * k * f * 4},
        ),
        Case(
            "expand",
            f"expand B={b} N={n} F={f} s={s}",
            {
                "op": lambda: lib.expand(y, idx, n, 0.0),
                "torch": lambda: reference.expand(y, idx, n, 0.0),
            },
            {**info, "bytes": (b * k * f + b * n * f) * 4},
        ),
        Case(
            "compact_backward",
            f"compact fwd+bwd B={b} N={n} F={f} s={s}",
            {"op": backward(ops.compact), "torch": backward(reference.compact)},
            info,
        ),
    )


# ---------------------------------------------------------------- patchify_compact
def patchify_cases(
    b: int, t: int, c: int, h: int, w: int, p: int, device: str, s: float = SPARSITY
) -> tuple[Case, Case]:
    """``patchify_compact`` of frames ``[B, T, C, H, W]`` against patchify (pad, reshape,
    permute) then gather, forward and forward + backward (frames and theta requiring
    grad)."""
    lib = torch.ops.dynst_fast
    n = -(-h // p) * -(-w // p)
    idx = active_index(n, s, device, h * w)
    frames, theta = torch.randn(b, t, c, h, w, device=device), torch.randn(n, device=device)
    want = reference.patchify_compact(frames, theta, idx, p)
    assert torch.equal(lib.patchify_compact(frames, theta, idx, p), want)
    fg, tg = frames.clone().requires_grad_(), theta.clone().requires_grad_()
    dy = torch.randn_like(want)

    def backward(fn: Callable) -> Fn:
        def step():
            fg.grad = tg.grad = None
            fn(fg, tg, idx, p).backward(dy)

        return step

    info = {"frames": f"{b}x{t}x{c}x{h}x{w}", "p": p, "N": n, "s": s, "K": idx.numel()}
    name = f"patchify_compact {b}x{t}x{c}x{h}x{w} p={p} s={s}"
    return (
        Case(
            "patchify_compact",
            name,
            {
                "op": lambda: lib.patchify_compact(frames, theta, idx, p),
                "torch": lambda: reference.patchify_compact(frames, theta, idx, p),
            },
            {**info, "bytes": 2 * want.numel() * 4},
        ),
        Case(
            "patchify_backward",
            name.replace("patchify_compact", "patchify_compact fwd+bwd"),
            {"op": backward(ops.patchify_compact), "torch": backward(reference.patchify_compact)},
            info,
        ),
    )


# ---------------------------------------------------------------- selection
def select_cases(
    n: int, device: str, s: float = SPARSITY, k_fraction: float = 0.01
) -> tuple[Case, Case]:
    """``select_swap`` and ``prune_lowest`` at k = ``k_fraction`` of N (capped by the
    smaller set), against ``masked_fill`` + ``torch.topk`` and a full ``torch.sort`` (as
    RigL implementations do); ``public`` is the checked ``dynst_fast.ops`` call."""
    lib, inf = torch.ops.dynst_fast, float("inf")
    g = torch.Generator().manual_seed(n)
    score = torch.rand(n, generator=g).to(device)
    active = torch.zeros(n, dtype=torch.bool)
    active[torch.randperm(n, generator=g)[: round((1 - s) * n)]] = True
    active = active.to(device)
    n_act = int(active.sum())
    k = max(1, min(round(k_fraction * n), n_act, n - n_act))

    def topk_swap():
        drop = torch.topk(score.masked_fill(~active, inf), k, largest=False).indices
        return drop, torch.topk(score.masked_fill(active, -inf), k).indices

    def sort_swap():
        drop = torch.sort(score.masked_fill(~active, inf)).indices[:k]
        return drop, torch.sort(score.masked_fill(active, -inf), descending=True).indices[:k]

    drop, grow = lib.select_swap(score, active, k)
    want_drop, want_grow = topk_swap()
    assert set(drop.tolist()) == set(want_drop.tolist())
    assert set(grow.tolist()) == set(want_grow.tolist())
    assert int((active & ~lib.prune_lowest(score, active, k)).sum()) == k
    mag = score.abs()
    info = {"N": n, "s": s, "k": k}
    return (
        Case(
            "select_swap",
            f"select_swap N={n} s={s} k={k}",
            {
                "op": lambda: lib.select_swap(score, active, k),
                "public": lambda: ops.select_swap(score, active, k),
                "topk": topk_swap,
                "sort": sort_swap,
            },
            info,
        ),
        Case(
            "prune_lowest",
            f"prune_lowest N={n} s={s} k={k}",
            {
                "op": lambda: lib.prune_lowest(score, active, k),
                "topk": lambda: torch.topk(mag.masked_fill(~active, inf), k, largest=False),
                "sort": lambda: torch.sort(mag.masked_fill(~active, inf)).indices[:k],
            },
            info,
        ),
    )
