"""Argument checks shared by the public ops: clear errors before any kernel runs."""

from __future__ import annotations

import torch
from torch import Tensor


def check_tensor(name: str, t: object, op: str) -> Tensor:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    return t


def check_rank(name: str, t: Tensor, rank: int, shape_doc: str, op: str) -> None:
    if t.dim() != rank:
        raise ValueError(
            f"{op}: {name} must have shape {shape_doc} ({rank}-D), got {tuple(t.shape)}"
        )


def check_float(name: str, t: Tensor, op: str) -> None:
    if not t.is_floating_point():
        raise TypeError(f"{op}: {name} must be floating point, got {t.dtype}")


def check_same_device(op: str, **tensors: Tensor) -> None:
    devices = {name: t.device for name, t in tensors.items()}
    if len(set(devices.values())) > 1:
        desc = ", ".join(f"{k} on {v}" for k, v in devices.items())
        raise ValueError(f"{op}: all tensors must be on one device, got {desc}")


def check_index(index: object, n: int, op: str, *, allow_empty: bool = False) -> Tensor:
    """An int64 ``[K]`` tensor of distinct values in ``[0, n)``, ``K >= 1``."""
    index = check_tensor("index", index, op)
    if index.dtype == torch.bool:
        raise TypeError(
            f"{op}: index must be int64 sensor numbers, got a bool mask: pass "
            "torch.nonzero(mask).flatten()"
        )
    if index.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{op}: index must be int64 or int32, got {index.dtype}")
    check_rank("index", index, 1, "[K]", op)
    k = index.numel()
    if k == 0 and not allow_empty:
        raise ValueError(f"{op}: index is empty (K = 0): at least one sensor must stay active")
    if k > n:
        raise ValueError(f"{op}: index has {k} entries but there are only {n} sensors")
    if k and not torch.compiler.is_compiling():  # value checks would break a traced graph
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= n:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{op}: index out of range: {bad} not in [0, {n})")
        if int(torch.bincount(index.to(torch.int64), minlength=n).max()) > 1:
            raise ValueError(f"{op}: index has duplicate entries")
    return index.to(torch.int64)


def check_mask(active: object, n: int, op: str, name: str = "active") -> Tensor:
    active = check_tensor(name, active, op)
    if active.dtype != torch.bool:
        raise TypeError(f"{op}: {name} must be a bool tensor, got {active.dtype}")
    if active.shape != (n,):
        raise ValueError(f"{op}: {name} must have shape [{n}], got {tuple(active.shape)}")
    return active


def check_scores(score: object, active: object, op: str) -> Tensor:
    """``score [N]`` floating point and ``active [N]`` bool on one device; returns active."""
    score = check_tensor("score", score, op)
    check_rank("score", score, 1, "[N]", op)
    check_float("score", score, op)
    active = check_mask(active, score.numel(), op)
    check_same_device(op, score=score, active=active)
    return active


def check_movable(movable: object, active: Tensor, op: str) -> Tensor | None:
    """None, or a ``[N]`` bool mask like ``active`` on its device."""
    if movable is None:
        return None
    movable = check_mask(movable, active.numel(), op, name="movable")
    check_same_device(op, active=active, movable=movable)
    return movable


def check_no_nan(name: str, t: Tensor, op: str) -> None:
    if bool(torch.isnan(t).any()):
        raise ValueError(f"{op}: {name} has NaN entries (NaN scores cannot be ranked)")


def check_k(k: object, available: int, what: str, op: str) -> int:
    if isinstance(k, bool) or not isinstance(k, int):
        raise TypeError(f"{op}: k must be an int, got {type(k).__name__}")
    if k < 0:
        raise ValueError(f"{op}: k must be >= 0, got {k}")
    if k > available:
        raise ValueError(f"{op}: k = {k} is larger than the {available} {what} sensors")
    return k


# ------------------------------------------------------------------ fake-kernel checks
# These run on fake tensors too (torch._check), for the fake kernels of the graph ops.
def check_csr_arrays(op: str, rowptr: Tensor, col: Tensor, weight: Tensor, num_rows: int) -> None:
    """CSR arrays of a graph with ``num_rows`` rows: dtypes and shapes."""
    torch._check(
        rowptr.dtype == torch.int64 and col.dtype == torch.int64,
        lambda: f"{op}: rowptr and col must be int64",
    )
    torch._check(weight.is_floating_point(), lambda: f"{op}: weight must be floating point")
    torch._check(
        rowptr.dim() == 1 and rowptr.shape[0] == num_rows + 1,
        lambda: f"{op}: rowptr must have {num_rows + 1} entries, got {tuple(rowptr.shape)}",
    )
    torch._check(
        col.dim() == 1 and weight.dim() == 1 and weight.shape[0] == col.shape[0],
        lambda: f"{op}: col and weight must be 1-D with one entry per edge",
    )


def check_select_arrays(
    op: str, rowptr: Tensor, col: Tensor, weight: Tensor, index: Tensor
) -> None:
    """Arguments of induce_subgraph / bipartite: a CSR and an int64 ``[K]`` index."""
    torch._check(
        rowptr.dtype == torch.int64 and col.dtype == torch.int64 and index.dtype == torch.int64,
        lambda: f"{op}: rowptr, col and index must be int64",
    )
    torch._check(weight.is_floating_point(), lambda: f"{op}: weight must be floating point")
    torch._check(
        rowptr.dim() == 1 and col.dim() == 1 and weight.dim() == 1 and index.dim() == 1,
        lambda: f"{op}: rowptr, col, weight and index must be 1-D",
    )
    torch._check(rowptr.shape[0] >= 1, lambda: f"{op}: rowptr must have num_rows + 1 >= 1 entries")
    torch._check(
        weight.shape[0] == col.shape[0],
        lambda: f"{op}: weight has {weight.shape[0]} entries but col has {col.shape[0]}",
    )


def check_graph_index(graph: object, index: object, op: str):
    """``(graph as a CSRGraph, index)``: index a valid ``[K]`` column index on its device."""
    from ..graph import as_graph

    graph = as_graph(graph, who=op)
    index = check_index(index, graph.num_cols, op)
    check_same_device(op, graph=graph.col, index=index)
    return graph, index
