"""Triton masked bottom-k selection: the kernel family behind ``select_swap`` and ``prune_lowest``.

:func:`masked_smallest` returns the indices of the k smallest ``key(score)`` among the
eligible entries, ordered by ``(key, index)`` (ties go to the lower index), for any N
(1 up to 2^31 - 1) and any ``0 <= k <= #eligible``. ``mode`` picks the key: the score
(bottom-k), ``-score`` (top-k) or ``|score|``. Scores must not be NaN (the public ops
reject them).

Algorithm (multi-block radix select, as ``torch.topk`` does on CUDA):

1. Every score maps to a signed int64 key whose integer order is the float order
   (IEEE bits, magnitude bits flipped for negatives, -0 folded onto +0): 32-bit keys
   for fp16/bf16/fp32 scores, 64-bit for fp64.
2. ``NBITS / 8`` histogram passes over the eligible keys, one 8-bit digit per pass from
   the top, find the k-th smallest key T. Each pass is one grid of blocks
   (``tl.histogram`` + integer atomics into 256 bins, so the counts are exact); each
   program re-derives the digits fixed so far from the earlier passes' histograms, so no
   pass needs the host or an extra launch.
3. A count pass and a write pass compact, in index order, every eligible entry with
   key < T and the first ``r`` entries (lowest index) with key == T, where r makes the
   total exactly k: per-block counts, an exclusive scan over blocks (``torch.cumsum``)
   and ``tl.cumsum`` inside each block give every selected entry its output slot.
4. The k selected entries are sorted by key with a stable sort (they are already in
   index order, so ties stay lowest index first).

No step synchronises with the host. Cost: ``NBITS/8 + 2`` reads of score and mask,
plus a sort of k elements.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

MODES = {"smallest": 0, "largest": 1, "smallest_abs": 2}
_BLOCK = 4096


@triton.jit
def _keys(score, elig, offs, N, MODE: tl.constexpr, WIDE: tl.constexpr):
    """``(key, participating)`` of the entries at ``offs``: order-preserving int64 keys."""
    m = offs < N
    s = tl.load(score + offs, mask=m, other=0)
    if WIDE:
        v = s.to(tl.float64)
    else:
        v = s.to(tl.float32)
    if MODE == 1:
        v = -v
    if MODE == 2:
        v = tl.abs(v)
    v = tl.where(v == 0, 0.0, v)  # -0.0 and +0.0 compare equal
    if WIDE:
        bits = v.to(tl.int64, bitcast=True)
        key = tl.where(bits < 0, bits ^ 0x7FFFFFFFFFFFFFFF, bits)
    else:
        bits32 = v.to(tl.int32, bitcast=True)
        key = tl.where(bits32 < 0, bits32 ^ 0x7FFFFFFF, bits32).to(tl.int64)
    e = tl.load(elig + offs, mask=m, other=0) != 0
    return key, e & m


@triton.jit
def _descend(hist, k, PASSES: tl.constexpr):
    """Replay the first ``PASSES`` histograms: ``(prefix, k_left)``.

    ``prefix`` is the k-th smallest key arithmetically shifted right by ``8 * PASSES``
    bits less than the full width; ``k_left`` is its rank (1-based) among the entries
    sharing that prefix.
    """
    bins = tl.arange(0, 256)
    prefix = tl.zeros([], dtype=tl.int64)
    k_left = tl.zeros([], dtype=tl.int64) + k
    for j in tl.static_range(PASSES):
        h = tl.load(hist + j * 256 + bins).to(tl.int64)
        c = tl.cumsum(h, 0)
        d = tl.sum((c < k_left).to(tl.int64), 0)
        k_left -= tl.sum(tl.where(bins < d, h, 0), 0)
        if j == 0:
            prefix = d - 128  # the top digit of a signed key is in [-128, 127]
        else:
            prefix = prefix * 256 + d
    return prefix, k_left


@triton.jit
def _histogram_kernel(
    score,
    elig,
    hist,
    N,
    k,
    PASS: tl.constexpr,
    NBITS: tl.constexpr,
    MODE: tl.constexpr,
    WIDE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    key, part = _keys(score, elig, offs, N, MODE, WIDE)
    shift = NBITS - 8 * (PASS + 1)
    if PASS == 0:
        digit = (key >> shift) + 128
    else:
        prefix, _ = _descend(hist, k, PASS)
        part = part & ((key >> (shift + 8)) == prefix)
        digit = (key >> shift) & 255
    digit = tl.where(part, digit, 0).to(tl.int32)
    h = tl.histogram(digit, 256)
    missing = BLOCK - tl.sum(part.to(tl.int32), 0)  # non-participants were put in bin 0
    bins = tl.arange(0, 256)
    h = h - tl.where(bins == 0, missing, 0)
    tl.atomic_add(hist + PASS * 256 + bins, h)


@triton.jit
def _count_kernel(
    score,
    elig,
    hist,
    counts,
    state,
    N,
    k,
    NB,
    PASSES: tl.constexpr,
    MODE: tl.constexpr,
    WIDE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    key, part = _keys(score, elig, offs, N, MODE, WIDE)
    thr, k_left = _descend(hist, k, PASSES)
    tl.store(counts + pid, tl.sum((part & (key < thr)).to(tl.int64), 0))
    tl.store(counts + NB + pid, tl.sum((part & (key == thr)).to(tl.int64), 0))
    if pid == 0:
        tl.store(state, thr)
        tl.store(state + 1, k_left)


@triton.jit
def _write_kernel(
    score,
    elig,
    state,
    eq_offset,
    sel_offset,
    out_index,
    out_key,
    N,
    MODE: tl.constexpr,
    WIDE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    key, part = _keys(score, elig, offs, N, MODE, WIDE)
    thr = tl.load(state)
    k_left = tl.load(state + 1)
    eq = part & (key == thr)
    eq_i = eq.to(tl.int64)
    tie_rank = tl.load(eq_offset + pid) + tl.cumsum(eq_i, 0) - eq_i
    sel = (part & (key < thr)) | (eq & (tie_rank < k_left))
    sel_i = sel.to(tl.int64)
    pos = tl.load(sel_offset + pid) + tl.cumsum(sel_i, 0) - sel_i
    tl.store(out_index + pos, offs, mask=sel)
    tl.store(out_key + pos, key, mask=sel)


def _exclusive_cumsum(x: Tensor) -> Tensor:
    return torch.cumsum(x, 0) - x


def masked_smallest(score: Tensor, eligible: Tensor, k: int, mode: str = "smallest") -> Tensor:
    """Indices (int64 ``[k]``) of the k eligible entries of smallest key, by ``(key, index)``.

    score: ``[N]`` float (not NaN); eligible: ``[N]`` bool; ``0 <= k <= eligible.sum()``
    (checked by the caller); mode: ``"smallest"``, ``"largest"`` or ``"smallest_abs"``.
    """
    n = score.numel()
    dev = score.device
    if k == 0:
        return torch.empty(0, dtype=torch.int64, device=dev)
    wide = score.dtype == torch.float64
    nbits = 64 if wide else 32
    passes = nbits // 8
    m = MODES[mode]
    score = score.contiguous()
    elig = eligible.contiguous().view(torch.uint8)
    nb = triton.cdiv(n, _BLOCK)
    hist = torch.zeros(passes * 256, dtype=torch.int32, device=dev)
    for j in range(passes):
        _histogram_kernel[(nb,)](
            score, elig, hist, n, k, PASS=j, NBITS=nbits, MODE=m, WIDE=wide, BLOCK=_BLOCK
        )
    counts = torch.empty(2 * nb, dtype=torch.int64, device=dev)
    state = torch.empty(2, dtype=torch.int64, device=dev)
    _count_kernel[(nb,)](
        score, elig, hist, counts, state, n, k, nb, PASSES=passes, MODE=m, WIDE=wide, BLOCK=_BLOCK
    )
    n_lt, n_eq = counts[:nb], counts[nb:]
    eq_offset = _exclusive_cumsum(n_eq)
    take_eq = torch.minimum((state[1] - eq_offset).clamp_(min=0), n_eq)
    sel_offset = _exclusive_cumsum(n_lt + take_eq)
    out_index = torch.empty(k, dtype=torch.int64, device=dev)
    out_key = torch.empty(k, dtype=torch.int64, device=dev)
    _write_kernel[(nb,)](
        score,
        elig,
        state,
        eq_offset,
        sel_offset,
        out_index,
        out_key,
        n,
        MODE=m,
        WIDE=wide,
        BLOCK=_BLOCK,
    )
    order = torch.sort(out_key, stable=True).indices
    return out_index[order]
