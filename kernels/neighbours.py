"""Triton kernels of the neighbour ops: ``nearest_active`` (one program per row: the
active flags of its candidates, their running count, and a masked store of the first m)
and ``neighbour_attention`` with its backward (one program per target and batch row: the
m neighbours' keys and values gathered once, scores, softmax and weighted sum in
registers; the backward scatters into dk, dv and dgate with atomic adds, since targets
share neighbours).

Semantics are those of ``dynst_fast.ops.reference``: rows whose weights sum to 0 give 0
and no gradient.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._launch import next_pow2


@triton.jit
def _nearest_active_kernel(cand, active, index, valid, L, M, BLOCK_L: tl.constexpr):
    i = tl.program_id(0)
    taken = tl.zeros([], dtype=tl.int64)
    for start in range(0, L, BLOCK_L):
        offs = start + tl.arange(0, BLOCK_L)
        inside = offs < L
        c = tl.load(cand + i * L + offs, mask=inside, other=-1)
        flag = tl.load(active + tl.maximum(c, 0), mask=inside & (c >= 0), other=0)
        ok = (flag != 0) & (c >= 0) & inside
        rank = taken + tl.cumsum(ok.to(tl.int64), 0)  # 1-based among the active ones
        take = ok & (rank <= M)
        slot = rank - 1
        tl.store(index + i * M + slot, c, mask=take)
        tl.store(valid + i * M + slot, take.to(tl.int8), mask=take)
        taken += tl.sum(ok.to(tl.int64), 0)


def nearest_active(candidates: Tensor, active: Tensor, m: int) -> tuple[Tensor, Tensor]:
    n, length = candidates.shape
    cand = candidates.contiguous()
    act = active.contiguous().to(torch.int8)
    index = torch.zeros((n, m), dtype=torch.int64, device=cand.device)
    valid = torch.zeros((n, m), dtype=torch.int8, device=cand.device)
    if n and length and m:
        block = min(next_pow2(length), 1024)
        _nearest_active_kernel[(n,)](cand, act, index, valid, length, m, BLOCK_L=block)
    return index, valid.to(torch.bool)


@triton.jit
def _scores(q, k, index, valid, bias, b, i, N, S, D, M, SCALE, BIAS_B,
            BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, ACC: tl.constexpr):  # fmt: skip
    """(neighbour numbers, valid flags, scores with invalid ones at -inf) of target i."""
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    in_m = offs_m < M
    idx = tl.load(index + i * M + offs_m, mask=in_m, other=0)
    ok = (tl.load(valid + i * M + offs_m, mask=in_m, other=0) != 0) & in_m
    qv = tl.load(q + (b * N + i) * D + offs_d, mask=offs_d < D, other=0.0).to(ACC)
    kp = k + (b * S + idx[:, None]) * D + offs_d[None, :]
    kv = tl.load(kp, mask=ok[:, None] & (offs_d[None, :] < D), other=0.0).to(ACC)
    s = tl.sum(kv * qv[None, :], 1) * SCALE
    bb = b * BIAS_B
    s += tl.load(bias + (bb * N + i) * M + offs_m, mask=ok, other=0.0).to(ACC)
    return idx, ok, tl.where(ok, s, float("-inf")), qv, kv


@triton.jit
def _attention_fwd_kernel(q, k, v, index, valid, bias, gate, out, N, S, D, E, M, SCALE,
                          BIAS_B, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr,
                          BLOCK_E: tl.constexpr, ACC: tl.constexpr):  # fmt: skip
    i = tl.program_id(0)
    b = tl.program_id(1)
    idx, ok, s, _, _ = _scores(q, k, index, valid, bias, b, i, N, S, D, M, SCALE, BIAS_B,
                               BLOCK_M, BLOCK_D, ACC)  # fmt: skip
    top = tl.max(s, 0)
    top = tl.where(top == float("-inf"), 0.0, top)
    g = tl.load(gate + idx, mask=ok, other=0.0).to(ACC)
    u = tl.where(ok, tl.exp(s - top) * g, 0.0)
    z = tl.sum(u, 0)
    w = u / tl.where(z != 0, z, 1.0)
    offs_e = tl.arange(0, BLOCK_E)
    vp = v + (b * S + idx[:, None]) * E + offs_e[None, :]
    vv = tl.load(vp, mask=ok[:, None] & (offs_e[None, :] < E), other=0.0).to(ACC)
    o = tl.sum(w[:, None] * vv, 0)
    tl.store(out + (b * N + i) * E + offs_e, o.to(out.dtype.element_ty), mask=offs_e < E)


@triton.jit
def _attention_bwd_kernel(go, q, k, v, index, valid, bias, gate, dq, dk, dv, dbias, dgate,
                          N, S, D, E, M, SCALE, BIAS_B, BLOCK_M: tl.constexpr,
                          BLOCK_D: tl.constexpr, BLOCK_E: tl.constexpr,
                          ACC: tl.constexpr):  # fmt: skip
    i = tl.program_id(0)
    b = tl.program_id(1)
    idx, ok, s, qv, kv = _scores(q, k, index, valid, bias, b, i, N, S, D, M, SCALE, BIAS_B,
                                 BLOCK_M, BLOCK_D, ACC)  # fmt: skip
    top = tl.max(s, 0)
    top = tl.where(top == float("-inf"), 0.0, top)
    e = tl.where(ok, tl.exp(s - top), 0.0)
    g = tl.load(gate + idx, mask=ok, other=0.0).to(ACC)
    u = e * g
    z = tl.sum(u, 0)
    if z != 0:
        w = u / z
        offs_e = tl.arange(0, BLOCK_E)
        in_e = offs_e < E
        offs_d = tl.arange(0, BLOCK_D)
        in_d = offs_d < D
        vp = v + (b * S + idx[:, None]) * E + offs_e[None, :]
        vv = tl.load(vp, mask=ok[:, None] & in_e[None, :], other=0.0).to(ACC)
        gov = tl.load(go + (b * N + i) * E + offs_e, mask=in_e, other=0.0).to(ACC)
        o = tl.sum(w[:, None] * vv, 0)
        c = tl.sum(gov * o, 0)
        a = tl.sum(vv * gov[None, :], 1)
        ds = w * (a - c)
        dqv = tl.sum(ds[:, None] * kv, 0) * SCALE
        tl.store(dq + (b * N + i) * D + offs_d, dqv.to(dq.dtype.element_ty), mask=in_d)
        dkp = dk + (b * S + idx[:, None]) * D + offs_d[None, :]
        tl.atomic_add(dkp, (SCALE * ds[:, None] * qv[None, :]).to(dk.dtype.element_ty),
                      mask=ok[:, None] & in_d[None, :])  # fmt: skip
        dvp = dv + (b * S + idx[:, None]) * E + offs_e[None, :]
        tl.atomic_add(dvp, (w[:, None] * gov[None, :]).to(dv.dtype.element_ty),
                      mask=ok[:, None] & in_e[None, :])  # fmt: skip
        offs_m = tl.arange(0, BLOCK_M)
        bp = dbias + ((b * BIAS_B) * N + i) * M + offs_m
        if BIAS_B == 1:
            tl.store(bp, ds.to(dbias.dtype.element_ty), mask=ok)
        else:
            tl.atomic_add(bp, ds.to(dbias.dtype.element_ty), mask=ok)
        tl.atomic_add(dgate + idx, (e * (a - c) / z).to(dgate.dtype.element_ty), mask=ok)


def _blocks(d: int, e: int, m: int, dtype: torch.dtype) -> dict:
    """Tile sizes (powers of two) and the accumulation dtype (float64 for float64 data)."""
    return {"BLOCK_M": next_pow2(max(m, 1)), "BLOCK_D": next_pow2(max(d, 1)),
            "BLOCK_E": next_pow2(max(e, 1)),
            "ACC": tl.float64 if dtype == torch.float64 else tl.float32}  # fmt: skip


def neighbour_attention(q, k, v, index, valid, bias, gate, scale: float) -> Tensor:
    b, n, d = q.shape
    s, e, m = k.shape[1], v.shape[2], index.shape[1]
    out = torch.empty((b, n, e), dtype=q.dtype, device=q.device)
    if b and n:
        bias_b = 1 if bias.shape[0] == b and b > 1 else 0
        _attention_fwd_kernel[(n, b)](
            q.contiguous(), k.contiguous(), v.contiguous(), index.contiguous(),
            valid.contiguous().to(torch.int8), bias.contiguous(), gate.contiguous(), out,
            n, s, d, e, m, float(scale), bias_b, **_blocks(d, e, m, q.dtype),
        )  # fmt: skip
    return out


def neighbour_attention_backward(grad_out, q, k, v, index, valid, bias, gate, scale: float):
    b, n, d = q.shape
    s, e, m = k.shape[1], v.shape[2], index.shape[1]
    f32 = torch.float32  # atomic adds accumulate in float32 (or float64)
    acc = q.dtype if q.dtype == torch.float64 else f32
    dq = torch.zeros(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.zeros(k.shape, dtype=acc, device=q.device)
    dv = torch.zeros(v.shape, dtype=acc, device=q.device)
    dbias = torch.zeros(bias.shape, dtype=acc, device=q.device)
    dgate = torch.zeros(gate.shape, dtype=acc, device=q.device)
    if b and n:
        bias_b = 1 if bias.shape[0] == b and b > 1 else 0
        _attention_bwd_kernel[(n, b)](
            grad_out.contiguous(), q.contiguous(), k.contiguous(), v.contiguous(),
            index.contiguous(), valid.contiguous().to(torch.int8), bias.contiguous(),
            gate.contiguous(), dq, dk, dv, dbias, dgate, n, s, d, e, m, float(scale), bias_b,
            **_blocks(d, e, m, q.dtype),
        )  # fmt: skip
    dt = q.dtype
    return dq, dk.to(dt), dv.to(dt), dbias.to(dt), dgate.to(dt)
