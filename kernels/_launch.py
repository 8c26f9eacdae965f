"""Launch helpers shared by the Triton kernel families (plain PyTorch, no Triton)."""

from __future__ import annotations

import torch
from torch import Tensor

# Largest grid size along axes 1 and 2 on CUDA; kernels loop when the batch is larger.
MAX_GRID_Y = 65535


def next_pow2(n: int) -> int:
    """Smallest power of two ``>= n`` (1 for ``n <= 1``)."""
    return 1 << max(0, int(n) - 1).bit_length()


def block_f(f: int, cap: int = 128) -> int:
    """Feature tile: the next power of two of ``f``, at most ``cap``."""
    return min(next_pow2(f), cap)


def inverse_index(index: Tensor, n: int) -> Tensor:
    """``inv[n]``: position of sensor ``j`` in ``index``, or -1 if it is not there (int32)."""
    inv = torch.full((n,), -1, dtype=torch.int32, device=index.device)
    inv[index] = torch.arange(index.numel(), dtype=torch.int32, device=index.device)
    return inv
