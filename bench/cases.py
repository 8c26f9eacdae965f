"""The benchmark cases, built once for both harnesses: ``bench/gpu_suite.py`` (its own
timer, GB/s and goals) and the pytest-benchmark suite (``python -m pytest bench``).

Each maker builds the inputs of one case on a device, checks every method against the
plain PyTorch composition, and returns the methods as zero-argument callables. The first
method is the op; the others are what it is compared with.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from dynst_fast import ops
from dynst_fast.graph import CSRGraph
from dynst_fast.ops import reference

SPARSITY = 0.5
Fn = Callable[[], object]


@dataclass
class Case:
    """One benchmark case of ``op``: its methods (the op first) and facts for the tables."""

    op: str
    name: str
    fns: dict[str, Fn]
    info: dict[str, object] = field(default_factory=dict)


def active_index(n: int, s: float, device: str, seed: int) -> torch.Tensor:
    """A seeded random sorted set of ``round((1 - s) n)`` (at least 1) of ``n`` sensors."""
    g = torch.Generator().manual_seed(seed)
    k = max(1, round((1 - s) * n))
    return torch.randperm(n, generator=g)[:k].sort().values.to(device)


def compact_cases(b: int, n: int, f: int, device: str) -> tuple[Case, Case]:
    """``compact`` and ``expand`` on ``x[B, N, F]`` at sparsity 0.5, against
    ``x[:, idx] * theta[idx, None]`` and ``new_full`` + ``index_copy``."""
    lib = torch.ops.dynst_fast
    idx = active_index(n, SPARSITY, device, n + f)
    k = idx.numel()
    x, theta = torch.randn(b, n, f, device=device), torch.randn(n, device=device)
    y = torch.randn(b, k, f, device=device)
    assert torch.equal(lib.compact(x, theta, idx), reference.compact(x, theta, idx))
    assert torch.equal(lib.expand(y, idx, n, 0.0), reference.expand(y, idx, n, 0.0))
    info = {"B": b, "N": n, "F": f, "s": SPARSITY, "K": k}
    return (
        Case(
            "compact",
            f"compact B={b} N={n} F={f}",
            {
                "op": lambda: lib.compact(x, theta, idx),
                "torch": lambda: reference.compact(x, theta, idx),
            },
            {**info, "bytes": 2 * b * k * f * 4},
        ),
        Case(
            "expand",
            f"expand B={b} N={n} F={f}",
            {
                "op": lambda: lib.expand(y, idx, n, 0.0),
                "torch": lambda: reference.expand(y, idx, n, 0.0),
            },
            {**info, "bytes": (b * k * f + b * n * f) * 4},
        ),
    )


def patchify_case(b: int, t: int, c: int, h: int, w: int, p: int, device: str) -> Case:
    """``patchify_compact`` of frames ``[B, T, C, H, W]`` against patchify then gather."""
    lib = torch.ops.dynst_fast
    n = -(-h // p) * -(-w // p)
    idx = active_index(n, SPARSITY, device, h * w)
    frames, theta = torch.randn(b, t, c, h, w, device=device), torch.randn(n, device=device)
    want = reference.patchify_compact(frames, theta, idx, p)
    assert torch.equal(lib.patchify_compact(frames, theta, idx, p), want)
    return Case(
        "patchify_compact",
        f"patchify_compact {b}x{t}x{c}x{h}x{w} p={p}",
        {
            "op": lambda: lib.patchify_compact(frames, theta, idx, p),
            "torch": lambda: reference.patchify_compact(frames, theta, idx, p),
        },
        {
            "frames": f"{b}x{t}x{c}x{h}x{w}",
            "p": p,
            "N": n,
            "s": SPARSITY,
            "K": idx.numel(),
            "bytes": 2 * want.numel() * 4,
        },
    )


def select_cases(n: int, device: str) -> tuple[Case, Case]:
    """``select_swap`` and ``prune_lowest`` at k = 1% of N, against ``masked_fill`` +
    ``torch.topk`` and a full ``torch.sort`` (as RigL implementations do)."""
    lib, inf = torch.ops.dynst_fast, float("inf")
    g = torch.Generator().manual_seed(n)
    score = torch.rand(n, generator=g).to(device)
    active = torch.zeros(n, dtype=torch.bool)
    active[torch.randperm(n, generator=g)[: round((1 - SPARSITY) * n)]] = True
    active = active.to(device)
    k = max(1, n // 100)

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
    info = {"N": n, "s": SPARSITY, "k": k}
    return (
        Case(
            "select_swap",
            f"select_swap N={n}",
            {"op": lambda: lib.select_swap(score, active, k), "topk": topk_swap, "sort": sort_swap},
            info,
        ),
        Case(
            "prune_lowest",
            f"prune_lowest N={n}",
            {
                "op": lambda: lib.prune_lowest(score, active, k),
                "topk": lambda: torch.topk(mag.masked_fill(~active, inf), k, largest=False),
                "sort": lambda: torch.sort(mag.masked_fill(~active, inf)).indices[:k],
            },
            info,
        ),
    )


def spmm_case(name: str, graph: CSRGraph, f: int, dtype: torch.dtype, device: str) -> Case:
    """``gated_spmm`` (the public op, as models call it) against ``torch.sparse.mm`` of the
    CSR matrix with the gated input (cuSPARSE on a GPU), B = 1, every 7th gate 0. Without
    a ``torch.sparse.mm`` for the dtype on the device, the case has the op alone and
    says so in ``info["sparse.mm"]``."""
    g = graph.to(device, dtype=dtype)
    n = g.num_nodes
    x = torch.randn(1, n, f, device=device, dtype=dtype)
    gate = torch.ones(n, device=device, dtype=dtype)
    gate[::7] = 0
    got = ops.gated_spmm(g, x, gate)[0].float()
    dname = str(dtype).removeprefix("torch.")
    info: dict[str, object] = {
        "graph": name,
        "nodes": n,
        "edges": g.num_edges,
        "F": f,
        "dtype": dname,
    }
    fns: dict[str, Fn] = {"op": lambda: ops.gated_spmm(g, x, gate)}
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore")
        a = torch.sparse_csr_tensor(g.rowptr, g.col, g.weight, size=g.shape)
        try:
            want = torch.sparse.mm(a, gate[:, None] * x[0]).float()
        except (RuntimeError, NotImplementedError) as exc:
            info["sparse.mm"] = f"unsupported ({str(exc).splitlines()[0][:60]})"
        else:
            fns["cusparse" if device == "cuda" else "sparse.mm"] = lambda: torch.sparse.mm(
                a, gate[:, None] * x[0]
            )
            info["max_rel_err"] = float((got - want).abs().max()) / (float(want.abs().max()) or 1)
    per_edge = g.col.element_size() + g.weight.element_size() + f * x.element_size()
    info["bytes"] = g.num_edges * per_edge + n * f * x.element_size()
    return Case("gated_spmm", f"gated_spmm {name} F={f} {dname}", fns, info)


def model_case(model, splits, label: str, s: float, batch: int, device: str) -> Case:
    """A gated backbone at sparsity ``s`` on the first ``batch`` test windows: ``dense``
    ``model(x)``, ``gated`` ``model(x, gate)`` and the compacted ``c(c.gather_input(x))``
    (reading the active sensors from the full input included). ``info["max_abs_diff"]``:
    compacted against gated forecast (the equivalence rule)."""
    from dynst_fast.train import first_windows

    n = model.num_sensors
    idx = active_index(n, s, device, n)
    gate = torch.zeros(n, device=device)
    gate[idx] = 1.0
    comp = model.compact(idx).eval()
    xb = first_windows(splits.test, batch)[0].to(device)
    with torch.inference_mode():
        diff = float((comp(comp.gather_input(xb)) - model(xb, gate)).abs().max())
    info = {"model": label, "N": n, "s": s, "K": idx.numel(), "batch": int(xb.shape[0])}
    return Case(
        "model",
        f"{label} s={s} batch {int(xb.shape[0])}",
        {
            "compact": lambda: comp(comp.gather_input(xb)),
            "dense": lambda: model(xb),
            "gated": lambda: model(xb, gate),
        },
        {**info, "max_abs_diff": diff},
    )
