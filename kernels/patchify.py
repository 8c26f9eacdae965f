"""Triton kernels for ``patchify_compact``: read only the active p x p patches of a video.

Patches are numbered row-major over the grid of ``gh x gw = ceil(H/p) x ceil(W/p)``
patches (H, W zero-padded at the bottom/right); a patch's features are ordered
``(t, c, dy, dx)``, so feature ``f`` of patch ``j`` is pixel
``frames[b, t, c, (j // gw) * p + dy, (j % gw) * p + dx]`` (0 when it lies in the padding).

* :func:`patchify_gather` -- ``[B, T, C, H, W]`` -> ``[B, K, T*C*p*p]`` scaled by
  ``theta[index]``: only the K active patches are read, the padding is never materialised.
* :func:`patchify_scatter` -- the backward: ``dframes`` (every in-image pixel written
  exactly once: the active patches get ``grad * theta``, the others 0) and
  ``dtheta[j] = sum_{b, f} patch_j[b, f] * grad[b, k, f]`` reduced in the same pass; a
  program owns a block of patches and a share of the batch, its partial dtheta sums are
  added in a fixed order afterwards (no atomics, deterministic).

Frames may be strided; outputs are contiguous. On CPU only under ``TRITON_INTERPRET=1``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

from ._launch import MAX_GRID_Y, block_f, inverse_index, next_pow2


@triton.jit
def _pixel_offsets(feat, gy, gx, C, H, W, s_t, s_c, s_h, s_w, P: tl.constexpr):
    """Offsets (without the batch term) and in-image mask of ``[rows, feats]`` pixels."""
    tc = feat // (P * P)
    r = feat - tc * (P * P)
    dy = r // P
    dx = r - dy * P
    t = tc // C
    c = tc - t * C
    yy = gy[:, None] * P + dy[None, :]
    xx = gx[:, None] * P + dx[None, :]
    inside = (yy < H) & (xx < W)
    off = (
        t[None, :].to(tl.int64) * s_t
        + c[None, :].to(tl.int64) * s_c
        + yy.to(tl.int64) * s_h
        + xx.to(tl.int64) * s_w
    )
    return off, inside


@triton.jit
def _patchify_gather_kernel(
    frames,
    theta,
    index,
    out,
    B,
    K,
    D,
    GW,
    C,
    H,
    W,
    s_b,
    s_t,
    s_c,
    s_h,
    s_w,
    P: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_F: tl.constexpr,
):
    pid_k = tl.program_id(0)
    b_first = tl.program_id(1)
    b_step = tl.num_programs(1)
    rows = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    rmask = rows < K
    idx = tl.load(index + rows, mask=rmask, other=0)
    gy = idx // GW
    gx = idx - gy * GW
    scale = tl.load(theta + idx, mask=rmask, other=0)
    b0 = b_first.to(tl.int64)
    bs = b_step.to(tl.int64)
    base = frames + b0 * s_b
    out_row = out + (b0 * K + rows.to(tl.int64)) * D
    for _ in range(b_first, B, b_step):
        for f0 in range(0, D, BLOCK_F):
            feat = f0 + tl.arange(0, BLOCK_F)
            off, inside = _pixel_offsets(feat, gy, gx, C, H, W, s_t, s_c, s_h, s_w, P)
            m = rmask[:, None] & (feat < D)[None, :]
            v = tl.load(base + off, mask=m & inside, other=0)
            tl.store(out_row[:, None] + feat[None, :], v * scale[:, None], mask=m)
        base += bs * s_b
        out_row += bs * K * D


@triton.jit
def _patchify_scatter_kernel(
    grad,
    frames,
    theta,
    inv,
    dframes,
    dtheta,
    N,
    B,
    D,
    GW,
    C,
    H,
    W,
    g_b,
    g_k,
    g_f,
    s_b,
    s_t,
    s_c,
    s_h,
    s_w,
    o_b,
    o_t,
    o_c,
    o_h,
    NEED_DTHETA: tl.constexpr,
    ACC_FP64: tl.constexpr,
    P: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_F: tl.constexpr,
):
    pid = tl.program_id(0)
    b_first = tl.program_id(1)
    b_step = tl.num_programs(1)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < N
    k = tl.load(inv + rows, mask=rmask, other=-1).to(tl.int64)
    active = k >= 0
    gy = rows // GW
    gx = rows - gy * GW
    scale = tl.load(theta + rows, mask=rmask & active, other=0)
    if ACC_FP64:
        acc = tl.zeros([BLOCK_N], dtype=tl.float64)
    else:
        acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    b0 = b_first.to(tl.int64)
    bs = b_step.to(tl.int64)
    g_row = grad + b0 * g_b + k * g_k
    f_base = frames + b0 * s_b
    o_base = dframes + b0 * o_b
    for _ in range(b_first, B, b_step):
        for f0 in range(0, D, BLOCK_F):
            feat = f0 + tl.arange(0, BLOCK_F)
            m = rmask[:, None] & (feat < D)[None, :]
            off, inside = _pixel_offsets(feat, gy, gx, C, H, W, s_t, s_c, s_h, s_w, P)
            o_off, _ = _pixel_offsets(feat, gy, gx, C, H, W, o_t, o_c, o_h, 1, P)
            ga = m & active[:, None]
            g = tl.load(g_row[:, None] + feat[None, :].to(tl.int64) * g_f, mask=ga, other=0)
            if NEED_DTHETA:
                xv = tl.load(f_base + off, mask=ga & inside, other=0)
                if ACC_FP64:
                    acc += tl.sum(xv.to(tl.float64) * g.to(tl.float64), axis=1)
                else:
                    acc += tl.sum(xv.to(tl.float32) * g.to(tl.float32), axis=1)
            tl.store(o_base + o_off, g * scale[:, None], mask=m & inside)
        g_row += bs * g_b
        f_base += bs * s_b
        o_base += bs * o_b
    if NEED_DTHETA:  # this program's share of the batch; the caller sums the shares
        tl.store(dtheta + b0 * N + rows, acc, mask=rmask)


def patch_grid(h: int, w: int, p: int) -> tuple[int, int]:
    """``(gh, gw)``: the patch grid of an ``h x w`` frame padded up to multiples of p."""
    return -(-h // p), -(-w // p)


def patchify_gather(frames: Tensor, theta: Tensor, index: Tensor, p: int) -> Tensor:
    """``frames[B, T, C, H, W]`` -> active patches ``[B, K, T*C*p*p]`` times ``theta[index]``.

    theta: ``[gh*gw]`` of frames' dtype; index: int64 ``[K]`` distinct, in range.
    """
    b, t, c, h, w = frames.shape
    _, gw = patch_grid(h, w, p)
    k, d = index.numel(), t * c * p * p
    out = torch.empty((b, k, d), dtype=frames.dtype, device=frames.device)
    if out.numel() == 0:
        return out
    bf = block_f(d)
    bk = max(1, min(4096 // bf, next_pow2(k)))
    grid = (triton.cdiv(k, bk), min(b, MAX_GRID_Y))
    _patchify_gather_kernel[grid](
        frames,
        theta,
        index,
        out,
        b,
        k,
        d,
        gw,
        c,
        h,
        w,
        *frames.stride(),
        P=p,
        BLOCK_K=bk,
        BLOCK_F=bf,
    )
    return out


def patchify_scatter(
    grad: Tensor, frames: Tensor, theta: Tensor, index: Tensor, p: int, need_dtheta: bool
) -> tuple[Tensor, Tensor | None]:
    """Backward of :func:`patchify_gather`: ``(dframes[B, T, C, H, W], dtheta[N] or None)``."""
    b, t, c, h, w = frames.shape
    gh, gw = patch_grid(h, w, p)
    n, d = gh * gw, t * c * p * p
    dframes = torch.empty((b, t, c, h, w), dtype=frames.dtype, device=frames.device)
    dtheta = torch.zeros(n, dtype=theta.dtype, device=frames.device) if need_dtheta else None
    if b == 0 or d == 0:
        dframes.zero_()
        return dframes, dtheta
    inv = inverse_index(index, n)
    bf = block_f(d)
    bn = max(1, min(1024 // bf, next_pow2(n)))
    g = min(b, MAX_GRID_Y)  # programs split the batch; dtheta partial sums per share
    acc_dtype = torch.float64 if frames.dtype == torch.float64 else torch.float32
    partial = torch.empty((g, n), dtype=acc_dtype, device=frames.device) if need_dtheta else None
    _patchify_scatter_kernel[(triton.cdiv(n, bn), g)](
        grad,
        frames,
        theta,
        inv,
        dframes,
        partial if partial is not None else theta,
        n,
        b,
        d,
        gw,
        c,
        h,
        w,
        *grad.stride(),
        *frames.stride(),
        *dframes.stride()[:4],
        NEED_DTHETA=need_dtheta,
        ACC_FP64=frames.dtype == torch.float64,
        P=p,
        BLOCK_N=bn,
        BLOCK_F=bf,
    )
    if partial is not None:
        dtheta = partial.sum(0).to(theta.dtype)
    return dframes, dtheta
