"""Plain PyTorch reference implementations of every op in ``dynst_fast.ops``.

These are the ground truth for tests. They do no argument checking: call the
public functions in ``dynst_fast.ops`` for that.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..graph import CSRGraph


def compact(x: Tensor, theta: Tensor, index: Tensor) -> Tensor:
    """``x[B, N, F]`` -> ``x[:, index] * theta[index, None]`` of shape ``[B, K, F]``."""
    return x[:, index] * theta[index].to(x.dtype)[None, :, None]


def expand(y: Tensor, index: Tensor, n: int, fill: float = 0.0) -> Tensor:
    """Scatter ``y[B, K, F]`` back to ``[B, n, F]``; rows not in ``index`` hold ``fill``."""
    out = y.new_full((y.shape[0], n, y.shape[2]), fill)
    return out.index_copy(1, index, y)


def patchify(frames: Tensor, p: int) -> Tensor:
    """Stream morph of images: ``[B, T, C, H, W]`` -> ``[B, N, T*C*p*p]``.

    H and W are zero-padded at the bottom and right up to a multiple of ``p``.
    Patches are numbered row-major over the patch grid; features are ordered
    ``(t, c, dy, dx)``.
    """
    b, t, c, h, w = frames.shape
    ph, pw = -h % p, -w % p
    x = F.pad(frames, (0, pw, 0, ph))
    gh, gw = (h + ph) // p, (w + pw) // p
    x = x.reshape(b, t, c, gh, p, gw, p).permute(0, 3, 5, 1, 2, 4, 6)
    return x.reshape(b, gh * gw, t * c * p * p)


def patchify_compact(frames: Tensor, theta: Tensor, index: Tensor, p: int) -> Tensor:
    """Patchify then compact: ``[B, T, C, H, W]`` -> ``[B, K, T*C*p*p]``."""
    return compact(patchify(frames, p), theta, index)


def _ordered_pick(key: Tensor, eligible: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` smallest ``key`` among ``eligible``, ties to the lower index.

    Only eligible entries are ranked (no ``inf`` sentinel), so an infinite score can
    never let an ineligible index slip in.
    """
    idx = torch.nonzero(eligible).flatten()
    order = torch.sort(key[idx], stable=True).indices
    return idx[order[:k]]


def select_swap(score: Tensor, active: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """The ``k`` lowest-score active and the ``k`` highest-score inactive sensors.

    Returns ``(drop[k], grow[k])`` int64, each ordered from the most extreme score,
    ties broken towards the lower index. Scores are compared as given (pass
    ``|grad|`` for DynST's Eqs. 5-6).
    """
    s = score.detach().to(torch.float64)
    drop = _ordered_pick(s, active, k)
    grow = _ordered_pick(-s, ~active, k)
    return drop, grow


def prune_lowest(score: Tensor, active: Tensor, k: int) -> Tensor:
    """New active mask without the ``k`` active sensors of lowest ``|score|`` (Eq. 4)."""
    s = score.detach().abs().to(torch.float64)
    drop = _ordered_pick(s, active, k)
    out = active.clone()
    out[drop] = False
    return out


def gated_spmm(graph: CSRGraph, x: Tensor, gate: Tensor) -> Tensor:
    """``out[b, i] = sum_j A[i, j] * gate[j] * x[b, j]`` for ``x[B, num_cols, F]``."""
    rows = graph.row_index()
    w = graph.weight.to(x.dtype) * gate.to(x.dtype)[graph.col]
    msg = x[:, graph.col] * w[None, :, None]
    out = x.new_zeros(x.shape[0], graph.num_rows, x.shape[2])
    return out.index_add(1, rows, msg)


# Graphs with at most this many dense entries (16 MB in float32) export as one MatMul.
EXPORT_DENSE_MAX = 1 << 22


def gated_spmm_export(graph: CSRGraph, x: Tensor, gate: Tensor) -> Tensor:
    """``gated_spmm`` in the form exported to ONNX: a MatMul with the gated dense matrix
    for graphs of at most ``EXPORT_DENSE_MAX`` entries (BLAS beats gathering at that size;
    measured in ``bench/bench_onnx.py``), else :func:`gated_spmm_padded`. Reads the
    graph's cached dense / padded arrays, so a trace sees them as constants."""
    if graph.num_rows * graph.num_cols <= EXPORT_DENSE_MAX:
        a = graph.cached_dense().to(x.dtype) * gate.to(x.dtype)[None, :]
        return torch.matmul(a, x)
    return gated_spmm_padded(graph, x, gate)


def gated_spmm_padded(graph: CSRGraph, x: Tensor, gate: Tensor) -> Tensor:
    """``gated_spmm`` over ``graph.padded_rows()``: gather, multiply, sum; no scatter.

    The form exported to ONNX: Gather/Mul/ReduceSum are deterministic in every runtime,
    while a scatter-add with repeated targets races in onnxruntime's threaded CPU kernel.
    """
    nbr, w = graph.padded_rows()
    b, r, d, f = x.shape[0], graph.num_rows, nbr.shape[1], x.shape[2]
    if d == 0:
        return x.new_zeros(b, r, f)
    wg = w.to(x.dtype) * gate.to(x.dtype)[nbr]
    msg = x[:, nbr.reshape(-1)].reshape(b, r, d, f)
    return (msg * wg[None, :, :, None]).sum(dim=2)


def induce_subgraph(graph: CSRGraph, index: Tensor) -> CSRGraph:
    """CSR of ``A[index][:, index]`` relabelled to ``0..K-1``, edge order kept."""
    n = graph.num_cols
    relabel = torch.full((n,), -1, dtype=torch.int64, device=index.device)
    relabel[index] = torch.arange(index.numel(), device=index.device)
    starts, ends = graph.rowptr[index], graph.rowptr[index + 1]
    pieces_col, pieces_w, counts = [], [], []
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        c = relabel[graph.col[s:e]]
        keep = c >= 0
        pieces_col.append(c[keep])
        pieces_w.append(graph.weight[s:e][keep])
        counts.append(int(keep.sum()))
    return _assemble(pieces_col, pieces_w, counts, index.numel(), graph)


def bipartite(graph: CSRGraph, index: Tensor) -> CSRGraph:
    """CSR of ``A[:, index]`` (shape ``[num_rows, K]``), columns relabelled, order kept."""
    relabel = torch.full((graph.num_cols,), -1, dtype=torch.int64, device=index.device)
    relabel[index] = torch.arange(index.numel(), device=index.device)
    c = relabel[graph.col]
    keep = c >= 0
    rows = graph.row_index()[keep]
    counts = torch.bincount(rows, minlength=graph.num_rows)
    rowptr = torch.zeros(graph.num_rows + 1, dtype=torch.int64, device=graph.device)
    rowptr[1:] = torch.cumsum(counts, 0)
    return CSRGraph(rowptr, c[keep], graph.weight[keep], num_cols=index.numel(), validate=False)


def _assemble(cols, ws, counts, k: int, like: CSRGraph) -> CSRGraph:
    rowptr = torch.zeros(k + 1, dtype=torch.int64, device=like.device)
    if k:
        rowptr[1:] = torch.cumsum(torch.tensor(counts, dtype=torch.int64, device=like.device), 0)
    col = torch.cat(cols) if cols else like.col.new_zeros(0)
    w = torch.cat(ws) if ws else like.weight.new_zeros(0)
    return CSRGraph(rowptr, col, w, num_cols=k, validate=False)
