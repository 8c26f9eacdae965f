"""Plain PyTorch reference of every op in ``dynst_fast.ops``, and of their backward ops.

These are the ground truth for tests and the kernels ``DYNST_BACKEND=reference`` runs.
They do no argument checking: call the public functions in ``dynst_fast.ops`` for that.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..graph import CSRGraph
from ..morph import PatchGrid, image_to_stream, stream_to_image


def compact(x: Tensor, theta: Tensor | None, index: Tensor) -> Tensor:
    """``x[B, N, F]`` -> ``x[:, index] * theta[index, None]`` of shape ``[B, K, F]``
    (no scaling when theta is None)."""
    out = x[:, index]
    return out if theta is None else out * theta[index].to(x.dtype)[None, :, None]


def compact_backward(
    grad: Tensor, x: Tensor, theta: Tensor, index: Tensor, need_theta_grad: bool
) -> tuple[Tensor, Tensor]:
    """``(dx [B, N, F], dtheta [N] or [0])`` of :func:`compact` for ``grad [B, K, F]``."""
    dx = expand(grad * theta[index][None, :, None], index, x.shape[1])
    if not need_theta_grad:
        return dx, x.new_empty(0)
    per_sensor = (x[:, index] * grad).sum(dim=(0, 2))
    return dx, x.new_zeros(x.shape[1]).index_copy(0, index, per_sensor)


def expand(y: Tensor, index: Tensor, n: int, fill: float = 0.0) -> Tensor:
    """Scatter ``y[B, K, F]`` back to ``[B, n, F]``; rows not in ``index`` hold ``fill``."""
    out = y.new_full((y.shape[0], n, y.shape[2]), fill)
    return out.index_copy(1, index, y)


def patchify(frames: Tensor, p: int) -> Tensor:
    """Stream morph of images: ``[B, T, C, H, W]`` -> ``[B, N, T*C*p*p]``
    (``morph.image_to_stream``: zero padding at the bottom/right, patches row-major,
    features ``(t, c, dy, dx)``)."""
    return image_to_stream(frames, p)[0]


def patchify_compact(frames: Tensor, theta: Tensor, index: Tensor, p: int) -> Tensor:
    """Patchify then compact: ``[B, T, C, H, W]`` -> ``[B, K, T*C*p*p]``."""
    return compact(patchify(frames, p), theta, index)


def patchify_compact_backward(
    grad: Tensor, frames: Tensor, theta: Tensor, index: Tensor, p: int, need_theta_grad: bool
) -> tuple[Tensor, Tensor]:
    """``(dframes [B, T, C, H, W], dtheta [N] or [0])`` of :func:`patchify_compact`."""
    b, t, c, h, w = frames.shape
    grid = PatchGrid(int(h), int(w), int(p))
    dpatches = expand(grad * theta[index][None, :, None], index, grid.num_patches)
    dframes = stream_to_image(dpatches, grid, t, c).contiguous()
    if not need_theta_grad:
        return dframes, theta.new_empty(0)
    per_patch = (patchify(frames, p)[:, index] * grad).sum(dim=(0, 2))
    return dframes, theta.new_zeros(grid.num_patches).index_copy(0, index, per_patch)


def _ordered_pick(key: Tensor, eligible: Tensor, k: int) -> Tensor:
    """Indices of the ``k`` smallest ``key`` among ``eligible``, ties to the lower index.

    Only eligible entries are ranked (no ``inf`` sentinel), so an infinite score can
    never let an ineligible index slip in.
    """
    idx = torch.nonzero(eligible).flatten()
    order = torch.sort(key[idx], stable=True).indices
    return idx[order[:k]]


def select_swap(
    score: Tensor, active: Tensor, k: int, movable: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """The ``k`` lowest-score active and the ``k`` highest-score inactive sensors (of the
    ``movable`` ones only, if given).

    Returns ``(drop[k], grow[k])`` int64, each ordered from the most extreme score,
    ties broken towards the lower index. Scores are compared as given (pass
    ``|grad|`` for DynST's Eqs. 5-6).
    """
    s = score.detach().to(torch.float64)
    m = torch.ones_like(active) if movable is None else movable
    return _ordered_pick(s, active & m, k), _ordered_pick(-s, ~active & m, k)


def prune_lowest(score: Tensor, active: Tensor, k: int, movable: Tensor | None = None) -> Tensor:
    """New active mask without the ``k`` active sensors of lowest ``|score|`` (Eq. 4),
    pruning ``movable`` sensors only if given."""
    pool = active if movable is None else active & movable
    drop = _ordered_pick(score.detach().abs().to(torch.float64), pool, k)
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


def gated_spmm_backward(
    graph_t: CSRGraph, x: Tensor, gate: Tensor, grad_out: Tensor, need_gate_grad: bool
) -> tuple[Tensor, Tensor]:
    """``(grad_x, grad_gate)`` of :func:`gated_spmm` from the transposed graph ``A^T``:
    with ``y = A^T grad_out``, ``grad_x = gate * y`` and ``grad_gate[j] = sum x_j * y_j``
    (zeros when ``need_gate_grad`` is false)."""
    y = gated_spmm(graph_t, grad_out, grad_out.new_ones(graph_t.num_cols))
    grad_x = y * gate.to(y.dtype)[None, :, None]
    if not need_gate_grad:
        return grad_x, torch.zeros_like(gate)
    return grad_x, (x * y).sum(dim=(0, 2)).to(gate.dtype)


def induce_subgraph(graph: CSRGraph, index: Tensor) -> CSRGraph:
    """CSR of ``A[index][:, index]`` relabelled to ``0..K-1``, edge order kept."""
    return _select_columns(graph, index, rows=index)


def bipartite(graph: CSRGraph, index: Tensor) -> CSRGraph:
    """CSR of ``A[:, index]`` (shape ``[num_rows, K]``), columns relabelled, order kept."""
    return _select_columns(graph, index, rows=None)


def _select_columns(graph: CSRGraph, index: Tensor, rows: Tensor | None) -> CSRGraph:
    """The edges of rows ``rows`` (all rows if None) whose source is in ``index``, sources
    relabelled to their position in ``index``, edge order kept."""
    relabel = torch.full((graph.num_cols,), -1, dtype=torch.int64, device=index.device)
    relabel[index] = torch.arange(index.numel(), device=index.device)
    row_of_edge = graph.row_index()
    edge_rows = torch.arange(graph.num_rows, device=graph.device)
    if rows is not None:  # the edges of rows `rows`, in that row order
        counts = graph.rowptr[rows + 1] - graph.rowptr[rows]
        starts = torch.repeat_interleave(graph.rowptr[rows], counts)
        offsets = torch.arange(int(counts.sum()), device=graph.device)
        offsets = offsets - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        edges = starts + offsets
        row_of_edge = torch.repeat_interleave(
            torch.arange(rows.numel(), device=graph.device), counts
        )
        edge_rows = torch.arange(rows.numel(), device=graph.device)
    else:
        edges = torch.arange(graph.num_edges, device=graph.device)
    c = relabel[graph.col[edges]]
    keep = c >= 0
    counts = torch.bincount(row_of_edge[keep], minlength=edge_rows.numel())
    rowptr = torch.zeros(edge_rows.numel() + 1, dtype=torch.int64, device=graph.device)
    rowptr[1:] = torch.cumsum(counts, 0)
    weight = graph.weight[edges][keep]
    return CSRGraph(rowptr, c[keep], weight, num_cols=index.numel(), validate=False)


def nearest_active(candidates: Tensor, active: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """``(index [N, m], valid [N, m])``: each row's first ``m`` candidates (``[N, L]``,
    -1 pads) whose ``active`` flag is set, in list order; unfilled slots index 0, invalid.
    Standard operators only (cumulative count, scatter), so it exports as it is."""
    n = candidates.shape[0]
    ok = (candidates >= 0) & active[candidates.clamp(min=0)]
    rank = torch.cumsum(ok.to(torch.int64), dim=1)  # 1-based among the active ones
    taken = ok & (rank <= m)
    slot = torch.where(taken, rank - 1, m)  # everything else lands in a spare column
    index = candidates.new_zeros((n, m + 1)).scatter(1, slot, torch.where(taken, candidates, 0))
    valid = torch.zeros((n, m + 1), dtype=torch.bool, device=candidates.device)
    valid = valid.scatter(1, slot, taken)
    return index[:, :m].contiguous(), valid[:, :m].contiguous()


def _attention_weights(q, k, v, index, valid, bias, gate, scale):
    """Gathered keys / values ``[B, N, m, *]``, the unnormalised terms ``e = exp(s - max)``
    (0 where invalid), the normaliser z and the weights w (0 in rows where z = 0)."""
    b, n, m = q.shape[0], index.shape[0], index.shape[1]
    flat = index.reshape(-1)
    kn = k.index_select(1, flat).reshape(b, n, m, k.shape[2])
    vn = v.index_select(1, flat).reshape(b, n, m, v.shape[2])
    s = scale * torch.einsum("bnd,bnmd->bnm", q, kn) + bias
    s = s.masked_fill(~valid, float("-inf"))
    top = s.amax(dim=-1, keepdim=True).detach()
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    e = torch.exp(s - top)
    u = e * gate[index]
    z = u.sum(dim=-1, keepdim=True)
    has = z != 0
    w = u / torch.where(has, z, torch.ones_like(z)) * has
    return kn, vn, e, z, has, w


def neighbour_attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    index: Tensor,
    valid: Tensor,
    bias: Tensor,
    gate: Tensor,
    scale: float,
) -> Tensor:
    """``[B, N, E]``: attention of each target ``q [B, N, D]`` over its valid neighbours
    ``index [N, m]`` among ``k [B, S, D]`` / ``v [B, S, E]``, scores ``scale <q, k> +
    bias [B or 1, N, m]``, weights ``gate[j] exp(score)`` normalised; rows whose weights
    sum to 0 give 0 (and no gradient)."""
    _, vn, _, _, _, w = _attention_weights(q, k, v, index, valid, bias, gate, scale)
    return torch.einsum("bnm,bnme->bne", w, vn)


def neighbour_attention_backward(
    grad_out: Tensor,
    q: Tensor,
    k: Tensor,
    v: Tensor,
    index: Tensor,
    valid: Tensor,
    bias: Tensor,
    gate: Tensor,
    scale: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(dq, dk, dv, dbias, dgate)`` of :func:`neighbour_attention`: with ``a_j = <go,
    v_j>`` and ``c = <go, out>``, ``ds_j = w_j (a_j - c)`` is the score gradient and
    ``e_j (a_j - c) / z`` the gate gradient of neighbour j."""
    kn, vn, e, z, has, w = _attention_weights(q, k, v, index, valid, bias, gate, scale)
    out = torch.einsum("bnm,bnme->bne", w, vn)
    a = torch.einsum("bne,bnme->bnm", grad_out, vn)
    c = (grad_out * out).sum(-1, keepdim=True)
    ds = w * (a - c)
    dq = scale * torch.einsum("bnm,bnmd->bnd", ds, kn)
    flat = index.reshape(-1)
    b = q.shape[0]
    dkn = scale * ds[..., None] * q[:, :, None, :]  # [B, N, m, D]
    dk = torch.zeros_like(k).index_add(1, flat, dkn.reshape(b, -1, k.shape[2]))
    dvn = w[..., None] * grad_out[:, :, None, :]
    dv = torch.zeros_like(v).index_add(1, flat, dvn.reshape(b, -1, v.shape[2]))
    dbias = ds if bias.shape[0] == ds.shape[0] else ds.sum(0, keepdim=True)
    dg = e * (a - c) / torch.where(has, z, torch.ones_like(z)) * has
    dgate = torch.zeros_like(gate).index_add(0, flat, dg.sum(0).reshape(-1))
    return dq, dk, dv, dbias.to(bias.dtype), dgate
