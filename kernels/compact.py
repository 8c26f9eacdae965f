"""Triton kernels for ``compact`` / ``expand``: row gathers and scatters over the sensor axis.

* :func:`gather_rows` -- ``out[b, k, :] = src[b, index[k], :] * theta[index[k]]`` (theta
  optional): the forward of ``compact`` and the backward of ``expand``. The theta scale
  is fused into the copy.
* :func:`scatter_rows` -- ``out[b, n, :] = src[b, inv[n], :] * theta[n]`` for active n
  (``inv[n] >= 0``) and ``fill`` elsewhere, optionally with
  ``dtheta[n] = sum_{b, f} x[b, n, f] * src[b, inv[n], f]`` (0 for inactive n) reduced in
  the same pass: the forward of ``expand`` and the backward of ``compact``. Each program
  owns a block of output sensors and a share of the batch, so every output row is
  written exactly once (no atomics, no zero-fill pass); the dtheta partial sums of the
  batch shares are added in a fixed order afterwards (deterministic).

Inputs may be strided; outputs are contiguous. Products are taken in the data's dtype
(exact for fp16/bf16 operands, as in PyTorch); the theta gradient accumulates in fp32
(fp64 for fp64 data). On a CPU machine these run only under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._launch import MAX_GRID_Y, block_f, inverse_index


@triton.jit
def _gather_rows_kernel(
    src,
    theta,
    index,
    out,
    B,
    K,
    F,
    s_b,
    s_n,
    s_f,
    HAS_THETA: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_F: tl.constexpr,
):
    pid_k = tl.program_id(0)
    b_first = tl.program_id(1)
    b_step = tl.num_programs(1)
    rows = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    rmask = rows < K
    idx = tl.load(index + rows, mask=rmask, other=0).to(tl.int64)
    if HAS_THETA:
        scale = tl.load(theta + idx, mask=rmask, other=0)
    # 64-bit offsets: b * stride can pass 2^31 on large tensors.
    b0 = b_first.to(tl.int64)
    bs = b_step.to(tl.int64)
    src_row = src + b0 * s_b + idx * s_n
    out_row = out + (b0 * K + rows.to(tl.int64)) * F
    for _ in range(b_first, B, b_step):
        for f0 in range(0, F, BLOCK_F):
            cols = f0 + tl.arange(0, BLOCK_F)
            m = rmask[:, None] & (cols < F)[None, :]
            v = tl.load(src_row[:, None] + cols[None, :].to(tl.int64) * s_f, mask=m, other=0)
            if HAS_THETA:
                v = v * scale[:, None]
            tl.store(out_row[:, None] + cols[None, :], v, mask=m)
        src_row += bs * s_b
        out_row += bs * K * F


@triton.jit
def _scatter_rows_kernel(
    src,
    inv,
    theta,
    x,
    fill,
    out,
    dtheta,
    N,
    B,
    F,
    src_b,
    src_k,
    src_f,
    x_b,
    x_n,
    x_f,
    HAS_THETA: tl.constexpr,
    NEED_DTHETA: tl.constexpr,
    ACC_FP64: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_F: tl.constexpr,
):
    pid_n = tl.program_id(0)
    b_first = tl.program_id(1)
    b_step = tl.num_programs(1)
    rows = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    k = tl.load(inv + rows, mask=rmask, other=-1).to(tl.int64)
    active = k >= 0
    fill_v = tl.load(fill)
    if HAS_THETA:
        scale = tl.load(theta + rows, mask=rmask & active, other=0)
    if ACC_FP64:
        acc = tl.zeros([BLOCK_N], dtype=tl.float64)
    else:
        acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    # 64-bit offsets: b * stride can pass 2^31 on large tensors.
    b0 = b_first.to(tl.int64)
    bs = b_step.to(tl.int64)
    src_row = src + b0 * src_b + k * src_k
    out_row = out + (b0 * N + rows.to(tl.int64)) * F
    x_row = x + b0 * x_b + rows.to(tl.int64) * x_n
    for _ in range(b_first, B, b_step):
        for f0 in range(0, F, BLOCK_F):
            cols = f0 + tl.arange(0, BLOCK_F)
            fm = (cols < F)[None, :]
            m = rmask[:, None] & fm
            c64 = cols[None, :].to(tl.int64)
            g = tl.load(src_row[:, None] + c64 * src_f, mask=m & active[:, None], other=0)
            if NEED_DTHETA:
                xv = tl.load(x_row[:, None] + c64 * x_f, mask=m & active[:, None], other=0)
                if ACC_FP64:
                    acc += tl.sum(xv.to(tl.float64) * g.to(tl.float64), axis=1)
                else:
                    acc += tl.sum(xv.to(tl.float32) * g.to(tl.float32), axis=1)
            if HAS_THETA:
                g = g * scale[:, None]
            v = tl.where(active[:, None], g, fill_v)
            tl.store(out_row[:, None] + cols[None, :], v, mask=m)
        src_row += bs * src_b
        out_row += bs * N * F
        x_row += bs * x_b
    if NEED_DTHETA:  # this program's share of the batch; the caller sums the shares
        tl.store(dtheta + b0 * N + rows, acc, mask=rmask)


def gather_rows(src: Tensor, index: Tensor, theta: Tensor | None = None) -> Tensor:
    """``src[B, N, F]`` -> ``src[:, index] * theta[index, None]`` as a contiguous ``[B, K, F]``.

    index: int64 ``[K]``, distinct, in range (checked by the caller); theta: ``[N]`` of
    src's dtype or None.
    """
    b, _, f = src.shape
    k = index.numel()
    out = torch.empty((b, k, f), dtype=src.dtype, device=src.device)
    if out.numel() == 0:
        return out
    bf = block_f(f)
    bk = max(1, min(4096 // bf, triton.next_power_of_2(k)))
    grid = (triton.cdiv(k, bk), min(b, MAX_GRID_Y))
    _gather_rows_kernel[grid](
        src,
        theta if theta is not None else src,
        index,
        out,
        b,
        k,
        f,
        src.stride(0),
        src.stride(1),
        src.stride(2),
        HAS_THETA=theta is not None,
        BLOCK_K=bk,
        BLOCK_F=bf,
    )
    return out


def scatter_rows(
    src: Tensor,
    index: Tensor,
    n: int,
    *,
    fill: float = 0.0,
    theta: Tensor | None = None,
    x: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """``src[B, K, F]`` -> ``[B, n, F]`` with row ``index[k]`` = ``src[:, k] * theta[index[k]]``.

    Rows not in ``index`` hold ``fill``. With ``x[B, n, F]`` also returns
    ``dtheta[n] = sum_{b, f} x[b, j, f] * src[b, k, f]`` for ``j = index[k]`` (0 elsewhere),
    in theta's (or src's) dtype; otherwise the second result is None.
    """
    b, _, f = src.shape
    out = torch.empty((b, n, f), dtype=src.dtype, device=src.device)
    need_dtheta = x is not None
    dtheta = torch.zeros(n, dtype=src.dtype, device=src.device) if need_dtheta else None
    if b == 0 or f == 0:
        out.fill_(fill)
        return out, dtheta
    inv = inverse_index(index, n)
    fill_t = torch.full((1,), fill, dtype=src.dtype, device=src.device)
    bf = block_f(f)
    bn = max(1, min(1024 // bf, triton.next_power_of_2(n)))
    # Programs split the batch; with a theta gradient each writes its partial sums over
    # its batch rows to partial[g, n] (fp32, fp64 for fp64 data), summed here: still no
    # atomics, and the order of the sum is fixed (deterministic).
    g = min(b, MAX_GRID_Y)
    acc_dtype = torch.float64 if src.dtype == torch.float64 else torch.float32
    partial = torch.empty((g, n), dtype=acc_dtype, device=src.device) if need_dtheta else None
    xt = x if x is not None else src
    _scatter_rows_kernel[(triton.cdiv(n, bn), g)](
        src,
        inv,
        theta if theta is not None else src,
        xt,
        fill_t,
        out,
        partial if partial is not None else fill_t,
        n,
        b,
        f,
        src.stride(0),
        src.stride(1),
        src.stride(2),
        xt.stride(0),
        xt.stride(1),
        xt.stride(2),
        HAS_THETA=theta is not None,
        NEED_DTHETA=need_dtheta,
        ACC_FP64=src.dtype == torch.float64,
        BLOCK_N=bn,
        BLOCK_F=bf,
    )
    if partial is not None:
        dtheta = partial.sum(0).to(src.dtype)
    return out, dtheta
